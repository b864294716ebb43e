"""Health that tells the truth: a consumer restarting again and again, or a group far
behind, is reported (issue 16: /readyz said ready while both sinks crash-looped)."""

from __future__ import annotations

from trailpay.lag import ConsumerHealth, LagRow, crash_looping, lagging, record_restart, restarts
from trailpay.settings import Settings


def _settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, consumer_restart_window_s=300, consumer_max_restarts=3,
                    consumer_max_lag=100)


def test_three_restarts_within_the_window_are_a_crash_loop(tmp_path):
    settings = _settings(tmp_path)
    for at in (1000.0, 1100.0, 1200.0):
        record_restart(tmp_path, "sink-postgres", at=at)
    record_restart(tmp_path, "worker", at=1200.0)
    assert restarts(tmp_path)["sink-postgres"] == [1000.0, 1100.0, 1200.0]
    [problem] = crash_looping(settings, now=1250.0)
    assert (problem.consumer, problem.kind, problem.detail) == (
        "sink-postgres", "crash_looping", "3 restarts in the last 300s")
    # The oldest restart left the window: two in five minutes is no loop.
    assert crash_looping(settings, now=1301.0) == []
    assert crash_looping(settings, ["worker"], now=1250.0) == []


def test_a_group_behind_more_than_the_threshold_is_lagging():
    rows = [LagRow("trailpay-sink-postgres", "payments.state.v1", p, 10, 0, 70) for p in range(2)]
    rows.append(LagRow("trailpay", "payments.requests.v1", 0, 5, 0, 6))
    [problem] = lagging(rows, 100)
    assert (problem.consumer, problem.kind, problem.detail) == (
        "trailpay-sink-postgres", "lagging", "120 records behind (threshold 100)")
    assert lagging(rows, 120) == []


class FixedLag:
    def __init__(self, rows: list[LagRow]) -> None:
        self.rows = rows


def test_readiness_reports_only_its_own_consumers(tmp_path):
    settings = _settings(tmp_path)
    lag = FixedLag([LagRow("trailpay-sink-clickhouse", "payments.state.v1", 0, 0, 0, 500),
                    LagRow("trailpay-sink-postgres", "payments.state.v1", 0, 500, 0, 500)])
    clickhouse = ConsumerHealth(settings, ["sink-clickhouse"], lag,  # type: ignore[arg-type]
                                groups=["trailpay-sink-clickhouse"])
    postgres = ConsumerHealth(settings, ["sink-postgres"], lag,  # type: ignore[arg-type]
                              groups=["trailpay-sink-postgres"])
    assert postgres.ready() is True
    assert clickhouse.report() == {"ready": False, "consumers": [
        {"consumer": "trailpay-sink-clickhouse", "problem": "lagging",
         "detail": "500 records behind (threshold 100)"}]}
    for _ in range(3):
        record_restart(tmp_path, "sink-postgres")
    assert postgres.ready() is False
