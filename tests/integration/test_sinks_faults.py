"""Sinks under faults: SIGKILL mid-stream, and a PostgreSQL outage while events flow.

The sinks run as subprocesses (`trailpay sink-postgres`, `python -m sinks.clickhouse run`)
on private prefixed topics, with their own consumer groups and databases.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from controlplane.stack.embedded import EmbeddedPostgres
from controlplane.stack.processes import free_port
from sinks.postgres.migrations import upgrade
from tests import sinkdata as sd
from tests.sinkdata import ch_env, ch_query, dataset, fresh_database, pg_revenue
from tests.support.processes import ROOT, clean_env, kill_group, stop_group, trailpay_argv
from tests.support.rows import pg_rows
from tests.support.waits import wait_caught_up, wait_for
from trailpay import topics
from trailpay.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.fault]

#: How long PostgreSQL stays down in the outage test (the issue asks for 30 s; CI uses less).
OUTAGE_S = float(os.environ.get("TRAILPAY_TEST_OUTAGE_S", "10"))


def start_postgres_sink(settings: Settings, prefix: str, group: str, log: Path) -> subprocess.Popen[bytes]:
    env = clean_env(TRAILPAY_KAFKA_BOOTSTRAP=settings.kafka_bootstrap or "",
                    TRAILPAY_DATABASE_URL=settings.database_url or "", PYTHONUNBUFFERED="1")
    with log.open("ab") as out:  # the child writes to its own copy
        return subprocess.Popen(
            trailpay_argv("sink-postgres", "--topic-prefix", prefix, "--group", group,
                          "--batch-size", "100", "--max-wait", "0.3"),
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )


def start_clickhouse_sink(settings: Settings, data_dir: Path, prefix: str, group: str, log: Path,
                          *extra: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # the child writes to its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "sinks.clickhouse", "run", "--data-dir", str(data_dir),
             "--topic-prefix", prefix, "--group", group, "--batch-size", "200", "--max-wait", "0.3",
             *extra],
            env={**ch_env(settings), "PYTHONUNBUFFERED": "1"}, cwd=ROOT, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )


async def produce_stream(settings: Settings, prefix: str, items: list[tuple[str, Any]],
                         refs: list[str], seconds: float) -> None:
    """Produce ``items`` (and one webhook per payment) spread over ``seconds``."""
    chunks = 30
    step = max(1, len(items) // chunks)
    for i in range(0, len(items), step):
        await sd.produce(settings, prefix + topics.PAYMENT_STATE, items[i:i + step])
        await asyncio.sleep(seconds / chunks)
    await sd.produce(settings, prefix + topics.WEBHOOKS_RAW, [(r, sd.webhook(r)) for r in refs])


def sink_groups(group: str, prefix: str) -> dict[str, tuple[str, ...]]:
    """The PostgreSQL sink's group and its prefixed topics (for :func:`wait_caught_up`)."""
    return {group: tuple(prefix + name for name in topics.POSTGRES_SINK_TOPICS)}


def pg_counts(settings: Settings, ref_prefix: str) -> tuple[int, int, int]:
    like = ref_prefix + "%"
    return (
        pg_rows(settings, "select count(*) from payments where reference like %s", like)[0][0],
        pg_rows(settings, "select count(*) from payment_events where reference like %s", like)[0][0],
        pg_rows(settings, "select count(*) from provider_callbacks where reference like %s", like)[0][0],
    )


def make_data(n: int) -> tuple[str, list[str], list[tuple[str, Any]], dict[str, int]]:
    prefix = sd.new_prefix()
    ref_prefix = "TP" + prefix[1:9].upper()
    refs = [f"{ref_prefix}{i:06d}" for i in range(n)]
    items, expected = dataset(refs)
    return prefix, refs, items, expected


def assert_postgres_exact(settings: Settings, ref_prefix: str, n: int, items: list[Any],
                          expected: dict[str, int]) -> None:
    assert pg_counts(settings, ref_prefix) == (n, len(items), n)
    final_versions = dict(pg_rows(settings, "select reference, version from payments where reference like %s",
                                  ref_prefix + "%"))
    newest: dict[str, int] = {}
    for ref, change in items:
        newest[ref] = max(newest.get(ref, 0), change.version)
    assert final_versions == newest
    assert pg_revenue(settings, ref_prefix) == expected


