"""Every provider client's retries: 500s and timeouts retried, permanent errors not
(harness: providerutil)."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.providers.airtel_client import AirtelClient, AirtelGateway
from connectors.providers.http import ProviderUnavailable
from connectors.providers.mpesa_client import MpesaGateway
from connectors.providers.stripe_client import StripeGateway, StripeService
from tests.integration.providerutil import FAST, KES, USD, Env, command, unique
from trailpay.domain.errors import ProviderRejected
from trailpay.domain.events import Provider, ProviderCommandKind, ProviderEventKind
from trailpay.domain.status import PaymentStatus

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
S = PaymentStatus


@pytest.mark.parametrize("provider", ["mpesa", "airtel", "stripe"])
async def test_retries_on_500_then_succeeds(env: Env, provider: str) -> None:
    if provider == "mpesa":
        gw: Any = MpesaGateway.from_settings(env.settings, policy=FAST)
        cmd = command(ProviderCommandKind.INITIATE, Provider.MPESA, unique(), KES, phone_number="0712345676")
        await gw.client.token.get()
    elif provider == "airtel":
        gw = AirtelGateway.from_settings(env.settings, policy=FAST)
        cmd = command(ProviderCommandKind.INITIATE, Provider.AIRTEL, unique(), KES, phone_number="0733000006")
        await gw.client.token.get()
    else:
        gw = StripeGateway.from_settings(env.settings, policy=FAST)
        cmd = command(ProviderCommandKind.INITIATE, Provider.STRIPE, unique(), USD, customer_id=None)
    try:
        before = (await env.requests()).get(provider, 0)
        await env.fault(provider, "error", count=2, status=500)
        events = await gw.execute(cmd)
        assert events and events[0].kind is ProviderEventKind.STATUS
        extra = 1 if provider == "stripe" else 0  # Stripe: customer search + create first
        used = (await env.requests())[provider] - before
        assert used >= 3 + extra  # two failures, then success
    finally:
        await gw.aclose()


async def test_retries_on_timeout_then_gives_up_as_retriable(env: Env) -> None:
    gw = AirtelGateway.from_settings(env.settings, policy=FAST)
    try:
        await gw.client.token.get()
        before = (await env.requests()).get("airtel", 0)
        await env.fault("airtel", "timeout", count=3, delay_s=1.5)
        with pytest.raises(ProviderUnavailable, match="timeout"):
            await gw.execute(command(ProviderCommandKind.QUERY, Provider.AIRTEL, unique(), KES))
        assert (await env.requests())["airtel"] - before == 3
        await env.fault("airtel", "timeout", count=1, delay_s=1.5)
        [ev] = await gw.execute(command(ProviderCommandKind.INITIATE, Provider.AIRTEL, unique(), KES,
                                        phone_number="0733000006"))
        assert ev.status is S.PENDING
        assert (await env.requests())["airtel"] - before == 5
    finally:
        await gw.aclose()


async def test_permanent_errors_are_not_retried(env: Env) -> None:
    client = AirtelClient.from_settings(env.settings, policy=FAST)
    stripe_svc = StripeService.from_settings(env.settings, policy=FAST)
    try:
        await client.token.get()
        before = await env.requests()
        with pytest.raises(ProviderRejected):
            await client.collect("0733000000", 0, unique())  # invalid amount: 400
        with pytest.raises(ProviderRejected):
            await stripe_svc.retrieve_intent("pi_nope")  # 404
        await env.fault("stripe", "error", count=1, status=400)
        with pytest.raises(ProviderRejected):
            await stripe_svc.list_intents()
        after = await env.requests()
        assert after["airtel"] - before["airtel"] == 1
        assert after["stripe"] - before["stripe"] == 2
    finally:
        await client.aclose()
        await stripe_svc.aclose()
