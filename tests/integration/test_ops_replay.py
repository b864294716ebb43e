"""`trailpay replay` on the session stack: by offset and by time into the sinks (rows the
sinks lost come back exactly), and back through the pipeline (a no-op for applied records)."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from controlplane.ops import records as rec
from sinks.postgres import schema
from tests.integration.ingressutil import make_user
from tests.integration.opsutil import (
    OPEN,
    create_card,
    create_mobile,
    delete_rows,
    snapshot,
    trailpay,
    wait_rows,
)
from tests.support.waits import wait_caught_up
from trailpay import topics

pytestmark = pytest.mark.integration

#: What the pipeline replay re-publishes (the worker reads all three).
REPLAYED = (topics.WEBHOOKS_RAW, topics.PAYMENT_STATE, topics.PROVIDER_EVENTS)


@pytest.fixture(scope="module")
async def settled(stack):
    """Three payments (M-Pesa, Airtel, Stripe) that went all the way through."""
    if stack.info is None:
        pytest.skip("needs the embedded stack (stack.json)")
    user = await make_user(stack.settings)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
        refs = [await create_mobile(api, user, "mpesa", "0712345670"),
                await create_mobile(api, user, "airtel", "0733000006"),
                await create_card(api, user)]
    rows = await wait_rows(stack.settings, refs, lambda r: r["status"] == "succeeded", timeout=90)
    # The webhooks' archive rows land with a later sink batch than the payments rows.
    await wait_caught_up(stack.settings, {topics.POSTGRES_SINK_GROUP: topics.POSTGRES_SINK_TOPICS},
                         60, "the PostgreSQL sink")
    return refs, rows


async def _first_offset(settings, ref: str) -> tuple[int, int]:
    engine = create_async_engine(settings.sqlalchemy_async_url())
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(
                select(schema.payment_events.c.kafka_partition, schema.payment_events.c.kafka_offset)
                .where(schema.payment_events.c.reference == ref)
                .order_by(schema.payment_events.c.version).limit(1))).one()
            return int(row[0]), int(row[1])
    finally:
        await engine.dispose()


async def test_replay_by_offset_and_by_time_restores_lost_sink_rows(stack, settled):
    refs, rows = settled
    before = await snapshot(stack.settings, refs)
    assert len(before["payment_events"]) >= 6 and len(before["provider_callbacks"]) >= 2
    by_offset, by_time = refs[0], refs[1]
    partition, offset = await _first_offset(stack.settings, by_offset)
    await delete_rows(stack.settings, refs[:2])

    # by offset: one partition of the state topic from the payment's first change
    done = await trailpay(stack, "replay", "-t", "payments.state.v1", "--offset", f"{partition}:{offset}",
                          "--reference", by_offset, "--into", "sinks")
    assert "Replay into sinks" in done.stdout
    await trailpay(stack, "replay", "-t", "webhooks.raw.v1", "--from-offset", "0", "--reference",
                   by_offset, "--into", "sinks", "--sinks", "postgres")
    # by time: both topics from a little before the payment was created
    since = (rows[by_time]["created_at"] - timedelta(seconds=2)).isoformat()
    dry = await trailpay(stack, "replay", "-t", "payments.state.v1", "-t", "webhooks.raw.v1",
                         "--from-time", since, "--reference", by_time, "--into", "sinks", "--dry-run")
    assert "Dry run" in dry.stdout
    assert (await snapshot(stack.settings, [by_time]))["payments"] == []  # the dry run wrote nothing
    await trailpay(stack, "replay", "-t", "payments.state.v1", "-t", "webhooks.raw.v1",
                   "--from-time", since, "--reference", by_time, "--into", "sinks")

    assert await snapshot(stack.settings, refs) == before
    # a second pass changes nothing and says the records were there already
    again = await trailpay(stack, "replay", "-t", "payments.state.v1", "--from-time", since,
                           "--reference", by_time, "--into", "sinks")
    assert await snapshot(stack.settings, refs) == before
    total = next(line for line in again.stdout.splitlines() if line.strip("│ ").startswith("total"))
    cells = [c.strip() for c in total.strip("│ ").split("│")]
    assert cells[1] == cells[2] == cells[3] != "0", total  # read == written == already applied


async def test_replay_into_the_pipeline_changes_nothing_already_applied(stack, settled):
    refs, _rows = settled
    before = await snapshot(stack.settings, refs)
    chosen = [arg for ref in refs for arg in ("--reference", ref)]
    await trailpay(stack, "replay", *(arg for name in REPLAYED for arg in ("-t", name)),
                   "--from-time", "10m", *chosen, "--into", "pipeline")
    # Nothing changes: wait until the worker and the sink have committed every re-published record.
    await wait_caught_up(stack.settings, {stack.settings.worker_id: REPLAYED,
                                          topics.POSTGRES_SINK_GROUP: topics.POSTGRES_SINK_TOPICS},
                         120, "the replayed records through the worker and the sink")
    after = await snapshot(stack.settings, refs)
    assert after == before
    assert all(r["status"] not in OPEN for r in after["payments"])


async def test_replay_refuses_what_would_call_providers_again(stack):
    if stack.info is None:
        pytest.skip("needs the embedded stack")
    done = await trailpay(stack, "replay", "-t", "provider.commands.v1", "--from-offset", "0",
                          "--into", "pipeline", check=False)
    assert done.returncode == 2 and "call the providers again" in done.stderr
    done = await trailpay(stack, "replay", "-t", "payments.state.v1", "--into", "sinks", check=False)
    assert done.returncode == 2 and "say where to start" in done.stderr



async def _archived(settings, flt) -> tuple[list[tuple[str, int]], int]:
    """(reference, version) of what ``read_archive`` gives for payments.state.v1, and its count."""
    engine = create_async_engine(settings.sqlalchemy_async_url())
    try:
        got = [(json.loads(r.value)["reference"], json.loads(r.value)["version"])
               async for batch in rec.read_archive(engine, topics.PAYMENT_STATE, flt) for r in batch]
        return sorted(got), await rec.count_archive(engine, topics.PAYMENT_STATE, flt)
    finally:
        await engine.dispose()


async def test_archive_replay_into_the_pipeline_sends_each_payment_newest_change_alone(stack, settled):
    """The restore agent given a payment's whole history could hold an older version for a
    moment, and a provider event decided on it takes a version the archive has (the fault
    suite's broker restart: a new pending -> failed change). Into the pipeline, the archive
    gives each payment's newest change alone; into the sinks, the whole history."""
    refs, rows = settled
    assert rec.latest_for_pipeline(topics.PAYMENT_STATE) and not rec.latest_for_pipeline(topics.WEBHOOKS_RAW)
    newest, count = await _archived(stack.settings, rec.ArchiveFilter(references=tuple(refs), latest=True))
    assert newest == sorted((ref, rows[ref]["version"]) for ref in refs) and count == 3
    history, count = await _archived(stack.settings, rec.ArchiveFilter(references=tuple(refs)))
    assert count == len(history) == sum(rows[ref]["version"] for ref in refs) >= 6
