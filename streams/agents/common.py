"""What the batched agents share: an outbox flushed before state is written, explicit
table writes, and dead letters for the record in hand.

Order of effects per batch (the basis of exactly-once effect):

1. decide everything in memory (pure domain);
2. send every output record and wait until the broker has them all;
3. only then write the new state to the tables (changelog).

A crash before 3 re-processes the batch from the same state and re-emits identical
records; a crash after 3 finds the inputs applied and emits nothing. Faust's own
``table[key] = value`` picks the changelog partition from "the current event", which is
wrong for a batch (``take_events``) that spans partitions, so tables are written with the
partition of the record that caused the change.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from trailpay import codec, topics
from trailpay.deadletters import dead_letter
from trailpay.retry import dead_letter_stage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Incoming:
    """One consumed record, kept with its coordinates for dead letters and parking."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @classmethod
    def of(cls, event: Any) -> Incoming:
        message = event.message
        return cls(message.topic, message.partition, message.offset, message.key, message.value)


@dataclass
class Outbox:
    """Records to send for one batch; :meth:`flush` sends them and waits for the broker."""

    items: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    dead: int = 0

    def add(self, topic: str, key: str | None, record: BaseModel) -> None:
        self.items.append((topic, codec.encode_key(key), codec.encode(record)))

    def dead_letter(self, incoming: Incoming, exc: BaseException, stage: str,
                    reference: str | None = None) -> None:
        """Dead-letter ``incoming`` for ``exc``, routed by its type
        (:func:`trailpay.retry.dead_letter_stage`): a permanent error under ``stage``, an
        exhausted retriable one under ``<stage>.exhausted``, a bug under ``<stage>.bug``
        (counted and logged with its traceback)."""
        where = f"{incoming.topic}[{incoming.partition}]@{incoming.offset}"
        stage = dead_letter_stage(stage, exc, where=where)
        record = dead_letter(source_topic=incoming.topic, partition=incoming.partition,
                             offset=incoming.offset, key=incoming.key, value=incoming.value,
                             exc=exc, stage=stage, reference=reference)
        log.warning("dead letter from %s[%s]@%s (%s): %s", incoming.topic, incoming.partition,
                    incoming.offset, stage, record.error_message)
        self.items.append((topics.DEAD_LETTERS, incoming.topic.encode(), codec.encode(record)))
        self.dead += 1

    async def flush(self, producer: Any) -> None:
        if not self.items:
            return
        for topic, key, value in self.items:
            await producer.send(topic, key, value, None, None, None)
        await producer.flush()
        self.items.clear()

    async def send(self, producer: Any) -> list[Awaitable[Any]]:
        """Hand every record to the producer without waiting; returns the broker acks."""
        acks: list[Awaitable[Any]] = []
        for topic, key, value in self.items:
            ack = await producer.send(topic, key, value, None, None, None)
            if ack is not None:
                acks.append(ack)
        self.items.clear()
        return acks


