"""One reconciliation run: read the window's payments, ask their providers, compare, fix.

Used by ``trailpay reconcile`` and by the schedule inside ``trailpay up``
(:mod:`controlplane.ops.reconcile_schedule`). PostgreSQL is read for what TrailPay says (the
sinks' ``payments`` rows); the providers are asked with bounded concurrency; ``fix`` puts
the provider's answers on provider.events.v1 and ``settle`` waits until the state machine's
changes reach PostgreSQL, so the caller can check again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from connectors.providers.lookup import ProviderAnswer, ProviderLookup
from controlplane.ops.reconcile import Mismatch, Recorded, compare, fix_event
from sinks.postgres import schema
from trailpay import topics
from trailpay.domain.errors import ConfigurationError, TrailPayError
from trailpay.domain.events import Provider
from trailpay.kafka import RecordProducer
from trailpay.settings import Settings

log = logging.getLogger(__name__)

COLUMNS = ("reference", "provider", "status", "version", "amount_minor", "currency",
           "provider_reference", "created_at", "updated_at", "snapshot")


@dataclass(frozen=True)
class Window:
    """Payments created in ``[since, until)``; those changed in the last ``min_age`` are
    left out (their callback may be on its way)."""

    since: datetime
    until: datetime
    provider: Provider | None = None
    min_age: timedelta = timedelta(seconds=60)
    references: tuple[str, ...] = ()
    limit: int = 100_000

    @classmethod
    def last(cls, period: timedelta, *, now: datetime | None = None, **kwargs: Any) -> Window:
        now = now or datetime.now(UTC)
        return cls(since=now - period, until=now, **kwargs)


@dataclass
class Result:
    """What a run found."""

    window: Window
    checked: Counter[str] = field(default_factory=Counter)
    mismatches: list[Mismatch] = field(default_factory=list)
    errors: list[tuple[Recorded, str]] = field(default_factory=list)
    sent: int = 0
    fixed: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.checked.values())

    def summary(self) -> str:
        by = ", ".join(f"{p} {n}" for p, n in sorted(self.checked.items())) or "none"
        text = (f"{self.total} payments checked ({by}); {len(self.mismatches)} mismatches; "
                f"{len(self.errors)} not checked (provider errors)")
        if self.sent or self.fixed:
            text += f"; {self.sent} provider events sent, {len(self.fixed)} payments now agree"
        return text

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.window.since.isoformat(), "until": self.window.until.isoformat(),
            "provider": self.window.provider.value if self.window.provider else None,
            "checked": dict(sorted(self.checked.items())), "total": self.total,
            "mismatches": [m.as_dict() for m in self.mismatches],
            "errors": [{"reference": r.reference, "provider": r.provider.value, "error": e}
                       for r, e in self.errors],
            "events_sent": self.sent, "fixed": self.fixed,
        }


def postgres_unreachable(settings: Settings, exc: Exception) -> ConfigurationError:
    return ConfigurationError(
        f"PostgreSQL is not reachable ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
        "Start the stack (`trailpay up`, then pass its --data-dir) or set TRAILPAY_DATABASE_URL "
        f"to a PostgreSQL the sinks write to (now {_where(settings)})")


def _where(settings: Settings) -> str:
    url = settings.database_url or "unset"
    return url.split("@", 1)[-1] if "@" in url else url


async def recorded(engine: AsyncEngine, window: Window, settings: Settings,
                   now: datetime | None = None) -> list[Recorded]:
    """The window's payments that reached the state machine (version >= 1), oldest first."""
    t = schema.payments
    now = now or datetime.now(UTC)
    stmt = (select(*(t.c[c] for c in COLUMNS))
            .where(t.c.created_at >= window.since, t.c.created_at < window.until, t.c.version >= 1,
                   t.c.updated_at <= now - window.min_age)
            .order_by(t.c.created_at, t.c.reference).limit(window.limit))
    if window.provider is not None:
        stmt = stmt.where(t.c.provider == window.provider.value)
    if window.references:
        stmt = stmt.where(t.c.reference.in_(window.references))
    try:
        async with engine.connect() as conn:
            rows = [dict(r._mapping) for r in await conn.execute(stmt)]
    except (OperationalError, DBAPIError, OSError) as exc:
        raise postgres_unreachable(settings, exc) from exc
    return [Recorded.from_row(r) for r in rows]


