"""Consumer lag for the dashboard's headline tile, measured in the background.

One measurement (:func:`trailpay.lag.measure`) opens Kafka clients and asks for every
partition's high watermark and every group's committed offsets: seconds, too slow for a page
request. The analytics service therefore measures every ``interval_s`` and the tile shows the
last result with its time; a measurement that fails keeps the previous one and says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any

from aiokafka.errors import KafkaError

from trailpay.domain.times import utcnow
from trailpay.lag import LagRow, measure
from trailpay.settings import Settings

log = logging.getLogger(__name__)

Measure = Callable[[], Awaitable[Iterable[LagRow]]]


class LagCache:
    """The last lag measurement: records behind per consumer group, and in all."""

    def __init__(self, measure_once: Measure, interval_s: float = 15.0) -> None:
        self.measure_once = measure_once
        self.interval_s = interval_s
        self.by_group: dict[str, int] | None = None
        self.measured_at: datetime | None = None
        self.error: str | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_settings(cls, settings: Settings, interval_s: float = 15.0) -> LagCache:
        return cls(lambda: measure(settings), interval_s)

    async def refresh(self) -> None:
        try:
            rows = list(await self.measure_once())
        except (KafkaError, OSError, TimeoutError) as exc:  # the broker away: keep the last figure
            self.error = f"{type(exc).__name__}: the broker did not answer"
            log.warning("consumer lag not measured (%s)", type(exc).__name__)
            return
        by_group: dict[str, int] = {}
        for row in rows:
            by_group[row.group] = by_group.get(row.group, 0) + row.lag
        self.by_group, self.measured_at, self.error = by_group, utcnow(), None

    def snapshot(self) -> dict[str, Any]:
        """What the tile shows (``records`` None before the first measurement)."""
        if self.by_group is None or self.measured_at is None:
            return {"records": None, "groups": {}, "measured_at": None, "error": self.error}
        return {"records": sum(self.by_group.values()), "groups": dict(sorted(self.by_group.items())),
                "measured_at": self.measured_at.isoformat(), "error": self.error}

    async def _loop(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="lag-cache")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
