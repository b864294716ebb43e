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

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from streams.deadletter import dead_letter
from trailpay import codec, topics

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


def table_put(table: Any, partition: int, key: bytes, value: bytes) -> None:
    table.data[key] = value
    table.send_changelog(partition, key, value)


def table_delete(table: Any, partition: int, key: bytes) -> None:
    table.data.pop(key, None)
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
