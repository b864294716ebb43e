"""Where replayed records come from: a range of a topic, or the PostgreSQL archive.

Topic ranges are read with an unassigned-group consumer (nothing is committed, no consumer
group is disturbed) from per-partition start offsets up to per-partition end offsets fixed
when the replay starts, so records produced during the replay are not chased.

The archive is what the PostgreSQL sink kept: ``payment_events.record`` is the whole
:class:`PaymentStateChanged`; ``provider_callbacks`` holds each raw webhook's body bytes,
headers, query and verification result, from which the :class:`RawWebhook` is rebuilt.
Secrets were redacted from the archived headers and query (callback tokens): a rebuilt
webhook keeps the ingress's verification verdict, so dedup never has to verify it again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sinks.postgres import schema
from trailpay import codec, topics
from trailpay.domain.errors import RetriableError, TrailPayError
from trailpay.domain.events import PaymentStateChanged, Provider, RawWebhook
from trailpay.offsets import Bounds, bounds, load_topic_metadata, offset_for_time

log = logging.getLogger(__name__)

#: Topics the archive can rebuild.
ARCHIVED: tuple[str, ...] = (topics.PAYMENT_STATE, topics.WEBHOOKS_RAW)


class ReplayError(TrailPayError):
    """A replay cannot be planned or run; the message says what to do."""


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One record to replay, with where it came from."""

    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    origin: str = "topic"  # "topic" | "archive"
    #: Why an archive row could not be turned back into a record (it is then not replayed).
    error: str | None = None

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


# --------------------------------------------------------------------------- topic ranges


@dataclass(frozen=True)
class PartitionRange:
    topic: str
    partition: int
    start: int  # first offset to read
    end: int  # one past the last offset to read

    @property
    def count(self) -> int:
        return max(0, self.end - self.start)


@dataclass(frozen=True)
class StartAt:
    """Where to start: one of an offset for every partition, offsets per partition, a time."""

    offset: int | None = None
    per_partition: dict[int, int] | None = None
    time: datetime | None = None


@dataclass(frozen=True)
class EndAt:
    """Where to stop (exclusive); None = the end of the log when the replay starts."""

    offset: int | None = None
    time: datetime | None = None


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    await load_topic_metadata(consumer)
    found = sorted(consumer.partitions_for_topic(topic) or set())
    if not found:
        raise ReplayError(f"topic {topic} does not exist on the broker; `trailpay topics describe` "
                          "lists what is there")
    return [TopicPartition(topic, p) for p in found]


async def _plan_partition(servers: str, tp: TopicPartition, start: StartAt, end: EndAt) -> PartitionRange:
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await consumer.start()
    try:
        consumer.assign([tp])
        b: Bounds = await bounds(consumer, tp)
        if start.time is not None:
            first = await offset_for_time(consumer, tp, start.time)
        elif start.per_partition is not None:
            first = start.per_partition[tp.partition]
        else:
            first = start.offset or 0
        if end.time is not None:
            last = await offset_for_time(consumer, tp, end.time)
        elif end.offset is not None:
            last = end.offset
        else:
            last = b.high
        first, last = max(first, b.low), min(last, b.high)
        return PartitionRange(tp.topic, tp.partition, first, max(first, last))
    finally:
        await consumer.stop()


