"""ClickHouse schema: fact tables and duplicate-safe views, in database ``trailpay``.

Every table is a ``ReplacingMergeTree`` whose sorting key is the fact's identity, so a
redelivered, replayed or duplicated row collapses into one. Collapsing happens in the
background, so **queries read with ``FINAL``** (or ``argMax(col, version)`` grouped by
the identity); the views below do, which is why they stay right under duplicates. We
deliberately use plain views rather than ``SummingMergeTree`` materialized views: those
add every insert, so a replay would double a total.

=================  =========================================  =============================
table              one row per                                identity (sorting key)
=================  =========================================  =============================
payments           payment, newest version wins               reference (version column)
payment_changes    state transition                           (reference, version)
refunds            refund, newest payment version wins        refund_id (version column)
provider_commands  call we asked a provider for (attempts)    event_id
provider_events    provider fact (outcome, webhook, sweep)    event_id
webhooks           raw webhook / callback received            event_id
bookings           booking event                              event_id
=================  =========================================  =============================

Names are qualified with the database everywhere: chDB's default database is not
``trailpay`` and the same statements must work on a ClickHouse server.
"""

from __future__ import annotations

DATABASE = "trailpay"
D = DATABASE

TABLES: dict[str, str] = {
    "payments": f"""
CREATE TABLE IF NOT EXISTS {D}.payments (
    reference String,
    version UInt64,
    status LowCardinality(String),
    user_id String,
    booking_id Nullable(String),
    amount_minor Int64,
    currency LowCardinality(String),
    provider LowCardinality(String),
    method LowCardinality(String),
    country LowCardinality(Nullable(String)),
    phone_prefix Nullable(String) COMMENT 'country code + operator digits only',
    provider_reference Nullable(String),
    provider_status Nullable(String),
    provider_code Nullable(String),
    provider_message Nullable(String),
    refunded_minor Int64,
    settled_by LowCardinality(Nullable(String)),
    created_at DateTime64(3, 'UTC'),
    updated_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(created_at)
ORDER BY reference""",
    "payment_changes": f"""
CREATE TABLE IF NOT EXISTS {D}.payment_changes (
    event_id String,
    reference String,
    version UInt64,
    from_status LowCardinality(Nullable(String)),
    to_status LowCardinality(String),
    cause LowCardinality(String),
    cause_event_id String,
    at DateTime64(3, 'UTC'),
    user_id String,
    booking_id Nullable(String),
    provider LowCardinality(String),
    method LowCardinality(String),
    country LowCardinality(Nullable(String)),
    phone_prefix Nullable(String),
    amount_minor Int64,
    currency LowCardinality(String),
    refunded_minor Int64,
    provider_code Nullable(String),
    provider_message Nullable(String),
    settled_by LowCardinality(Nullable(String)),
    created_at DateTime64(3, 'UTC'),
    since_created_ms Int64 COMMENT 'at - created_at'
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (reference, version)""",
    "refunds": f"""
CREATE TABLE IF NOT EXISTS {D}.refunds (
    refund_id String,
    reference String,
    version UInt64,
    provider LowCardinality(String),
    amount_minor Int64,
    currency LowCardinality(String),
    reason String,
    status LowCardinality(String),
    requested_at DateTime64(3, 'UTC'),
    updated_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(requested_at)
ORDER BY refund_id""",
    "provider_commands": f"""
CREATE TABLE IF NOT EXISTS {D}.provider_commands (
    event_id String,
    reference String,
    kind LowCardinality(String),
    provider LowCardinality(String),
    amount_minor Int64,
    currency LowCardinality(String),
    refund_id Nullable(String),
    at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY event_id""",
    "provider_events": f"""
CREATE TABLE IF NOT EXISTS {D}.provider_events (
    event_id String,
    reference String,
    kind LowCardinality(String),
    provider LowCardinality(String),
    status LowCardinality(Nullable(String)),
    provider_status Nullable(String),
    provider_code Nullable(String),
    provider_message Nullable(String),
    source LowCardinality(String),
    command_id Nullable(String),
    at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY event_id""",
    "webhooks": f"""
CREATE TABLE IF NOT EXISTS {D}.webhooks (
    event_id String,
    provider LowCardinality(String),
    reference Nullable(String),
    received_at DateTime64(3, 'UTC'),
    verified Nullable(Bool),
    verification_error Nullable(String),
    event_type Nullable(String),
    provider_code Nullable(String),
    ingress_latency_ms Nullable(Int64) COMMENT 'received_at -> durable in Kafka (record timestamp)'
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY event_id""",
    "bookings": f"""
CREATE TABLE IF NOT EXISTS {D}.bookings (
    event_id String,
    booking_id String,
    revision UInt32,
    kind LowCardinality(String),
    reference String COMMENT 'TPB-... payment reference of this revision',
    user_id String,
    amount_minor Int64,
    currency LowCardinality(String),
    country LowCardinality(String),
    preferred_method LowCardinality(Nullable(String)),
    provider LowCardinality(Nullable(String)),
    at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY event_id""",
}

