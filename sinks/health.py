"""The sinks' part of /readyz: each sink's consumer health (:class:`trailpay.lag.ConsumerHealth`).

A sink process starts its health with :func:`start`; the service that answers /readyz
(the PostgreSQL sink's metrics server, the analytics app for the in-process ClickHouse
sink) asks :func:`current`. A sink is not ready while it is crash-looping (restarted
``consumer_max_restarts`` times within the window) or its group lags past the threshold.
"""

from __future__ import annotations

from trailpay import topics
from trailpay.lag import ConsumerHealth, LagCollector
from trailpay.settings import Settings

_HEALTH: dict[str, ConsumerHealth] = {}

#: Sink name -> (consumer group, topics), as the sinks consume them in the stack.
GROUPS = {
    "sink-postgres": (topics.POSTGRES_SINK_GROUP, topics.POSTGRES_SINK_TOPICS),
    "sink-clickhouse": (topics.CLICKHOUSE_SINK_GROUP, topics.CLICKHOUSE_SINK_TOPICS),
}


def start(settings: Settings, sink: str, *, measure_lag: bool = True) -> ConsumerHealth:
    """The health of ``sink``, its lag measured every 10 s on a daemon thread."""
    group, names = GROUPS[sink]
    lag = None
    if measure_lag and settings.kafka_bootstrap:
        lag = LagCollector(settings, groups={group: names})
        lag.start()
    health = ConsumerHealth(settings, (sink,), lag, groups=(group,))
    stop(sink)
    _HEALTH[sink] = health
    return health


def current(sink: str) -> ConsumerHealth | None:
    return _HEALTH.get(sink)


def stop(sink: str) -> None:
    health = _HEALTH.pop(sink, None)
    if health is not None and health.lag is not None:
        health.lag.stop()
