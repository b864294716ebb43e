"""The headline tiles: today's and this month's revenue per currency, the success rate with
its counts, open and stuck payments, late payments, dead letters, provider latency (p50/p95
from request to settled, with the count it is over) and the share settled by the sweep.

Consumer lag has no tile: measuring it means a Kafka connection and a fetch that waits up to
3 s for high watermarks (:func:`trailpay.lag.measure`), too slow for a page request, and the
analytics service keeps no lag measurement of its own; `trailpay lag` and the
``trailpay_consumer_lag_records`` gauge (and its alert) show it.

"Today" and "this month" are the UTC day and month of the range's end (``until``, the page's
"now"), so a dashboard pinned to a past range reads that day's figures. Revenue is per
currency, never summed across currencies; each currency comes with its ISO-4217 exponent so
the page formats minor units exactly (:data:`trailpay.domain.money.CURRENCY_EXPONENTS`).
Open and stuck are the current state, as of the read model, not of the range.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from dashboards.queries import SETTLEMENTS, UNSUCCESSFUL, parameters
from sinks.clickhouse.schema import DATABASE as D
from sinks.postgres import schema as pg
from trailpay.clickhouse import ClickHouse
from trailpay.domain.money import CURRENCY_EXPONENTS

OPEN = "('created', 'pending', 'processing')"
#: An open payment with no change for this long counts as stuck.
STUCK_AFTER = timedelta(minutes=30)

#: Successful settlements since the start of the month, per currency (today's a subset).
REVENUE = f"""
SELECT currency,
       countIf(settled_at >= {{today:DateTime64(3, 'UTC')}}) AS today_payments,
       sumIf(amount_minor, settled_at >= {{today:DateTime64(3, 'UTC')}}) AS today_minor,
       count() AS month_payments, sum(amount_minor) AS month_minor
FROM ({SETTLEMENTS})
WHERE outcome = 'succeeded'
GROUP BY currency ORDER BY month_minor DESC, currency"""

#: Settled in the range (of one currency, if chosen): how many, how many succeeded.
SUCCESS = f"""
SELECT count() AS settled, countIf(outcome = 'succeeded') AS succeeded
FROM ({SETTLEMENTS})
WHERE {{currency:Nullable(String)}} IS NULL OR currency = {{currency:Nullable(String)}}"""

_ONE_CURRENCY = "{currency:Nullable(String)} IS NULL OR currency = {currency:Nullable(String)}"

#: Request to settled per provider, in milliseconds, over the payments settled in the range.
LATENCY = f"""
SELECT provider, count() AS payments,
       quantileExact(0.5)(since_created_ms) AS p50_ms,
       quantileExact(0.95)(since_created_ms) AS p95_ms
FROM ({SETTLEMENTS})
WHERE {_ONE_CURRENCY}
GROUP BY provider ORDER BY provider"""

#: Payments settled in the range, and how many of them the sweeper settled.
SWEEP = f"""
SELECT count() AS settled, countIf(settled_by = 'sweep') AS by_sweep
FROM ({SETTLEMENTS})
WHERE {_ONE_CURRENCY}"""

#: Payments created in the range per currency, busiest first (the currency picker).
CURRENCIES = f"""
SELECT currency, count() AS payments
FROM {D}.payments FINAL
WHERE created_at >= {{since:DateTime64(3, 'UTC')}} AND created_at < {{until:DateTime64(3, 'UTC')}}
GROUP BY currency ORDER BY payments DESC, currency"""

#: Open payments now, and those of them without a change since ``stuck_before``; money that
#: arrived after a payment had ended unpaid, in the range.
STATE = f"""
SELECT
    (SELECT count() FROM {D}.payments FINAL WHERE status IN {OPEN}) AS open,
    (SELECT count() FROM {D}.payments FINAL
     WHERE status IN {OPEN} AND updated_at < {{stuck_before:DateTime64(3, 'UTC')}}) AS stuck,
    (SELECT uniqExact(reference) FROM {D}.payment_changes FINAL
     WHERE from_status IN {UNSUCCESSFUL} AND to_status = 'succeeded'
       AND at >= {{since:DateTime64(3, 'UTC')}} AND at < {{until:DateTime64(3, 'UTC')}}) AS late"""


def day_and_month(until: datetime) -> tuple[datetime, datetime]:
    """The start of the UTC day and month holding the last instant before ``until``."""
    last = until - timedelta(milliseconds=1)
    day = last.replace(hour=0, minute=0, second=0, microsecond=0)
    return day, day.replace(day=1)


def exponents(currencies: list[str]) -> dict[str, int]:
    """ISO-4217 exponents of the currencies we know (an unknown one shows in minor units)."""
    return {c: CURRENCY_EXPONENTS[c] for c in currencies if c in CURRENCY_EXPONENTS}


async def open_dead_letters(engine: AsyncEngine | None) -> int | None:
    if engine is None:
        return None
    dl = pg.dead_letters
    query = select(func.count()).select_from(dl).where(dl.c.redriven_at.is_(None),
                                                      dl.c.purged_at.is_(None))
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def headlines(ch: ClickHouse, engine: AsyncEngine | None, since: datetime, until: datetime,
                    currency: str | None) -> dict[str, Any]:
    base = parameters(since, until, currency)
    today, month = day_and_month(until)
    _, revenue = await ch.aquery(REVENUE, {**base, "since": month, "today": today})
    _, ((settled, succeeded),) = await ch.aquery(SUCCESS, base)
    _, currencies = await ch.aquery(CURRENCIES, base)
    _, ((open_now, stuck, late),) = await ch.aquery(
        STATE, {**base, "stuck_before": until - STUCK_AFTER})
    _, latency = await ch.aquery(LATENCY, base)
    _, ((swept_of, swept),) = await ch.aquery(SWEEP, base)
    names = sorted({r[0] for r in revenue} | {r[0] for r in currencies})
    return {
        "today": today.date().isoformat(),
        "month": month.date().isoformat()[:7],
        "revenue": [{"currency": r[0], "today_payments": r[1], "today_minor": r[2],
                     "month_payments": r[3], "month_minor": r[4]} for r in revenue],
        "success": {"settled": settled, "succeeded": succeeded,
                    "rate": None if not settled else round(succeeded / settled, 4),
                    "currency": base["currency"]},
        "open_payments": open_now,
        "stuck_payments": stuck,
        "stuck_after_minutes": int(STUCK_AFTER.total_seconds() // 60),
        "late_payments": late,
        "dead_letters": await open_dead_letters(engine),
        "latency": [{"provider": p, "payments": n, "p50_ms": int(p50), "p95_ms": int(p95)}
                    for p, n, p50, p95 in latency],
        "sweep": {"settled": swept_of, "by_sweep": swept,
                  "share": None if not swept_of else round(swept / swept_of, 4)},
        "currencies": [{"currency": c, "payments": n} for c, n in currencies],
        "exponents": exponents(names),
    }
