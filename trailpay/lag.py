"""Consumer lag per group, topic and partition: ``trailpay lag`` and a Prometheus gauge.

Lag = true end of the partition (the high watermark of a fetch, see :mod:`trailpay.ops.
offsets`; tansu's ListOffsets can be short) minus the group's committed offset. A group
that never committed on a partition lags by everything still in the log. Committed
offsets are read with a group consumer that never joins the group (OffsetFetch only):
tansu does not answer the admin client's group listing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from trailpay import topics
from trailpay.highwater import fetched_highwaters
from trailpay.kafka import bootstrap
from trailpay.offsets import Bounds, load_topic_metadata
from trailpay.settings import Settings

log = logging.getLogger(__name__)


def consumer_groups(settings: Settings) -> dict[str, tuple[str, ...]]:
    """TrailPay's consumer groups and the topics each consumes."""
    return {
        settings.worker_id: topics.WORKER_TOPICS,
        topics.POSTGRES_SINK_GROUP: topics.POSTGRES_SINK_TOPICS,
        topics.CLICKHOUSE_SINK_GROUP: topics.CLICKHOUSE_SINK_TOPICS,
    }


@dataclass(frozen=True)
class LagRow:
    group: str
    topic: str
    partition: int
    committed: int | None
    low: int
    end: int

    @property
    def lag(self) -> int:
        # Nothing committed yet: everything still in the log is to be read.
        done = self.committed if self.committed is not None else self.low
        return max(0, self.end - done)


async def _ends(servers: str, wanted: Iterable[str]) -> dict[TopicPartition, Bounds]:
    """Log start and true end of every partition of ``wanted``, all partitions at once."""
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    await consumer.start()
    try:
        await load_topic_metadata(consumer)
        tps = [TopicPartition(t, p) for t in sorted(set(wanted))
               for p in sorted(consumer.partitions_for_topic(t) or set())]
        low = await consumer.beginning_offsets(tps)
        listed = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    # tansu's ListOffsets can be short of the end; a fetch response's high watermark is not.
    high = await fetched_highwaters(servers, listed, wait_s=3.0, recovery=False)
    return {tp: Bounds(low[tp], max(high.get(tp, listed[tp]), low[tp])) for tp in tps}


async def _committed(servers: str, group: str, tps: list[TopicPartition]) -> dict[TopicPartition, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {tp: await consumer.committed(tp) for tp in tps}
    finally:
        await consumer.stop()


async def measure(settings: Settings, groups: dict[str, tuple[str, ...]] | None = None) -> list[LagRow]:
    """Lag of every (group, topic, partition)."""
    groups = groups or consumer_groups(settings)
    servers = bootstrap(settings)
    ends = await _ends(servers, (t for ts in groups.values() for t in ts))
    rows: list[LagRow] = []
    for group, names in groups.items():
        tps = [tp for tp in ends if tp.topic in names]
        committed = await _committed(servers, group, tps)
        rows += [LagRow(group, tp.topic, tp.partition, committed.get(tp), ends[tp].low, ends[tp].high)
                 for tp in tps]
    return rows


class LagCollector(Collector):
    """``trailpay_consumer_lag_records`` from a measurement every ``every_s`` seconds.

    The measurement runs on a daemon thread with its own event loop (never the worker's),
    so a scrape answers at once with the latest figures.
    """

    def __init__(self, settings: Settings, every_s: float = 10.0, timeout_s: float = 30.0,
                 groups: dict[str, tuple[str, ...]] | None = None) -> None:
        self.settings = settings
        self.groups = groups
        self.every_s = every_s
        self.timeout_s = timeout_s
        self._rows: list[LagRow] = []
        #: ``time.time()`` of the latest measurement (None: none yet).
        self.measured_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="consumer-lag", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._rows = asyncio.run(asyncio.wait_for(measure(self.settings, self.groups),
                                                          self.timeout_s))
                self.measured_at = time.time()
            except Exception as exc:  # noqa: BLE001 - a failed measurement keeps the last one
                log.warning("consumer lag not measured: %s", exc)
            self._stop.wait(max(1.0, self.every_s - (time.monotonic() - started)))

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("trailpay_consumer_lag_records",
                                 "Records on the broker not yet committed by the consumer group",
                                 labels=["group", "topic", "partition"])

    @property
    def rows(self) -> list[LagRow]:
        return list(self._rows)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = self._family()
        for row in list(self._rows):
            gauge.add_metric([row.group, row.topic, str(row.partition)], row.lag)
        yield gauge


# --------------------------------------------------------------------------- consumer health
#
# What /readyz and ``trailpay status`` say about consumers: one that restarts again and
# again (a poison record the code does not survive, or a dependency it cannot do without)
# is crash-looping; a group further behind than ``consumer_max_lag`` is lagging. Restarts
# are recorded by whoever restarts a consumer: the supervisor of ``trailpay up`` for its
# services, the analytics process for its in-process ClickHouse sink.

RESTARTS_FILE = "consumer-restarts.json"


@dataclass(frozen=True)
class ConsumerProblem:
    consumer: str
    kind: str  # "crash_looping" | "lagging"
    detail: str


def record_restart(data_dir: Path, consumer: str, *, at: float | None = None, keep: int = 50) -> None:
    """Note that ``consumer`` was restarted (``DATA_DIR/consumer-restarts.json``)."""
    path = data_dir / RESTARTS_FILE
    known = restarts(data_dir)
    known[consumer] = [*known.get(consumer, []), at if at is not None else time.time()][-keep:]
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(known))
        os.replace(tmp, path)
    except OSError as exc:  # health is reported best effort; never stop a restart for it
        log.warning("restart of %s not recorded: %s", consumer, exc)


