"""The Stripe service and gateway (official SDK) against the sandbox, webhooks included
(harness: providerutil)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from connectors.providers.registry import webhook_handlers
from connectors.providers.stripe_client import StripeGateway, StripeService
from tests.integration.providerutil import FAST, USD, Env, command, unique
from trailpay.domain.errors import ProviderRejected
from trailpay.domain.events import Money, Provider, ProviderCommand, ProviderCommandKind, ProviderEventKind
from trailpay.domain.status import PaymentStatus

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
S = PaymentStatus


async def stripe_webhooks(env: Env, pi_id: str, types: set[str], timeout: float = 5.0) -> list[Any]:
    handler = webhook_handlers(env.settings)[Provider.STRIPE]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = {}
        for item in env.receiver.received:
            if item[0] == "/api/stripe/webhooks/stripe/" and pi_id.encode() in item[1]:
                raw = env.receiver.raw(Provider.STRIPE, item)
                handler.verify(raw)  # real Stripe-Signature, first configured secret
                evt = json.loads(item[1])
                found[evt["type"]] = handler.normalize(raw)
        if types <= set(found) or asyncio.get_running_loop().time() > deadline:
            return [found.get(t) for t in sorted(types)]
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(("pm", "status", "code"), [
    ("pm_card_visa", S.SUCCEEDED, "succeeded"), ("pm_card_mastercard", S.SUCCEEDED, "succeeded"),
    ("pm_card_chargeDeclined", S.FAILED, "generic_decline"),
    ("pm_card_visa_chargeDeclinedInsufficientFunds", S.FAILED, "insufficient_funds")])
async def test_stripe_confirm_at_creation(env: Env, pm: str, status: S, code: str) -> None:
    gateway = StripeGateway.from_settings(env.settings, policy=FAST)
    ref = unique()
    try:
        cmd = command(ProviderCommandKind.INITIATE, Provider.STRIPE, ref, USD, payment_method_id=pm,
                      confirm=True, email="a@example.com", booking_id="bk-1")
        [ev] = await gateway.execute(cmd)
        assert ev.status is status and ev.provider_code == code
        assert ev.provider_reference and ev.provider_reference.startswith("pi_")
        if status is S.SUCCEEDED:
            assert ev.client_secret and ev.customer_id and ev.kind is ProviderEventKind.STATUS
            [[wh]] = await stripe_webhooks(env, ev.provider_reference, {"payment_intent.succeeded"})
            assert wh.status is S.SUCCEEDED and wh.reference == ref
        else:
            assert ev.kind is ProviderEventKind.COMMAND_FAILED
            [[wh]] = await stripe_webhooks(env, ev.provider_reference, {"payment_intent.payment_failed"})
            assert wh.status is S.FAILED and wh.provider_code == code
        # redelivered command: same idempotency key -> Stripe replays; same event id, same PI
        [again] = await gateway.execute(cmd)
        assert again.event_id == ev.event_id and again.provider_reference == ev.provider_reference
    finally:
        await gateway.aclose()


async def test_stripe_is_sent_mga_as_a_zero_decimal_currency(env: Env) -> None:
    """#15: MGA is two-decimal in ISO 4217 but zero-decimal at Stripe; MGA 500.00 (50,000
    minor units here) must reach Stripe as ``amount=500``, not 100 times that."""
    gateway = StripeGateway.from_settings(env.settings, policy=FAST)
    ref = unique()
    try:
        mga = Money(amount=50_000, currency="MGA")
        [ev] = await gateway.execute(command(ProviderCommandKind.INITIATE, Provider.STRIPE, ref, mga,
                                             payment_method_id="pm_card_visa", confirm=True))
        assert ev.status is S.SUCCEEDED and ev.provider_reference
        key = env.settings.stripe_api_key.get_secret_value()
        stored = await env.http.get(f"{env.sandbox_url}/stripe/v1/payment_intents/{ev.provider_reference}",
                                    headers={"Authorization": f"Bearer {key}"})
        assert stored.status_code == 200, stored.text
        assert (stored.json()["amount"], stored.json()["currency"]) == (500, "mga")
        assert ev.amount == mga  # read back in our minor units
    finally:
        await gateway.aclose()


@pytest.mark.parametrize("passes", [True, False])
async def test_stripe_3ds(env: Env, passes: bool) -> None:
    gateway = StripeGateway.from_settings(env.settings, policy=FAST)
    ref = unique()
    try:
        [created] = await gateway.execute(command(ProviderCommandKind.INITIATE, Provider.STRIPE, ref, USD))
        assert created.status is S.PENDING and created.provider_status == "requires_payment_method"
        confirm = command(ProviderCommandKind.CONFIRM, Provider.STRIPE, ref, USD,
                          provider_reference=created.provider_reference,
                          payment_method_id="pm_card_threeDSecure2Required")
        [ev] = await gateway.execute(confirm)
        assert ev.status is S.PROCESSING and ev.provider_status == "requires_action"
        r = await env.http.post(f"{env.sandbox_url}/_sandbox/stripe/payment_intents/{ev.provider_reference}/3ds",
                                json={"outcome": "succeed" if passes else "fail"})
        assert r.status_code == 200
        [q] = await gateway.execute(command(ProviderCommandKind.QUERY, Provider.STRIPE, ref, USD,
                                            provider_reference=ev.provider_reference))
        assert q.status is (S.SUCCEEDED if passes else S.FAILED)
        expected = "payment_intent.succeeded" if passes else "payment_intent.payment_failed"
        [[wh]] = await stripe_webhooks(env, ev.provider_reference, {expected})
        assert wh.status is q.status
        if not passes:
            assert wh.provider_code == "authentication_required"
    finally:
        await gateway.aclose()


async def test_stripe_refunds_partial_full_and_over_refund(env: Env) -> None:
    gateway = StripeGateway.from_settings(env.settings, policy=FAST)
    ref = unique()
    try:
        [paid] = await gateway.execute(command(ProviderCommandKind.INITIATE, Provider.STRIPE, ref, USD,
                                               payment_method_id="pm_card_visa", confirm=True))
        pi = paid.provider_reference

        def refund(rid: str, minor: int | None) -> ProviderCommand:
            amt = Money(amount=minor, currency="USD") if minor is not None else None
            return command(ProviderCommandKind.REFUND, Provider.STRIPE, ref, USD, provider_reference=pi,
                           refund_id=rid, refund_amount=amt, reason="requested_by_customer")

        [part] = await gateway.execute(refund("rf-a", 2_500))
        assert part.kind is ProviderEventKind.REFUND and part.refund_succeeded and part.amount.amount == 2_500
        [over] = await gateway.execute(refund("rf-b", 20_000))
        assert over.kind is ProviderEventKind.COMMAND_FAILED and over.provider_code == "amount_too_large"
        assert over.refund_id == "rf-b"
        [rest] = await gateway.execute(refund("rf-c", None))
        assert rest.refund_succeeded and rest.amount.amount == 10_000
        [again] = await gateway.execute(refund("rf-c", None))  # replayed by idempotency key
        assert again.provider_reference == rest.provider_reference
        [[wh]] = await stripe_webhooks(env, rest.provider_reference, {"refund.created"})
        assert wh.kind is ProviderEventKind.REFUND and wh.refund_id == "rf-c"
    finally:
        await gateway.aclose()


async def test_stripe_cancel_and_service_surface(env: Env) -> None:
    service = StripeService.from_settings(env.settings, policy=FAST)
    gateway = StripeGateway(service)
    ref = unique()
    try:
        customer = await service.get_or_create_customer("user-" + ref, "x@example.com")
        assert await service.get_or_create_customer("user-" + ref) == customer
        pm = await service.attach_payment_method("pm_card_visa", customer)
        assert [m.id for m in await service.list_payment_methods(customer)] == [pm.id]
        [created] = await gateway.execute(command(ProviderCommandKind.INITIATE, Provider.STRIPE, ref, USD,
                                                  customer_id=customer, payment_method_id=pm.id))
        assert created.provider_status == "requires_confirmation"
        [cancelled] = await gateway.execute(command(ProviderCommandKind.CANCEL, Provider.STRIPE, ref, USD,
                                                    provider_reference=created.provider_reference,
                                                    reason="abandoned"))
        assert cancelled.status is S.CANCELLED
        listed = await service.list_intents(customer)
        assert [p.id for p in listed] == [created.provider_reference]
        assert (await service.retrieve_intent(created.provider_reference)).cancellation_reason == "abandoned"
        await service.detach_payment_method(pm.id)
        assert await service.list_payment_methods(customer) == []
        with pytest.raises(ProviderRejected) as info:
            await service.retrieve_intent("pi_missing")
        assert info.value.code == "resource_missing"
    finally:
        await gateway.aclose()
