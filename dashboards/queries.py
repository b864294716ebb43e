"""The ClickHouse SQL behind every chart: one query per metric.

Every query takes a time range (``since`` inclusive, ``until`` exclusive, UTC) and, where
money is summed, a currency (``None`` = every currency, grouped by it). Every query reads
the fact tables with ``FINAL`` so duplicated or replayed rows never change a figure
(see sinks/clickhouse/schema.py). Amounts are integer minor units; averages are rounded
down to whole minor units in SQL so that no float reaches a money column.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from sinks.clickhouse.schema import DATABASE as D

Chart = Literal["bar", "line", "table", "pie"]

SETTLED = "('succeeded', 'failed', 'cancelled', 'expired')"
UNSUCCESSFUL = "('failed', 'cancelled', 'expired')"
IN_RANGE = "{col} >= {{since:DateTime64(3, 'UTC')}} AND {col} < {{until:DateTime64(3, 'UTC')}}"
CURRENCY = "({{currency:Nullable(String)}} IS NULL OR {col} = {{currency:Nullable(String)}})"


def _range(col: str) -> str:
    return IN_RANGE.format(col=col)


def _currency(col: str = "currency") -> str:
    return CURRENCY.format(col=col)


@dataclass(frozen=True)
class Metric:
    """One chart: its SQL, how to draw it, and which columns make the axes."""

    name: str
    title: str
    sql: str
    chart: Chart = "bar"
    x: str | None = None
    y: tuple[str, ...] = ()
    series: str | None = None
    money: bool = False
    group: str = "payments"
    description: str = ""
    extra_params: dict[str, Any] = field(default_factory=dict)
    #: Drawn per day, ISO week or month at the reader's choice (:func:`bucketed`).
    buckets: bool = False


#: First settled status per payment, inside the range (a payment settles once).
_SETTLEMENTS = f"""
SELECT reference, argMin(to_status, version) AS outcome, min(at) AS settled_at,
       any(provider) AS provider, any(method) AS method, any(currency) AS currency,
       any(amount_minor) AS amount_minor, any(provider_code) AS provider_code,
       any(provider_message) AS provider_message, any(settled_by) AS settled_by,
       any(since_created_ms) AS since_created_ms
FROM {D}.payment_changes FINAL
WHERE to_status IN {SETTLED}
GROUP BY reference
HAVING {_range('settled_at')}
"""

#: Public name of the settlements subquery (the headline tiles reuse it).
SETTLEMENTS = _SETTLEMENTS

#: The anomaly baseline needs the day before the range too.
_TRAILING_DAY = (
    "settled_at >= {since:DateTime64(3, 'UTC')} - INTERVAL 1 DAY"
    " AND settled_at < {until:DateTime64(3, 'UTC')}"
)

METRICS: tuple[Metric, ...] = (
    Metric(
        "success_rates", "Success and failure rates by provider",
        f"""
SELECT provider,
       count() AS settled,
       countIf(outcome = 'succeeded') AS succeeded,
       countIf(outcome = 'failed') AS failed,
       countIf(outcome = 'cancelled') AS cancelled,
       countIf(outcome = 'expired') AS expired,
       round(countIf(outcome = 'succeeded') / count(), 4) AS success_rate,
       round(1 - countIf(outcome = 'succeeded') / count(), 4) AS failure_rate
FROM ({_SETTLEMENTS})
GROUP BY provider ORDER BY provider""",
        x="provider", y=("succeeded", "failed", "cancelled", "expired"), group="failures",
        description="Payments that settled in the range, by their first settled status."),
    Metric(
        "failure_reasons", "Failure reasons (provider codes) by provider",
        f"""
SELECT provider, outcome, coalesce(provider_code, '') AS provider_code,
       any(coalesce(provider_message, '')) AS provider_message, count() AS payments
FROM ({_SETTLEMENTS})
WHERE outcome IN {UNSUCCESSFUL}
GROUP BY provider, outcome, provider_code
ORDER BY payments DESC, provider, provider_code""",
        chart="table", x="provider_code", y=("payments",), series="provider", group="failures"),
    Metric(
        "average_amount", "Average successful transaction amount",
        f"""
SELECT currency, provider, count() AS payments, sum(amount_minor) AS total_minor,
       intDiv(sum(amount_minor), count()) AS average_minor
FROM ({_SETTLEMENTS})
WHERE outcome = 'succeeded' AND {_currency()}
GROUP BY currency, provider ORDER BY currency, provider""",
        x="provider", y=("average_minor",), series="currency", money=True, group="revenue"),
    Metric(
        "payment_methods", "Payment-method preferences",
        f"""
SELECT method, provider, count() AS payments,
       countIf(status IN ('succeeded', 'partially_refunded', 'refunded')) AS paid
FROM {D}.payments FINAL
WHERE {_range('created_at')}
GROUP BY method, provider ORDER BY payments DESC, method, provider""",
        chart="pie", x="method", y=("payments",), group="payments"),
    Metric(
        "countries", "Payments by country",
        f"""
