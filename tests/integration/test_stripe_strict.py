"""The Stripe sandbox is as strict as Stripe, and the Stripe client passes (#15 items 6, 9):
unknown parameters, amount limits, zero- and three-decimal currencies on the wire,
``cancellation_reason``, ``return_url``, and customers (stored id used without a search,
creation keys that never collide). Sandboxes and client only (harness: providerutil)."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.providers.stripe_client import StripeGateway, StripeService, customer_key
from tests.integration.providerutil import FAST, USD, Env, command, unique
from trailpay.domain.events import Money, Provider, ProviderCommandKind
from trailpay.domain.status import PaymentStatus

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
S = PaymentStatus
INITIATE = ProviderCommandKind.INITIATE


async def stripe_post(env: Env, path: str, form: dict[str, str]) -> Any:
    key = env.settings.stripe_api_key.get_secret_value()
    return await env.http.post(f"{env.sandbox_url}/stripe/v1/{path}", data=form,
                               headers={"Authorization": f"Bearer {key}"})


async def stripe_get(env: Env, path: str) -> dict[str, Any]:
    key = env.settings.stripe_api_key.get_secret_value()
    resp = await env.http.get(f"{env.sandbox_url}/stripe/v1/{path}",
                              headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def test_an_unknown_parameter_is_refused_as_stripe_does(env: Env) -> None:
    resp = await stripe_post(env, "payment_intents", {"amount": "1000", "currency": "usd",
                                                      "amount_in_cents": "1000"})
    assert resp.status_code == 400
    assert resp.json() == {"error": {
        "type": "invalid_request_error", "code": "parameter_unknown", "param": "amount_in_cents",
        "message": "Received unknown parameter: amount_in_cents",
        "doc_url": "https://stripe.com/docs/error-codes/parameter-unknown"}}
    cancel = await stripe_post(env, "payment_intents/pi_x/cancel", {"reason": "abandoned"})
    assert (cancel.status_code, cancel.json()["error"]["param"]) == (400, "reason")
    ok = await stripe_post(env, "customers", {"email": "a@example.com", "metadata[k]": "v"})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(("amount", "currency", "code", "message"), [
    ("49", "usd", "amount_too_small", "Amount must be at least 0.50 usd"),
    ("29", "gbp", "amount_too_small", "Amount must be at least 0.30 gbp"),
    ("49", "jpy", "amount_too_small", "Amount must be at least 50 jpy"),
    ("100000000", "usd", "amount_too_large", "Amount must be no more than 999999.99 usd"),
    ("12345", "kwd", "invalid_charge_amount", None),
])
async def test_amounts_stripe_would_not_charge_are_refused(env: Env, amount: str, currency: str,
                                                          code: str, message: str | None) -> None:
    resp = await stripe_post(env, "payment_intents", {"amount": amount, "currency": currency})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["code"], error["param"]) == (code, "amount")
    if message is not None:
        assert error["message"] == message


async def test_invalid_cancellation_reason_and_return_url_without_confirm(env: Env) -> None:
    created = await stripe_post(env, "payment_intents", {"amount": "1000", "currency": "usd"})
    pi = created.json()["id"]
    bad = await stripe_post(env, f"payment_intents/{pi}/cancel", {"cancellation_reason": "changed_mind"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "cancellation_reason"
    assert (await stripe_get(env, f"payment_intents/{pi}"))["status"] == "requires_payment_method"
    good = await stripe_post(env, f"payment_intents/{pi}/cancel", {"cancellation_reason": "abandoned"})
    assert good.json()["status"] == "canceled"
    no_confirm = await stripe_post(env, "payment_intents", {"amount": "1000", "currency": "usd",
                                                            "return_url": "https://shop.example/back"})
    assert no_confirm.status_code == 400 and no_confirm.json()["error"]["param"] == "return_url"


@pytest.mark.parametrize(("money", "wire"), [
    (Money(amount=500_000, currency="MGA"), 5_000),  # MGA 5,000.00: zero-decimal at Stripe
    (Money(amount=12_340, currency="KWD"), 12_340),  # KWD 12.340: thousandths, last digit 0
    (Money(amount=5_000, currency="JPY"), 5_000),
])
async def test_the_client_sends_stripes_wire_amount(env: Env, money: Money, wire: int) -> None:
    gateway = StripeGateway.from_settings(env.settings, policy=FAST)
    try:
        [ev] = await gateway.execute(command(INITIATE, Provider.STRIPE, unique(), money))
        assert ev.provider_reference is not None
        pi = await stripe_get(env, f"payment_intents/{ev.provider_reference}")
        assert (pi["amount"], pi["currency"]) == (wire, money.currency.lower())
        assert ev.amount == money  # read back in ISO minor units
    finally:
        await gateway.aclose()


async def test_return_url_reaches_stripe_with_a_confirm_at_creation(env: Env) -> None:
    gateway = StripeGateway.from_settings(env.settings, policy=FAST)
    try:
        [ev] = await gateway.execute(command(
            INITIATE, Provider.STRIPE, unique(), USD, payment_method_id="pm_card_threeDSecure2Required",
            confirm=True, return_url="https://shop.example/paid"))
        assert ev.provider_status == "requires_action"
        pi = await stripe_get(env, f"payment_intents/{ev.provider_reference}")
        assert pi["next_action"]["redirect_to_url"]["return_url"] == "https://shop.example/paid"
    finally:
        await gateway.aclose()


async def test_a_stored_customer_is_used_without_searching(env: Env) -> None:
    service = StripeService.from_settings(env.settings, policy=FAST)
    gateway = StripeGateway(service)
    try:
        user = "user-" + unique()
        customer = await service.get_or_create_customer(user, "old@example.com")
        searches = (await env.requests()).get("GET /stripe/v1/customers/search", 0)
        [ev] = await gateway.execute(command(INITIATE, Provider.STRIPE, unique(), USD,
                                             customer_id=customer))
        assert ev.customer_id == customer
        assert (await env.requests()).get("GET /stripe/v1/customers/search", 0) == searches
        # no stored customer: one search
        [fresh] = await gateway.execute(command(INITIATE, Provider.STRIPE, unique(), USD))
        assert fresh.customer_id and fresh.customer_id.startswith("cus_")
        assert (await env.requests()).get("GET /stripe/v1/customers/search", 0) == searches + 1
    finally:
        await gateway.aclose()


async def test_a_changed_email_never_reuses_a_customer_creation_key(env: Env) -> None:
    """Before: the key was ``trailpay-customer-<user>`` whatever was sent, so a second create
    with another e-mail (the search not yet seeing the first customer) was Stripe's
    ``idempotency_error``."""
    user = "user-" + unique()
    first = {"metadata": {"trailpay_user_id": user}, "email": "old@example.com"}
    second = {"metadata": {"trailpay_user_id": user}, "email": "new@example.com"}
    assert customer_key(user, first) != customer_key(user, second)
    assert customer_key(user, first) == customer_key(user, dict(reversed(list(first.items()))))
    assert customer_key(user, first).startswith(f"trailpay-customer-{user}-")
    key = env.settings.stripe_api_key.get_secret_value()
    headers = {"Authorization": f"Bearer {key}"}
    for params in (first, second):
        form = {"metadata[trailpay_user_id]": user, "email": str(params["email"])}
        resp = await env.http.post(f"{env.sandbox_url}/stripe/v1/customers", data=form,
                                   headers={**headers, "Idempotency-Key": customer_key(user, params)})
        assert resp.status_code == 200, resp.text


async def test_a_stored_customer_stripe_no_longer_has_is_looked_up_again(env: Env) -> None:
    gateway = StripeGateway.from_settings(env.settings, policy=FAST)
    try:
        [ev] = await gateway.execute(command(INITIATE, Provider.STRIPE, unique(), USD,
                                             customer_id="cus_deletedInDashboard"))
        assert ev.status is S.PENDING and ev.customer_id and ev.customer_id != "cus_deletedInDashboard"
    finally:
        await gateway.aclose()


async def test_a_refund_reason_outside_stripes_list_is_refused(env: Env) -> None:
    created = await stripe_post(env, "payment_intents", {
        "amount": "1000", "currency": "usd", "payment_method": "pm_card_visa", "confirm": "true"})
    assert created.json()["status"] == "succeeded"
    bad = await stripe_post(env, "refunds", {"payment_intent": created.json()["id"], "reason": "abandoned"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "reason"
    good = await stripe_post(env, "refunds", {"payment_intent": created.json()["id"], "reason": "duplicate"})
    assert good.json()["status"] == "succeeded"