@dataclass
class _Stage:
    acks: list[Awaitable[Any]]
    commit: Callable[[], Awaitable[None] | None]
    events: list[Any]
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Pipeline:
    """Batches whose outputs are on their way to the broker, committed strictly in order.

    The agent decides batch N+1 while batch N's outputs are still being acknowledged, so
    the acknowledgement round trip no longer serializes the agent. The rule of this module
    still holds per batch: a batch's ``commit`` (its table writes) runs only after every one
    of its outputs is acknowledged, and after the commit of every earlier batch. Its input
    events are acknowledged to Faust only after its commit, so the consumer offset never
    passes an input whose state change has not been handed to the changelog (Faust flushes
    the producer before it commits offsets). Agents keep the decided-but-uncommitted state
    in memory and decide later batches on it.

    If an output cannot be delivered, nothing of that batch or any later one is committed
    or acknowledged (later batches were decided on its state): :meth:`submit` raises from
    then on and ``on_failure`` (the agents pass the app's ``crash``) stops the worker, whose
    restart re-processes those inputs from the committed offsets and the changelog.
    """

    def __init__(self, name: str, max_in_flight: int = 8,
                 on_failure: Callable[[BaseException], Awaitable[None]] | None = None) -> None:
        self.name = name
        self.max_in_flight = max_in_flight
        self.on_failure = on_failure
        self._stages: deque[_Stage] = deque()
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self.failed: BaseException | None = None

    def __len__(self) -> int:
        return len(self._stages)

    async def submit(self, acks: list[Awaitable[Any]], commit: Callable[[], Awaitable[None] | None],
                     events: list[Any]) -> None:
        """Queue one decided batch. ``events`` get one extra reference each here, released
        after the commit (Faust's own ``take_events`` releases the other)."""
        if self.failed is not None:
            raise self.failed
        for event in events:
            event.message.incref()
        self._stages.append(_Stage(acks, commit, events))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_loop())
        self._wake.set()
        while len(self._stages) > self.max_in_flight and self.failed is None:
            self._space.clear()
            await self._space.wait()
        if self.failed is not None:
            raise self.failed

    async def drain(self) -> None:
        """Wait until every queued batch is committed (or raise if one failed)."""
        while self._stages and self.failed is None:
            await self._stages[-1].done.wait()
        if self.failed is not None:
            raise self.failed

    async def _write_loop(self) -> None:
        while True:
            if not self._stages:
                self._wake.clear()
                await self._wake.wait()
                continue
            stage = self._stages[0]
            try:
                for ack in stage.acks:
                    await ack
                sending = stage.commit()
                if sending is not None:
                    await sending
            except BaseException as exc:  # noqa: BLE001 - stop committing; the agent raises it
                log.error("%s: outputs not acknowledged, stopping before the table write: %r",
                          self.name, exc)
                self.failed = exc
                for waiting in self._stages:
                    waiting.done.set()
                self._space.set()
                if self.on_failure is not None:
                    await self.on_failure(exc)
                return
            for event in stage.events:
                event.ack()
            self._stages.popleft()
            stage.done.set()
            self._space.set()


@dataclass
class TableWrites:
    """One batch's changelog records, for tables written through :func:`table_put` with
    ``writes``: the in-memory table changes at once, the records go to the producer in one
    go afterwards (:meth:`send`), rather than one Faust ``send_soon`` (FutureMessage,
    producer buffer, callbacks) each. Tables without a changelog topic (test doubles) take
    Faust's ``send_changelog`` at once."""

    items: list[tuple[str, int, bytes, bytes | None]] = field(default_factory=list)

    def add(self, table: Any, partition: int, key: bytes, value: bytes | None) -> bool:
        topic = getattr(table, "changelog_topic", None)
        if topic is None:
            return False
        self.items.append((topic.get_topic_name(), partition, key, value))
        return True

    async def send(self, producer: Any) -> None:
        for topic, partition, key, value in self.items:
            await producer.send(topic, key, value, partition, None, None)
        self.items.clear()


def table_put(table: Any, partition: int, key: bytes, value: bytes,
              writes: TableWrites | None = None) -> None:
    table.data[key] = value
    if writes is None or not writes.add(table, partition, key, value):
        table.send_changelog(partition, key, value)


def table_delete(table: Any, partition: int, key: bytes, writes: TableWrites | None = None) -> None:
    table.data.pop(key, None)
    if writes is None or not writes.add(table, partition, key, None):
        table.send_changelog(partition, key, None, value_serializer="raw")


class Meter:
    """Counts per outcome and batch latency, logged now and then (cheap enough per batch)."""

    def __init__(self, name: str, every_s: float = 30.0) -> None:
        self.name = name
        self.counts: dict[str, int] = {}
        self.every_s = every_s
        self._last = time.monotonic()

    def add(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n

    def maybe_log(self) -> None:
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            log.info("%s: %s", self.name, dict(sorted(self.counts.items())))
