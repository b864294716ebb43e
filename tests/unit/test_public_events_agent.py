"""The ``publish_public_events`` agent's batch code without a broker: facts keyed by
booking, and a record it cannot read dead-lettered while the rest of the batch goes out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace

from streams.agents.public_events import PublicEventPublisher
from tests.unit.payment_factory import REF, create, status_event
from tests.unit.stream_fakes import FaustProducer
from trailpay import codec, topics
from trailpay.domain.state_machine import apply
from trailpay.domain.status import PaymentStatus


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def _event(offset: int, value: bytes | None) -> SimpleNamespace:
    return SimpleNamespace(message=Message(topics.PAYMENT_STATE, 2, offset, REF.encode(), value))


async def test_facts_go_out_keyed_by_booking_and_poison_is_dead_lettered() -> None:
    first = apply(None, create(REF))
    assert first.payment is not None and first.change is not None
    paid = apply(first.payment, status_event(REF, PaymentStatus.SUCCEEDED, seconds=5, provider_code="0",
                                             provider_reference="ws_CO_1"))
    assert paid.change is not None
    producer = FaustProducer()
    publisher = PublicEventPublisher(SimpleNamespace(app=SimpleNamespace(producer=producer)))  # type: ignore[arg-type]
    await publisher.process([_event(10, codec.encode(first.change)), _event(11, b'{"not": "a change"'),
                             _event(12, codec.encode(paid.change))])
    public = [(k, json.loads(v)["type"]) for t, k, v in producer.sent if t == topics.PAYMENT_EVENTS]
    assert public == [(b"bk-1", "payment.created"), (b"bk-1", "payment.succeeded")]
    (letter,) = producer.dead_letters()
    assert (letter.source_topic, letter.partition, letter.offset, letter.stage) == (
        "payments.state.v1", 2, 11, "public_events")
    assert letter.error_type == "InvalidRecord" and letter.reference == REF
