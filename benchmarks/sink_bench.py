"""Sink throughput next to a raw-driver baseline, in the same run.

PostgreSQL (an embedded PostgreSQL 18 in a temporary directory, or --database-url):

- ``psycopg executemany``: the payments upsert (``WHERE version < excluded.version``) through
  plain psycopg 3, one transaction per batch: the floor of what any sink could do;
- ``SQLAlchemy async``: the same statement through SQLAlchemy 2 async + psycopg;
- ``PostgresSink``: the sink's own path (decode the record, payments upsert plus
  payment_events, intents, refunds in one transaction per batch);
- ``SinkRunner -> PostgreSQL``: end to end, from a Kafka topic to committed offsets.

ClickHouse (chDB in a temporary directory, or --clickhouse-url):

- ``client.insert``: a plain clickhouse-connect insert of the payment_changes rows;
- ``ClickHouseSink``: decode + payments, payment_changes and refunds inserts per batch;
- ``SinkRunner -> ClickHouse``: end to end from Kafka.

Kafka is an embedded tansu broker unless --kafka is given. Not a test: run it by hand,
e.g. ``python benchmarks/sink_bench.py --rows 20000``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controlplane.stack.embedded import EmbeddedPostgres, broker_process, wait_for_broker  # noqa: E402
from controlplane.stack.processes import free_port  # noqa: E402
from sinks.clickhouse import rows as ch_rows  # noqa: E402
from sinks.clickhouse import schema as ch_schema  # noqa: E402
from sinks.clickhouse.sink import CONSUMED as CH_TOPICS  # noqa: E402
from sinks.clickhouse.sink import ClickHouseSink, ensure_schema  # noqa: E402
from sinks.contract import SinkRecord  # noqa: E402
from sinks.postgres import rows as pg_rows  # noqa: E402
from sinks.postgres import schema as pg_schema  # noqa: E402
from sinks.postgres.migrations import upgrade  # noqa: E402
from sinks.postgres.sink import CONSUMED as PG_TOPICS  # noqa: E402
from sinks.postgres.sink import PostgresSink, _upsert_newer  # noqa: E402
from sinks.runner import RunnerConfig, SinkRunner  # noqa: E402
from trailpay import codec, kafka, topics  # noqa: E402
from trailpay.clickhouse import ClickHouse  # noqa: E402
from trailpay.domain.events import (  # noqa: E402
    Money,
    PaymentMethod,
    PaymentSnapshot,
    PaymentStateChanged,
    Provider,
)
from trailpay.domain.status import PaymentStatus as S  # noqa: E402
from trailpay.kafka import RecordProducer  # noqa: E402
from trailpay.settings import Settings, load_settings  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_changes(n: int, run: str) -> list[PaymentStateChanged]:
    """``n`` state changes: n/2 payments, each created->pending then ->succeeded."""
    out = []
    for i in range(n):
        ref = f"TPB{run}{i // 2:08d}"
        version = i % 2 + 1
        status = S.PENDING if version == 1 else S.SUCCEEDED
        at = T0 + timedelta(seconds=i)
        snap = PaymentSnapshot(
            reference=ref, version=version, status=status, user_id=f"u{i % 97}",
            amount=Money(amount=1000 + i, currency="KES"), provider=Provider.MPESA,
            method=PaymentMethod.MOBILE_MONEY, country="KE", phone_number="254712345678",
            provider_reference=f"ws_CO_{ref}", provider_status=status.value,
            created_at=T0, updated_at=at,
        )
        out.append(PaymentStateChanged(
            event_id=PaymentStateChanged.id_for(ref, version), occurred_at=at, reference=ref,
            version=version, from_status=None if version == 1 else S.PENDING, to_status=status,
            cause_event_id=f"c{i}", cause="dispatcher", payment=snap,
        ))
    return out


def as_records(changes: list[PaymentStateChanged]) -> list[SinkRecord]:
    return [SinkRecord(topics.PAYMENT_STATE, 0, i, c.reference.encode(), codec.encode(c))
            for i, c in enumerate(changes)]


def batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


Result = tuple[str, str, int, float]


def timed(name: str, target: str, rows: int, fn: Callable[[], Any]) -> Result:
    started = time.perf_counter()
    fn()
    return (target, name, rows, time.perf_counter() - started)


async def atimed(name: str, target: str, rows: int, coro: Any) -> Result:
    started = time.perf_counter()
    await coro
    return (target, name, rows, time.perf_counter() - started)


# ----------------------------------------------------------------------------- PostgreSQL


def _payment_rows(changes: list[PaymentStateChanged]) -> list[dict[str, Any]]:
    return [pg_rows.payment_row(c) for c in changes]


def pg_raw(url: str, rows: list[dict[str, Any]], batch: int) -> None:
    cols = [c.name for c in pg_schema.payments.c]
    updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c != "reference")
    sql = (f"insert into payments ({', '.join(cols)}) values ({', '.join(['%s'] * len(cols))}) "
           f"on conflict (reference) do update set {updates} "
           f"where payments.version < excluded.version")
    with psycopg.connect(url) as conn:
        for chunk in batches(rows, batch):
            newest: dict[str, dict[str, Any]] = {}
            for r in chunk:
                if r["reference"] not in newest or newest[r["reference"]]["version"] < r["version"]:
                    newest[r["reference"]] = r
            with conn.cursor() as cur:
                cur.executemany(sql, [tuple(Jsonb(r[c]) if c == "snapshot" else r[c] for c in cols)
                                      for r in newest.values()])
            conn.commit()


async def pg_sqlalchemy(settings: Settings, rows: list[dict[str, Any]], batch: int) -> None:
    engine = create_async_engine(settings.sqlalchemy_async_url(), pool_size=1)
    stmt = _upsert_newer(pg_schema.payments, "reference")
    try:
        for chunk in batches(rows, batch):
            newest = {r["reference"]: r for r in sorted(chunk, key=lambda r: r["version"])}
            async with engine.begin() as conn:
                await conn.execute(stmt, list(newest.values()))
    finally:
        await engine.dispose()


async def pg_sink(settings: Settings, records: list[SinkRecord], batch: int) -> None:
    sink = PostgresSink(settings)
    try:
        for chunk in batches(records, batch):
            for r in chunk:
                sink.add(r)
            await sink.flush()
    finally:
        await sink.close()


# ----------------------------------------------------------------------------- ClickHouse


def ch_raw(ch: ClickHouse, rows: list[tuple[Any, ...]], batch: int) -> None:
    cols = list(ch_schema.COLUMNS["payment_changes"])
    for chunk in batches(rows, batch):
        ch.call(lambda c, b=chunk: c.insert("payment_changes", b, column_names=cols,
                                            database=ch_schema.DATABASE))


async def ch_sink(ch: ClickHouse, records: list[SinkRecord], batch: int) -> None:
    sink = ClickHouseSink(ch)
    for chunk in batches(records, batch):
        for r in chunk:
            sink.add(r)
        await sink.flush()


# ----------------------------------------------------------------------------- end to end


async def produce(settings: Settings, topic: str, changes: list[PaymentStateChanged]) -> None:
    producer = RecordProducer(settings, linger_ms=20)
    await producer.start()
    try:
        for chunk in batches(changes, 2000):
            await producer.send_many(topic, [(c.reference, c) for c in chunk])
    finally:
        await producer.stop()


async def drain(settings: Settings, runner: SinkRunner, expected: int) -> float:
    """Seconds from the first record fetched to the last one written and committed
    (the consumer-group join before it is not the sink's cost)."""
    task = asyncio.create_task(runner.run())
    while not (runner._batch or runner.records_written):
        if task.done():
            await task
        await asyncio.sleep(0.001)
    first = time.perf_counter()
    while runner.records_written < expected:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    done = time.perf_counter()
    runner.stop()
    await task
    return done - first


async def e2e(settings: Settings, ch: ClickHouse, changes: list[PaymentStateChanged]) -> list[Result]:
    prefix = f"bench{int(time.time())}."
    specs = [dataclasses.replace(s, name=prefix + s.name) for s in topics.TOPICS]
    await kafka.create_topics(settings, specs)
    await produce(settings, prefix + topics.PAYMENT_STATE, changes)
    out = []
    pg = PostgresSink(settings, topic_map={prefix + t: t for t in PG_TOPICS})
    runner = SinkRunner(settings, pg, group_id=prefix + "pg", config=RunnerConfig(batch_size=500),
                        dead_letter_topic=prefix + topics.DEAD_LETTERS)
    seconds = await drain(settings, runner, len(changes))
    out.append(("PostgreSQL", "SinkRunner (Kafka -> commit), batch 500", len(changes), seconds))
    chs = ClickHouseSink(ch, topic_map={prefix + t: t for t in CH_TOPICS})
    runner = SinkRunner(settings, chs, group_id=prefix + "ch", config=RunnerConfig(batch_size=5000,
                                                                                  max_wait_s=1.0))
    seconds = await drain(settings, runner, len(changes))
    out.append(("ClickHouse", "SinkRunner (Kafka -> commit), batch 5000", len(changes), seconds))
    return out


# ----------------------------------------------------------------------------- main


@contextmanager
def embedded(args: argparse.Namespace, workdir: Path) -> Iterator[Settings]:
    overrides: dict[str, Any] = {"data_dir": workdir}
    pg = broker = None
    try:
        if args.database_url:
            overrides["database_url"] = args.database_url
        else:
            pg = EmbeddedPostgres(workdir, free_port())
            pg.init()
            pg.start()
            overrides["database_url"] = pg.url
        if args.clickhouse_url:
            overrides["clickhouse_url"] = args.clickhouse_url
        if args.kafka:
            overrides["kafka_bootstrap"] = args.kafka
        elif not args.no_kafka:
            port = free_port()
            broker = broker_process(workdir, port)
            broker.start()
            wait_for_broker(port)
            overrides["kafka_bootstrap"] = f"127.0.0.1:{port}"
        yield load_settings(**overrides)
    finally:
        if broker is not None:
            broker.stop()
        if pg is not None:
            pg.stop()


async def run(args: argparse.Namespace, settings: Settings) -> list[Result]:
    upgrade(settings)
    pg_raw(settings.sqlalchemy_async_url().replace("postgresql+psycopg://", "postgresql://"),
           _payment_rows(make_changes(200, "W")), 100)  # warm-up
    results: list[Result] = []
    n, pgb, chb = args.rows, args.pg_batch, args.ch_batch
    url = settings.sqlalchemy_async_url().replace("postgresql+psycopg://", "postgresql://")
    # Rows are built before the clock starts for the baselines; the sinks decode records.
    raw_rows = _payment_rows(make_changes(n, "A"))
    results.append(timed(f"psycopg executemany (payments upsert), batch {pgb}", "PostgreSQL", n,
                         lambda: pg_raw(url, raw_rows, pgb)))
    sa_rows = _payment_rows(make_changes(n, "B"))
    results.append(await atimed(f"SQLAlchemy async (same upsert), batch {pgb}", "PostgreSQL", n,
                                pg_sqlalchemy(settings, sa_rows, pgb)))
    records = as_records(make_changes(n, "C"))
    results.append(await atimed(f"PostgresSink add+flush (all tables), batch {pgb}", "PostgreSQL",
                                n, pg_sink(settings, records, pgb)))
    ch = ClickHouse(settings)
    try:
        await ch.acall(ensure_schema)
        ch_raw(ch, [ch_rows.payment_change(c) for c in make_changes(100, "W")], 100)  # warm-up
        ch_plain = [ch_rows.payment_change(c) for c in make_changes(n, "D")]
        results.append(timed(f"client.insert (payment_changes), batch {chb}", "ClickHouse", n,
                             lambda: ch_raw(ch, ch_plain, chb)))
        records = as_records(make_changes(n, "E"))
        results.append(await atimed(f"ClickHouseSink add+flush (3 tables), batch {chb}",
                                    "ClickHouse", n, ch_sink(ch, records, chb)))
        if settings.kafka_bootstrap:
            results.extend(await e2e(settings, ch, make_changes(n, "F")))
    finally:
        ch.close()
    return results


def print_table(results: list[Result]) -> None:
    width = max(len(r[1]) for r in results)
    print(f"{'target':<11} {'path':<{width}} {'rows':>8} {'seconds':>8} {'rows/s':>10}")
    print("-" * (11 + width + 31))
    for target, name, rows, seconds in results:
        print(f"{target:<11} {name:<{width}} {rows:>8} {seconds:>8.2f} {rows / seconds:>10,.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20000, help="state changes per measurement")
    parser.add_argument("--pg-batch", type=int, default=500)
    parser.add_argument("--ch-batch", type=int, default=10000)
    parser.add_argument("--database-url", help="PostgreSQL URL (default: embedded, temporary)")
    parser.add_argument("--clickhouse-url", help="ClickHouse server URL (default: chDB, temporary)")
    parser.add_argument("--kafka", help="Kafka bootstrap for the end-to-end rows (default: tansu)")
    parser.add_argument("--no-kafka", action="store_true", help="skip the end-to-end rows")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="trailpay-sink-bench-"))
    os.chmod(workdir, 0o755)
    try:
        with embedded(args, workdir) as settings:
            results = asyncio.run(run(args, settings))
        print_table(results)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