#: Columns of each table in insert order (parsed from the DDL, so the two cannot drift).
COLUMNS: dict[str, tuple[str, ...]] = {
    name: tuple(
        line.strip().split()[0]
        for line in ddl.split("(", 1)[1].rsplit(") ENGINE", 1)[0].strip().splitlines()
        if line.strip()
    )
    for name, ddl in TABLES.items()
}

PAID = "('succeeded', 'partially_refunded', 'refunded')"
SETTLED = "('succeeded', 'failed', 'cancelled', 'expired')"

VIEWS: dict[str, str] = {
    # Revenue by the day a payment succeeded (gross) and the day a refund succeeded.
    "daily_revenue": f"""
CREATE VIEW IF NOT EXISTS {D}.daily_revenue AS
SELECT day, currency, provider,
       sum(g) AS gross_minor,
       sum(r) AS refunded_minor,
       sum(g) - sum(r) AS net_minor,
       sum(n) AS payments
FROM (
    SELECT toDate(at) AS day, currency, provider, amount_minor AS g, 0 AS r, 1 AS n
    FROM {D}.payment_changes FINAL WHERE to_status = 'succeeded'
    UNION ALL
    SELECT toDate(updated_at) AS day, currency, provider, 0 AS g, amount_minor AS r, 0 AS n
    FROM {D}.refunds FINAL WHERE status = 'succeeded'
)
GROUP BY day, currency, provider""",
    # Outcomes of payments that reached a settled status, by day and provider.
    "daily_outcomes": f"""
CREATE VIEW IF NOT EXISTS {D}.daily_outcomes AS
SELECT toDate(at) AS day, provider,
       count() AS settled,
       countIf(to_status = 'succeeded') AS succeeded,
       countIf(to_status = 'failed') AS failed,
       countIf(to_status = 'cancelled') AS cancelled,
       countIf(to_status = 'expired') AS expired,
       if(count() = 0, 0, (count() - countIf(to_status = 'succeeded')) / count()) AS failure_rate
FROM {D}.payment_changes FINAL
WHERE to_status IN {SETTLED}
GROUP BY day, provider""",
    # Time from request (created_at) to the first settled status, per provider and day.
    "provider_latency": f"""
CREATE VIEW IF NOT EXISTS {D}.provider_latency AS
SELECT toDate(at) AS day, provider,
       count() AS payments,
       quantileExact(0.5)(since_created_ms) AS p50_ms,
       quantileExact(0.95)(since_created_ms) AS p95_ms,
       quantileExact(0.99)(since_created_ms) AS p99_ms,
       countIf(settled_by = 'sweep') AS settled_by_sweep
FROM {D}.payment_changes FINAL
WHERE to_status IN {SETTLED}
GROUP BY day, provider""",
}


def statements() -> list[str]:
    """Everything to run, in order; each statement is safe to run again."""
    return [f"CREATE DATABASE IF NOT EXISTS {D}", *TABLES.values(), *VIEWS.values()]
