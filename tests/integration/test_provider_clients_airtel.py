"""The Airtel Money client and gateway against the sandbox (harness: providerutil)."""

from __future__ import annotations

import asyncio

import pytest

from connectors.providers.airtel_client import AirtelGateway
from connectors.providers.registry import webhook_handlers
from tests.integration.providerutil import FAST, KES, Env, command, unique
from trailpay.domain.events import Money, Provider, ProviderCommandKind, ProviderEventKind
from trailpay.domain.status import PaymentStatus

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
S = PaymentStatus


@pytest.mark.parametrize(("phone", "code", "status"), [
    ("0733000000", "TS", S.SUCCEEDED), ("0733000001", "TF", S.FAILED), ("0733000002", "TF", S.FAILED),
    ("0733000004", "TF", S.FAILED)])
async def test_airtel_outcomes_by_callback(env: Env, phone: str, code: str, status: S) -> None:
    gateway = AirtelGateway.from_settings(env.settings, policy=FAST)
    ref = unique()
    amount = Money(amount=5_000, currency="KES")
    try:
        [ev] = await gateway.execute(command(ProviderCommandKind.INITIATE, Provider.AIRTEL, ref, amount,
                                             phone_number=phone))
        assert ev.status is S.PENDING and ev.event_id.startswith("cmd:")
        [hit] = await env.receiver.wait_for(lambda r: ref.encode() in r[1] and "airtel" in r[0])
        handler = webhook_handlers(env.settings)[Provider.AIRTEL]
        raw = env.receiver.raw(Provider.AIRTEL, hit)
        handler.verify(raw)  # token + hash
        [cb] = handler.normalize(raw)
        assert cb.reference == ref and cb.status is status and cb.event_id == f"airtel:{ref}:{code}"
        [q] = await gateway.execute(command(ProviderCommandKind.QUERY, Provider.AIRTEL, ref, amount))
        assert q.status is status
        if code == "TS":
            refund = command(ProviderCommandKind.REFUND, Provider.AIRTEL, ref, amount, refund_id="rf-1",
                             provider_reference=cb.provider_reference)
            [rf] = await gateway.execute(refund)
            assert rf.kind is ProviderEventKind.REFUND and rf.refund_succeeded and rf.refund_id == "rf-1"
            [again] = await gateway.execute(command(ProviderCommandKind.REFUND, Provider.AIRTEL, ref, amount,
                                                    refund_id="rf-2", provider_reference=cb.provider_reference))
            assert again.kind is ProviderEventKind.COMMAND_FAILED and again.provider_code == "DP00800001011"
    finally:
        await gateway.aclose()


async def test_airtel_no_callback_then_expired_and_duplicate_id(env: Env) -> None:
    gateway = AirtelGateway.from_settings(env.settings, policy=FAST)
    ref = unique()
    try:
        init = command(ProviderCommandKind.INITIATE, Provider.AIRTEL, ref, KES, phone_number="0733000003")
        [ev] = await gateway.execute(init)
        # the same collection again (a redelivered command): Airtel refuses the duplicate id,
        # which means our push was already sent, so the outcome is the same
        [ev2] = await gateway.execute(init)
        assert ev2.event_id == ev.event_id and ev2.status is S.PENDING
        query = command(ProviderCommandKind.QUERY, Provider.AIRTEL, ref, KES)
        assert await gateway.execute(query) == []  # TIP
        await asyncio.sleep(0.3)
        [q] = await gateway.execute(query)
        assert q.status is S.EXPIRED
        assert await env.receiver.wait_for(lambda r: ref.encode() in r[1], timeout=0.3) == []
    finally:
        await gateway.aclose()
