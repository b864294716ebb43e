"""dashboards/lag_cache.py: the consumer-lag tile's figure, measured apart from requests."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka.errors import KafkaConnectionError

from dashboards.lag_cache import LagCache
from trailpay.lag import LagRow

ROWS = [
    LagRow("trailpay-worker", "payments.requests.v1", 0, committed=90, low=0, end=100),  # 10 behind
    LagRow("trailpay-worker", "payments.requests.v1", 1, committed=None, low=5, end=12),  # 7: none committed
    LagRow("trailpay-sink-postgres", "payments.state.v1", 0, committed=40, low=0, end=40),  # caught up
]


async def test_the_tile_sums_each_group_and_all_groups() -> None:
    async def measured() -> Iterable[LagRow]:
        return ROWS

    cache = LagCache(measured)
    assert cache.snapshot() == {"records": None, "groups": {}, "measured_at": None, "error": None}
    await cache.refresh()
    shown = cache.snapshot()
    assert shown["records"] == 17
    assert shown["groups"] == {"trailpay-sink-postgres": 0, "trailpay-worker": 17}
    assert shown["measured_at"] is not None and shown["measured_at"].endswith("+00:00")
    assert shown["error"] is None


async def test_a_failed_measurement_keeps_the_last_figure_and_says_so() -> None:
    answers: list[object] = [ROWS, KafkaConnectionError()]

    async def measured() -> Iterable[LagRow]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, list)
        return answer

    cache = LagCache(measured)
    await cache.refresh()
    await cache.refresh()
    shown = cache.snapshot()
    assert shown["records"] == 17
    assert shown["error"] == "KafkaConnectionError: the broker did not answer"
