"""True end offsets for Faust table recovery on tansu.

Faust recovers a table by reading its changelog up to the end offset that ListOffsets
reports. tansu's ListOffsets answer stops short of the true end: measured here, it gives
the base offset of the newest produce batch, so a restarted worker would recover every
table partition without its newest batch of changes and then build new versions on stale
state. Fetch responses carry the right high watermark, so we ask a throw-away consumer to
fetch from the reported offset and take the larger of the two answers.

Needed on tansu only. On Apache Kafka 3.9.2 the two agree (measured by
tests/integration/test_stream_worker.py::test_fetched_high_watermark_corrects_the_short_end_offset,
which asserts equality there), so :func:`install` is not called for it: the one place that
decides is ``streams.worker.install_broker_workarounds``, by ``Settings.broker_kind``.
:func:`fetched_highwaters` itself stays in use by the lag report (``trailpay.lag``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

log = logging.getLogger(__name__)

_installed = False


async def fetched_highwaters(bootstrap: Any, reported: Mapping[Any, int], *,
                             wait_s: float = 5.0, recovery: bool = True) -> dict[Any, int]:
    """The high watermark a fetch reports for each partition (never below ``reported``).

    ``recovery``: for a table recovery, say at INFO where the end differs; the lag report
    passes False (records produced between its two questions differ too), and it is DEBUG."""
    if not reported:
        return {}
    wanted = {TopicPartition(tp.topic, tp.partition): tp for tp in reported}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                group_id=None, max_partition_fetch_bytes=1024)
    await consumer.start()
    found: dict[Any, int] = {}
    try:
        consumer.assign(list(wanted))
        for tp, original in wanted.items():
            consumer.seek(tp, max(0, reported[original]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while len(found) < len(wanted) and loop.time() < deadline:
            await consumer.getmany(timeout_ms=200, max_records=1)
            for tp, original in wanted.items():
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    found[original] = max(highwater, reported[original])
    finally:
        await consumer.stop()
    for original, value in reported.items():
        if original not in found:
            log.warning("no fetch answer for %s; recovering it to the reported end %s", original, value)
            found[original] = value
        elif found[original] != value:
            log.log(logging.INFO if recovery else logging.DEBUG, "%s %s ends at %s, not at the "
                    "reported %s", "changelog" if recovery else "partition", original,
                    found[original], value)
    return found


def install() -> None:
    """Make every Faust aiokafka consumer in this process recover tables to the true end."""
    global _installed
    if _installed:
        return
    # Imported here: faust costs 370-670 ms at import (measured on this machine) and
    # trailpay.lag, which `trailpay lag` and the metrics endpoint use, imports this module.
    from faust.transport.drivers import aiokafka as driver

    original: Callable[..., Awaitable[Mapping[Any, int]]] = driver.AIOKafkaConsumerThread._highwaters

    @functools.wraps(original)  # keeps the original reachable (inspect.unwrap)
    async def _highwaters(self: Any, partitions: list[Any]) -> Mapping[Any, int]:
        reported = await original(self, partitions)
        if self.consumer.in_transaction:
            return reported
        bootstrap = self._ensure_consumer()._client._bootstrap_servers
        return await fetched_highwaters(bootstrap, reported)

    driver.AIOKafkaConsumerThread._highwaters = _highwaters  # type: ignore[method-assign]
    _installed = True
