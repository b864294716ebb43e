"""M-Pesa refunds as Daraja B2C payments: the result mapping, the result URLs' handler and
ingress routes, results through the state machine, and record-external (the sandbox's rules:
test_daraja_payouts_sandbox.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from connectors.ingress.app import create_app as create_ingress
from connectors.ingress.context import IngressContext
from connectors.providers.base import WebhookRejected, WebhookUnparseable
from connectors.providers.mpesa_callbacks import MpesaCallbackHandler
from controlplane.cli.refunds_cmd import external_refund_event, refusal
from tests.unit.payment_factory import REF, created, refund, status_event
from trailpay.domain.events import (
    Money,
    Provider,
    ProviderEventKind,
    RawWebhook,
)
from trailpay.domain.payment import Payment, Verdict
from trailpay.domain.payout_results import map_daraja_payout_result
from trailpay.domain.state_machine import apply
from trailpay.domain.status import PaymentStatus
from trailpay.settings import Settings, load_settings

TOKEN = "cb-token-7f3a"
SETTINGS = Settings(public_base_url="https://pay.example.com", mpesa_callback_token=TOKEN)


# ----------------------------------------------------------------------------- mapping


@pytest.mark.parametrize(("code", "desc", "expected"), [
    (0, "The service request is processed successfully.",
     (True, "0", "The service request is processed successfully.")),
    ("0", None, (True, "0", "The service request is processed successfully.")),
    (1, None, (False, "1", "The balance is insufficient for the transaction.")),
    ("2001", "The initiator information is invalid.",
     (False, "2001", "The initiator information is invalid.")),
    ("R000002", None, (False, "R000002", "The OriginalTransactionID is invalid.")),
    (17, "Something else", (False, "17", "Something else")),
    (None, None, (False, "missing", "result without a ResultCode")),
    (True, None, (False, "missing", "result without a ResultCode")),
])
def test_daraja_result_codes_map_to_refund_outcomes(code: Any, desc: str | None,
                                                    expected: tuple[bool, str, str]) -> None:
    out = map_daraja_payout_result(code, desc)
    assert (out.succeeded, out.code, out.message) == expected


# ----------------------------------------------------------------------------- the handler


def raw(body: dict[str, Any], **query: str) -> RawWebhook:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    return RawWebhook(event_id="w1", occurred_at=now, provider=Provider.MPESA,
                      body=json.dumps(body).encode(), query=query, received_at=now)


SUCCESS_RESULT = {"Result": {
    "ResultType": 0, "ResultCode": 0, "ResultDesc": "The service request is processed successfully.",
    "OriginatorConversationID": "rf_1", "ConversationID": "AG_20261201_0001",
    "TransactionID": "SLK3H8C2PQ",
    "ResultParameters": {"ResultParameter": [
        {"Key": "TransactionAmount", "Value": 150},
        {"Key": "TransactionReceipt", "Value": "SLK3H8C2PQ"},
        {"Key": "ReceiverPartyPublicName", "Value": "254708374149 - John Doe"}]}}}


def test_a_success_result_is_a_succeeded_refund() -> None:
    handler = MpesaCallbackHandler(TOKEN)
    notice = raw(SUCCESS_RESULT, token=TOKEN, reference="TP1", refund="rf_1", event="result")
    handler.verify(notice)
    [ev] = handler.normalize(notice)
    assert ev.kind is ProviderEventKind.REFUND and ev.refund_succeeded is True
    assert (ev.event_id, ev.reference, ev.refund_id) == ("mpesa-payout:rf_1:0", "TP1", "rf_1")
    assert ev.amount is None  # the refund's amount is the one we asked for
    assert (ev.provider_code, ev.provider_reference, ev.source) == ("0", "SLK3H8C2PQ", "webhook")
    assert ev.status is None


def test_a_failed_result_and_a_queue_timeout_are_failed_refunds() -> None:
    handler = MpesaCallbackHandler(TOKEN)
    failed = {"Result": {"ResultType": 0, "ResultCode": 2001,
                         "ResultDesc": "The initiator information is invalid.",
                         "OriginatorConversationID": "rf_2", "ConversationID": "AG_2",
                         "TransactionID": "SLK0000001"}}
    [ev] = handler.normalize(raw(failed, reference="TP1", refund="rf_2", event="result"))
    assert (ev.refund_succeeded, ev.provider_code, ev.provider_message, ev.amount) == (
        False, "2001", "The initiator information is invalid.", None)
    assert ev.event_id == "mpesa-payout:rf_2:2001"
    # the queue-timeout notice's body is not documented: the URL says what it is
    [timeout] = handler.normalize(raw({"Result": {"ResultType": 1}}, reference="TP1", refund="rf_3",
                                      event="timeout"))
    assert (timeout.refund_succeeded, timeout.provider_code, timeout.event_id) == (
        False, "queue_timeout", "mpesa-payout:rf_3:queue_timeout")


def test_results_need_the_token_the_reference_and_the_refund() -> None:
    handler = MpesaCallbackHandler(TOKEN)
    with pytest.raises(WebhookRejected):
        handler.verify(raw(SUCCESS_RESULT, token="guess", reference="TP1", refund="rf_1", event="result"))
    with pytest.raises(WebhookUnparseable):
        handler.normalize(raw(SUCCESS_RESULT, reference="TP1", event="result"))
    with pytest.raises(WebhookUnparseable):
        handler.normalize(raw({"Result": {"ResultDesc": "no code"}}, reference="TP1", refund="rf_1",
                              event="result"))


def test_an_stk_callback_is_still_an_stk_callback() -> None:
    body = {"Body": {"stkCallback": {"MerchantRequestID": "m", "CheckoutRequestID": "ws_CO_1",
                                     "ResultCode": 1032, "ResultDesc": "Request cancelled by user"}}}
    [ev] = MpesaCallbackHandler(TOKEN).normalize(raw(body, reference="TP1"))
    assert (ev.kind, ev.event_id) == (ProviderEventKind.STATUS, "mpesa:ws_CO_1:1032")


# ----------------------------------------------------------------------------- record-external


def _row(**changes: Any) -> dict[str, Any]:
    return {"reference": "TP1", "status": "succeeded", "amount_minor": 40_000, "refunded_minor": 0,
            "committed_minor": 0, **changes}


@pytest.mark.parametrize(("row", "amount", "problem"), [
    (_row(), 40_000, None),
    (_row(status="partially_refunded", refunded_minor=10_000, committed_minor=10_000), 30_000, None),
    (_row(), 40_001, "only 40000 minor units of TP1 are left to refund"),
    (_row(committed_minor=25_000), 20_000, "only 15000 minor units of TP1 are left to refund"),
    (_row(status="failed"), 100, "payment TP1 is failed; only paid payments can be refunded"),
    (_row(status="refunded", refunded_minor=40_000), 100,
     "payment TP1 is refunded; only paid payments can be refunded"),
])
def test_record_external_refuses_what_cannot_be_true(row: dict[str, Any], amount: int,
                                                     problem: str | None) -> None:
    assert refusal(row, amount) == problem


def test_a_recorded_external_refund_keeps_the_operators_reason() -> None:
    event = external_refund_event("TP1", Provider.MPESA, Money(amount=15_000, currency="KES"), "ext_1",
                                  "recorded outside TrailPay by ops-amina: cash at the lodge desk")
    assert (event.event_id, event.kind, event.refund_succeeded, event.provider_code, event.source) == (
        "external-refund:ext_1", ProviderEventKind.REFUND, True, "recorded_external", "reconcile")


# ----------------------------------------------------------------------------- the state machine


def _paid() -> Payment:
    payment = apply(created(REF), status_event(REF, PaymentStatus.SUCCEEDED, provider_reference="ws_CO_1")).payment
    assert payment is not None
    return payment


def _result(refund_id: str, code: int, amount: int | None, event: str = "result") -> list[Any]:
    result: dict[str, Any] = {"ResultType": 0, "ResultCode": code, "ResultDesc": f"code {code}",
                              "OriginatorConversationID": refund_id, "ConversationID": "AG_1",
                              "TransactionID": f"SLK{refund_id.upper()}"}
    if amount is not None:
        result["ResultParameters"] = {"ResultParameter": [{"Key": "TransactionAmount", "Value": amount}]}
    return MpesaCallbackHandler(TOKEN).normalize(raw({"Result": result}, reference=REF, refund=refund_id,
                                                     event=event))


def test_results_settle_refunds_through_the_state_machine() -> None:
    payment = apply(_paid(), refund(REF, "rfa", 300)).payment  # KES 3 of 10
    assert payment is not None
    [success] = _result("rfa", 0, 3)
    payment = apply(payment, success).payment
    assert payment is not None and payment.status is PaymentStatus.PARTIALLY_REFUNDED
    assert payment.snapshot.refunded_amount == 300
    assert [(r.refund_id, r.status, r.provider_reference) for r in payment.snapshot.refunds] == [
        ("rfa", "succeeded", "SLKRFA")]

    payment = apply(payment, refund(REF, "rfb", None)).payment
    assert payment is not None
    [failure] = _result("rfb", 1, None)
    payment = apply(payment, failure).payment
    assert payment is not None and payment.status is PaymentStatus.PARTIALLY_REFUNDED
    assert payment.snapshot.refunded_amount == 300
    assert [(r.status, r.failure_code, r.failure_message) for r in payment.snapshot.refunds[1:]] == [
        ("failed", "1", "code 1")]

    payment = apply(payment, refund(REF, "rfc", None)).payment
    assert payment is not None
    [timeout] = _result("rfc", 0, None, event="timeout")
    after = apply(payment, timeout).payment
    assert after is not None and after.status is PaymentStatus.PARTIALLY_REFUNDED
    assert after.snapshot.refunds[2].failure_code == "queue_timeout"
    # the same result twice (Daraja retries): applied once
    assert apply(after, timeout).verdict is not Verdict.APPLIED


def test_a_success_for_a_refund_the_payment_never_asked_for_is_not_applied() -> None:
    # someone who learnt the token forges a result for a refund id of their own
    [forged] = _result("rf_forged", 0, 10)
    outcome = apply(_paid(), forged)
    assert outcome.verdict is Verdict.STALE
    assert outcome.payment is not None and outcome.payment.status is PaymentStatus.SUCCEEDED


def test_a_recorded_external_refund_is_applied_with_its_reason() -> None:
    event = external_refund_event(REF, Provider.MPESA, Money(amount=400, currency="KES"), "ext_1",
                                  "recorded outside TrailPay by ops: cash")
    payment = apply(_paid(), event).payment
    assert payment is not None and payment.status is PaymentStatus.PARTIALLY_REFUNDED
    assert [(r.refund_id, r.amount.amount, r.reason, r.status) for r in payment.snapshot.refunds] == [
        ("ext_1", 400, "recorded outside TrailPay by ops: cash", "succeeded")]


# ----------------------------------------------------------------------------- the ingress


async def test_the_result_urls_are_served_durability_first() -> None:
    settings = load_settings(kafka_bootstrap="127.0.0.1:9", database_url=None)
    ctx = IngressContext.build(settings, with_database=False)
    app = create_ingress(settings, ctx=ctx)  # lifespan not run: the producer never connects
    token = settings.mpesa_callback_token.get_secret_value()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for path in ("/api/payments/callback/payout-result/", "/api/payments/callback/payout-timeout/"):
            resp = await client.post(path, params={"token": token, "reference": "TP1", "refund": "rf_1",
                                                   "event": "result"}, json=SUCCESS_RESULT)
            assert resp.status_code == 503 and resp.headers["Retry-After"], path  # not durable: not 2xx
        spec = (await client.get("/openapi.json")).json()
    assert {"/api/payments/callback/payout-result/", "/api/payments/callback/payout-timeout/"} <= set(spec["paths"])
    assert not any(word in path for path in spec["paths"] if "payout" in path
                   for word in ("mpesa", "m-pesa", "safaricom"))