SELECT coalesce(country, '??') AS country, currency, count() AS payments,
       countIf(status IN ('succeeded', 'partially_refunded', 'refunded')) AS paid,
       sumIf(amount_minor, status IN ('succeeded', 'partially_refunded', 'refunded')) AS gross_minor
FROM {D}.payments FINAL
WHERE {_range('created_at')} AND {_currency()}
GROUP BY country, currency ORDER BY payments DESC, country""",
        x="country", y=("payments", "paid"), money=True, group="payments"),
    Metric(
        "mobile_regions", "Mobile money by country and operator (phone prefix)",
        f"""
SELECT multiIf(startsWith(phone_prefix, '254'), 'KE', startsWith(phone_prefix, '255'), 'TZ',
               startsWith(phone_prefix, '256'), 'UG', startsWith(phone_prefix, '250'), 'RW',
               startsWith(phone_prefix, '260'), 'ZM', startsWith(phone_prefix, '265'), 'MW',
               'other') AS country,
       phone_prefix AS prefix, provider, count() AS payments,
       countIf(status IN ('succeeded', 'partially_refunded', 'refunded')) AS paid
FROM {D}.payments FINAL
WHERE {_range('created_at')} AND method = 'mobile_money' AND phone_prefix IS NOT NULL
GROUP BY country, prefix, provider ORDER BY payments DESC, prefix""",
        x="prefix", y=("payments", "paid"), series="country", group="payments"),
    Metric(
        "daily_revenue", "Daily revenue (gross, refunds, net)",
        f"""
SELECT day, currency, sum(g) AS gross_minor, sum(r) AS refunded_minor, sum(g) - sum(r) AS net_minor
FROM (
    SELECT toDate(settled_at) AS day, currency, amount_minor AS g, 0 AS r
    FROM ({_SETTLEMENTS}) WHERE outcome = 'succeeded'
    UNION ALL
    SELECT toDate(updated_at) AS day, currency, 0, amount_minor
    FROM {D}.refunds FINAL WHERE status = 'succeeded' AND {_range('updated_at')}
)
WHERE {_currency()}
GROUP BY day, currency ORDER BY day, currency""",
        chart="line", x="day", y=("gross_minor", "net_minor"), series="currency", money=True,
        group="revenue", buckets=True),
    Metric(
        "monthly_revenue", "Monthly revenue (gross, refunds, net)",
        f"""
SELECT toStartOfMonth(settled_at) AS month, currency,
       sumIf(amount_minor, kind = 'gross') AS gross_minor,
       sumIf(amount_minor, kind = 'refund') AS refunded_minor,
       sumIf(amount_minor, kind = 'gross') - sumIf(amount_minor, kind = 'refund') AS net_minor
FROM (
    SELECT settled_at, currency, amount_minor, 'gross' AS kind
    FROM ({_SETTLEMENTS}) WHERE outcome = 'succeeded'
    UNION ALL
    SELECT updated_at AS settled_at, currency, amount_minor, 'refund' AS kind
    FROM {D}.refunds FINAL WHERE status = 'succeeded' AND {_range('updated_at')}
)
WHERE {_currency()}
GROUP BY month, currency ORDER BY month, currency""",
        x="month", y=("gross_minor", "refunded_minor", "net_minor"), series="currency", money=True,
        group="revenue"),
    Metric(
        "conversion", "Booking-to-payment conversion and time to pay",
        f"""
WITH b AS (
    SELECT booking_id, min(at) AS booked_at, groupUniqArray(reference) AS refs
    FROM {D}.bookings FINAL
    WHERE kind IN ('created', 'confirmed', 'amended')
    GROUP BY booking_id
    HAVING {_range('booked_at')}
),
paid AS (
    SELECT reference, min(at) AS paid_at
    FROM {D}.payment_changes FINAL WHERE to_status = 'succeeded' GROUP BY reference
),
per_booking AS (
    SELECT b.booking_id, b.booked_at, min(paid.paid_at) AS first_paid
    FROM b ARRAY JOIN b.refs AS ref
    LEFT JOIN paid ON paid.reference = ref
    GROUP BY b.booking_id, b.booked_at
)
SELECT count() AS bookings,
       countIf(first_paid > toDateTime64(0, 3, 'UTC')) AS paid_bookings,
       round(countIf(first_paid > toDateTime64(0, 3, 'UTC')) / greatest(count(), 1), 4) AS conversion,
       quantileExactIf(0.5)(dateDiff('second', booked_at, first_paid),
                            first_paid > toDateTime64(0, 3, 'UTC')) AS p50_seconds_to_pay,
       quantileExactIf(0.95)(dateDiff('second', booked_at, first_paid),
                             first_paid > toDateTime64(0, 3, 'UTC')) AS p95_seconds_to_pay
FROM per_booking
SETTINGS join_use_nulls = 0""",
        chart="table", y=("conversion",), group="payments"),
    Metric(
        "refunds", "Refund rate and reasons",
        f"""
SELECT currency, reason, count() AS refunds, sum(amount_minor) AS refunded_minor,
       uniqExact(reference) AS payments_refunded
