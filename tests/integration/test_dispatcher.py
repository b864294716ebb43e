"""The dispatcher agent on a real (private) tansu broker, calling the real sandboxes.

Commands in -> provider events out with ``cmd:<command id>`` ids; the same command twice ->
one provider call and identical events; an undecodable command -> a dead letter.
A private broker keeps the stack's own worker (which also runs the dispatcher) out of it.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer

from connectors.sandboxes.app import create_app
from tests.integration.providerutil import free_port, serve
from tests.stackutil import KIND, default_broker, start_broker
from tests.support.processes import ChildProcess, clean_env
from tests.support.waits import wait_for
from trailpay import codec, topics
from trailpay.domain.events import (
    Money,
    Provider,
    ProviderCommand,
    ProviderCommandKind,
    ProviderEvent,
    ProviderEventKind,
    stable_id,
)
from trailpay.domain.status import PaymentStatus
from trailpay.kafka import RecordProducer, create_topics
from trailpay.settings import Settings, load_settings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


class Harness:
    def __init__(self, settings: Settings, sandbox_url: str) -> None:
        self.settings = settings
        self.sandbox_url = sandbox_url
        self.producer = RecordProducer(settings)
        self.seen: list[tuple[bytes | None, bytes]] = []
        self.dead: list[tuple[bytes | None, bytes]] = []

    async def consume(self) -> None:
        consumer = AIOKafkaConsumer(topics.PROVIDER_EVENTS, topics.DEAD_LETTERS,
                                    bootstrap_servers=self.settings.kafka_bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    group_id=None)
        await consumer.start()
        try:
            async for msg in consumer:
                (self.dead if msg.topic == topics.DEAD_LETTERS else self.seen).append((msg.key, msg.value))
        finally:
            await consumer.stop()

    def events_for(self, reference: str) -> list[tuple[bytes, ProviderEvent]]:
        return [(value, codec.decode(topics.PROVIDER_EVENTS, value)) for key, value in self.seen
                if key == reference.encode()]

    async def wait(self, predicate: Any, timeout: float = 60.0) -> None:
        await wait_for(predicate, timeout, "the dispatcher's events", interval=0.1)

    async def requests(self) -> dict[str, int]:
        async with httpx.AsyncClient() as http:
            return (await http.get(f"{self.sandbox_url}/_sandbox/requests")).json()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def harness(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    data_dir = tmp_path_factory.mktemp("dispatcher")
    sandbox_port = free_port()
    kind = default_broker()
    broker = start_broker(kind, data_dir, start=False)
    broker.start()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    env = {
        "TRAILPAY_KAFKA_BOOTSTRAP": broker.bootstrap,
        "TRAILPAY_BROKER_KIND": KIND[kind],
        "TRAILPAY_PARTITIONS": "2",
        "TRAILPAY_WORKER_ID": f"dispatcher-test-{uuid.uuid4().hex[:8]}",
        "TRAILPAY_STRIPE_API_BASE": f"{sandbox_url}/stripe",
        "TRAILPAY_MPESA_BASE_URL": f"{sandbox_url}/mpesa",
        "TRAILPAY_AIRTEL_BASE_URL": f"{sandbox_url}/airtel",
        "TRAILPAY_PUBLIC_BASE_URL": "http://127.0.0.1:9",  # callbacks are not the point here
        "TRAILPAY_DATA_DIR": str(data_dir),
    }
    settings = load_settings(kafka_bootstrap=env["TRAILPAY_KAFKA_BOOTSTRAP"], partitions=2,
                             public_base_url="http://127.0.0.1:9")
    server, task = await serve(create_app(settings, callback_delay_s=0.1), sandbox_port)
    worker = ChildProcess([sys.executable, "-m", "tests.integration.dispatcher_worker", "worker"],
                          clean_env(**env), data_dir / "worker.log")
    try:
        await asyncio.to_thread(broker.wait_ready)
        await create_topics(settings)
        worker.start()
        h = Harness(settings, sandbox_url)
        await h.producer.start()
        consumer = asyncio.get_running_loop().create_task(h.consume())
        yield h
        consumer.cancel()
        await h.producer.stop()
    finally:
        if worker.proc is not None:
            worker.stop(20)
            print(worker.log_text()[-3000:])
        server.should_exit = True
        await task
        broker.stop()


def command(kind: ProviderCommandKind, provider: Provider, ref: str, amount: Money, **kw: Any) -> ProviderCommand:
    return ProviderCommand(event_id=stable_id(ref, 1, kind), occurred_at=datetime.now(UTC), kind=kind,
                           reference=ref, provider=provider, amount=amount, user_id="u-1", **kw)


def ref() -> str:
    return "TP" + uuid.uuid4().hex[:20].upper()


async def test_commands_in_events_out(harness: Harness) -> None:
    kes = Money(amount=10_000, currency="KES")
    cmds = [
        command(ProviderCommandKind.INITIATE, Provider.MPESA, ref(), kes, phone_number="0712345670"),
        command(ProviderCommandKind.INITIATE, Provider.AIRTEL, ref(), kes, phone_number="0733000000"),
        command(ProviderCommandKind.INITIATE, Provider.STRIPE, ref(), Money(amount=999, currency="USD"),
                payment_method_id="pm_card_visa", confirm=True),
        command(ProviderCommandKind.INITIATE, Provider.STRIPE, ref(), Money(amount=999, currency="USD"),
                payment_method_id="pm_card_chargeDeclined", confirm=True),
        command(ProviderCommandKind.INITIATE, Provider.MPESA, ref(), kes, phone_number="0812345670"),
    ]
    for c in cmds:
        await harness.producer.send(topics.PROVIDER_COMMANDS, c.reference, c)
    await harness.wait(lambda: all(harness.events_for(c.reference) for c in cmds), timeout=90)
    got = {c.reference: [ev for _, ev in harness.events_for(c.reference)] for c in cmds}
    for c in cmds:
        [ev] = got[c.reference]
        assert ev.event_id == f"cmd:{c.event_id}" and ev.command_id == c.event_id
        assert ev.source == "dispatcher" and ev.provider is c.provider
    mpesa_ok, airtel_ok, visa, declined, bad_phone = (got[c.reference][0] for c in cmds)
    assert mpesa_ok.status is PaymentStatus.PENDING and mpesa_ok.provider_reference.startswith("ws_CO_")
    assert airtel_ok.status is PaymentStatus.PENDING
    assert visa.status is PaymentStatus.SUCCEEDED and visa.client_secret
    assert declined.kind is ProviderEventKind.COMMAND_FAILED and declined.provider_code == "generic_decline"
    assert bad_phone.kind is ProviderEventKind.COMMAND_FAILED and bad_phone.provider_code == "invalid_phone_number"


async def test_same_command_twice_calls_the_provider_once(harness: Harness) -> None:
    c = command(ProviderCommandKind.INITIATE, Provider.MPESA, ref(), Money(amount=5_000, currency="KES"),
                phone_number="0712345676")
    path = "POST /mpesa/mpesa/stkpush/v1/processrequest"
    before = (await harness.requests()).get(path, 0)
    await harness.producer.send(topics.PROVIDER_COMMANDS, c.reference, c)
    await harness.wait(lambda: len(harness.events_for(c.reference)) == 1)
    await harness.producer.send(topics.PROVIDER_COMMANDS, c.reference, c)
    await harness.wait(lambda: len(harness.events_for(c.reference)) == 2)
    (first, a), (second, b) = harness.events_for(c.reference)
    assert first == second and a.event_id == b.event_id == f"cmd:{c.event_id}"
    assert (await harness.requests()).get(path, 0) - before == 1


async def test_undecodable_command_is_dead_lettered(harness: Harness) -> None:
    marker = ref()
    await harness.producer.send_raw(topics.PROVIDER_COMMANDS, marker.encode(), b'{"not": "a command"}')
    def letters() -> list[Any]:
        decoded = [codec.decode(topics.DEAD_LETTERS, v) for _, v in harness.dead]
        return [d for d in decoded if d.key == marker.encode()]

    await harness.wait(letters, timeout=60)
    [letter] = letters()
    assert letter.source_topic == topics.PROVIDER_COMMANDS and letter.stage == "dispatcher"
    assert letter.value == b'{"not": "a command"}' and letter.error_type == "InvalidRecord"
