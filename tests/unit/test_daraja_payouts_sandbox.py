"""The Daraja sandbox's B2C and Reversal rules, and the refund gateways against it (in process:
the sandbox app over httpx's ASGI transport; the results it schedules are read from its
sender, 30 s before it would post them)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from connectors.providers.airtel_client import AirtelClient, AirtelGateway
from connectors.providers.mpesa_callbacks import MpesaCallbackHandler
from connectors.providers.mpesa_client import DarajaClient, MpesaGateway
from connectors.sandboxes.app import create_app
from connectors.sandboxes.mpesa_payouts import Receipt
from tests.unit.test_mpesa_refunds import SETTINGS, TOKEN, raw
from trailpay.domain.events import Money, Provider, ProviderCommand, ProviderCommandKind, ProviderEventKind
from trailpay.retry import RetryPolicy

FAST = RetryPolicy(attempts=2, base_delay_s=0.01, max_delay_s=0.02)
B2C = "/mpesa/mpesa/b2c/v3/paymentrequest"
B2C_V1 = "/mpesa/mpesa/b2c/v1/paymentrequest"
REVERSAL = "/mpesa/mpesa/reversal/v1/request"


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


async def test_an_outcome_fault_settles_the_next_b2c_by_its_digit(sandbox) -> None:
    app, client = sandbox
    hook = await client.post("/_sandbox/faults", json={"provider": "mpesa", "mode": "outcome", "outcome": "6",
                                                       "count": 1, "path": "/b2c/"})
    assert hook.status_code == 200
    assert (await client.post(B2C, json=b2c_body())).json()["ResponseCode"] == "0"  # phone ends 0
    assert delivered(app)[1]["Result"]["ResultCode"] == 1
