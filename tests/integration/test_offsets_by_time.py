"""Time -> offset resolution on the real embedded broker (tansu), where offsets_for_times
and ListOffsets are not to be trusted."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from trailpay.offsets import offsets_for_time, partition_bounds

pytestmark = pytest.mark.integration


async def test_offsets_for_time_and_true_end(stack):
    bootstrap = stack.settings.kafka_bootstrap
    topic = f"test.offsets.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 2, 1)])
    await admin.close()
    base = datetime(2026, 1, 1, tzinfo=UTC)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        # 3 produce batches per partition, timestamps one minute apart: record i at base + i min
        for batch in range(3):
            for i in range(batch * 100, (batch + 1) * 100):
                for partition in (0, 1):
                    ts = int((base + timedelta(minutes=i)).timestamp() * 1000)
                    await producer.send(topic, f"{i}".encode(), partition=partition, timestamp_ms=ts)
            await producer.flush()
    finally:
        await producer.stop()

    b = await partition_bounds(bootstrap, topic)
    assert {p: (x.low, x.high) for p, x in b.items()} == {0: (0, 300), 1: (0, 300)}

    at = await offsets_for_time(bootstrap, topic, base + timedelta(minutes=150))
    assert at == {0: 150, 1: 150}
    between = await offsets_for_time(bootstrap, topic, base + timedelta(minutes=149, seconds=30))
    assert between == {0: 150, 1: 150}
    assert await offsets_for_time(bootstrap, topic, base - timedelta(days=1)) == {0: 0, 1: 0}
    assert await offsets_for_time(bootstrap, topic, base + timedelta(days=1)) == {0: 300, 1: 300}
