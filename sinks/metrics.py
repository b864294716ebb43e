"""Prometheus metrics of the sinks (one set per process, labelled by sink name)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LAG = Gauge(
    "trailpay_sink_lag_records",
    "Records on the broker not yet written and committed by the sink",
    ["sink", "topic", "partition"],
)
BATCH_SIZE = Histogram(
    "trailpay_sink_batch_records",
    "Records per written batch",
    ["sink"],
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000),
)
WRITE_SECONDS = Histogram(
    "trailpay_sink_write_seconds",
    "Time to write one batch durably (including retries of that batch)",
    ["sink"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RECORDS = Counter(
    "trailpay_sink_records_total",
    "Records handled by the sink, by outcome (written, dead_lettered)",
    ["sink", "outcome"],
)
RETRIES = Counter(
    "trailpay_sink_retries_total",
    "Batch writes retried after a retriable failure (database away, backpressure)",
    ["sink"],
)
ALTERED = Counter(
    "trailpay_sink_values_altered_total",
    "Values stored in an escaped or shortened form because the database would refuse them "
    "(how: nul, surrogate, truncated, too_deep)",
    ["sink", "table", "column", "how"],
)
