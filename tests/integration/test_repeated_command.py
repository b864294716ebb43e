"""An M-Pesa INITIATE executed twice, as when a worker dies between the provider call and its
done record and the partition's next owner executes the command again.

The stack's worker runs the payment as usual (STK push 1). A second dispatcher, here in the
test, finds the command marked started but not done in its table (what the dead owner
leaves, streams.agents.dispatcher) and executes it again against the stack's Daraja
sandbox: STK push 2, another CheckoutRequestID, events ``cmd:<id>:repeat-1``. The sandbox
answers both prompts with success callbacks through the stack's ingress. The payment must
end succeeded exactly once, the second prompt be recorded on the same attempt, the second
success be flagged as a double charge, and no callback be dead-lettered as suspicious.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from connectors.providers.mpesa_client import MpesaGateway
from streams.agents.dispatcher import Dispatcher, encode_started
from streams.agents.retention import ExpiringTable
from tests.integration.ingressutil import make_user
from tests.integration.streamutil import read_until
from tests.stackutil import KAFKA, RunningStack, stack_on
from tests.support.waits import wait_for
from trailpay import codec, topics
from trailpay.domain.events import Provider, ProviderCommand, ProviderCommandKind

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kafka_stack(stack: RunningStack) -> Iterator[RunningStack]:
    with stack_on(KAFKA, stack, "repeat") as running:
        yield running


class MemoryTable:
    """The second dispatcher's own table: in memory (its changelog is not the point)."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def send_changelog(self, partition: int, key: bytes, value: bytes | None, **_: Any) -> None:
        pass


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass
class Event:
    message: Message


class Producer:
    """Faust's producer calls, on a plain aiokafka producer (keys hash as Faust's do)."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                   timestamp: Any, headers: Any) -> Any:
        return await self.producer.send(topic, value, key=key, partition=partition)

    async def flush(self) -> None:
        await self.producer.flush()


def _changes(records: list[tuple[bytes | None, bytes]]) -> list[dict[str, Any]]:
    unique = {json.loads(v)["event_id"]: json.loads(v) for _, v in records}
    return sorted(unique.values(), key=lambda c: c["version"])


async def test_an_initiate_executed_twice_ends_succeeded_once_with_the_double_charge_flagged(kafka_stack):
    stack = kafka_stack
    bootstrap = stack.settings.kafka_bootstrap or ""
    user = await make_user(stack.settings)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
        resp = await api.post("/api/payments/create/", headers=user.headers, json={
            "amount": "150", "currency": "KES", "payment_method": "mobile_money", "provider": "mpesa",
            "phone_number": "+254700000000", "description": "Safari deposit"})
        assert resp.status_code == 201, resp.text
        ref = resp.json()["reference"]

    commands = await read_until(bootstrap, topics.PROVIDER_COMMANDS, lambda k, v: k == ref.encode(),
                                lambda got: len(got) >= 1, timeout=60)
    initiate: ProviderCommand = codec.decode(topics.PROVIDER_COMMANDS, commands[0][1])
    assert initiate.kind is ProviderCommandKind.INITIATE

    table = MemoryTable()
    done = ExpiringTable(table, 3600, "provider-commands-done")
    done.put(0, initiate.event_id.encode(), encode_started(1))  # the dead owner's mark
    gateway = MpesaGateway.from_settings(stack.settings)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        second = Dispatcher(done, {Provider.MPESA: gateway}, concurrency=2)
        await second.process([Event(Message(topics.PROVIDER_COMMANDS, 0, 0, ref.encode(), commands[0][1]))],
                             Producer(producer))
    finally:
        await producer.stop()
        await gateway.aclose()
    assert second.calls == 1
    assert second.meter.counts.get("repeated") == 1

    marker = f'"reference":"{ref}"'.encode()

    def flagged(got: list[tuple[bytes | None, bytes]]) -> bool:
        return any(c["cause"] == "double_charge" for c in _changes(got))

    records = await read_until(bootstrap, topics.PAYMENT_STATE, lambda k, v: marker in v, flagged,
                               timeout=90, quiet_s=3)
    changes = _changes(records)
    causes = [c["cause"] for c in changes]
    assert "repeat_initiation" in causes, causes
    assert causes.count("double_charge") == 1, causes
    into_success = [c for c in changes if c["to_status"] == "succeeded" and c["from_status"] != "succeeded"]
    assert len(into_success) == 1, changes
    final = changes[-1]["payment"]
    assert final["status"] == "succeeded"
    (attempt,) = final["attempts"]
    pushes = {attempt["provider_reference"], *attempt["repeat_references"]}
    assert len(pushes) == 2 and final["provider_reference"] in pushes
    assert attempt["double_charged"] == [(pushes - {final["provider_reference"]}).pop()]

    async def api_status() -> str | None:
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
            body = (await api.get(f"/api/payments/{ref}/status/", headers=user.headers)).json()
        return body["status"] if body["status"] == "succeeded" else None

    assert await wait_for(api_status, 60, f"{ref} succeeded in the API", interval=0.5) == "succeeded"
    letters = await read_until(bootstrap, topics.DEAD_LETTERS,
                               lambda k, v: ref in (json.loads(v).get("reference") or ""),
                               lambda got: False, timeout=5)
    assert [json.loads(v)["stage"] for _, v in letters] == []
