"""``restore_payments``: the state machine learns payments again from payments.state.v1.

The embedded broker keeps everything in memory, so after it restarts the state machine's
table (its changelog lived there) is empty while PostgreSQL still has every payment.
``trailpay replay --from-archive --topic payments.state.v1 --into pipeline`` puts each
payment's newest archived state change back on payments.state.v1 (the newest alone, so the
table never holds an older state of a payment for a provider event to be decided on); this
agent reads that topic and, for a change whose version is newer than what the ``payments``
table holds for its reference,
writes the payment from the change's snapshot into the table. Provider events that waited
(parked) for that payment are then applied, as after a create.

For the state machine's own outputs it is a no-op: by the time one is read back, the
payments processor holds its version, in the table or among the decided batches still
waiting for their acknowledgements (:meth:`PaymentProcessor.held_version`); when it does
restore (:meth:`PaymentProcessor.restore`), it first waits for those batches to reach the
table, under the processor's lock. The check before taking the lock is a cheap JSON look
at two numbers, so normal traffic costs little.

payments.state.v1 carries the phone number and e-mail masked, with both sealed beside them
(:mod:`trailpay.domain.contact`); the payment goes into the table with them opened again
(:meth:`~trailpay.pii_crypto.ContactKeys.open`, the processor's keys), so a restored
mobile-money payment can still be retried or refunded to its number. A change that does not
open (sealed under a key the worker does not hold, or masked and never sealed) is a dead
letter of stage ``restore``, not a payment with a masked number: once the key is back in
``TRAILPAY_STATE_PII_KEYS``, re-drive it.

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

from streams.agents.common import Incoming, Outbox
from streams.agents.payments import PaymentProcessor
from streams.app import StreamContext
from trailpay import codec, topics
from trailpay.domain.errors import PermanentError
from trailpay.domain.events import PaymentStateChanged
from trailpay.domain.payment import Payment
from trailpay.pii_crypto import ContactKeys

log = logging.getLogger(__name__)

BATCH_SIZE = 1000
BATCH_WITHIN_S = 0.05
STAGE = "restore"


def payment_from_change(change: PaymentStateChanged, keys: ContactKeys | None = None) -> Payment:
    """The state machine's view of a payment, rebuilt from one of its state changes (its
    phone number and e-mail opened with ``keys``; raises ``ContactUnreadable``)."""
    snapshot = (keys or ContactKeys()).open(change)
    return Payment(snapshot=snapshot, applied=(change.cause_event_id,))


def _newer(processor: PaymentProcessor, incoming: Incoming) -> bool:
    """Whether the record is a state change newer than what the processor holds."""
    try:
        data = json.loads(incoming.value or b"")
        reference, version = str(data["reference"]), int(data["version"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return False  # the sinks dead-letter what does not decode
    return version > processor.held_version(reference.encode())


async def restore(processor: PaymentProcessor, incomings: list[Incoming]) -> int:
    """Restore every payment of ``incomings`` the table lacks or holds older; returns how many."""
    newer = [incoming for incoming in incomings if _newer(processor, incoming)]
    if not newer:
        return 0
    payments: list[tuple[int, Payment]] = []
    out = Outbox()
    for incoming in newer:
        try:
            change: PaymentStateChanged = codec.decode(topics.PAYMENT_STATE, incoming.value)
        except PermanentError:
            continue  # the sinks dead-letter it
        try:
            payments.append((incoming.partition, payment_from_change(change, processor.contact_keys)))
        except PermanentError as exc:  # the contact does not open: not a payment to guess at
            out.dead_letter(incoming, exc, STAGE, reference=change.reference)
    await out.flush(processor.ctx.app.producer)
    count = await processor.restore(payments)
    if count:
        log.info("restored %d payments from payments.state.v1", count)
    return count


def register(ctx: StreamContext, processor: PaymentProcessor) -> None:
    """The ``restore_payments`` agent, writing into the tables of ``processor``."""

    @ctx.app.agent(ctx.topic(topics.PAYMENT_STATE), name="restore_payments")
    async def restore_payments(stream: Any) -> None:
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_S):
            await restore(processor, [Incoming.of(e) for e in events])
