"""Resolve times to offsets in a way that is right on tansu and on Apache Kafka.

tansu's ``offsets_for_times`` is only right when record timestamps equal broker time, and
its ListOffsets "end offset" can be short of the true end after several produce batches
(ARCHITECTURE.md). So we ask neither for the answer: the true end is the high watermark of
a fetch response, and the offset for a time is found by binary search over the records'
own timestamps (CreateTime, set by our producers), one small fetch per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition


async def load_topic_metadata(consumer: AIOKafkaConsumer) -> None:
    """Make ``consumer.partitions_for_topic`` know every topic on the broker.

    ``consumer.topics()`` does not: it fetches metadata into a new object and leaves the
    consumer's own as it was. On Apache Kafka a new consumer knows no topic until asked (tansu's
    first answer happens to list them all), so without this a topic looks partitionless there."""
    await consumer._client.force_metadata_update()


@dataclass(frozen=True)
class Bounds:
    low: int  # first offset still in the log
    high: int  # one past the last offset (high watermark)


async def _fetch_one(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int,
                     timeout_ms: int = 3000) -> tuple[int, int] | None:
    """(offset, timestamp_ms) of the first record at or after ``offset``, or None at the end."""
    consumer.seek(tp, offset)
    batch = await consumer.getmany(tp, timeout_ms=timeout_ms, max_records=1)
    records = batch.get(tp, [])
    if not records:
        return None
    return records[0].offset, records[0].timestamp


async def bounds(consumer: AIOKafkaConsumer, tp: TopicPartition) -> Bounds:
    """Partition bounds with the high watermark taken from a real fetch response."""
    low = (await consumer.beginning_offsets([tp]))[tp]
    listed = (await consumer.end_offsets([tp]))[tp]
    high = listed
    if listed > low:
        # A fetch near the listed end returns the broker's true high watermark.
        await _fetch_one(consumer, tp, max(low, listed - 1), timeout_ms=1000)
        watermark = consumer.highwater(tp)
        if watermark is not None:
            high = max(listed, watermark)
    else:
        await _fetch_one(consumer, tp, low, timeout_ms=500)
        watermark = consumer.highwater(tp)
        if watermark is not None:
            high = max(listed, watermark)
    return Bounds(low, high)


async def offset_for_time(consumer: AIOKafkaConsumer, tp: TopicPartition, when: datetime) -> int:
    """The first offset whose record timestamp is >= ``when`` (the high watermark if none).

    Assumes timestamps are non-decreasing within a partition, as they are for records our
    producers write in order; for a slightly out-of-order log the answer is the earliest
    offset at which the log has reached ``when``.
    """
    target = int(when.timestamp() * 1000)
    b = await bounds(consumer, tp)
    lo, hi = b.low, b.high
    while lo < hi:
        mid = (lo + hi) // 2
        found = await _fetch_one(consumer, tp, mid)
        if found is None:
            hi = mid
            continue
        offset, ts = found
        if ts >= target:
            hi = mid
        else:
            lo = offset + 1
    return lo


async def offsets_for_time(bootstrap: str, topic: str, when: datetime) -> dict[int, int]:
    """Per-partition offsets for ``when`` on ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or set())
        if not partitions:
            await load_topic_metadata(consumer)
            partitions = sorted(consumer.partitions_for_topic(topic) or set())
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        return {tp.partition: await offset_for_time(consumer, tp, when) for tp in tps}
    finally:
        await consumer.stop()


async def partition_bounds(bootstrap: str, topic: str) -> dict[int, Bounds]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await load_topic_metadata(consumer)
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or set())]
        consumer.assign(tps)
        return {tp.partition: await bounds(consumer, tp) for tp in tps}
    finally:
        await consumer.stop()
