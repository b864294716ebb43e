"""Waiting on a condition with a deadline, never for a fixed time.

:func:`wait_for` polls a predicate (plain or async) until it returns something truthy and
returns that; past the deadline it fails with what was awaited and the last value seen.
:func:`wait_caught_up` waits until consumer groups have committed everything on their
topics: the condition for "nothing more will change", which a fixed sleep only hopes for.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any, TypeVar

from trailpay.lag import measure
from trailpay.settings import Settings

T = TypeVar("T")


async def wait_for(predicate: Callable[[], Any], timeout: float, what: str,
                   interval: float = 0.25) -> Any:
    """Poll ``predicate()`` (awaited if it returns an awaitable) until it is truthy; return it."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not reached in {timeout:g}s (last: {result!r:.300})")
        await asyncio.sleep(interval)


def wait_for_sync(predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """:func:`wait_for` for code that is not async (fixtures, process helpers)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not reached in {timeout:g}s (last: {result!r:.300})")
        time.sleep(interval)


async def wait_caught_up(settings: Settings, groups: dict[str, tuple[str, ...]] | None = None,
                         timeout: float = 60, what: str = "consumer lag zero") -> None:
    """Until every group has committed the end of every partition of its topics.

    ``groups``: group -> topics (default: TrailPay's own groups, :func:`trailpay.lag.
    consumer_groups`). Holds only when two measurements in a row find no lag *and* the same
    log ends: a record produced between one measurement's reading of the ends and of the
    committed offsets (the output of a consumer that just committed its input) would
    otherwise go unseen.
    """
    seen: dict[str, Any] = {"ends": None, "behind": {}}

    async def steady() -> bool:
        rows = await measure(settings, groups)
        ends = {(r.topic, r.partition): r.end for r in rows}
        behind = {(r.group, r.topic, r.partition): r.lag for r in rows if r.lag}
        same = not behind and seen["ends"] == ends
        seen["ends"], seen["behind"] = (None if behind else ends), behind
        return same

    try:
        await wait_for(steady, timeout, what, interval=0.5)
    except AssertionError:
        raise AssertionError(f"{what}: not reached in {timeout:g}s; behind (group, topic, "
                             f"partition): {seen['behind']}") from None
