"""How long Faust's consumer lets a fetch wait at the broker.

Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500`` and no setting to
change it. On Apache Kafka that is harmless: the broker answers a waiting fetch as soon as
records arrive. tansu answers it only when the wait runs out (measured: a record produced
into an idle partition reached a 1,500 ms consumer after 300 ms at the median, 700 ms at
worst; a 20 ms consumer saw it after 5 ms). Every Faust hop of the pipeline would add that
much latency, so the worker uses ``Settings.kafka_fetch_max_wait_ms`` instead.

Needed on tansu only. Measured again with Faust's 1,500 ms wait by
tests/integration/test_broker_workarounds.py: Apache Kafka 3.9.2 delivered records produced
into an idle partition after 8 ms at the median, 21 ms at worst; tansu after 501 / 506 ms.
So on Apache Kafka the worker does not patch Faust (``streams.worker.install_broker_workarounds``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

_fetch_max_wait_ms: int | None = None


def install(fetch_max_wait_ms: int) -> None:
    """Give every Faust worker consumer created afterwards in this process that wait."""
    global _fetch_max_wait_ms
    from faust.transport.drivers import aiokafka as driver

    first = _fetch_max_wait_ms is None
    _fetch_max_wait_ms = fetch_max_wait_ms
    if not first:
        return
    original: Callable[..., Any] = driver.AIOKafkaConsumerThread._create_worker_consumer

    @functools.wraps(original)  # keeps the original reachable (inspect.unwrap)
    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        # Read by AIOKafkaConsumer.start() when it builds its fetcher.
        consumer._fetch_max_wait_ms = _fetch_max_wait_ms
        return consumer

    driver.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
