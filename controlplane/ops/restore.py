"""Bring the pipeline back from the PostgreSQL archive when the broker lost its history.

tansu keeps records in memory, and an Apache Kafka node whose log directory was lost (or a
rebuilt cluster) starts with empty topics. The stream worker's tables live in changelog
topics, so after such a start the state machine no longer knows the open payments: they
would stay ``pending`` for ever, while PostgreSQL still has every state change.

:func:`restore` is the path of ``trailpay replay --from-archive --into pipeline``: the
newest archived state change of each payment goes back on payments.state.v1 (the worker's
restore agent writes each payment back into its table, and the deadline index with it; why
the newest alone: :func:`~controlplane.ops.records.latest_for_pipeline`) and the archived raw
webhooks on webhooks.raw.v1 (the dedup agent learns their ids again; their provider
events then fall out as stale). Every replayed record carries its original event id, so
the sinks' keyed upserts make a second restore change nothing.

:func:`check` decides whether it is needed: the archive holds state changes and
payments.state.v1 never held a record on this broker (the sum of its partitions' end
offsets is 0). A broker that kept its log directory has end offsets past 0 even after
retention deleted old segments, so it is never replayed into.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import distinct, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from controlplane.ops import records as rec
from controlplane.ops.replay import Replayer, Summary, Target
from sinks.postgres import schema
from trailpay import lag, topics
from trailpay.domain.status import OPEN
from trailpay.kafka import bootstrap, make_producer
from trailpay.offsets import partition_bounds
from trailpay.settings import Settings


@dataclass(frozen=True)
class RestoreCheck:
    """What the archive and the broker hold of the payments' history."""

    archived_changes: int  # payment_events rows in PostgreSQL
    broker_changes: int  # records payments.state.v1 ever held on this broker (end offsets)

    @property
    def needed(self) -> bool:
        return self.archived_changes > 0 and self.broker_changes == 0

    def reason(self) -> str:
        if self.archived_changes == 0:
            return "the PostgreSQL archive holds no state change yet"
        if self.broker_changes:
            return (f"the broker kept its history ({self.broker_changes} records on "
                    f"{topics.PAYMENT_STATE})")
        return (f"the broker holds no state change while the archive holds "
                f"{self.archived_changes}")


@dataclass(frozen=True)
class RestoreReport:
    """What a restore re-published, and the payments it concerns."""

    payments: int
    open_payments: int
    state_changes: int
    webhooks: int
    seconds: float

    def line(self) -> str:
        return (f"Restored from the PostgreSQL archive: {self.payments} payments "
                f"({self.open_payments} open), {self.state_changes} state changes, "
                f"{self.webhooks} webhook ids, in {self.seconds:.1f} s.")


async def check(settings: Settings, engine: AsyncEngine) -> RestoreCheck:
    async with engine.connect() as conn:
        archived = (await conn.execute(select(func.count()).select_from(schema.payment_events))).scalar_one()
    ends = await partition_bounds(bootstrap(settings), topics.PAYMENT_STATE)
    return RestoreCheck(archived_changes=int(archived), broker_changes=sum(b.high for b in ends.values()))


async def _payment_counts(engine: AsyncEngine) -> tuple[int, int]:
    async with engine.connect() as conn:
        payments = (await conn.execute(
            select(func.count(distinct(schema.payment_events.c.reference))))).scalar_one()
        open_payments = (await conn.execute(
            select(func.count()).select_from(schema.payments)
            .where(schema.payments.c.status.in_(sorted(s.value for s in OPEN)))
            .where(schema.payments.c.version > 0))).scalar_one()
    return int(payments), int(open_payments)


async def restore(settings: Settings, engine: AsyncEngine, *, batch_size: int = 500,
                  advance: Callable[[str, int, int], None] | None = None) -> RestoreReport:
    """Re-publish the archive (each payment's newest state change, then the raw webhooks)
    onto the pipeline's topics.

    ``advance(topic, done, total)`` is called after each batch (for a progress display).
    """
    started = time.monotonic()
    producer = make_producer(settings)
    replayer = Replayer(Target.PIPELINE, engine=engine, producer=producer, run_id="restore")
    await producer.start()
    try:
        for name in rec.ARCHIVED:
            flt = rec.ArchiveFilter(latest=rec.latest_for_pipeline(name))
            total = await rec.count_archive(engine, name, flt)
            done = [0]

            def step(n: int, name: str = name, total: int = total, done: list[int] = done) -> None:
                done[0] += n
                if advance is not None:
                    advance(name, done[0], total)

            await replayer.feed_all(rec.read_archive(engine, name, flt, batch_size=batch_size), step)
        await producer.flush()
    finally:
        await producer.stop()
    payments, open_payments = await _payment_counts(engine)
    summary: Summary = replayer.summary
    return RestoreReport(payments=payments, open_payments=open_payments,
                         state_changes=summary.replayed[topics.PAYMENT_STATE],
                         webhooks=summary.replayed[topics.WEBHOOKS_RAW],
                         seconds=time.monotonic() - started)


async def wait_absorbed(settings: Settings, within_s: float = 120, interval: float = 0.5) -> bool:
    """Wait until the stream worker's group has committed every record of payments.state.v1
    (the restore agent has read the re-published state changes); False after ``within_s``."""
    groups: dict[str, tuple[str, ...]] = {settings.worker_id: (topics.PAYMENT_STATE,)}
    deadline = time.monotonic() + within_s
    while True:
        rows = await lag.measure(settings, groups)
        if rows and all(r.lag == 0 for r in rows):  # nothing committed yet: lag = end - low
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)
