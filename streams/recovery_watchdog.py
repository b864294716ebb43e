"""Correction ``recovery`` of :mod:`streams.rebalance_guard`: a table recovery that makes no
progress is restarted by a rebalance.

Seen once in the scale-out test next to a load job (issue 14): after the second rebalance a
worker's recovery received no changelog record on any partition for two and a half minutes
(Faust's "No event received for active tp ... since recovery start", every partition; "Recovery
has not flushed buffers", buffer size 0), so the worker processed nothing and its payments
waited. The next rebalance, started by the test's teardown, unstuck it: the new recovery read the
same changelogs in 160 ms. It came back in a quiet run with the trace on (`describe_stall`): the
two stalled changelog partitions had aiokafka's position at 65, their whole log fetched, while
Faust's read offset for them was still none: aiokafka had handed the records over and Faust
delivered none of them. In both runs, 12 ms after the recovery resumed flow, Faust's ``getmany``
had taken its "called while flow not active" branch, which drops the batch it fetched and seeks
to the committed offsets (faust/transport/consumer.py:767-774); a changelog partition has no
committed offset, so that seek leaves it where the dropped batch ended, and nothing fetches
those records again. So when every changelog partition with records left to read has
delivered nothing for :data:`RECOVERY_STALL_S`, this asks the consumer group to rebalance (what
aiokafka does when a subscription changes), which revokes and reassigns the partitions and
starts the recovery again. With ``TRAILPAY_TRACE_OFFSETS`` the consumer's state and every task's
stack are logged first (:func:`streams.offsettrace.describe_stall`), to find what the drain loop
waited on.

A rebalance is an event every agent tolerates (records after the committed offset are
processed again); it costs the group a few seconds. A recovery that keeps receiving records,
however slowly, is never interrupted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from streams import offsettrace

log = logging.getLogger("streams.rebalance_guard")

#: A recovery whose changelog partitions with records left have all delivered nothing for this
#: long is restarted (Faust warns after 30 s; a healthy one reads thousands of records a second,
#: and a stalled one costs the payments of its partitions that long).
RECOVERY_STALL_S = 15.0
CHECK_EVERY_S = 5.0

_watchers: set[asyncio.Task[bool]] = set()
_installed = False


def idle_for(now: float, started_at: float, received_at: Mapping[Any, float],
             remaining: Iterable[Any]) -> float | None:
    """How long every partition in ``remaining`` (changelog partitions with records left to
    read) has delivered nothing: since its last record, or since the recovery started for
    one that delivered none. ``None`` when nothing is left to read."""
    idle = [now - max(received_at.get(tp, started_at), started_at) for tp in remaining]
    return min(idle) if idle else None


def install() -> None:
    """Watch every table recovery of this process (Faust's ``Recovery``, patched once)."""
    global _installed
    if _installed:
        return
    _installed = True
    # Imported here: the patch reaches into Faust's internals, loaded only in a worker.
    from faust.tables import recovery as fr

    original = fr.Recovery._set_recovery_started

    def _set_recovery_started(self: Any) -> None:
        original(self)
        watcher = asyncio.ensure_future(watch(self, self._recovery_started_at))
        _watchers.add(watcher)
        watcher.add_done_callback(_watchers.discard)

    fr.Recovery._set_recovery_started = _set_recovery_started  # type: ignore[method-assign]


async def watch(recovery: Any, started_at: float, *, stall_s: float = RECOVERY_STALL_S,
                every_s: float = CHECK_EVERY_S) -> bool:
    """Watch one recovery (Faust restarts the clock, and so a new watcher, at each phase)
    until it ends; ask for a rebalance once if it stalls. Returns whether it asked."""
    while True:
        await asyncio.sleep(every_s)
        if (not recovery.in_recovery or recovery._recovery_started_at != started_at
                or recovery.should_stop or recovery.app.should_stop):
            return False
        left = {tp: n for tp, n in recovery.active_remaining().items() if n > 0}
        idle = idle_for(time.monotonic(), started_at, recovery._active_events_received_at, left)
        if idle is None or idle < stall_s:
            continue
        log.warning("table recovery received nothing for %.0f s (%d changelog partitions, %d "
                    "records left to read); asking the group to rebalance, which restarts it%s",
                    idle, len(left), sum(left.values()), offsettrace.describe_stall(recovery.app))
        await request_rebalance(recovery.app.consumer)
        return True


async def request_rebalance(consumer: Any) -> None:
    """Ask the group coordinator for a rebalance, in the consumer's thread (aiokafka is not
    thread-safe), as a subscription change would."""
    thread = consumer._thread

    async def rejoin() -> None:
        thread._ensure_consumer()._coordinator.request_rejoin()

    await thread.call_thread(rejoin)
