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

from clickhouse_connect.driver import exceptions as ch_errors

from sinks import health
from sinks.clickhouse import rows, schema
from sinks.contract import Sink, SinkBackpressure, SinkRecord
from sinks.representable import Alteration, clean_text, record_alterations
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
from trailpay.lag import record_restart
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
        new: dict[str, list[rows.Row]]
        if isinstance(decoded, PaymentStateChanged):
            new = {"payments": [rows.payment(decoded)],
                   "payment_changes": [rows.payment_change(decoded)],
                   "refunds": rows.refunds(decoded)}
        elif isinstance(decoded, ProviderCommand):
            new = {"provider_commands": [rows.provider_command(decoded)]}
        elif isinstance(decoded, ProviderEvent):
            new = {"provider_events": [rows.provider_event(decoded)]}
        elif isinstance(decoded, RawWebhook):
            new = {"webhooks": [rows.webhook(decoded, record.timestamp_ms)]}
        elif isinstance(decoded, BookingEvent):
            new = {"bookings": [rows.booking(decoded)]}
        else:
            raise InvalidRecord(f"{record.topic} is not a topic the ClickHouse sink keeps")
        for table, found in new.items():
            self._rows[table].extend(storable_row(self.name, table, row) for row in found)
        self._records += 1

    def discard(self) -> None:
        self._rows = {name: [] for name in schema.TABLES}
        self._records = 0

    async def reachable(self) -> bool:
        try:
            await self.ch.acall(lambda client: client.command("SELECT 1"))
        except Exception:  # noqa: BLE001 - whatever the reason, it does not answer
            return False
        return True

    async def flush(self) -> None:
        for table, batch in self._rows.items():
            if not batch:
                continue
            columns = schema.COLUMNS[table]
            try:
                await self.ch.acall(_inserter(table, batch, columns))
            except REFUSED as exc:
                # A value or row the server refuses: that record, not the server, is at fault.
                raise PermanentError(f"ClickHouse refused a {table} row: {_short(exc)}") from exc
            except Exception as exc:
                # Connection lost, server busy, or something unknown: backpressure, for as
                # long as the server fails its probe (the runner asks :meth:`reachable`;
                # while it answers, a batch that keeps failing is searched for its bad row).
                raise SinkBackpressure(f"ClickHouse insert into {table} failed: {_short(exc)}") from exc
            # Written tables are cleared one by one, so a retry does not write them twice
            # (it would be harmless, but it costs an insert).
            self._rows[table] = []
        self.discard()


#: Errors that say the rows are at fault: values the client cannot encode, and the
#: server's own data and query errors (clickhouse-connect's DB-API classes).
REFUSED: tuple[type[BaseException], ...] = (
    TypeError, ValueError, OverflowError, UnicodeError, ch_errors.DataError,
    ch_errors.ProgrammingError, ch_errors.IntegrityError, ch_errors.NotSupportedError,
)


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def storable_row(sink: str, table: str, row: rows.Row) -> rows.Row:
    """``row`` with lone surrogates replaced (clickhouse-connect cannot encode them); NUL
    and any length are fine in a ClickHouse ``String``."""
    if not any(isinstance(v, str) and not v.isascii() for v in row):
        return row
    changed: list[Alteration] = []
    out = []
    for name, value in zip(schema.COLUMNS[table], row, strict=True):
        if isinstance(value, str) and not value.isascii():
            value, hows = clean_text(value, nul=False)
            changed += [Alteration(name, how) for how in hows]
        out.append(value)
    record_alterations(sink, table, row[0], changed)
    return tuple(out)


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
                record_restart(settings.data_path, "sink-clickhouse")  # seen by /readyz
                with contextlib.suppress(Exception):
                    await runner.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            delay = min(delay * 2, 30.0)

    task = asyncio.create_task(keep_running(), name="sink-clickhouse")
    health.start(settings, "sink-clickhouse")

    async def stop() -> None:
        health.stop("sink-clickhouse")
        stopping.set()
        runner: SinkRunner | None = state["runner"]
        if runner is not None:
            runner.stop()
        try:
            await asyncio.wait_for(task, 30)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()

    return stop
