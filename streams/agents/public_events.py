"""``publish_public_events``: payments.state.v1 -> payments.events.v1 (the public contract).

Reads every state change, asks the domain which business facts it stands for
(:func:`trailpay.domain.public_events.public_events`) and publishes them keyed by booking
id (the payment reference when there is none), so one booking's facts stay in order on
one partition. Stateless: the event ids are deterministic, so a redelivered or replayed
state change re-publishes the same ids and receivers deduplicate on them. A record that
cannot be decoded or mapped is a dead letter (stage ``public_events``) and the agent goes on.
"""

from __future__ import annotations

import logging
from typing import Any

from streams.agents.common import Incoming, Meter, Outbox
from streams.app import StreamContext
from trailpay import codec, topics
from trailpay.domain.public_events import public_events

log = logging.getLogger(__name__)

STAGE = "public_events"
BATCH_SIZE = 500
BATCH_WITHIN_S = 0.1


class PublicEventPublisher:
    """Maps each batch of state changes to public events and sends them."""

    def __init__(self, ctx: StreamContext) -> None:
        self.ctx = ctx
        self.meter = Meter("public_events")

    def decide(self, events: list[Any], out: Outbox) -> None:
        """Add the public events (or a dead letter) of each record of ``events`` to ``out``."""
        for event in events:
            incoming = Incoming.of(event)
            try:
                change = codec.decode(topics.PAYMENT_STATE, incoming.value)
                facts = public_events(change)
            except Exception as exc:  # noqa: BLE001 - routed by type: refused or a bug
                out.dead_letter(incoming, exc, STAGE, reference=_reference(incoming))
                continue
            for fact in facts:
                out.add(topics.PAYMENT_EVENTS, fact.key, fact)
                self.meter.add(fact.type.value)

    async def process(self, events: list[Any]) -> None:
        out = Outbox()
        self.decide(events, out)
        await out.flush(self.ctx.app.producer)
        self.meter.maybe_log()


def _reference(incoming: Incoming) -> str | None:
    """The payment reference of a record for its dead letter: the key, when it is one."""
    if incoming.key is None or len(incoming.key) > 64:
        return None
    text = incoming.key.decode("utf-8", "replace")
    return text if text.isprintable() else None


def register(ctx: StreamContext) -> PublicEventPublisher:
    publisher = PublicEventPublisher(ctx)
    source = ctx.app.topic(topics.PAYMENT_STATE, key_type=bytes, value_type=bytes)

    @ctx.app.agent(source, name="publish_public_events")
    async def publish_public_events(stream: Any) -> None:
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_S):
            await publisher.process(events)

    return publisher
