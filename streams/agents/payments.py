"""``advance_payments``: the payment state machine agent.

One agent over payments.requests.v1 and provider.events.v1 (both keyed by payment
reference, same partition count), a table ``payments`` (reference -> :class:`Payment` JSON)
and a table ``parked`` (reference -> provider events that came before the payment).
Each batch is decided by :func:`trailpay.domain.payment.apply`, its outputs are sent and
acknowledged, and only then the tables are written (see :mod:`streams.agents.common`).
Batches are pipelined: the next batch is decided on the in-memory state of the batches
whose outputs are still being acknowledged (``pending``), and the tables are written batch
by batch, in order, as the acknowledgements come in (:class:`~streams.agents.common.Pipeline`).

The ``payments`` table holds each payment as deflated JSON with a preset dictionary
(:func:`pack`): about 1/6 of the JSON, which keeps a million payments well inside the
worker's memory budget. Values in plain JSON (written before) are read as they are.

Records that cannot be decoded or applied (illegal transitions, refused requests, events
parked longer than ``park_timeout_s``) become dead letters; the agent keeps going.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import zlib
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from streams.agents.common import Incoming, Meter, Outbox, Pipeline, TableWrites, table_delete, table_put
from streams.app import StreamContext
from trailpay import codec, topics
from trailpay.domain.deadlines import DeadlinePolicy
from trailpay.domain.errors import PermanentError
from trailpay.domain.events import CreatePayment, utcnow
from trailpay.domain.payment import Outcome, Payment, PaymentInput, Verdict, apply
from trailpay.domain.status import OPEN

log = logging.getLogger(__name__)

STAGE = "payments"
BATCH_SIZE = 1000
BATCH_WITHIN_S = 0.02
#: Provider events kept per unknown reference before the next one is dead-lettered at once.
MAX_PARKED_PER_REFERENCE = 50


#: First byte of a packed table value: raw deflate with :data:`_DICT_V1` (JSON starts with "{").
PACKED_V1 = b"\x01"
#: The preset dictionary of PACKED_V1: field names and the common values of a payment's JSON.
#: Stored values depend on it byte for byte: never edit it; add a new one and a new marker.
_DICT_V1 = (
    b'"refunds":[{"refund_id":"","amount":{"amount":,"currency":"USD"},"reason":"","status":"requested",'
    b'"provider_reference":null,"requested_at":"2026-","updated_at":"2026-"}],"status":"succeeded",'
    b'"status":"failed","status":"cancelled","status":"expired","status":"processing","status":"refunded",'
    b'"status":"partially_refunded","provider":"stripe","method":"card","provider":"airtel","currency":"UGX",'
    b'"currency":"EUR","provider_status":"requires_payment_method","client_secret":"pi_","customer_id":"cus_",'
    b'"payment_method_id":"pm_","settled_by":"webhook","settled_by":"dispatcher","provider_code":"0",'
    b'"provider_message":"The service request is processed successfully.",'
    b'{"snapshot":{"reference":"TP","version":1,"status":"created","user_id":"","amount":{"amount":0,'
    b'"currency":"KES"},"provider":"mpesa","method":"mobile_money","booking_id":null,"country":null,'
    b'"phone_number":"2547","email":null,"description":"","provider_reference":null,"provider_status":null,'
    b'"provider_code":null,"provider_message":null,"customer_id":null,"payment_method_id":null,'
    b'"client_secret":null,"refunded_amount":0,"refunds":[],"created_at":"2026-","updated_at":"2026-",'
    b'"deadline_at":"2026-","settled_by":null},"applied":["create-TP","cmd:TP","mpesa:ws_CO_'
)


def pack(payment: Payment) -> bytes:
    """The table value of ``payment``."""
    deflate = zlib.compressobj(1, zlib.DEFLATED, -15, zdict=_DICT_V1)
    return PACKED_V1 + deflate.compress(payment.to_json()) + deflate.flush()


def unpack_json(raw: bytes) -> bytes:
    """The JSON of a table value, packed or plain."""
    if raw[:1] == PACKED_V1:
        inflate = zlib.decompressobj(-15, zdict=_DICT_V1)
        return inflate.decompress(raw[1:]) + inflate.flush()
    return raw


def unpack(raw: bytes) -> Payment:
    return Payment.from_json(unpack_json(raw))


class WrongKey(PermanentError):
    """A record keyed by something other than its payment reference (co-partitioning)."""


class ParkedTooLong(PermanentError):
    """A provider event whose payment never arrived within ``park_timeout_s``."""


@dataclass(slots=True)
class OpenEntry:
    """What the sweeper needs about an open payment, without parsing the table."""

    deadline: datetime
    partition: int
    queried: bool = False
    expired: bool = False


@dataclass
class PaymentMachine:
    """State and logic of the agent; the sweeper and the park timer share its lock."""

    ctx: StreamContext
    payments: Any
    parked: Any
    policy: DeadlinePolicy
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    open: dict[bytes, OpenEntry] = field(default_factory=dict)
    open_stale: bool = True
    parked_at: dict[bytes, float] = field(default_factory=dict)
    parked_stale: bool = True
    meter: Meter = field(default_factory=lambda: Meter("payments"))
    pipeline: Pipeline = field(default_factory=lambda: Pipeline("payments"))
    #: Payments and parked lists decided by batches not yet written to the tables.
    pending: dict[bytes, Payment] = field(default_factory=dict)
    pending_parked: dict[bytes, tuple[int, list[dict[str, Any]]]] = field(default_factory=dict)

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
        try:
            outcome = apply(self.load(key, batch), record, now, policy=self.policy)
        except Exception as exc:  # noqa: BLE001 - routed by type: refused, illegal or a bug
            batch.out.dead_letter(incoming, exc, STAGE, reference=record.reference)
            return
        self.meter.add(outcome.verdict.value)
        if outcome.verdict is Verdict.PARK:
            self._park(key, incoming, now, batch)
        elif outcome.applied:
            self._emit(key, incoming.partition, outcome, batch)
            if isinstance(record, CreatePayment):
                self._unpark(key, now, batch)
        else:
            log.debug("%s %s: %s", outcome.verdict.value, record.event_id, outcome.reason)

    def _emit(self, key: bytes, partition: int, outcome: Outcome, batch: _Batch) -> None:
        assert outcome.payment is not None and outcome.change is not None
        batch.work[key] = outcome.payment
        batch.dirty[key] = partition
        reference = outcome.payment.reference
        batch.out.add(topics.PAYMENT_STATE, reference, outcome.change)
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
            snap = payment.snapshot
            if snap.status in OPEN and snap.deadline_at is not None:
                entry = self.open.get(key)
                if entry is None or entry.deadline != snap.deadline_at:
                    self.open[key] = OpenEntry(snap.deadline_at, partition)
            else:
                self.open.pop(key, None)
        for key, (partition, waiting) in batch.parked.items():
            if waiting:
                table_put(self.parked, partition, key, json.dumps(waiting).encode(), writes)
                self.parked_at[key] = min(p["parked_at"] for p in waiting)
            else:
                if self.parked.data.get(key) is not None:
                    table_delete(self.parked, partition, key, writes)
                self.parked_at.pop(key, None)

    def rebuild_open_index(self) -> None:
        """After a rebalance: the open payments of the partitions this worker now owns."""
        index: dict[bytes, OpenEntry] = {}
        for key, raw in list(self.payments.data.items()):
            snap = json.loads(unpack_json(raw))["snapshot"]
            if snap["status"] in OPEN and snap.get("deadline_at"):
                old = self.open.get(key)
                deadline = datetime.fromisoformat(snap["deadline_at"].replace("Z", "+00:00"))
                entry = OpenEntry(deadline, old.partition if old else -1)
                if old is not None and old.deadline == deadline:
                    entry.queried, entry.expired = old.queried, old.expired
                index[key] = entry
        self.open = index
        self.open_stale = False

    def mark_stale(self) -> None:
        self.open_stale = True
        self.parked_stale = True


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


def register(ctx: StreamContext) -> None:
    app = ctx.app
    settings = ctx.settings
    payments = app.Table("payments", key_type=bytes, value_type=bytes,
                         partitions=settings.partitions, help="reference -> Payment JSON")
    parked = app.Table("parked", key_type=bytes, value_type=bytes,
                       partitions=settings.partitions, help="reference -> events waiting for it")
    machine = PaymentMachine(ctx, payments, parked, DeadlinePolicy.from_settings(settings),
                             pipeline=Pipeline("payments", on_failure=app.crash))
    ctx.services["payments"] = machine
    source = app.topic(topics.PAYMENT_REQUESTS, topics.PROVIDER_EVENTS, key_type=bytes, value_type=bytes)

    @app.agent(source, name="advance_payments")
    async def advance_payments(stream: Any) -> None:
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_S):
            await machine.submit(events)

    @app.on_rebalance_complete.connect
    def _rebalanced(sender: Any, /, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        machine.mark_stale()

    park_interval = max(1.0, min(10.0, settings.park_timeout_s / 4))

    @app.timer(interval=park_interval, name="expire_parked_events")
    async def expire_parked_events() -> None:
        if app.rebalancing:
            return
        count = await machine.expire_parked()
        if count:
            log.warning("dead-lettered %d provider events whose payment never came", count)