async def plan_ranges(servers: str, topic: str, start: StartAt, end: EndAt) -> list[PartitionRange]:
    """Per-partition [start, end) of ``topic``, offsets clamped to what the log still has.

    Times become offsets through :mod:`trailpay.offsets` (binary search over the records'
    own timestamps, true high watermark), one consumer per partition, in parallel.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await _partitions(consumer, topic)
    finally:
        await consumer.stop()
    if start.per_partition is not None:
        missing = set(start.per_partition) - {tp.partition for tp in tps}
        if missing:
            raise ReplayError(f"{topic} has no partition {sorted(missing)}; it has "
                              f"{[tp.partition for tp in tps]}")
        tps = [tp for tp in tps if tp.partition in start.per_partition]
    return list(await asyncio.gather(*(_plan_partition(servers, tp, start, end) for tp in tps)))


async def read_ranges(servers: str, ranges: Sequence[PartitionRange], *, batch_size: int = 500,
                      stall_s: float = 15.0) -> AsyncIterator[list[SourceRecord]]:
    """Every record of ``ranges``, in offset order per partition, in batches."""
    todo = {TopicPartition(r.topic, r.partition): r for r in ranges if r.count > 0}
    if not todo:
        return
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_poll_records=batch_size)
    await consumer.start()
    try:
        consumer.assign(list(todo))
        for tp, r in todo.items():
            consumer.seek(tp, r.start)
        position = {tp: r.start for tp, r in todo.items()}
        loop_time = time.monotonic
        last_progress = loop_time()
        while todo:
            fetched = await consumer.getmany(*todo, timeout_ms=500, max_records=batch_size)
            out: list[SourceRecord] = []
            for tp, records in fetched.items():
                wanted = todo.get(tp)
                if wanted is None:
                    continue
                r = wanted
                for rec in records:
                    if rec.offset >= r.end:
                        break
                    out.append(SourceRecord(tp.topic, tp.partition, rec.offset, rec.key, rec.value,
                                            rec.timestamp))
                    position[tp] = rec.offset + 1
                if records:
                    position[tp] = max(position[tp], records[-1].offset + 1)
            for tp in [tp for tp, r in todo.items() if position[tp] >= r.end]:
                consumer.pause(tp)
                del todo[tp]
            if out:
                last_progress = loop_time()
                yield out
            elif loop_time() - last_progress > stall_s:
                stuck = ", ".join(f"{tp.topic}[{tp.partition}] at {position[tp]} of {r.end}"
                                  for tp, r in todo.items())
                raise RetriableError(f"the broker sent nothing for {stall_s:.0f}s: {stuck}; "
                                     "check `trailpay status` and run the replay again "
                                     "(it is idempotent)")
    finally:
        await consumer.stop()


# --------------------------------------------------------------------------- archive


@dataclass(frozen=True)
class ArchiveFilter:
    since: datetime | None = None
    until: datetime | None = None
    references: tuple[str, ...] = ()
    #: payments.state.v1: only the newest archived change of each payment the filter selects.
    #: What the state machine is given back (:func:`latest_for_pipeline`).
    latest: bool = False


def latest_for_pipeline(topic: str) -> bool:
    """Whether an archive replay into the pipeline sends only each payment's newest change.

    The restore agent writes a replayed change into the state machine's table when it is
    newer than what the table holds. Given a payment's whole history, it may write an older
    version in one batch and the newer one in the next; a provider event applied in between
    (a replayed webhook, or a live callback) then decides on the old state, and its change
    takes a version the archive already has (seen in the fault suite: a new ``pending`` ->
    ``failed`` change after the broker restart). With the newest change alone, the table
    goes straight to the payment's last state, and a provider event that comes first waits,
    parked, for it. The sinks already hold the older changes: they are the archive."""
    return topic == topics.PAYMENT_STATE


def _archive_query(topic: str, flt: ArchiveFilter) -> Select[Any]:
    order: tuple[Any, ...]
    if topic == topics.PAYMENT_STATE:
        t = schema.payment_events
        stmt = select(t.c.record, t.c.reference, t.c.kafka_partition, t.c.kafka_offset, t.c.at)
        at = t.c.at
        order = (t.c.at, t.c.reference, t.c.version)
    elif topic == topics.WEBHOOKS_RAW:
        t = schema.provider_callbacks
        stmt = select(t)
        at = t.c.received_at
        order = (t.c.received_at, t.c.event_id)
    else:
        raise ReplayError(f"the archive keeps {' and '.join(ARCHIVED)}, not {topic}; replay {topic} "
                          "from the broker (--from-offset / --from-time)")
    newest_only = flt.latest and topic == topics.PAYMENT_STATE
    selected = select(t.c.reference) if newest_only else stmt
    if flt.since is not None:
        selected = selected.where(at >= flt.since)
    if flt.until is not None:
        selected = selected.where(at < flt.until)
    if flt.references:
        selected = selected.where(t.c.reference.in_(flt.references))
    if not newest_only:
        return selected.order_by(*order)
    # The newest change of each payment with a change in the window (even one after it).
    newest = (select(t.c.reference, func.max(t.c.version).label("version"))
              .where(t.c.reference.in_(selected)).group_by(t.c.reference).subquery())
    return (stmt.join(newest, (t.c.reference == newest.c.reference) & (t.c.version == newest.c.version))
            .order_by(*order))


async def count_archive(engine: AsyncEngine, topic: str, flt: ArchiveFilter) -> int:
    sub = _archive_query(topic, flt).order_by(None).subquery()
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(sub))).scalar_one())


def _webhook_from_row(row: Any) -> RawWebhook:
    data = row._mapping
    occurred = data.get("occurred_at") or data["received_at"]
    return RawWebhook(
        event_id=data["event_id"], occurred_at=occurred, provider=Provider(data["provider"]),
        body=bytes(data["body"]), headers=dict(data["headers"] or {}), query=dict(data["query"] or {}),
        received_at=data["received_at"], reference=data["reference"], verified=data["verified"],
        verification_error=data["verification_error"],
    )


def archive_record(topic: str, row: Any) -> SourceRecord:
    """The topic record an archive row stands for (key = payment reference)."""
    data = row._mapping
    reference = data["reference"]
    key = reference.encode() if reference else None
    try:
        if topic == topics.PAYMENT_STATE:
            change = PaymentStateChanged.model_validate(data["record"])
            value, at = codec.encode(change), change.occurred_at
        else:
            hook = _webhook_from_row(row)
            value, at = codec.encode(hook), hook.received_at
    except ValidationError as exc:
        raw = data["record"] if topic == topics.PAYMENT_STATE else {"event_id": data["event_id"]}
        return SourceRecord(topic, data["kafka_partition"], data["kafka_offset"], key,
                            json.dumps(raw, default=str).encode(), None, origin="archive",
                            error=f"archived row no longer a valid record: {codec.describe(exc)}")
    return SourceRecord(topic, data["kafka_partition"], data["kafka_offset"], key, value,
                        int(at.timestamp() * 1000), origin="archive")


async def read_archive(engine: AsyncEngine, topic: str, flt: ArchiveFilter, *,
                       batch_size: int = 500) -> AsyncIterator[list[SourceRecord]]:
    """Archived records of ``topic`` in time order, in batches."""
    async with engine.connect() as conn:
        result = await conn.stream(_archive_query(topic, flt).execution_options(yield_per=batch_size))
        async for rows in result.partitions(batch_size):
            yield [archive_record(topic, row) for row in rows]
