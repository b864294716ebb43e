"""The ClickHouse sink: facts for the dashboards, written through the analytics process's
one ClickHouse connection (chDB allows one process per path).

chDB costs about 8 ms per insert whatever its size, so the runner batches up to
``batch_size`` (default 5,000) records and flushes at the latest ``max_wait_s`` (1 s) after
the oldest one arrived. A flush is one insert per table that has rows. It is not atomic
across tables, and need not be: a crash between two inserts redelivers the batch, and the
``ReplacingMergeTree`` identities (see :mod:`sinks.clickhouse.schema`) fold the repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sinks.clickhouse import rows, schema
from sinks.contract import Sink, SinkBackpressure, SinkRecord
from sinks.runner import RunnerConfig, SinkRunner
from trailpay import topics
from trailpay.clickhouse import ClickHouse
from trailpay.domain.errors import InvalidRecord, PermanentError
from trailpay.domain.events import (
    BookingEvent,
    PaymentStateChanged,
    ProviderCommand,
    ProviderEvent,
    RawWebhook,
)
from trailpay.settings import Settings

log = logging.getLogger(__name__)

CONSUMED = topics.CLICKHOUSE_SINK_TOPICS
GROUP = topics.CLICKHOUSE_SINK_GROUP


def ensure_schema(client: Any) -> None:
    """Create the database, tables and views (idempotent); runs on the ClickHouse thread."""
    for statement in schema.statements():
        client.command(statement)


class ClickHouseSink(Sink):
    name = "sink-clickhouse"
    topics = CONSUMED

    def __init__(self, ch: ClickHouse, *, topic_map: Mapping[str, str] | None = None) -> None:
        self.ch = ch
        self.topic_map = dict(topic_map or {t: t for t in CONSUMED})
        self.topics = tuple(self.topic_map)
        self._rows: dict[str, list[rows.Row]] = {name: [] for name in schema.TABLES}
        self._records = 0

    async def setup(self) -> None:
        await self.ch.acall(ensure_schema)

    def logical_topic(self, topic: str) -> str:
        return self.topic_map.get(topic, topic)

    @property
    def pending(self) -> int:
        return self._records

    def add(self, record: SinkRecord) -> None:
        decoded = record.contract_value(self.logical_topic(record.topic))
        out = self._rows
        if isinstance(decoded, PaymentStateChanged):
            out["payments"].append(rows.payment(decoded))
            out["payment_changes"].append(rows.payment_change(decoded))
            out["refunds"].extend(rows.refunds(decoded))
        elif isinstance(decoded, ProviderCommand):
            out["provider_commands"].append(rows.provider_command(decoded))
        elif isinstance(decoded, ProviderEvent):
            out["provider_events"].append(rows.provider_event(decoded))
        elif isinstance(decoded, RawWebhook):
            out["webhooks"].append(rows.webhook(decoded, record.timestamp_ms))
        elif isinstance(decoded, BookingEvent):
            out["bookings"].append(rows.booking(decoded))
        else:
            raise InvalidRecord(f"{record.topic} is not a topic the ClickHouse sink keeps")
        self._records += 1

    def discard(self) -> None:
        self._rows = {name: [] for name in schema.TABLES}
        self._records = 0

    async def flush(self) -> None:
        for table, batch in self._rows.items():
            if not batch:
                continue
            columns = schema.COLUMNS[table]
            try:
                await self.ch.acall(_inserter(table, batch, columns))
            except (TypeError, ValueError, OverflowError) as exc:
                # A value the column cannot take: that record, not the server, is at fault.
                raise PermanentError(f"ClickHouse refused a {table} row: {exc}") from exc
            except Exception as exc:
                raise SinkBackpressure(f"ClickHouse insert into {table} failed: {exc}") from exc
            # Written tables are cleared one by one, so a retry does not write them twice
            # (it would be harmless, but it costs an insert).
            self._rows[table] = []
        self.discard()


def _inserter(table: str, batch: list[rows.Row], columns: tuple[str, ...]) -> Callable[[Any], Any]:
    def insert(client: Any) -> Any:
        return client.insert(table, batch, column_names=list(columns), database=schema.DATABASE)

    return insert


async def attach(settings: Settings, ch: ClickHouse) -> Callable[[], Awaitable[None]]:
    """The analytics-process attachment: create the schema, then run the sink in a task.

    Returns the coroutine function that stops it (writing what is buffered first).
    """
    await ch.acall(ensure_schema)
    if not settings.kafka_bootstrap:
        log.warning("no Kafka bootstrap configured; the ClickHouse sink is not running")

        async def nothing() -> None:
            return None

        return nothing
    state: dict[str, Any] = {"runner": None}
    stopping = asyncio.Event()

    async def keep_running() -> None:
        delay = 1.0
        while not stopping.is_set():
            runner = SinkRunner(settings, ClickHouseSink(ch), group_id=GROUP,
                                config=RunnerConfig(batch_size=5000, max_wait_s=1.0))
            state["runner"] = runner
            try:
                await runner.run()
                return
            except Exception:
                log.exception("the ClickHouse sink stopped; restarting in %.0fs", delay)
                with contextlib.suppress(Exception):
                    await runner.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            delay = min(delay * 2, 30.0)

    task = asyncio.create_task(keep_running(), name="sink-clickhouse")

    async def stop() -> None:
        stopping.set()
        runner: SinkRunner | None = state["runner"]
        if runner is not None:
            runner.stop()
        try:
            await asyncio.wait_for(task, 30)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()

    return stop
