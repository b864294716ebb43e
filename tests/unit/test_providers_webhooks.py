"""Webhook/callback verification and normalisation for Stripe, M-Pesa and Airtel (pure)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from connectors.providers.airtel_callbacks import AirtelCallbackHandler, callback_hash
from connectors.providers.base import WebhookRejected, WebhookUnparseable
from connectors.providers.mpesa_callbacks import MpesaCallbackHandler
from connectors.providers.registry import webhook_handlers
from connectors.providers.stripe_signature import signature_header, verify_signature
from connectors.providers.stripe_webhooks import StripeWebhookHandler
from trailpay.domain.events import Provider, ProviderEventKind, RawWebhook
from trailpay.domain.status import PaymentStatus
from trailpay.settings import load_settings

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def raw(provider: Provider, body: bytes, headers=None, query=None) -> RawWebhook:
    return RawWebhook(event_id="raw-1", occurred_at=NOW, provider=provider, body=body,
                      headers=headers or {}, query=query or {}, received_at=NOW)


def stripe_event(evt_type: str, obj: dict, evt_id: str = "evt_123") -> bytes:
    return json.dumps({"id": evt_id, "object": "event", "type": evt_type, "created": 1740830400,
                       "data": {"object": obj}}).encode()


PI = {"id": "pi_1", "object": "payment_intent", "amount": 1500, "currency": "usd", "status": "succeeded",
      "customer": "cus_1", "payment_method": "pm_1",
      "metadata": {"trailpay_reference": "TPABC", "booking_id": "b1", "user_id": "u1"}}


# --------------------------------------------------------------------------- Stripe signatures
class TestStripeSignature:
    body = stripe_event("payment_intent.succeeded", PI)

    def test_valid(self):
        header = signature_header(["whsec_a"], self.body)
        assert verify_signature(self.body, header, ["whsec_a"], 300) > 0

    def test_body_changed_by_one_byte(self):
        header = signature_header(["whsec_a"], self.body)
        changed = self.body.replace(b"1500", b"1501")
        assert len(changed) == len(self.body)
        with pytest.raises(WebhookRejected, match="matches"):
            verify_signature(changed, header, ["whsec_a"], 300)

    def test_wrong_secret(self):
        header = signature_header(["whsec_other"], self.body)
        with pytest.raises(WebhookRejected):
            verify_signature(self.body, header, ["whsec_a"], 300)

    def test_timestamp_older_than_tolerance(self):
        old = int(time.time()) - 301
        header = signature_header(["whsec_a"], self.body, timestamp=old)
        with pytest.raises(WebhookRejected, match="old"):
            verify_signature(self.body, header, ["whsec_a"], 300)
        # within tolerance it verifies
        fresh = signature_header(["whsec_a"], self.body, timestamp=int(time.time()) - 299)
        verify_signature(self.body, fresh, ["whsec_a"], 300)

    @pytest.mark.parametrize("signer", [["whsec_old"], ["whsec_new"], ["whsec_old", "whsec_new"],
                                        ["whsec_unknown", "whsec_new"]])
    def test_rotated_secrets_both_accepted(self, signer):
        header = signature_header(signer, self.body)
        verify_signature(self.body, header, ["whsec_new", "whsec_old"], 300)

    @pytest.mark.parametrize("header", [None, "", "t=abc,v1=00", "v1=00", "t=123", "garbage"])
    def test_malformed_headers(self, header):
        with pytest.raises(WebhookRejected):
            verify_signature(self.body, header, ["whsec_a"], 300)


# --------------------------------------------------------------------------- Stripe normalise
class TestStripeHandler:
    handler = StripeWebhookHandler(["whsec_a"], 300)

    def test_verify_reads_header_case_insensitively(self):
        body = stripe_event("payment_intent.succeeded", PI)
        self.handler.verify(raw(Provider.STRIPE, body, {"stripe-signature": signature_header(["whsec_a"], body)}))
        with pytest.raises(WebhookRejected):
            self.handler.verify(raw(Provider.STRIPE, body + b" ",
                                    {"Stripe-Signature": signature_header(["whsec_a"], body)}))

    def test_succeeded(self):
        body = stripe_event("payment_intent.succeeded", PI)
        assert self.handler.reference_of(body, {}) == "TPABC"
        [ev] = self.handler.normalize(raw(Provider.STRIPE, body))
        assert ev.event_id == "stripe:evt_123"
        assert ev.kind is ProviderEventKind.STATUS and ev.status is PaymentStatus.SUCCEEDED
        assert ev.reference == "TPABC" and ev.provider_reference == "pi_1"
        assert ev.amount is not None and ev.amount.amount == 1500 and ev.amount.currency == "USD"
        assert ev.customer_id == "cus_1" and ev.payment_method_id == "pm_1"

    def test_payment_failed_keeps_decline_code(self):
        obj = {**PI, "status": "requires_payment_method",
               "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds",
                                      "message": "Your card has insufficient funds."}}
        [ev] = self.handler.normalize(raw(Provider.STRIPE, stripe_event("payment_intent.payment_failed", obj)))
        assert ev.status is PaymentStatus.FAILED
        assert ev.provider_code == "insufficient_funds"
        assert ev.provider_message == "Your card has insufficient funds."

    @pytest.mark.parametrize(("evt", "status"), [("payment_intent.requires_action", PaymentStatus.PROCESSING),
                                                  ("payment_intent.canceled", PaymentStatus.CANCELLED),
                                                  ("payment_intent.created", PaymentStatus.PENDING)])
    def test_other_intent_events(self, evt, status):
        [ev] = self.handler.normalize(raw(Provider.STRIPE, stripe_event(evt, PI)))
        assert ev.status is status

    def test_refund_event(self):
        refund = {"id": "re_1", "object": "refund", "amount": 500, "currency": "usd", "status": "succeeded",
                  "payment_intent": "pi_1",
                  "metadata": {"trailpay_reference": "TPABC", "trailpay_refund_id": "rf-1"}}
        [ev] = self.handler.normalize(raw(Provider.STRIPE, stripe_event("refund.updated", refund)))
        assert ev.kind is ProviderEventKind.REFUND and ev.refund_succeeded is True
        assert ev.refund_id == "rf-1" and ev.provider_reference == "re_1" and ev.amount.amount == 500
        pending = {**refund, "status": "pending"}
        assert self.handler.normalize(raw(Provider.STRIPE, stripe_event("refund.created", pending))) == []
        failed = {**refund, "status": "failed", "failure_reason": "expired_or_canceled_card"}
        [ev] = self.handler.normalize(raw(Provider.STRIPE, stripe_event("refund.failed", failed)))
        assert ev.refund_succeeded is False and ev.provider_code == "expired_or_canceled_card"

    def test_ignored_events(self):
        assert self.handler.normalize(raw(Provider.STRIPE, stripe_event("customer.created", {"id": "cus_1"}))) == []
        no_ref = {**PI, "metadata": {}}
        assert self.handler.normalize(raw(Provider.STRIPE, stripe_event("payment_intent.succeeded", no_ref))) == []
        assert self.handler.reference_of(b"not json", {}) is None

    def test_unparseable(self):
        with pytest.raises(WebhookUnparseable):
            self.handler.normalize(raw(Provider.STRIPE, b"[1,2]"))
        with pytest.raises(WebhookUnparseable):
            self.handler.normalize(raw(Provider.STRIPE, json.dumps({"id": "evt_1", "type": "x"}).encode()))


# --------------------------------------------------------------------------- M-Pesa
def stk(code, checkout="ws_CO_1", meta=True) -> bytes:
    cb = {"MerchantRequestID": "m-1", "CheckoutRequestID": checkout, "ResultCode": code,
          "ResultDesc": "The service request is processed successfully." if code == 0 else "failed"}
    if meta and code == 0:
        cb["CallbackMetadata"] = {"Item": [{"Name": "Amount", "Value": 1.00},
                                           {"Name": "MpesaReceiptNumber", "Value": "NLJ7RT61SV"},
                                           {"Name": "TransactionDate", "Value": 20191219102115},
                                           {"Name": "PhoneNumber", "Value": 254708374149}]}
    return json.dumps({"Body": {"stkCallback": cb}}).encode()


class TestMpesaHandler:
    handler = MpesaCallbackHandler("tok-123")
    q = {"token": "tok-123", "reference": "TPREF1"}

    def test_token(self):
        self.handler.verify(raw(Provider.MPESA, stk(0), query=self.q))
        for bad in ({}, {"token": "tok-124", "reference": "x"}, {"reference": "x"}):
            with pytest.raises(WebhookRejected):
                self.handler.verify(raw(Provider.MPESA, stk(0), query=bad))

    def test_success(self):
        [ev] = self.handler.normalize(raw(Provider.MPESA, stk(0), query=self.q))
        assert ev.event_id == "mpesa:ws_CO_1:0" and ev.reference == "TPREF1"
        assert ev.status is PaymentStatus.SUCCEEDED and ev.provider_code == "0"
        assert ev.amount is not None and ev.amount.amount == 100 and ev.amount.currency == "KES"
        assert "NLJ7RT61SV" in (ev.provider_message or "")

    @pytest.mark.parametrize(("code", "status"), [(1, PaymentStatus.FAILED), (1032, PaymentStatus.CANCELLED),
                                                   (1037, PaymentStatus.EXPIRED), (2001, PaymentStatus.FAILED),
                                                   ("1032", PaymentStatus.CANCELLED)])
    def test_failures_have_no_metadata(self, code, status):
        [ev] = self.handler.normalize(raw(Provider.MPESA, stk(code), query=self.q))
        assert ev.status is status and ev.amount is None
        assert ev.event_id == f"mpesa:ws_CO_1:{int(code)}"

    def test_reference_from_query(self):
        assert self.handler.reference_of(stk(0), self.q) == "TPREF1"
        assert self.handler.reference_of(stk(0), {}) is None
        with pytest.raises(WebhookUnparseable):
            self.handler.normalize(raw(Provider.MPESA, stk(0), query={"token": "tok-123"}))

    def test_unparseable(self):
        for body in (b"{}", b"nope", json.dumps({"Body": {"stkCallback": {"ResultCode": 0}}}).encode()):
            with pytest.raises(WebhookUnparseable):
                self.handler.normalize(raw(Provider.MPESA, body, query=self.q))


# --------------------------------------------------------------------------- Airtel
def airtel(status="TS", txn_id="TPAIR1", secret=None) -> bytes:
    txn = {"id": txn_id, "message": "Paid KES 50", "status_code": status, "airtel_money_id": "MP210603.1234"}
    body: dict = {"transaction": txn}
    if secret:
        body["hash"] = callback_hash(secret, txn)
    return json.dumps(body).encode()


class TestAirtelHandler:
    q = {"token": "air-tok"}

    def test_token_only(self):
        handler = AirtelCallbackHandler("air-tok")
        handler.verify(raw(Provider.AIRTEL, airtel(), query=self.q))
        with pytest.raises(WebhookRejected):
            handler.verify(raw(Provider.AIRTEL, airtel(), query={"token": "nope"}))

    def test_hash_when_secret_set(self):
        handler = AirtelCallbackHandler("air-tok", "s3cret")
        handler.verify(raw(Provider.AIRTEL, airtel(secret="s3cret"), query=self.q))
        with pytest.raises(WebhookRejected, match="hash"):
            handler.verify(raw(Provider.AIRTEL, airtel(), query=self.q))
        with pytest.raises(WebhookRejected, match="does not match"):
            handler.verify(raw(Provider.AIRTEL, airtel(secret="other"), query=self.q))
        tampered = airtel(secret="s3cret").replace(b'"TS"', b'"TF"')
        with pytest.raises(WebhookRejected):
            handler.verify(raw(Provider.AIRTEL, tampered, query=self.q))

    @pytest.mark.parametrize(("code", "status"), [("TS", PaymentStatus.SUCCEEDED), ("TF", PaymentStatus.FAILED),
                                                   ("TIP", PaymentStatus.PROCESSING), ("TE", PaymentStatus.EXPIRED)])
    def test_normalize(self, code, status):
        handler = AirtelCallbackHandler("air-tok")
        body = airtel(code)
        assert handler.reference_of(body, {}) == "TPAIR1"
        [ev] = handler.normalize(raw(Provider.AIRTEL, body, query=self.q))
        assert ev.event_id == f"airtel:TPAIR1:{code}" and ev.status is status
        # the attempt's transaction id (ours), not Airtel's airtel_money_id (#15 item 1)
        assert ev.reference == "TPAIR1" and ev.provider_reference == "TPAIR1"

    def test_unparseable(self):
        handler = AirtelCallbackHandler("air-tok")
        assert handler.reference_of(b"{}", {}) is None
        with pytest.raises(WebhookUnparseable):
            handler.normalize(raw(Provider.AIRTEL, b'{"transaction": {"id": "x"}}', query=self.q))


def test_registry_builds_handlers_from_settings():
    settings = load_settings(stripe_webhook_secrets="whsec_new,whsec_old",
                             mpesa_callback_token=SecretStr("mt"), airtel_callback_token=SecretStr("at"))
    handlers = webhook_handlers(settings)
    assert set(handlers) == set(Provider)
    body = stripe_event("payment_intent.succeeded", PI)
    handlers[Provider.STRIPE].verify(raw(Provider.STRIPE, body, {"Stripe-Signature": signature_header(["whsec_old"], body)}))
    handlers[Provider.MPESA].verify(raw(Provider.MPESA, stk(0), query={"token": "mt"}))
    handlers[Provider.AIRTEL].verify(raw(Provider.AIRTEL, airtel(), query={"token": "at"}))