def restarts(data_dir: Path) -> dict[str, list[float]]:
    """Restart times (``time.time()``) per consumer, oldest first."""
    try:
        data = json.loads((data_dir / RESTARTS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): [float(t) for t in v if isinstance(t, int | float)]
            for k, v in data.items() if isinstance(v, list)}


def crash_looping(settings: Settings, consumers: Iterable[str] | None = None, *,
                  now: float | None = None) -> list[ConsumerProblem]:
    """Consumers restarted ``consumer_max_restarts`` times or more within the window."""
    now = now if now is not None else time.time()
    since = now - settings.consumer_restart_window_s
    wanted = set(consumers) if consumers is not None else None
    out = []
    for name, times in sorted(restarts(settings.data_path).items()):
        recent = [t for t in times if t >= since]
        if (wanted is None or name in wanted) and len(recent) >= settings.consumer_max_restarts:
            out.append(ConsumerProblem(name, "crash_looping",
                                       f"{len(recent)} restarts in the last "
                                       f"{settings.consumer_restart_window_s:.0f}s"))
    return out


def lagging(rows: Iterable[LagRow], max_lag: int) -> list[ConsumerProblem]:
    """Consumer groups more than ``max_lag`` records behind, over all their partitions."""
    behind: dict[str, int] = {}
    for row in rows:
        behind[row.group] = behind.get(row.group, 0) + row.lag
    return [ConsumerProblem(group, "lagging", f"{lag} records behind (threshold {max_lag})")
            for group, lag in sorted(behind.items()) if lag > max_lag]


class ConsumerHealth:
    """The /readyz verdict of a service about its own consumers: not crash-looping (its
    restart record) and not lagging (the latest measurement of ``lag``, when it has one)."""

    def __init__(self, settings: Settings, consumers: Iterable[str],
                 lag: LagCollector | None = None, *, groups: Iterable[str] | None = None) -> None:
        self.settings = settings
        self.consumers = tuple(consumers)
        self.lag = lag
        self.groups = None if groups is None else frozenset(groups)

    def problems(self) -> list[ConsumerProblem]:
        found = crash_looping(self.settings, self.consumers)
        if self.lag is not None:
            rows = [r for r in self.lag.rows if self.groups is None or r.group in self.groups]
            found += lagging(rows, self.settings.consumer_max_lag)
        return found

    def ready(self) -> bool:
        return not self.problems()

    def report(self) -> dict[str, object]:
        problems = self.problems()
        return {"ready": not problems,
                "consumers": [{"consumer": p.consumer, "problem": p.kind, "detail": p.detail}
                              for p in problems]}
