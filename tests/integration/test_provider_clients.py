"""Each provider client against its sandbox over real HTTP, with callbacks received locally.

The sandbox app and a small callback receiver run in-process under uvicorn on free ports.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from connectors.providers.airtel_client import AirtelClient, AirtelGateway
from connectors.providers.http import ProviderUnavailable, RetryPolicy
from connectors.providers.mobile import InvalidAmount, InvalidPhoneNumber
from connectors.providers.mpesa_client import DarajaClient, MpesaGateway
from connectors.providers.registry import webhook_handlers
from connectors.providers.stripe_client import StripeGateway, StripeService
from connectors.sandboxes.app import create_app
from trailpay.domain.errors import ProviderRejected
from trailpay.domain.events import (
    Money,
    Provider,
    ProviderCommand,
    ProviderCommandKind,
    ProviderEventKind,
    RawWebhook,
    stable_id,
)
from trailpay.domain.status import PaymentStatus
from trailpay.settings import Settings, load_settings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
FAST = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05)
S = PaymentStatus


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve(app: Any, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    task = asyncio.get_running_loop().create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    return server, task


@dataclass
class Receiver:
    """Records every callback/webhook TrailPay would receive."""

    received: list[tuple[str, bytes, dict[str, str], dict[str, str]]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/{path:path}")
        async def receive(path: str, request: Request) -> JSONResponse:
            self.received.append(("/" + path, await request.body(), dict(request.headers),
                                  dict(request.query_params)))
            self.arrived.set()
            return JSONResponse({"ok": True})

        return app

    def raw(self, provider: Provider, item: tuple[str, bytes, dict[str, str], dict[str, str]]) -> RawWebhook:
        now = datetime.now(UTC)
        return RawWebhook(event_id="r", occurred_at=now, provider=provider, body=item[1],
                          headers=item[2], query=item[3], received_at=now)

    async def wait_for(self, predicate: Any, timeout: float = 5.0) -> list[Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            hits = [r for r in self.received if predicate(r)]
            if hits:
                return hits
            if asyncio.get_running_loop().time() > deadline:
                return []
            await asyncio.sleep(0.05)


@dataclass
class Env:
    settings: Settings
    sandbox_url: str
    receiver: Receiver
    http: httpx.AsyncClient

    async def fault(self, provider: str, mode: str = "error", count: int = 1, **extra: Any) -> None:
        r = await self.http.post(f"{self.sandbox_url}/_sandbox/faults",
                                 json={"provider": provider, "mode": mode, "count": count, **extra})
        assert r.status_code == 200

    async def requests(self) -> dict[str, int]:
        return (await self.http.get(f"{self.sandbox_url}/_sandbox/requests")).json()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def env() -> AsyncIterator[Env]:
    receiver = Receiver()
    rport, sport = free_port(), free_port()
    sandbox = f"http://127.0.0.1:{sport}"
    settings = load_settings(
        public_base_url=f"http://127.0.0.1:{rport}", sandbox_port=sport,
        stripe_api_base=f"{sandbox}/stripe", mpesa_base_url=f"{sandbox}/mpesa",
        airtel_base_url=f"{sandbox}/airtel", payment_timeout_s=1,
        stripe_webhook_secrets="whsec_current,whsec_previous",
        airtel_callback_secret=SecretStr("airtel-hash-secret"),
    )
    servers = [await serve(receiver.app(), rport),
               await serve(create_app(settings, callback_delay_s=0.2, mpesa_token_ttl_s=3), sport)]
    async with httpx.AsyncClient(timeout=10) as http:
        yield Env(settings, sandbox, receiver, http)
    for server, task in servers:
        server.should_exit = True
        await task


def command(kind: ProviderCommandKind, provider: Provider, ref: str, amount: Money, **kw: Any) -> ProviderCommand:
    return ProviderCommand(event_id=stable_id(ref, kind, kw.get("refund_id")), occurred_at=datetime.now(UTC),
                           kind=kind, reference=ref, provider=provider, amount=amount, user_id="u-1", **kw)


def unique(prefix: str = "TP") -> str:
    return prefix + stable_id(datetime.now(UTC).isoformat(), id(object()))[:20].upper()


KES = Money(amount=10_000, currency="KES")  # 100 shillings


# ======================================================================= M-Pesa
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
        assert hit[0] == "/api/payments/callback/mpesa/"
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


# ======================================================================= Airtel
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


# ======================================================================= Stripe
USD = Money(amount=12_500, currency="USD")


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


# ======================================================================= retries
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