async def test_postgres_sink_sigkill_mid_stream_then_restart(stack, tmp_path):
    settings = stack.settings
    prefix, refs, items, expected = make_data(300)
    ref_prefix = refs[0][:-6]
    await sd.create_prefixed_topics(settings, prefix)
    group = f"crash{prefix}"
    with fresh_database(settings) as db:
        sink = start_postgres_sink(db, prefix, group, tmp_path / "sink.log")
        try:
            producing = asyncio.create_task(produce_stream(settings, prefix, items, refs, seconds=14))
            await wait_for(lambda: pg_counts(db, ref_prefix)[1] >= 100, 60, "the first batches")
            kill_group(sink)
            at_kill = pg_counts(db, ref_prefix)
            assert not producing.done(), "the stream ended before the kill; slow the producer"
            sink = start_postgres_sink(db, prefix, group, tmp_path / "sink.log")
            await producing
            await wait_for(lambda: pg_counts(db, ref_prefix) == (300, len(items), 300), 90,
                           "every row after the restart")
            # Nothing more may arrive: the sink has committed everything on its topics.
            await wait_caught_up(settings, sink_groups(group, prefix), 60, "the restarted sink's group")
            assert_postgres_exact(db, ref_prefix, 300, items, expected)
            assert 0 < at_kill[1] < len(items)
        finally:
            stop_group(sink, 30)


async def test_postgres_outage_while_events_flow(stack, tmp_path):
    settings = stack.settings
    # Not under pytest's basetemp: a pytest session started meanwhile (another checkout on
    # this machine) makes /tmp/pytest-of-<user> 0700 again, and PostgreSQL, run as its own
    # system user when we are root, then loses its data directory (PANIC on pg_control).
    pg_dir = Path(tempfile.mkdtemp(prefix="trailpay-sinktest-pg-"))
    pg_dir.chmod(0o755)
    pg = EmbeddedPostgres(pg_dir, free_port())
    pg.init()
    pg.start()
    db = settings.model_copy(update={"database_url": pg.url})
    upgrade(db)
    prefix, refs, items, expected = make_data(200)
    ref_prefix = refs[0][:-6]
    await sd.create_prefixed_topics(settings, prefix)
    log = tmp_path / "sink.log"
    group = f"outage{prefix}"
    sink = start_postgres_sink(db, prefix, group, log)
    try:
        producing = asyncio.create_task(
            produce_stream(settings, prefix, items, refs, seconds=OUTAGE_S + 8))
        await wait_for(lambda: pg_counts(db, ref_prefix)[1] >= 50, 60, "the first batches")
        pg.stop()
        await asyncio.sleep(OUTAGE_S)
        assert sink.poll() is None, "the sink died during the outage:\n" + log.read_text()[-3000:]
        pg.start()
        await producing
        await wait_for(lambda: pg_counts(db, ref_prefix) == (200, len(items), 200), 90,
                       "every row after the outage")
        await wait_caught_up(settings, sink_groups(group, prefix), 60, "the sink's group after the outage")
        assert_postgres_exact(db, ref_prefix, 200, items, expected)
        assert "retrying the same batch" in log.read_text()
    finally:
        stop_group(sink, 30)
        pg.stop()
        shutil.rmtree(pg_dir, ignore_errors=True)


def ch_counts(settings: Settings, data_dir: Path) -> dict[str, int]:
    rows = ch_query(settings, data_dir,
                    "SELECT (SELECT count() FROM trailpay.payments FINAL) AS payments,"
                    " (SELECT count() FROM trailpay.payment_changes FINAL) AS changes,"
                    " (SELECT count() FROM trailpay.webhooks FINAL) AS webhooks,"
                    " (SELECT count() FROM trailpay.payment_changes) AS changes_raw")
    return {k: int(v) for k, v in rows[0].items()}


async def test_clickhouse_sink_sigkill_mid_stream_then_restart(stack, tmp_path):
    settings = stack.settings
    prefix, refs, items, expected = make_data(300)
    await sd.create_prefixed_topics(settings, prefix)
    chdir, log, group = tmp_path / "ch", tmp_path / "ch.log", f"chcrash{prefix}"
    sink = start_clickhouse_sink(settings, chdir, prefix, group, log)
    try:
        await wait_for(lambda: "assigned" in (log.read_text() if log.exists() else ""), 60,
                       "the ClickHouse sink to join its group")
        producing = asyncio.create_task(produce_stream(settings, prefix, items, refs, seconds=8))
        await asyncio.sleep(3)
        kill_group(sink)
        assert not producing.done()
        at_kill = ch_counts(settings, chdir)
        await producing
        sink = start_clickhouse_sink(settings, chdir, prefix, group, log, "--until-idle", "3")
        sink.wait(120)
        assert sink.returncode == 0, log.read_text()[-3000:]
    finally:
        stop_group(sink, 30)
    counts = ch_counts(settings, chdir)
    assert 0 < at_kill["changes"] < len(items)
    assert (counts["payments"], counts["changes"], counts["webhooks"]) == (300, len(items), 300)
    revenue = ch_query(settings, chdir, "SELECT currency, sum(net_minor) AS net FROM trailpay.daily_revenue "
                                        "GROUP BY currency")
    assert {r["currency"]: int(r["net"]) for r in revenue} == expected
