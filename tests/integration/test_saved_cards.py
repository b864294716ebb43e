"""#17 item 6 on the session stack: a card paid with ``save_payment_method`` is listed in the
user's saved payment methods afterwards, one paid without it is not; a SetupIntent confirmed
with the real Stripe SDK (as Stripe.js would, with the client secret's intent) saves its card."""

from __future__ import annotations

import httpx
import pytest
import stripe

from tests.integration.ingressutil import ApiUser, make_user
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(stack):
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=40) as client:
        yield client


async def pay_by_card(api: httpx.AsyncClient, user: ApiUser, card: str, **extra: object) -> None:
    resp = await api.post("/api/stripe/payment-intents/create/", headers=user.headers, json={
        "amount": "25.00", "currency": "USD", "payment_method": card, "confirm": True, **extra})
    assert resp.status_code == 201, resp.text
    ref = resp.json()["reference"]

    async def paid() -> str | None:
        body = (await api.get(f"/api/payments/{ref}/status/", headers=user.headers)).json()
        return body["status"] if body["status"] not in {"pending", "created", "processing"} else None

    assert await wait_for(paid, 90, f"{ref} settled", interval=0.5) == "succeeded"


async def saved_cards(api: httpx.AsyncClient, user: ApiUser) -> list[tuple[str, str]]:
    resp = await api.get("/api/stripe/payment-methods/", headers=user.headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["source"] == ("stripe" if body["customer_id"] else "cache"), body
    return [(m["brand"], m["last4"]) for m in body["results"]]


async def test_a_card_paid_with_save_is_listed_and_one_paid_without_is_not(api, stack):
    user = await make_user(stack.settings)
    assert await saved_cards(api, user) == []
    await pay_by_card(api, user, "pm_card_visa", save_payment_method=True)
    assert await saved_cards(api, user) == [("visa", "4242")]

    await pay_by_card(api, user, "pm_card_mastercard")
    assert await saved_cards(api, user) == [("visa", "4242")]


async def test_a_confirmed_setup_intent_saves_the_card(api, stack):
    user = await make_user(stack.settings)
    resp = await api.post("/api/stripe/setup-intents/create/", headers=user.headers)
    assert resp.status_code == 201, resp.text
    seti = resp.json()
    assert seti["id"].startswith("seti_") and seti["client_secret"].startswith(f"{seti['id']}_secret_")
    assert (seti["status"], seti["usage"]) == ("requires_payment_method", "off_session")
    assert seti["customer_id"].startswith("cus_")

    http = stripe.HTTPXClient(timeout=20)
    try:
        client = stripe.StripeClient(stack.settings.stripe_api_key.get_secret_value(),
                                     base_addresses={"api": f"{stack.sandbox_url}/stripe"},
                                     http_client=http, max_network_retries=0).v1
        done = await client.setup_intents.confirm_async(seti["id"], {"payment_method": "pm_card_mastercard"})
    finally:
        await http.close_async()
    assert done.status == "succeeded"
    assert await saved_cards(api, user) == [("mastercard", "4444")]
    bad = await api.post("/api/stripe/setup-intents/create/", headers=user.headers,
                         json={"usage": "sometimes"})
    assert bad.status_code == 422 and "usage" in bad.json()["fields"], bad.text
