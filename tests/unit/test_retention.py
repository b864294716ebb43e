"""Expiry of the worker's idempotency tables (streams/agents/retention.py)."""

from __future__ import annotations

from streams.agents.retention import ExpiringTable, purge_interval, stamp, unstamp
from tests.unit.stream_fakes import FakeTable


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_stamp_round_trip_and_legacy_values() -> None:
    assert unstamp(stamp(b'[{"a": "x|y"}]', 1_700_000_000.4, 3)) == (1_700_000_000.0, 3, b'[{"a": "x|y"}]')
    assert unstamp(b"1") == (None, None, b"1")
    assert unstamp(b"[]") == (None, None, b"[]")


def test_entries_expire_after_the_ttl_with_a_tombstone_on_their_partition() -> None:
    table, clock = FakeTable(), Clock(1000.0)
    done = ExpiringTable(table, ttl_s=3600, name="t", clock=clock)
    done.put(2, b"old", b"payload")
    clock.now = 2000.0
    done.put(1, b"young", b"payload")
    assert done.get(b"old") == b"payload" and b"old" in done
    assert table.changelog[0][:2] == (2, b"old") and table.changelog[0][2] != b"payload"

    clock.now = 1000.0 + 3600 - 1
    assert done.purge() == 0
    clock.now = 1000.0 + 3600
    assert done.purge() == 1
    assert b"old" not in done and done.get(b"old") is None
    assert table.changelog[-1] == (2, b"old", None)
    assert done.get(b"young") == b"payload"


def test_a_rewritten_entry_lives_from_its_last_write() -> None:
    table, clock = FakeTable(), Clock(0.0)
    done = ExpiringTable(table, ttl_s=100, name="t", clock=clock)
    done.purge()  # builds the schedule, so later puts are scheduled directly
    done.put(0, b"k", b"1")
    clock.now = 90.0
    done.put(0, b"k", b"2")
    clock.now = 150.0
    assert done.purge() == 0 and done.get(b"k") == b"2"
    clock.now = 190.0
    assert done.purge() == 1


def test_schedule_rebuilt_from_the_table_after_a_rebalance_keeps_legacy_entries() -> None:
    table, clock = FakeTable(), Clock(5000.0)
    table.data[b"recovered"] = stamp(b"x", 100.0, 3)
    table.data[b"legacy"] = b"1"
    done = ExpiringTable(table, ttl_s=60, name="t", clock=clock)
    assert done.purge(limit=10) == 1
    assert table.changelog == [(3, b"recovered", None)]
    assert done.get(b"legacy") == b"1"


def test_purge_is_bounded_per_tick() -> None:
    table, clock = FakeTable(), Clock(0.0)
    done = ExpiringTable(table, ttl_s=60, name="t", clock=clock)
    for i in range(5):
        done.put(0, f"k{i}".encode(), b"1")
    clock.now = 100.0
    assert done.purge(limit=2) == 2
    assert done.purge(limit=2) == 2
    assert done.purge(limit=2) == 1
    assert not table.data


def test_purge_interval_is_a_tenth_of_the_ttl_within_bounds() -> None:
    assert purge_interval(30) == 5.0
    assert purge_interval(3600) == 360.0
    assert purge_interval(72 * 3600) == 600.0