async def ask(lookup: ProviderLookup, payment: Recorded) -> ProviderAnswer | str:
    """The provider's answer, or what went wrong asking (never raises)."""
    try:
        return await lookup.ask(payment.provider, payment.reference, payment.provider_references)
    except TrailPayError as exc:
        return str(exc)[:300]
    except Exception as exc:
        log.warning("reconcile: asking %s about %s failed", payment.provider, payment.reference,
                    exc_info=True)
        return f"{type(exc).__name__}: {str(exc)[:300]}"


async def check(lookup: ProviderLookup, payments: Sequence[Recorded], window: Window, *,
                concurrency: int = 8, advance: Callable[[int], None] | None = None) -> Result:
    """Ask about every payment (at most ``concurrency`` at a time) and compare."""
    slots = asyncio.Semaphore(concurrency)
    result = Result(window)

    async def one(p: Recorded) -> tuple[Recorded, ProviderAnswer | str]:
        async with slots:
            answer = await ask(lookup, p)
        if advance is not None:
            advance(1)
        return p, answer

    for payment, answer in await asyncio.gather(*(one(p) for p in payments)):
        if isinstance(answer, str):
            result.errors.append((payment, answer))
            continue
        result.checked[payment.provider.value] += 1
        mismatch = compare(payment, answer)
        if mismatch is not None:
            result.mismatches.append(mismatch)
    return result


async def fix(settings: Settings, mismatches: Sequence[Mismatch]) -> int:
    """Send the fixable mismatches' provider answers onto provider.events.v1."""
    now = datetime.now(UTC)
    events = [e for e in (fix_event(m, now) for m in mismatches) if e is not None]
    if not events:
        return 0
    producer = RecordProducer(settings)
    try:
        await producer.start()
    except Exception as exc:
        raise ConfigurationError(
            f"Kafka is not reachable at {settings.kafka_bootstrap or 'the default bootstrap'} "
            f"({type(exc).__name__}); start the stack or set TRAILPAY_KAFKA_BOOTSTRAP") from exc
    try:
        for event in events:
            await producer.send(topics.PROVIDER_EVENTS, event.reference, event)
    finally:
        await producer.stop()
    return len(events)


async def settle(engine: AsyncEngine, mismatches: Sequence[Mismatch], timeout_s: float) -> None:
    """Wait (up to ``timeout_s``) until every fixable payment's row has a newer version."""
    versions = {m.recorded.reference: m.recorded.version for m in mismatches if m.fixable}
    if not versions:
        return
    t = schema.payments
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        async with engine.connect() as conn:
            rows = await conn.execute(select(t.c.reference, t.c.version)
                                      .where(t.c.reference.in_(list(versions))))
            moved = {r.reference for r in rows if r.version > versions[r.reference]}
        if len(moved) == len(versions) or loop.time() >= deadline:
            return
        await asyncio.sleep(0.5)


async def run(settings: Settings, engine: AsyncEngine, lookup: ProviderLookup, window: Window, *,
              concurrency: int = 8, fix_wait_s: float | None = None,
              progress: Callable[[int], Callable[[int], None]] | None = None) -> Result:
    """Check the window; with ``fix_wait_s`` set, fix, wait that long for the state machine
    and check the mismatched payments again (the result then lists what remains)."""
    payments = await recorded(engine, window, settings)
    advance = progress(len(payments)) if progress else None
    result = await check(lookup, payments, window, concurrency=concurrency, advance=advance)
    if fix_wait_s is None or not result.mismatches:
        return result
    before = result.mismatches
    result.sent = await fix(settings, before)
    if result.sent:
        await settle(engine, before, fix_wait_s)
    again_window = Window(window.since, window.until, window.provider, timedelta(0),
                          tuple(m.recorded.reference for m in before), window.limit)
    again = await check(lookup, await recorded(engine, again_window, settings), again_window,
                        concurrency=concurrency)
    remaining = {m.recorded.reference for m in again.mismatches}
    result.fixed = [m.recorded.reference for m in before if m.recorded.reference not in remaining]
    result.mismatches = again.mismatches
    result.errors += again.errors
    return result
