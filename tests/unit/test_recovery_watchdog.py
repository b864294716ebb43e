"""A table recovery that receives nothing is restarted by a rebalance (streams.recovery_watchdog,
issue 14: a worker's recovery received no changelog record for 150 s until the next rebalance).

The watcher runs on a stand-in with the attributes of Faust's ``Recovery`` it reads, and a
consumer thread whose coordinator records the rejoin requests."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any
from unittest.mock import MagicMock

from faust.tables.recovery import Recovery
from faust.types import TP

from streams import recovery_watchdog
from streams.recovery_watchdog import idle_for, watch

PAYMENTS = TP("trailpay-payments-changelog", 2)
DEDUP = TP("trailpay-webhook-dedup-changelog", 2)


def test_idle_counts_from_the_last_record_or_the_start() -> None:
    assert idle_for(100.0, 60.0, {}, [PAYMENTS, DEDUP]) == 40.0
    assert idle_for(100.0, 60.0, {PAYMENTS: 95.0}, [PAYMENTS, DEDUP]) == 5.0  # one progresses
    assert idle_for(100.0, 60.0, {PAYMENTS: 65.0, DEDUP: 69.0}, [PAYMENTS, DEDUP]) == 31.0
    # a record received before this recovery phase started does not count as progress
    assert idle_for(100.0, 60.0, {PAYMENTS: 10.0}, [PAYMENTS]) == 40.0
    assert idle_for(100.0, 60.0, {PAYMENTS: 99.0}, []) is None  # nothing left to read


class _Thread:
    def __init__(self) -> None:
        self.rejoins = 0
        coordinator = SimpleNamespace(request_rejoin=self._rejoin)
        self._consumer = SimpleNamespace(_coordinator=coordinator)

    def _rejoin(self) -> None:
        self.rejoins += 1

    def _ensure_consumer(self) -> Any:
        return self._consumer

    async def call_thread(self, fun: Callable[[], Awaitable[None]]) -> None:
        await fun()


class _Recovery:
    """What the watcher reads of Faust's Recovery."""

    def __init__(self, remaining: dict[TP, int]) -> None:
        self.thread = _Thread()
        self.app = SimpleNamespace(should_stop=False, consumer=SimpleNamespace(_thread=self.thread))
        self.in_recovery = True
        self.should_stop = False
        self._recovery_started_at = time.monotonic()
        self._active_events_received_at: dict[TP, float] = {}
        self.remaining = remaining

    def active_remaining(self) -> Counter[TP]:
        return Counter(self.remaining)


async def test_a_recovery_that_receives_nothing_asks_for_one_rebalance() -> None:
    recovery = _Recovery({PAYMENTS: 121, DEDUP: 35})
    asked = await asyncio.wait_for(
        watch(recovery, recovery._recovery_started_at, stall_s=0.2, every_s=0.05), timeout=5)
    assert asked is True
    assert recovery.thread.rejoins == 1


async def test_a_recovery_that_progresses_or_ends_is_left_alone() -> None:
    recovery = _Recovery({PAYMENTS: 121, DEDUP: 0})
    started = recovery._recovery_started_at
    task = asyncio.ensure_future(watch(recovery, started, stall_s=0.3, every_s=0.05))
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # a record every 50 ms on the partition with records left
        recovery._active_events_received_at[PAYMENTS] = time.monotonic()
        await asyncio.sleep(0.05)
    assert not task.done()
    recovery.in_recovery = False
    assert await asyncio.wait_for(task, timeout=5) is False
    assert recovery.thread.rejoins == 0


async def test_a_new_phase_of_the_recovery_ends_the_old_watcher() -> None:
    recovery = _Recovery({PAYMENTS: 121})
    started = recovery._recovery_started_at
    task = asyncio.ensure_future(watch(recovery, started, stall_s=0.5, every_s=0.05))
    await asyncio.sleep(0.1)
    recovery._recovery_started_at = started + 1.0  # Faust restarted the clock (a new watcher runs)
    assert await asyncio.wait_for(task, timeout=5) is False
    assert recovery.thread.rejoins == 0


def test_install_watches_each_recovery_phase(monkeypatch: Any) -> None:
    started: list[float] = []

    async def fake_watch(recovery: Any, started_at: float) -> bool:
        started.append(started_at)
        return False

    monkeypatch.setattr(recovery_watchdog, "_installed", False)
    monkeypatch.setattr(recovery_watchdog, "watch", fake_watch)
    monkeypatch.setattr(Recovery, "_set_recovery_started", Recovery._set_recovery_started)
    recovery_watchdog.install()

    async def phase() -> None:
        stand_in = MagicMock()  # Faust's method resets a dozen attributes of its own
        stand_in._recovery_started_at = None
        Recovery._set_recovery_started(stand_in)
        await asyncio.sleep(0)
        assert stand_in.in_recovery is True
        assert isinstance(stand_in._recovery_started_at, float)
        assert started == [stand_in._recovery_started_at]

    asyncio.run(phase())