FROM {D}.refunds FINAL
WHERE status = 'succeeded' AND {_range('updated_at')} AND {_currency()}
GROUP BY currency, reason ORDER BY refunds DESC, currency, reason""",
        x="reason", y=("refunds",), series="currency", money=True, group="revenue"),
    Metric(
        "refund_rate", "Refund rate by provider",
        f"""
SELECT s.provider AS provider, count() AS paid_payments,
       countIf(r.reference != '') AS refunded_payments,
       round(countIf(r.reference != '') / greatest(count(), 1), 4) AS refund_rate
FROM ({_SETTLEMENTS}) AS s
LEFT JOIN (SELECT DISTINCT reference FROM {D}.refunds FINAL WHERE status = 'succeeded') AS r
    ON r.reference = s.reference
WHERE s.outcome = 'succeeded'
GROUP BY provider ORDER BY provider
SETTINGS join_use_nulls = 0""",
        x="provider", y=("refund_rate",), group="revenue"),
    Metric(
        "provider_performance", "Provider performance: request to settled, and sweeps",
        f"""
SELECT provider, count() AS settled,
       quantileExact(0.5)(since_created_ms) AS p50_ms,
       quantileExact(0.95)(since_created_ms) AS p95_ms,
       quantileExact(0.99)(since_created_ms) AS p99_ms,
       countIf(settled_by = 'sweep') AS settled_by_sweep,
       round(countIf(settled_by = 'sweep') / count(), 4) AS sweep_share
FROM ({_SETTLEMENTS})
GROUP BY provider ORDER BY provider""",
        x="provider", y=("p50_ms", "p95_ms", "p99_ms"), group="providers"),
    Metric(
        "anomalies", "Unusual activity: hourly failure rate and volume against the trailing day",
        f"""
SELECT hour, provider, settled, failure_rate, baseline_volume, baseline_failure_rate,
       (baseline_volume > 0 AND settled >= 10
        AND failure_rate > baseline_failure_rate + 0.2) AS failure_spike,
       (baseline_volume > 0 AND settled > 3 * baseline_volume AND settled >= 20) AS volume_spike
FROM (
    SELECT hour, provider, settled, failure_rate,
           ifNotFinite(avg(settled) OVER w, 0) AS baseline_volume,
           ifNotFinite(avg(failure_rate) OVER w, 0) AS baseline_failure_rate
    FROM (
        SELECT toStartOfHour(settled_at) AS hour, provider, count() AS settled,
               countIf(outcome != 'succeeded') / count() AS failure_rate
        FROM ({_SETTLEMENTS.replace(_range('settled_at'), _TRAILING_DAY)})
        GROUP BY hour, provider
    )
    WINDOW w AS (PARTITION BY provider ORDER BY hour ROWS BETWEEN 24 PRECEDING AND 1 PRECEDING)
)
WHERE {_range('hour')}
ORDER BY hour, provider""",
        chart="line", x="hour", y=("settled", "failure_rate"), series="provider", group="failures"),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}

Bucket = Literal["day", "week", "month"]

#: A bucket's label from the daily query's ``day``: "2031-03-01", "2031-W09" (the ISO week,
#: Monday first; its ISO year, which the week's Monday shares), "2031-03". The first
#: expression orders the buckets, the second labels them.
BUCKET_KEYS: dict[str, tuple[str, str]] = {
    "week": ("toStartOfWeek(day, 1)",
             "concat(toString(toISOYear(toStartOfWeek(day, 1))), '-W',"
             " leftPad(toString(toISOWeek(toStartOfWeek(day, 1))), 2, '0'))"),
    "month": ("toStartOfMonth(day)", "formatDateTime(toStartOfMonth(day), '%Y-%m')"),
}


def bucketed(metric: Metric, bucket: str) -> Metric:
    """``metric`` (a daily money query, ``buckets=True``) regrouped per ``bucket``: its money
    columns summed per bucket and currency, the bucket's label in the column named after it."""
    if bucket == "day" or not metric.buckets:
        return metric
    if bucket not in BUCKET_KEYS:
        raise ValueError(f"bucket must be day, week or month, not {bucket!r}")
    start, name = BUCKET_KEYS[bucket]
    sums = ", ".join(f"sum({c}) AS {c}" for c in ("gross_minor", "refunded_minor", "net_minor"))
    sql = (f"SELECT {name} AS {bucket}, currency, {sums}\nFROM ({metric.sql}\n)\n"
           f"GROUP BY {start}, {bucket}, currency ORDER BY {start}, currency")
    title = metric.title.replace("Daily revenue", "Revenue per ISO week" if bucket == "week"
                                 else "Revenue per month")
    return replace(metric, sql=sql, x=bucket, title=title)


def parameters(since: datetime, until: datetime, currency: str | None) -> dict[str, Any]:
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("since and until must be timezone-aware")
    if until <= since:
        raise ValueError("until must be after since")
    return {"since": since, "until": until, "currency": currency.upper() if currency else None}
