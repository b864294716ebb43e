"""The fixture layer's third mode: Apache Kafka, PostgreSQL and ClickHouse server from
testcontainers, when a Docker engine answers (otherwise skipped, saying why).

A small round trip through our real code against the real servers: topics created by
trailpay.kafka, the Alembic migrations, state changes produced onto payments.state.v1, both
sinks' runners (PostgreSQL over psycopg, ClickHouse over HTTP) consuming them, and the rows
read back: one per payment, the newest version, the FINAL counts equal to the inputs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.stackutil import docker_available
from trailpay import topics
from trailpay.settings import Settings, load_settings

AVAILABLE, REASON = docker_available()
pytestmark = [pytest.mark.integration, pytest.mark.docker,
              pytest.mark.skipif(not AVAILABLE, reason=REASON or "no Docker engine")]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    from testcontainers.community.clickhouse import ClickHouseContainer
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer

    kafka = KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft()
    postgres = PostgresContainer("postgres:17", driver=None)
    clickhouse = ClickHouseContainer("clickhouse/clickhouse-server:24.8", username="trailpay",
                                     password="trailpay", dbname="default")
    started = []
    try:
        for container in (kafka, postgres, clickhouse):
            container.start()
            started.append(container)
        ch_host = clickhouse.get_container_host_ip()
        yield load_settings(
            kafka_bootstrap=kafka.get_bootstrap_server(),
            database_url=postgres.get_connection_url(),
            clickhouse_url=f"http://trailpay:trailpay@{ch_host}:{clickhouse.get_exposed_port(8123)}/default",
            data_dir=tmp_path_factory.mktemp("containers"), partitions=2)
    finally:
        for container in reversed(started):
            container.stop()


async def _run_until(runner, want: int, timeout: float = 120) -> None:  # type: ignore[no-untyped-def]
    task = asyncio.create_task(runner.run())
    deadline = time.monotonic() + timeout
    while runner.records_written < want and time.monotonic() < deadline:
        if task.done():
            await task
        await asyncio.sleep(0.2)
    runner.stop()
    await task
    assert runner.records_written >= want, f"{runner.records_written} of {want} written"


async def test_state_changes_round_trip_through_kafka_into_postgres_and_clickhouse(servers: Settings) -> None:
    from benchmarks.sink_bench import make_changes, produce
    from sinks.clickhouse import schema
    from sinks.clickhouse.sink import ClickHouseSink, ensure_schema
    from sinks.postgres.migrations import upgrade
    from sinks.postgres.sink import PostgresSink
    from sinks.runner import RunnerConfig, SinkRunner
    from trailpay.clickhouse import ClickHouse
    from trailpay.kafka import create_topics

    settings = servers
    await create_topics(settings)
    await asyncio.to_thread(upgrade, settings)
    run = "C" + uuid.uuid4().hex[:6].upper()
    changes = make_changes(200, run)  # 100 payments, each pending then succeeded
    await produce(settings, topics.PAYMENT_STATE, changes)

    await _run_until(SinkRunner(settings, PostgresSink(settings), group_id=f"pg-{run}",
                                config=RunnerConfig(batch_size=100)), len(changes))
    ch = ClickHouse(settings)
    try:
        await ch.acall(ensure_schema)
        await _run_until(SinkRunner(settings, ClickHouseSink(ch), group_id=f"ch-{run}",
                                    config=RunnerConfig(batch_size=100)), len(changes))
        (final,), = ch.query_rows(f"SELECT count() FROM {schema.D}.payments FINAL "
                                  "WHERE startsWith(reference, {p:String}) AND status = 'succeeded'",
                                  {"p": f"TPB{run}"})
    finally:
        ch.close()
    assert final == 100

    engine = create_async_engine(settings.sqlalchemy_async_url())
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded' AND version = 2) FROM payments "
                "WHERE reference LIKE :p"), {"p": f"TPB{run}%"})).one()
            events = (await conn.execute(text("SELECT count(*) FROM payment_events WHERE reference LIKE :p"),
                                         {"p": f"TPB{run}%"})).scalar()
    finally:
        await engine.dispose()
    assert tuple(rows) == (100, 100)
    assert events == 200
