"""Regression (issue 16): the M-Pesa callback token travelled in clear on webhooks.raw.v1."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from connectors.ingress.app import create_app
from connectors.ingress.context import IngressContext
from connectors.ingress.models import ConfirmBody, StripeIntentBody
from trailpay.settings import load_settings

TOKEN = "tok-3f9a1c77e2b845d0a6b1"
SETTINGS = load_settings(kafka_bootstrap="127.0.0.1:9", database_url=None,
                         mpesa_callback_token=SecretStr(TOKEN), airtel_callback_token=SecretStr(TOKEN))


class CapturingPublisher:
    def __init__(self) -> None:
        self.records: list[tuple[str, Any]] = []

    async def publish(self, topic: str, key: str | None, record: Any) -> None:
        self.records.append((topic, record))


@pytest.fixture
async def api():
    ctx = IngressContext.build(SETTINGS, with_database=False)
    ctx.publisher = CapturingPublisher()  # type: ignore[assignment]
    app = create_app(SETTINGS, ctx=ctx)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c, ctx.publisher


@pytest.mark.parametrize("provider", ["mpesa", "airtel"])
@pytest.mark.parametrize(("given", "status", "verified"), [(TOKEN, 200, True), ("tok-wrong", 403, False)])
async def test_callback_token_is_checked_then_left_out_of_the_record(api, provider, given, status, verified):
    client, publisher = api
    resp = await client.post(f"/api/payments/callback/{provider}/",
                             params={"token": given, "reference": "TPREF1"}, json={"Body": {}})
    assert resp.status_code == status
    ((topic, raw),) = publisher.records
    assert topic == "webhooks.raw.v1"
    assert raw.verified is verified
    assert raw.query == {"reference": "TPREF1"}
    assert given not in raw.model_dump_json()


MPESA_SUCCESS = (b'{"Body":{"stkCallback":{"MerchantRequestID":"m-1","CheckoutRequestID":"ws_CO_011220261200001a2b",'
                 b'"ResultCode":0,"ResultDesc":"ok","CallbackMetadata":{"Item":[{"Name":"Amount","Value":150},'
                 b'{"Name":"MpesaReceiptNumber","Value":"SLK4H7XY"},{"Name":"TransactionDate","Value":20261201120000},'
                 b'{"Name":"PhoneNumber","Value":254712345678}]}}}}')


async def test_mpesa_callback_kept_with_the_phone_number_masked(api):
    """Regression (issue 16): stored callbacks held the payer's full number."""
    client, publisher = api
    resp = await client.post("/api/payments/callback/mpesa/", params={"token": TOKEN, "reference": "TPREF1"},
                             content=MPESA_SUCCESS, headers={"Content-Type": "application/json"})
    assert resp.status_code == 200
    ((_topic, raw),) = publisher.records
    assert b"254712345678" not in raw.body
    items = {i["Name"]: i["Value"] for i in
             json.loads(raw.body)["Body"]["stkCallback"]["CallbackMetadata"]["Item"]}
    assert items == {"Amount": 150, "MpesaReceiptNumber": "SLK4H7XY", "TransactionDate": 20261201120000,
                     "PhoneNumber": "2547******78"}


async def test_forged_airtel_callback_kept_masked_too(api):
    client, publisher = api
    body = b'{"transaction":{"id":"x","msisdn":"+243812345678","note":"from 0971234567"}}'
    resp = await client.post("/api/payments/callback/airtel/", params={"token": "guess"}, content=body,
                             headers={"Content-Type": "application/json"})
    assert resp.status_code == 403
    ((_topic, raw),) = publisher.records
    assert raw.body == b'{"transaction":{"id":"x","msisdn":"2438******78","note":"from 0971****67"}}'


def test_a_card_number_is_no_payment_method():
    """Regression (issue 16 scan): a card number sent as the payment method was accepted and
    travelled to every topic as the payment method id."""
    with pytest.raises(ValidationError):
        StripeIntentBody.model_validate({"amount": "1", "currency": "USD", "payment_method": "4242424242424242"})
    with pytest.raises(ValidationError):
        ConfirmBody.model_validate({"payment_method": "4242 4242 4242 4242"})
    assert StripeIntentBody.model_validate({"amount": "1", "currency": "USD", "payment_method": "pm_card_visa"})
