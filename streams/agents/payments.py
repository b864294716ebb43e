"""``advance_payments``: the payment state machine agent.

One agent over payments.requests.v1 and provider.events.v1 (both keyed by payment
reference, same partition count), a table ``payments`` (reference -> :class:`Payment` JSON)
and a table ``parked`` (reference -> provider events that came before the payment).
Each batch is decided by :func:`trailpay.domain.payment.apply`, its outputs are sent and
acknowledged, and only then the tables are written (see :mod:`streams.agents.common`).
Batches are pipelined: the next batch is decided on the in-memory state of the batches
whose outputs are still being acknowledged (``pending``), and the tables are written batch
by batch, in order, as the acknowledgements come in (:class:`~streams.agents.common.Pipeline`).

The ``payments`` table holds each payment packed (:mod:`streams.agents.packing`).

:class:`PaymentProcessor` is the Faust side of the state machine (tables, batches,
parking, the open-deadline index), not the state machine itself, which is the pure
:func:`~trailpay.domain.payment.apply`. Its public API is what the other agents of the
worker use: :meth:`~PaymentProcessor.open_payments` (the deadline sweeper),
:meth:`~PaymentProcessor.held_version` and :meth:`~PaymentProcessor.restore` (the
restore agent).

Records that cannot be decoded or applied (illegal transitions, refused requests, events
parked longer than ``park_timeout_s``) become dead letters; the agent keeps going. Provider
events that do not match their payment are dead letters of their own stage, ``suspicious``,
and late payments are counted and logged (:mod:`streams.agents.payment_alerts`). What the
deployment chose (deadlines, attempts, the late-payment policy) comes in as the processor's
``policy`` and ``rules``, built once by :func:`streams.worker.wire`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from streams.agents.common import Incoming, Meter, Outbox, Pipeline, TableWrites, table_delete, table_put
from streams.agents.open_index import OpenIndex, OpenPayments
from streams.agents.packing import pack, unpack, unpack_json
from streams.agents.payment_alerts import dead_letter_suspicious, note_late
from streams.app import StreamContext
from trailpay import codec, topics
from trailpay.domain.deadlines import DEFAULT_POLICY, DeadlinePolicy
from trailpay.domain.errors import PermanentError, Suspicious
from trailpay.domain.events import CreatePayment, utcnow
from trailpay.domain.payment import Outcome, Payment, PaymentInput, Verdict
from trailpay.domain.repeat_initiations import DOUBLE_CHARGE
from trailpay.domain.rules import DEFAULT_RULES, PaymentRules
from trailpay.domain.state_machine import apply
from trailpay.metrics import DOUBLE_CHARGES
from trailpay.pii_crypto import ContactKeys

log = logging.getLogger(__name__)

STAGE = "payments"
BATCH_SIZE = 1000
BATCH_WITHIN_S = 0.02
#: Provider events kept per unknown reference before the next one is dead-lettered at once.
MAX_PARKED_PER_REFERENCE = 50


class WrongKey(PermanentError):
    """A record keyed by something other than its payment reference (co-partitioning)."""


class ParkedTooLong(PermanentError):
    """A provider event whose payment never arrived within ``park_timeout_s``."""


@dataclass
class PaymentProcessor:
    """The Faust adapter of the payment state machine: batches in, outputs out, tables
    written after the broker has the outputs. The sweeper, the restore agent and the park
    timer work under its lock, through its public methods."""

    ctx: StreamContext
    payments: Any
    parked: Any
    policy: DeadlinePolicy = DEFAULT_POLICY
    rules: PaymentRules = DEFAULT_RULES
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _open: OpenIndex = field(default_factory=OpenIndex, init=False, repr=False)
    parked_at: dict[bytes, float] = field(default_factory=dict)
    parked_stale: bool = True
    meter: Meter = field(default_factory=lambda: Meter("payments"))
    pipeline: Pipeline = field(default_factory=lambda: Pipeline("payments"))
    #: Payments and parked lists decided by batches not yet written to the tables.
    pending: dict[bytes, Payment] = field(default_factory=dict)
    pending_parked: dict[bytes, tuple[int, list[dict[str, Any]]]] = field(default_factory=dict)
    contact_keys: ContactKeys = field(default_factory=ContactKeys)  # seal what goes out: pii_crypto

    # ------------------------------------------------------------------ batch
    async def process(self, events: list[Any]) -> None:
        """Decide, send and write one batch; the tables hold it when this returns."""
        await self.submit(events, ack=False)
        await self.pipeline.drain()

    async def submit(self, events: list[Any], *, ack: bool = True) -> None:
        """Decide one batch and send its outputs; the pipeline writes the tables (and acks
        the Faust ``events`` when ``ack``) once the broker has the outputs."""
        async with self.lock:
            now = utcnow()
            batch = _Batch()
            for event in events:
                self._one(Incoming.of(event), now, batch)
            await self._stage(batch, events if ack else [])
            self.meter.add("records", len(events))
            self.meter.add("batches")
            self.meter.add("dead_letters", batch.out.dead)
            self.meter.maybe_log()

    async def _stage(self, batch: _Batch, events: list[Any]) -> None:
        acks = await batch.out.send(self.ctx.app.producer)
        for key in batch.dirty:
            self.pending[key] = batch.work[key]
        self.pending_parked.update(batch.parked)

        def commit() -> Awaitable[None]:
            writes = TableWrites()
            self._write(batch, writes)
            for key in batch.dirty:
                if self.pending.get(key) is batch.work[key]:
                    del self.pending[key]
            for key, entry in batch.parked.items():
                if self.pending_parked.get(key) is entry:
                    del self.pending_parked[key]
            return writes.send(self.ctx.app.producer)

        await self.pipeline.submit(acks, commit, events)

    async def quiesce(self) -> None:
        """Wait (holding the lock) until every decided batch is in the tables."""
        await self.pipeline.drain()

    def load(self, key: bytes, batch: _Batch | None = None) -> Payment | None:
        if batch is not None and key in batch.work:
            return batch.work[key]
        held = self.pending.get(key)
        if held is not None:
            return held
        raw = self.payments.data.get(key)
        return None if raw is None else unpack(raw)

    def held_version(self, key: bytes) -> int:
        """The version held for ``key`` (decided or in the table; 0: none), read cheaply
        (two numbers of the JSON, no model) so a caller can skip what is not newer."""
        held = self.pending.get(key)
        if held is not None:
            return held.version
        raw = self.payments.data.get(key)
        if raw is None:
            return 0
        try:
            return int(json.loads(unpack_json(raw))["snapshot"]["version"])
        except (ValueError, KeyError, TypeError):
            return 0

    def deadline_of(self, key: bytes) -> datetime | None:
        """The deadline of an open payment, as the open index holds it (None: not open)."""
        entry = self._open.entries.get(key)
        return None if entry is None else entry.deadline

    # ------------------------------------------------------------------ for other agents
    @asynccontextmanager
    async def open_payments(self) -> AsyncIterator[OpenPayments]:
        """The open payments with a deadline, under the lock, every decided batch in the
        tables and the index rebuilt if a rebalance made it stale (the sweeper's view)."""
        async with self.lock:
            await self.quiesce()
            if self._open.stale:
                self._open.rebuild(list(self.payments.data.items()))
            yield OpenPayments(self._open.entries, self.load)

    async def restore(self, payments: Iterable[tuple[int, Payment]]) -> int:
        """Write each (partition, payment) the table lacks or holds an older version of,
        then apply the provider events parked for it, as after a create. Under the lock,
        after every decided batch is in the tables. Returns how many were written."""
        async with self.lock:
            await self.quiesce()
            batch = _Batch()
            for partition, payment in payments:
                key = payment.reference.encode()
                held = batch.work.get(key)
                if payment.version <= (held.version if held is not None else self.held_version(key)):
                    continue
                batch.work[key] = payment
                batch.dirty[key] = partition
            restored = list(batch.dirty)
            if not restored:
                return 0
            now = utcnow()
            for key in restored:
                self._unpark(key, now, batch)
            await batch.out.flush(self.ctx.app.producer)
            self._write(batch)
            self.meter.add("restored", len(restored))
            return len(restored)

    # ------------------------------------------------------------------ one record
    def _one(self, incoming: Incoming, now: datetime, batch: _Batch) -> None:
        try:
            record: PaymentInput = codec.decode(incoming.topic, incoming.value)
            if incoming.key is not None and incoming.key != record.reference.encode():
                raise WrongKey(f"key {incoming.key[:80]!r} is not the payment reference {record.reference!r}")
        except Exception as exc:  # noqa: BLE001 - routed by type: permanent or a bug
            batch.out.dead_letter(incoming, exc, STAGE)
            return
        self._apply(incoming, record, now, batch)

    def _apply(self, incoming: Incoming, record: PaymentInput, now: datetime, batch: _Batch) -> None:
        key = record.reference.encode()
        before = self.load(key, batch)
        try:
            outcome = apply(before, record, now, policy=self.policy, rules=self.rules)
        except Suspicious as exc:
            dead_letter_suspicious(batch.out, incoming, exc)
            return
        except Exception as exc:  # noqa: BLE001 - routed by type: refused, illegal or a bug
            batch.out.dead_letter(incoming, exc, STAGE, reference=record.reference)
            return
        self.meter.add(outcome.verdict.value)
        if outcome.verdict is Verdict.PARK:
            self._park(key, incoming, now, batch)
        elif outcome.applied:
            self._emit(key, incoming.partition, outcome, batch)
            note_late(before, outcome)
            if outcome.change is not None and outcome.change.cause == DOUBLE_CHARGE:
                note_double_charge(outcome)
            if isinstance(record, CreatePayment):
                self._unpark(key, now, batch)
        else:
            log.debug("%s %s: %s", outcome.verdict.value, record.event_id, outcome.reason)

    def _emit(self, key: bytes, partition: int, outcome: Outcome, batch: _Batch) -> None:
        assert outcome.payment is not None and outcome.change is not None
        batch.work[key] = outcome.payment
        batch.dirty[key] = partition
        reference = outcome.payment.reference
        batch.out.add(topics.PAYMENT_STATE, reference, self.contact_keys.seal(outcome.change))
        for command in outcome.commands:
            batch.out.add(topics.PROVIDER_COMMANDS, reference, command)
        for note in outcome.notifications:
            batch.out.add(topics.NOTIFICATIONS, reference, note)

    # ------------------------------------------------------------------ parking
    def _parked_list(self, key: bytes, batch: _Batch) -> list[dict[str, Any]]:
        if key in batch.parked:
            return batch.parked[key][1]
        if key in self.pending_parked:
            return list(self.pending_parked[key][1])
        raw = self.parked.data.get(key)
        return [] if raw is None else list(json.loads(raw))

    def _park(self, key: bytes, incoming: Incoming, now: datetime, batch: _Batch) -> None:
        waiting = self._parked_list(key, batch)
        if any(p["topic"] == incoming.topic and p["partition"] == incoming.partition
               and p["offset"] == incoming.offset for p in waiting):
            return  # the same record redelivered
        if len(waiting) >= MAX_PARKED_PER_REFERENCE:
            batch.out.dead_letter(incoming, ParkedTooLong(
                f"more than {MAX_PARKED_PER_REFERENCE} events wait for unknown payment {key.decode()}"),
                STAGE, reference=key.decode())
            return
        waiting.append({
            "topic": incoming.topic, "partition": incoming.partition, "offset": incoming.offset,
            "key": _b64(incoming.key), "value": _b64(incoming.value), "parked_at": now.timestamp(),
        })
        batch.parked[key] = (incoming.partition, waiting)

    def _unpark(self, key: bytes, now: datetime, batch: _Batch) -> None:
        waiting = self._parked_list(key, batch)
        if not waiting:
            return
        partition = batch.parked[key][0] if key in batch.parked else waiting[0]["partition"]
        batch.parked[key] = (partition, [])
        log.debug("payment %s created; applying %d parked events", key.decode(), len(waiting))
        for item in waiting:
            self._one(_incoming(item), now, batch)

    async def expire_parked(self) -> int:
        """Dead-letter parked events older than ``park_timeout_s``; returns how many."""
        timeout = self.ctx.settings.park_timeout_s
        async with self.lock:
            await self.quiesce()
            if self.parked_stale:
                self.parked_at = {k: min(p["parked_at"] for p in json.loads(v))
                                  for k, v in self.parked.data.items() if v and json.loads(v)}
                self.parked_stale = False
            cutoff = time.time() - timeout
            due = [k for k, t in self.parked_at.items() if t <= cutoff][:1000]
            if not due:
                return 0
            batch = _Batch()
            count = 0
            for key in due:
                waiting = self._parked_list(key, batch)
                keep = [p for p in waiting if p["parked_at"] > cutoff]
                for item in waiting:
                    if item["parked_at"] <= cutoff:
                        count += 1
                        batch.out.dead_letter(_incoming(item), ParkedTooLong(
                            f"no payment {key.decode()} arrived within {timeout}s"),
                            "payments.park", reference=key.decode())
                partition = waiting[0]["partition"] if waiting else 0
                batch.parked[key] = (partition, keep)
            await batch.out.flush(self.ctx.app.producer)
            self._write(batch)
            self.meter.add("parked_expired", count)
            return count

    # ------------------------------------------------------------------ tables
    def _write(self, batch: _Batch, writes: TableWrites | None = None) -> None:
        for key, partition in batch.dirty.items():
            payment = batch.work[key]
            table_put(self.payments, partition, key, pack(payment), writes)
            self._open.note(key, partition, payment.snapshot)
        for key, (partition, waiting) in batch.parked.items():
            if waiting:
                table_put(self.parked, partition, key, json.dumps(waiting).encode(), writes)
                self.parked_at[key] = min(p["parked_at"] for p in waiting)
            else:
                if self.parked.data.get(key) is not None:
                    table_delete(self.parked, partition, key, writes)
                self.parked_at.pop(key, None)

    def mark_stale(self) -> None:
        """After a rebalance: rebuild the open index and the park times before their next use."""
        self._open.stale = True
        self.parked_stale = True


def note_double_charge(outcome: Outcome) -> None:
    """Count and log a payment paid twice: the second payment is to be refunded."""
    assert outcome.payment is not None
    snap = outcome.payment.snapshot
    flagged = [r for a in snap.attempts for r in a.double_charged]
    DOUBLE_CHARGES.labels(snap.provider.value).inc()
    log.warning("double charge on payment %s: %s confirmed a second payment (%s) after %s; "
                "flagged for refund", snap.reference, snap.provider.value, flagged[-1] if flagged else "?",
                snap.provider_reference)


@dataclass
class _Batch:
    out: Outbox = field(default_factory=Outbox)
    work: dict[bytes, Payment] = field(default_factory=dict)
    dirty: dict[bytes, int] = field(default_factory=dict)
    parked: dict[bytes, tuple[int, list[dict[str, Any]]]] = field(default_factory=dict)


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _incoming(item: dict[str, Any]) -> Incoming:
    key, value = item["key"], item["value"]
    return Incoming(item["topic"], item["partition"], item["offset"],
                    None if key is None else base64.b64decode(key),
                    None if value is None else base64.b64decode(value))


def register(ctx: StreamContext, *, policy: DeadlinePolicy, rules: PaymentRules) -> PaymentProcessor:
    """The ``advance_payments`` agent, its tables and park timer; returns its processor
    (the sweeper and the restore agent are given it). ``policy`` and ``rules``: what the
    deployment chose (:func:`streams.worker.wire` builds them from the settings)."""
    app = ctx.app
    settings = ctx.settings
    payments = app.Table("payments", key_type=bytes, value_type=bytes,
                         partitions=settings.partitions, help="reference -> Payment JSON")
    parked = app.Table("parked", key_type=bytes, value_type=bytes,
                       partitions=settings.partitions, help="reference -> events waiting for it")
    processor = PaymentProcessor(ctx, payments, parked, policy, rules, pipeline=Pipeline(
        "payments", on_failure=app.crash), contact_keys=ContactKeys.for_worker(settings))
    source = app.topic(topics.PAYMENT_REQUESTS, topics.PROVIDER_EVENTS, key_type=bytes, value_type=bytes)

    @app.agent(source, name="advance_payments")
    async def advance_payments(stream: Any) -> None:
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_S):
            await processor.submit(events)

    @app.on_rebalance_complete.connect
    def _rebalanced(sender: Any, /, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        processor.mark_stale()

    park_interval = max(1.0, min(10.0, settings.park_timeout_s / 4))

    @app.timer(interval=park_interval, name="expire_parked_events")
    async def expire_parked_events() -> None:
        if app.rebalancing:
            return
        count = await processor.expire_parked()
        if count:
            log.warning("dead-lettered %d provider events whose payment never came", count)

    return processor
