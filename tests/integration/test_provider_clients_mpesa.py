"""The M-Pesa (Daraja) client and gateway against the sandbox (harness: providerutil)."""

from __future__ import annotations

import asyncio

import pytest

from connectors.providers.mobile import InvalidAmount, InvalidPhoneNumber
from connectors.providers.mpesa_client import DarajaClient, MpesaGateway
from connectors.providers.registry import webhook_handlers
from tests.integration.providerutil import FAST, KES, Env, command, unique
from trailpay.domain.events import Money, Provider, ProviderCommandKind, ProviderEventKind
from trailpay.domain.status import PaymentStatus

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
S = PaymentStatus


@pytest.mark.parametrize(("phone", "code", "status"), [
    ("0712345670", 0, S.SUCCEEDED), ("+254712345671", 1, S.FAILED), ("254712345672", 1032, S.CANCELLED),
    ("0712345674", 2001, S.FAILED), ("0112345675", 1001, S.FAILED), ("0712345679", 0, S.SUCCEEDED)])
async def test_mpesa_outcomes_by_callback(env: Env, phone: str, code: int, status: S) -> None:
    gateway = MpesaGateway.from_settings(env.settings, policy=FAST)
    ref = unique()
    try:
        [ev] = await gateway.execute(command(ProviderCommandKind.INITIATE, Provider.MPESA, ref, KES,
                                             phone_number=phone))
        assert ev.kind is ProviderEventKind.STATUS and ev.status is S.PENDING
        assert ev.provider_reference and ev.provider_reference.startswith("ws_CO_")
        [hit] = await env.receiver.wait_for(lambda r: r[3].get("reference") == ref)
        assert hit[0] == "/api/payments/callback/stk/"  # no "mpesa" in a CallBackURL (#15)
        handler = webhook_handlers(env.settings)[Provider.MPESA]
        raw = env.receiver.raw(Provider.MPESA, hit)
        handler.verify(raw)
        [cb] = handler.normalize(raw)
        assert cb.status is status and cb.provider_code == str(code)
        assert cb.event_id == f"mpesa:{ev.provider_reference}:{code}"
        assert (cb.amount is not None) == (code == 0)
        # the query agrees with the callback (ResultCode arrives as a string there)
        [q] = await gateway.execute(command(ProviderCommandKind.QUERY, Provider.MPESA, ref, KES,
                                            provider_reference=ev.provider_reference))
        assert q.status is status and q.event_id.startswith("query:")
    finally:
        await gateway.aclose()


async def test_mpesa_1037_sends_no_callback_and_query_settles_it(env: Env) -> None:
    gateway = MpesaGateway.from_settings(env.settings, policy=FAST)
    ref = unique()
    try:
        [ev] = await gateway.execute(command(ProviderCommandKind.INITIATE, Provider.MPESA, ref, KES,
                                             phone_number="0712345673"))
        query = command(ProviderCommandKind.QUERY, Provider.MPESA, ref, KES,
                        provider_reference=ev.provider_reference)
        assert await gateway.execute(query) == []  # still being processed
        assert await env.receiver.wait_for(lambda r: r[3].get("reference") == ref, timeout=0.6) == []
        [q] = await gateway.execute(query)
        assert q.status is S.EXPIRED and q.provider_code == "1037"
    finally:
        await gateway.aclose()


async def test_mpesa_refusals(env: Env) -> None:
    client = DarajaClient.from_settings(env.settings, policy=FAST)
    gateway = MpesaGateway(client, env.settings)
    try:
        with pytest.raises(InvalidPhoneNumber, match="not a Kenyan mobile number"):
            await client.stk_push("0812345678", 100, "r", "http://x/cb")
        [ev] = await gateway.execute(command(ProviderCommandKind.INITIATE, Provider.MPESA, unique(),
                                             Money(amount=10_050, currency="KES"), phone_number="0712345670"))
        assert ev.kind is ProviderEventKind.COMMAND_FAILED and ev.status is S.FAILED
        assert ev.provider_code == "invalid_amount"
        with pytest.raises(InvalidAmount, match="KES"):
            await gateway._initiate(command(ProviderCommandKind.INITIATE, Provider.MPESA, unique(),
                                            Money(amount=100, currency="USD"), phone_number="0712345670"))
    finally:
        await gateway.aclose()


async def test_mpesa_token_cached_and_refreshed_before_expiry(env: Env) -> None:
    client = DarajaClient.from_settings(env.settings, policy=FAST)
    try:
        client.token._margin = 1.0  # sandbox tokens live 3 s here: refresh after ~2 s
        await client.stk_push("0712345676", 1, "r", "http://127.0.0.1:9/cb")
        await client.stk_push("0712345676", 1, "r", "http://127.0.0.1:9/cb")
        assert client.token.fetches == 1
        await asyncio.sleep(2.1)
        await client.stk_push("0712345676", 1, "r", "http://127.0.0.1:9/cb")
        assert client.token.fetches == 2
    finally:
        await client.aclose()
