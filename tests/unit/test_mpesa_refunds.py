"""M-Pesa refunds as Daraja B2C payments: the result mapping, the result URLs' handler, and
the sandbox's B2C / Reversal rules (in process: the sandbox app over httpx's ASGI transport;
the results it schedules are read from its sender, 30 s before it would post them)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from connectors.ingress.app import create_app as create_ingress
from connectors.ingress.context import IngressContext
from connectors.providers.airtel_client import AirtelClient, AirtelGateway
from connectors.providers.base import WebhookRejected, WebhookUnparseable
from connectors.providers.mpesa_callbacks import MpesaCallbackHandler
from connectors.providers.mpesa_client import DarajaClient, MpesaGateway
from connectors.sandboxes.app import create_app
from connectors.sandboxes.mpesa_payouts import Receipt
from controlplane.cli.refunds_cmd import external_refund_event, refusal
from tests.unit.payment_factory import REF, created, refund, status_event
from trailpay.domain.events import (
    Money,
    Provider,
    ProviderCommand,
    ProviderCommandKind,
    ProviderEventKind,
    RawWebhook,
)
from trailpay.domain.payment import Payment, Verdict
from trailpay.domain.payout_results import map_daraja_payout_result
from trailpay.domain.state_machine import apply
from trailpay.domain.status import PaymentStatus
from trailpay.retry import RetryPolicy
from trailpay.settings import Settings, load_settings

FAST = RetryPolicy(attempts=2, base_delay_s=0.01, max_delay_s=0.02)
B2C = "/mpesa/mpesa/b2c/v3/paymentrequest"
B2C_V1 = "/mpesa/mpesa/b2c/v1/paymentrequest"
REVERSAL = "/mpesa/mpesa/reversal/v1/request"
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


# ----------------------------------------------------------------------------- the sandbox


@pytest.fixture
async def sandbox() -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    app = create_app(SETTINGS, callback_delay_s=30)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as raw_client:
        token = (await raw_client.get("/mpesa/oauth/v1/generate", params={"grant_type": "client_credentials"},
                                      auth=("sandbox-consumer-key", "sandbox-consumer-secret"))).json()
        raw_client.headers["Authorization"] = f"Bearer {token['access_token']}"
        yield app, raw_client
    await app.state.sender.aclose()


def b2c_body(**changes: Any) -> dict[str, Any]:
    body = {"OriginatorConversationID": "rf_9", "InitiatorName": "sandbox-initiator",
            "SecurityCredential": "sandbox-security-credential", "CommandID": "BusinessPayment",
            "Amount": 150, "PartyA": "174379", "PartyB": "254712345670", "Remarks": "Refund of TP1",
            "QueueTimeOutURL": "https://pay.example.com/api/payments/callback/payout-timeout/?event=timeout",
            "ResultURL": "https://pay.example.com/api/payments/callback/payout-result/?event=result",
            "Occasion": "refund"}
    return {k: v for k, v in {**body, **changes}.items() if v is not None}


def delivered(app: Any) -> tuple[str, dict[str, Any]]:
    [d] = app.state.sender.deliveries
    return urlsplit(d.url).path, json.loads(d.body)


@pytest.mark.parametrize(("changes", "field"), [
    ({"Remarks": None}, "Remarks"), ({"Remarks": "x"}, "Remarks"), ({"Amount": "12.5"}, "Amount"),
    ({"Amount": 0}, "Amount"), ({"CommandID": "Refund"}, "CommandID"), ({"PartyA": "600000"}, "PartyA"),
    ({"PartyB": "0712345670"}, "PartyB"), ({"OriginatorConversationID": None}, "OriginatorConversationID"),
    ({"ResultURL": "https://pay.example.com/mpesa/result"}, "ResultURL"),
    ({"QueueTimeOutURL": "ftp://pay.example.com/t"}, "QueueTimeOutURL"),
    ({"Occasion": "x" * 101}, "Occasion"), ({"SecurityCredential": None}, "SecurityCredential"),
])
async def test_b2c_refuses_what_daraja_refuses(sandbox, changes: dict[str, Any], field: str) -> None:
    app, client = sandbox
    resp = await client.post(B2C, json=b2c_body(**changes))
    assert resp.status_code == 400
    assert (resp.json()["errorCode"], resp.json()["errorMessage"]) == (
        "400.002.02", f"Bad Request - Invalid {field}")
    assert app.state.sender.deliveries == []


async def test_b2c_is_accepted_then_settled_by_a_result(sandbox) -> None:
    app, client = sandbox
    resp = await client.post(B2C, json=b2c_body())
    assert resp.status_code == 200
    assert {k: resp.json()[k] for k in ("OriginatorConversationID", "ResponseCode")} == {
        "OriginatorConversationID": "rf_9", "ResponseCode": "0"}
    path, body = delivered(app)
    assert path == "/api/payments/callback/payout-result/"
    result = body["Result"]
    assert (result["ResultCode"], result["OriginatorConversationID"]) == (0, "rf_9")
    params = {p["Key"]: p["Value"] for p in result["ResultParameters"]["ResultParameter"]}
    assert params["TransactionAmount"] == 150 and params["TransactionReceipt"] == result["TransactionID"]
    # v1 takes no OriginatorConversationID (Daraja makes one up)
    v1 = await client.post(B2C_V1, json=b2c_body(OriginatorConversationID=None))
    assert v1.status_code == 200 and v1.json()["OriginatorConversationID"]


@pytest.mark.parametrize(("changes", "code"), [
    ({"PartyB": "254712345676"}, 1),  # last digit 6: the org's balance is insufficient
    ({"PartyB": "254712345677"}, 2001),  # 7: the initiator information is invalid
    ({"SecurityCredential": "wrong"}, 2001),  # accepted, and failed in the result, like Daraja
    ({"Amount": 5}, 2),  # under the B2C minimum of 10 KES
    ({"Amount": 2_000_000}, 1),  # more than the org's B2C balance
])
async def test_b2c_failures_come_in_the_result(sandbox, changes: dict[str, Any], code: int) -> None:
    app, client = sandbox
    resp = await client.post(B2C, json=b2c_body(**changes))
    assert resp.status_code == 200 and resp.json()["ResponseCode"] == "0"
    path, body = delivered(app)
    assert path == "/api/payments/callback/payout-result/"
    assert body["Result"]["ResultCode"] == code and "ResultParameters" not in body["Result"]


async def test_b2c_queue_timeout_goes_to_the_queue_timeout_url(sandbox) -> None:
    app, client = sandbox
    resp = await client.post(B2C, json=b2c_body(PartyB="254712345678"))  # last digit 8
    assert resp.json()["ResponseCode"] == "0"
    path, body = delivered(app)
    assert path == "/api/payments/callback/payout-timeout/"
    assert body["Result"]["OriginatorConversationID"] == "rf_9" and "ResultCode" not in body["Result"]


def reversal_body(**changes: Any) -> dict[str, Any]:
    body = {"Initiator": "sandbox-initiator", "SecurityCredential": "sandbox-security-credential",
            "CommandID": "TransactionReversal", "TransactionID": "SLK0NOPE01", "Amount": 100,
            "ReceiverParty": "174379", "RecieverIdentifierType": "11", "Remarks": "Refund of TP1",
            "QueueTimeOutURL": "https://pay.example.com/t", "ResultURL": "https://pay.example.com/r"}
    return {k: v for k, v in {**body, **changes}.items() if v is not None}


async def test_reversal_rules(sandbox) -> None:
    app, client = sandbox
    bad = await client.post(REVERSAL, json=reversal_body(RecieverIdentifierType="4"))
    assert bad.status_code == 400 and bad.json()["errorMessage"] == "Bad Request - Invalid RecieverIdentifierType"
    unknown = await client.post(REVERSAL, json=reversal_body())
    assert unknown.json()["ResponseCode"] == "0"
    assert delivered(app)[1]["Result"]["ResultCode"] == "R000002"
    app.state.sender.deliveries.clear()
    app.state.sandboxes["mpesa"].payouts.receipts["SLK0PAID01"] = Receipt(100, "254712345670")
    ok = await client.post(REVERSAL, json=reversal_body(TransactionID="SLK0PAID01"))
    assert ok.json()["ResponseCode"] == "0" and delivered(app)[1]["Result"]["ResultCode"] == 0
    app.state.sender.deliveries.clear()
    await client.post(REVERSAL, json=reversal_body(TransactionID="SLK0PAID01"))
    assert delivered(app)[1]["Result"]["ResultCode"] == "R000001"


# ----------------------------------------------------------------------------- the gateways


def refund_command(provider: Provider, amount: int, refund: int, phone: str | None) -> ProviderCommand:
    return ProviderCommand(event_id="cmd-rf-1", occurred_at=datetime.now(UTC), kind=ProviderCommandKind.REFUND,
                           reference="TPREFUND1", provider=provider, amount=Money(amount=amount, currency="KES"),
                           user_id="u-1", phone_number=phone, refund_id="rf_gw1",
                           refund_amount=Money(amount=refund, currency="KES"), reason="requested_by_customer")


async def test_the_gateway_sends_a_b2c_whose_result_the_handler_reads(sandbox) -> None:
    app, _client = sandbox
    client = DarajaClient("http://sandbox/mpesa", "sandbox-consumer-key", "sandbox-consumer-secret", "174379",
                          "sandbox-passkey", policy=FAST, transport=httpx.ASGITransport(app=app))
    gateway = MpesaGateway(client, SETTINGS)
    try:
        assert await gateway.execute(refund_command(Provider.MPESA, 50_000, 20_000, "0712 345 670")) == []
        [sent] = app.state.sandboxes["mpesa"].payouts.requests
        assert {k: sent[k] for k in ("OriginatorConversationID", "Amount", "PartyA", "PartyB", "CommandID")} == {
            "OriginatorConversationID": "rf_gw1", "Amount": 200, "PartyA": "174379",
            "PartyB": "254712345670", "CommandID": "BusinessPayment"}
        [d] = app.state.sender.deliveries
        query = dict(parse_qsl(urlsplit(d.url).query))
        assert query == {"token": TOKEN, "reference": "TPREFUND1", "refund": "rf_gw1", "event": "result"}
        [ev] = MpesaCallbackHandler(TOKEN).normalize(raw(json.loads(d.body), **query))
        assert (ev.refund_id, ev.refund_succeeded, ev.provider_code) == ("rf_gw1", True, "0")
        # no phone, or a fraction of a shilling: the refund fails at once with our reason
        [no_phone] = await gateway.execute(refund_command(Provider.MPESA, 50_000, 20_000, None))
        assert (no_phone.kind, no_phone.refund_id, no_phone.refund_succeeded, no_phone.provider_code) == (
            ProviderEventKind.COMMAND_FAILED, "rf_gw1", False, "invalid_phone_number")
        [cents] = await gateway.execute(refund_command(Provider.MPESA, 50_000, 20_050, "0712345670"))
        assert cents.provider_code == "invalid_amount"
    finally:
        await gateway.aclose()


async def test_airtel_refuses_a_partial_refund_without_calling_airtel() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500)

    gateway = AirtelGateway(AirtelClient("http://airtel", "id", "secret", policy=FAST,
                                         transport=httpx.MockTransport(handler)))
    try:
        [ev] = await gateway.execute(refund_command(Provider.AIRTEL, 50_000, 20_000, "0733000000"))
    finally:
        await gateway.aclose()
    assert (ev.kind, ev.provider_code, ev.refund_succeeded) == (
        ProviderEventKind.COMMAND_FAILED, "partial_refund_unsupported", False)
    assert calls == []


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


async def test_an_outcome_fault_settles_the_next_b2c_by_its_digit(sandbox) -> None:
    app, client = sandbox
    hook = await client.post("/_sandbox/faults", json={"provider": "mpesa", "mode": "outcome", "outcome": "6",
                                                       "count": 1, "path": "/b2c/"})
    assert hook.status_code == 200
    assert (await client.post(B2C, json=b2c_body())).json()["ResponseCode"] == "0"  # phone ends 0
    assert delivered(app)[1]["Result"]["ResultCode"] == 1
