"""The PostgreSQL sink: current state for the API, and the archive ops replay from.

Consumes ``payments.state.v1`` (payments, payment_events, payment_intents, refunds,
customers), ``webhooks.raw.v1`` (provider_callbacks), ``bookings.events.v1`` (bookings)
and ``deadletters.v1`` (dead_letters). Every write is idempotent, so redelivery, replay
and a crash between write and commit change nothing:

- ``payments``, ``payment_intents``, ``refunds``: upsert ``WHERE version < excluded.version``
  (the ingress's version-0 placeholder is replaced by the first state change);
- ``bookings``: upsert when (revision, event time, event id) is newer;
- ``payment_events``, ``provider_callbacks``, ``dead_letters``, ``customers``: insert
  ``ON CONFLICT DO NOTHING`` (a dead letter's re-drive columns survive its redelivery).

A batch is one transaction. Rows of one key are reduced to the newest within a batch
(PostgreSQL refuses to upsert one row twice in a statement; the newest is what the
sequence would have left anyway).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Table, tuple_
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import Insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sinks.contract import Sink, SinkBackpressure, SinkRecord
from sinks.postgres import rows, schema
from sinks.postgres.bulk import BulkWrite
from sinks.postgres.storable import storable
from sinks.runner import RunnerConfig, SinkRunner, run_until_signalled
from trailpay import topics
from trailpay.domain.errors import InvalidRecord, PermanentError
from trailpay.domain.events import BookingEvent, DeadLetter, PaymentStateChanged, RawWebhook
from trailpay.settings import Settings

log = logging.getLogger(__name__)

CONSUMED = topics.POSTGRES_SINK_TOPICS


def _upsert_newer(table: Table, key: str, *, keep: tuple[str, ...] = ()) -> Insert:
    """INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE table.version < excluded.version."""
    stmt = pg_insert(table)
    skip = {key, *keep}
    return stmt.on_conflict_do_update(
        index_elements=[table.c[key]],
        set_={c.name: stmt.excluded[c.name] for c in table.c if c.name not in skip},
        where=table.c.version < stmt.excluded.version,
    )


def _insert_new(table: Table) -> Insert:
    return pg_insert(table).on_conflict_do_nothing()


def _upsert_booking() -> Insert:
    t = schema.bookings
    stmt = pg_insert(t)
    ex = stmt.excluded
    newer = tuple_(t.c.revision, t.c.last_event_at, t.c.kind_rank, t.c.last_event_id) < tuple_(
        ex.revision, ex.last_event_at, ex.kind_rank, ex.last_event_id
    )
    columns = {c.name: stmt.excluded[c.name] for c in t.c if c.name not in {"booking_id", "created_at"}}
    return stmt.on_conflict_do_update(index_elements=[t.c.booking_id], set_=columns, where=newer)


#: One set-based statement per table (see :mod:`sinks.postgres.bulk`), in write order.
WRITES: dict[str, BulkWrite] = {
    "payments": BulkWrite.of(_upsert_newer(schema.payments, "reference")),
    "payment_events": BulkWrite.of(_insert_new(schema.payment_events)),
    "payment_intents": BulkWrite.of(_upsert_newer(schema.payment_intents, "payment_intent_id",
                                                  keep=("created_at",))),
    "refunds": BulkWrite.of(_upsert_newer(schema.refunds, "refund_id", keep=("requested_at",))),
    "customers": BulkWrite.of(_insert_new(schema.customers)),
    "provider_callbacks": BulkWrite.of(_insert_new(schema.provider_callbacks)),
    "bookings": BulkWrite.of(_upsert_booking()),
    "dead_letters": BulkWrite.of(_insert_new(schema.dead_letters)),
}


class _Buffer:
    """Rows waiting for the next write, reduced to the newest per key."""

    def __init__(self) -> None:
        #: Newest state change per payment; turned into rows only when written.
        self.changes: dict[str, PaymentStateChanged] = {}
        self.payments: dict[str, rows.Row] = {}
        self.events: dict[str, rows.Row] = {}
        self.intents: dict[str, rows.Row] = {}
        self.refunds: dict[str, rows.Row] = {}
        self.customers: dict[str, rows.Row] = {}
        self.callbacks: dict[str, rows.Row] = {}
        self.bookings: dict[str, rows.Row] = {}
        self.dead_letters: dict[str, rows.Row] = {}
        self.records = 0

    @staticmethod
    def _newest(target: dict[str, rows.Row], key: str, row: rows.Row) -> None:
        held = target.get(key)
        if held is None or held["version"] < row["version"]:
            target[key] = row

    def add_change(self, change: PaymentStateChanged, partition: int | None, offset: int | None) -> None:
        self.events.setdefault(change.event_id, rows.event_row(change, partition, offset))
        held = self.changes.get(change.reference)
        if held is None or held.version < change.version:
            self.changes[change.reference] = change

    def _expand_changes(self) -> None:
        """Rows of the newest change of each payment (the older ones would be overwritten)."""
        for change in self.changes.values():
            self._newest(self.payments, change.reference, rows.payment_row(change))
            intent = rows.intent_row(change)
            if intent is not None:
                self._newest(self.intents, intent["payment_intent_id"], intent)
            for refund in rows.refund_rows(change):
                self._newest(self.refunds, refund["refund_id"], refund)
            customer = rows.customer_row(change)
            if customer is not None:
                self.customers.setdefault(customer["user_id"], customer)
        self.changes.clear()

    def add_booking(self, event: BookingEvent) -> None:
        row = rows.booking_row(event)
        held = self.bookings.get(event.booking_id)
        if held is not None:
            row["created_at"] = min(row["created_at"], held["created_at"])
        if held is None or rows.booking_order(held) < rows.booking_order(row):
            self.bookings[event.booking_id] = row

    def statements(self) -> list[tuple[BulkWrite, list[rows.Row]]]:
        self._expand_changes()
        plan: list[tuple[BulkWrite, Mapping[str, rows.Row]]] = [
            (WRITES["payments"], self.payments),
            (WRITES["payment_events"], self.events),
            (WRITES["payment_intents"], self.intents),
            (WRITES["refunds"], self.refunds),
            (WRITES["customers"], self.customers),
            (WRITES["provider_callbacks"], self.callbacks),
            (WRITES["bookings"], self.bookings),
            (WRITES["dead_letters"], self.dead_letters),
        ]
        return [(write, list(found.values())) for write, found in plan if found]


class PostgresSink(Sink):
    """Writes TrailPay's operational tables; see the module docstring."""

    name = "sink-postgres"
    topics = CONSUMED

    def __init__(
        self,
        settings: Settings,
        *,
        topic_map: Mapping[str, str] | None = None,
        engine: AsyncEngine | None = None,
    ) -> None:
        """``topic_map`` maps actual topic names to the logical ones (tests, replays)."""
        self.settings = settings
        self.topic_map = dict(topic_map or {t: t for t in CONSUMED})
        self.topics = tuple(self.topic_map)
        self._engine = engine
        self._own_engine = engine is None
        self._buffer = _Buffer()

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            self._engine = create_async_engine(
                self.settings.sqlalchemy_async_url(),
                pool_size=2,
                max_overflow=2,
                pool_pre_ping=True,
                connect_args={"connect_timeout": 5},
            )
        return self._engine

    async def setup(self) -> None:
        _ = self.engine

    async def reachable(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.exec_driver_sql("select 1")
        except (sa_exc.SQLAlchemyError, OSError, TimeoutError):
            return False
        return True

    async def close(self) -> None:
        if self._engine is not None and self._own_engine:
            await self._engine.dispose()
            self._engine = None

    # ------------------------------------------------------------------ buffering
    @property
    def pending(self) -> int:
        return self._buffer.records

    def add(self, record: SinkRecord) -> None:
        logical = self.topic_map.get(record.topic, record.topic)
        decoded = record.contract_value(logical)
        buf = self._buffer
        if isinstance(decoded, PaymentStateChanged):
            if decoded.payment.reference != decoded.reference or decoded.payment.version != decoded.version:
                raise InvalidRecord(
                    f"state change {decoded.event_id} carries a snapshot of "
                    f"{decoded.payment.reference}@{decoded.payment.version}"
                )
            buf.add_change(decoded, record.partition, record.offset)
        elif isinstance(decoded, RawWebhook):
            buf.callbacks.setdefault(decoded.event_id,
                                     rows.callback_row(decoded, record.partition, record.offset))
        elif isinstance(decoded, BookingEvent):
            buf.add_booking(decoded)
        elif isinstance(decoded, DeadLetter):
            buf.dead_letters.setdefault(decoded.event_id, rows.dead_letter_row(decoded))
        else:  # pragma: no cover - CONSUMED lists only the topics above
            raise InvalidRecord(f"{logical} is not a topic the PostgreSQL sink keeps")
        buf.records += 1

    def logical_topic(self, topic: str) -> str:
        return self.topic_map.get(topic, topic)

    def add_dead_letter(self, letter: DeadLetter) -> bool:
        self._buffer.dead_letters.setdefault(letter.event_id, rows.dead_letter_row(letter))
        self._buffer.records += 1
        return True

    def discard(self) -> None:
        self._buffer = _Buffer()

    # ------------------------------------------------------------------ writing
    async def flush(self) -> None:
        plan = self._buffer.statements()
        if not plan:
            self._buffer = _Buffer()
            return
        try:
            async with self.engine.begin() as conn:
                for write, found in plan:
                    sql, params = write.params(storable(write.table, found, self.name,
                                                        self.settings.sink_json_max_depth))
                    await conn.exec_driver_sql(sql, params)
        except (sa_exc.DataError, sa_exc.IntegrityError) as exc:
            raise PermanentError(f"PostgreSQL refused a row: {_short(exc)}") from exc
        except (TypeError, ValueError, OverflowError) as exc:
            # Raised building the batch document (orjson): an integer beyond 64 bits, say.
            raise PermanentError(f"a row PostgreSQL cannot take: {_short(exc)}") from exc
        except (sa_exc.SQLAlchemyError, OSError, TimeoutError) as exc:
            # Connection lost, server starting or shutting down, schema not migrated yet:
            # none of these is the record's fault. The runner retries the same batch.
            raise SinkBackpressure(f"PostgreSQL unavailable: {_short(exc)}", retry_after=None) from exc
        self._buffer = _Buffer()


def _short(exc: BaseException) -> str:
    orig: Any = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc)
    return text.splitlines()[0][:300] if text else type(exc).__name__


async def serve(
    settings: Settings,
    *,
    group_id: str | None = None,
    topic_prefix: str = "",
    batch_size: int = 500,
    max_wait_s: float = 0.1,
) -> None:
    """Run the PostgreSQL sink until SIGTERM/SIGINT (``trailpay sink-postgres``).

    ``topic_prefix`` reads ``<prefix><topic>`` instead of each topic (and dead-letters to
    ``<prefix>deadletters.v1``): for tests and replays into a separate set of topics.
    """
    topic_map = {topic_prefix + t: t for t in CONSUMED}
    sink = PostgresSink(settings, topic_map=topic_map)
    runner = SinkRunner(
        settings,
        sink,
        group_id=group_id or topics.POSTGRES_SINK_GROUP,
        config=RunnerConfig(batch_size=batch_size, max_wait_s=max_wait_s),
        dead_letter_topic=topic_prefix + topics.DEAD_LETTERS,
    )
    await run_until_signalled(runner)
