"""``restore_payments``: the state machine learns payments again from payments.state.v1.

The embedded broker keeps everything in memory, so after it restarts the state machine's
table (its changelog lived there) is empty while PostgreSQL still has every payment.
``trailpay replay --from-archive --topic payments.state.v1 --into pipeline`` puts the
archived state changes back on payments.state.v1; this agent reads that topic and, for a
change whose version is newer than what the ``payments`` table holds for its reference,
writes the payment from the change's snapshot into the table. Provider events that waited
(parked) for that payment are then applied, as after a create.

For the state machine's own outputs it is a no-op: by the time one is read back, the machine
holds its version, in the table or among the decided batches still waiting for their
acknowledgements (``machine.pending``); when it does restore, it first waits for those
batches to reach the table, under the machine's lock. The check before taking the lock is
a cheap JSON look at two numbers, so normal traffic costs little.

A restored payment remembers only the input of its last change (the older applied ids are
not in the snapshot); older inputs redelivered later still fall out as stale, because
statuses only move forward and refunds are keyed by refund id.

The table is written with the partition the change came in on: payments.state.v1 is keyed
by reference with the state machine's partition count, so that is the partition the
payment's requests and provider events use. (With several workers, Faust must give one
worker the same partition number of every topic; the embedded default runs one worker.)
"""

from __future__ import annotations

import json
import logging
from typing import Any

from streams.agents.common import Incoming
from streams.agents.payments import PaymentMachine, _Batch, unpack_json
from streams.app import StreamContext
from trailpay import codec, topics
from trailpay.domain.errors import PermanentError
from trailpay.domain.events import PaymentStateChanged, utcnow
from trailpay.domain.payment import Payment

log = logging.getLogger(__name__)

BATCH_SIZE = 1000
BATCH_WITHIN_S = 0.05


def payment_from_change(change: PaymentStateChanged) -> Payment:
    """The state machine's view of a payment, rebuilt from one of its state changes."""
    return Payment(snapshot=change.payment, applied=(change.cause_event_id,))


def _known_version(machine: PaymentMachine, key: bytes) -> int:
    held = machine.pending.get(key)
    if held is not None:
        return held.version
    raw = machine.payments.data.get(key)
    if raw is None:
        return 0
    try:
        return int(json.loads(unpack_json(raw))["snapshot"]["version"])
    except (ValueError, KeyError, TypeError):
        return 0


def _newer(machine: PaymentMachine, incoming: Incoming) -> tuple[bytes, int] | None:
    """(key, version) when the record is a state change newer than the table's payment."""
    try:
        data = json.loads(incoming.value or b"")
        reference, version = str(data["reference"]), int(data["version"])
    except (ValueError, KeyError, TypeError):
        return None  # the sinks dead-letter what does not decode
    key = reference.encode()
    return (key, version) if version > _known_version(machine, key) else None


async def restore(machine: PaymentMachine, incomings: list[Incoming]) -> int:
    """Restore every payment of ``incomings`` the table lacks or holds older; returns how many."""
    if not any(_newer(machine, inc) for inc in incomings):
        return 0
    async with machine.lock:
        await machine.quiesce()
        batch = _Batch()
        restored: dict[bytes, None] = {}
        for incoming in incomings:
            if _newer(machine, incoming) is None:
                continue
            try:
                change: PaymentStateChanged = codec.decode(topics.PAYMENT_STATE, incoming.value)
            except PermanentError:
                continue
            key = change.reference.encode()
            held = batch.work.get(key)
            if held is not None and held.version >= change.version:
                continue
            batch.work[key] = payment_from_change(change)
            batch.dirty[key] = incoming.partition
            restored[key] = None
        if not restored:
            return 0
        now = utcnow()
        for key in restored:
            machine._unpark(key, now, batch)
        await batch.out.flush(machine.ctx.app.producer)
        machine._write(batch)
        machine.meter.add("restored", len(restored))
    log.info("restored %d payments from payments.state.v1", len(restored))
    return len(restored)


def register(ctx: StreamContext) -> None:
    machine = ctx.services.get("payments")
    if not isinstance(machine, PaymentMachine):
        raise RuntimeError("streams.agents.restore needs streams.agents.payments registered first")

    @ctx.app.agent(ctx.topic(topics.PAYMENT_STATE), name="restore_payments")
    async def restore_payments(stream: Any) -> None:
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_S):
            await restore(machine, [Incoming.of(e) for e in events])
