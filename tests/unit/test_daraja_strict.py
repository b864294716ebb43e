"""The Daraja sandbox is as strict as Daraja, and the client copes (#15 items 7 and 9):
an invalid token is HTTP 404 ``404.001.03`` (the client drops its token and retries once),
a push to a phone with an open prompt is ``500.001.1001`` (refused at once, not retried as
a 5xx), filtered CallBackURL words and over-long AccountReference / TransactionDesc are
refused with Daraja's error shape. In process: the sandbox app over httpx's ASGI transport."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from connectors.providers.http import ProviderUnavailable
from connectors.providers.mpesa_client import (
    DARAJA_TOKEN_CODES,
    DarajaClient,
    daraja_timestamp,
    mpesa_callback_url,
    stk_password,
)
from connectors.providers.tokens import ClientCredentialsToken
from connectors.sandboxes.app import create_app
from trailpay.domain.errors import ProviderRejected
from trailpay.retry import RetryPolicy
from trailpay.settings import Settings

NO_CALLBACK_PHONE = "0712345673"  # last digit 3: the prompt stays open, no callback is sent
PUSH = "POST /mpesa/mpesa/stkpush/v1/processrequest"
FAST = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.02)


@pytest.fixture
async def sandbox() -> AsyncIterator[tuple[Any, httpx.ASGITransport, Settings]]:
    settings = Settings(sandbox_mpesa_lock_subscriber=True, public_base_url="https://pay.example.com")
    app = create_app(settings, callback_delay_s=30)
    yield app, httpx.ASGITransport(app=app), settings


def _client(transport: httpx.ASGITransport, settings: Settings) -> DarajaClient:
    return DarajaClient("http://sandbox/mpesa", settings.mpesa_consumer_key.get_secret_value(),
                        settings.mpesa_consumer_secret.get_secret_value(), settings.mpesa_shortcode,
                        settings.mpesa_passkey.get_secret_value(), policy=FAST, transport=transport)


async def test_an_invalid_token_is_404_and_the_client_fetches_a_new_one_once(sandbox) -> None:
    app, transport, settings = sandbox
    mpesa = app.state.sandboxes["mpesa"]
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as raw:
        resp = await raw.post("/mpesa/mpesa/stkpushquery/v1/query", json={},
                              headers={"Authorization": "Bearer not-a-token"})
    assert resp.status_code == 404
    assert {k: resp.json()[k] for k in ("errorCode", "errorMessage")} == {
        "errorCode": "404.001.03", "errorMessage": "Invalid Access Token"}

    client = _client(transport, settings)
    try:
        url = mpesa_callback_url(settings, "TPREF1")
        await client.stk_push("0712345670", 10, "TPREF1", url)
        mpesa.tokens.clear()  # Daraja forgot (or revoked) the token we cached
        await client.stk_push("0712345671", 10, "TPREF2", url)
        assert (mpesa.tokens_issued, client.token.refusals) == (2, 1)
        assert app.state.faults.requests[PUSH] == 3
    finally:
        await client.aclose()


async def test_a_second_push_to_an_open_prompt_is_refused_at_once(sandbox) -> None:
    app, transport, settings = sandbox
    client = _client(transport, settings)
    try:
        url = mpesa_callback_url(settings, "TPREF1")
        first = await client.stk_push(NO_CALLBACK_PHONE, 10, "TPREF1", url)
        assert first.checkout_request_id.startswith("ws_CO_")
        with pytest.raises(ProviderRejected) as refused:
            await client.stk_push(NO_CALLBACK_PHONE, 10, "TPREF2", url)
        assert refused.value.code == "500.001.1001"
        assert "Unable to lock subscriber" in refused.value.provider_message
        assert app.state.faults.requests[PUSH] == 2  # not retried as a 5xx
        await client.stk_push("0712345683", 10, "TPREF3", url)  # another phone is not locked
    finally:
        await client.aclose()


def _push_body(settings: Settings, **overrides: object) -> dict[str, object]:
    ts = daraja_timestamp()
    body: dict[str, object] = {
        "BusinessShortCode": settings.mpesa_shortcode,
        "Password": stk_password(settings.mpesa_shortcode, settings.mpesa_passkey.get_secret_value(), ts),
        "Timestamp": ts, "TransactionType": "CustomerPayBillOnline", "Amount": 10,
        "PartyA": "254712345670", "PartyB": settings.mpesa_shortcode, "PhoneNumber": "254712345670",
        "CallBackURL": "https://pay.example.com/api/payments/callback/stk/?token=t",
        "AccountReference": "TP1234567890", "TransactionDesc": "Kili day hike"}
    body.update(overrides)
    return body


@pytest.mark.parametrize(("overrides", "field"), [
    ({"CallBackURL": "https://pay.example.com/api/payments/callback/mpesa/"}, "CallBackURL"),
    ({"CallBackURL": "https://pay.example.com/M-Pesa/cb"}, "CallBackURL"),
    ({"CallBackURL": "https://safaricom-hooks.example.com/cb"}, "CallBackURL"),
    ({"AccountReference": "TP12345678901"}, "AccountReference"),
    ({"AccountReference": ""}, "AccountReference"),
    ({"TransactionDesc": "Kili day hikes"}, "TransactionDesc"),
])
async def test_push_fields_daraja_refuses(sandbox, overrides: dict[str, object], field: str) -> None:
    _app, transport, settings = sandbox
    key = settings.mpesa_consumer_key.get_secret_value()
    secret = settings.mpesa_consumer_secret.get_secret_value()
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as raw:
        basic = base64.b64encode(f"{key}:{secret}".encode()).decode()
        token = (await raw.get("/mpesa/oauth/v1/generate", params={"grant_type": "client_credentials"},
                               headers={"Authorization": f"Basic {basic}"})).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        ok = await raw.post("/mpesa/mpesa/stkpush/v1/processrequest", json=_push_body(settings),
                            headers=headers)
        assert ok.status_code == 200, ok.text
        resp = await raw.post("/mpesa/mpesa/stkpush/v1/processrequest",
                              json=_push_body(settings, PartyA="254712345671", PhoneNumber="254712345671",
                                              **overrides), headers=headers)
    assert resp.status_code == 400
    assert (resp.json()["errorCode"], resp.json()["errorMessage"]) == (
        "400.002.02", f"Bad Request - Invalid {field}")
    assert set(resp.json()) == {"requestId", "errorCode", "errorMessage"}


def test_our_callback_url_has_no_filtered_word() -> None:
    settings = Settings(public_base_url="https://pay.example.com")
    assert mpesa_callback_url(settings, "TPREF1").startswith(
        "https://pay.example.com/api/payments/callback/stk/?token=")


def test_confirm_by_query_defaults_on_for_a_live_daraja_only() -> None:
    assert Settings().confirms_mpesa_by_query is False  # the embedded sandbox
    assert Settings(mpesa_base_url="http://sandbox:8070/mpesa").confirms_mpesa_by_query is False
    live = {"mpesa_base_url": "https://api.safaricom.co.ke", "mpesa_consumer_key": "ck-live-1",
            "mpesa_consumer_secret": "cs-live-1", "mpesa_passkey": "pk-live-1",
            "mpesa_callback_token": "cb-live-1", "mpesa_initiator_name": "in-live-1",
            "mpesa_security_credential": "sc-live-1",  # a live Daraja refuses the placeholders (issue 16)
            "state_pii_keys": "qEZ0c2x0cm9uZy1lbm91Z2gtZm9yLWEtdGVzdC1rZXk"}
    assert Settings(**live).confirms_mpesa_by_query is True
    assert Settings(**live, mpesa_confirm_by_query=False).confirms_mpesa_by_query is False
    assert Settings(mpesa_confirm_by_query=True).payment_rules().confirm_by_query == {"mpesa"}


async def test_a_token_refused_twice_is_retriable_after_one_fresh_token() -> None:
    fetched: list[str] = []

    async def request() -> httpx.Response:
        fetched.append(f"t{len(fetched) + 1}")
        return httpx.Response(200, json={"access_token": fetched[-1], "expires_in": "3599"})

    token = ClientCredentialsToken("mpesa", request, lambda body: (str(body.get("errorCode", "")), ""),
                                   FAST, default_lifetime_s=3599, refused_codes=DARAJA_TOKEN_CODES)
    sent: list[str] = []

    async def call(headers: dict[str, str]) -> httpx.Response:
        sent.append(headers["Authorization"])
        return httpx.Response(404, json={"requestId": "r", "errorCode": "404.001.03",
                                         "errorMessage": "Invalid Access Token"})

    with pytest.raises(ProviderUnavailable, match=r"404\.001\.03"):
        await token.send(call)
    assert sent == ["Bearer t1", "Bearer t2"] and token.refusals == 2
    # an error that is not about the token is handed back as it is
    other = await token.send(lambda headers: _answer(400, "400.002.02"))
    assert other.status_code == 400 and sent == ["Bearer t1", "Bearer t2"]


async def _answer(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"requestId": "r", "errorCode": code, "errorMessage": "x"})
