"""What :mod:`streams.rebalance_guard` remembers per consumer, and its decisions that need no
Faust: which offset comes next, whether a commit would pass an unprocessed record, when a
partition counts as stalled or its commit as held too long."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("streams.rebalance_guard")


class GuardState:
    """What the corrections remember per consumer, beside Faust's own bookkeeping."""

    def __init__(self) -> None:
        #: Partitions sought since their last delivered record: their read offset is then
        #: the next offset to read, not the last one delivered (Faust uses it for both).
        self.sought: set[Any] = set()
        #: Partition -> the offset last sought back to and how many times in a row, so a jump
        #: that survives the rewinds (records no longer on the broker) is let through.
        self.rewound: dict[Any, tuple[int, int]] = {}
        #: Partitions whose last jump was let through: their head may be one record ahead.
        self.accepted: set[Any] = set()
        #: Partition -> since when (monotonic) ``head`` holds its commit, and when it last said so.
        self.held_since: dict[Any, float] = {}
        self.held_told: dict[Any, float] = {}
        #: Partitions to fetch again from their committed offset once the worker is settled,
        #: and why: a record of the current generation skipped by a stream (no seek is coming
        #: to fetch it again), a jump seen during recovery, a held commit, a stalled partition.
        self.skipped: dict[Any, str] = {}
        #: Partition -> when (monotonic) a record of it was last delivered, or it was seen
        #: with nothing to read; and when the stall check last ran.
        self.delivered_at: dict[Any, float] = {}
        self.stall_checked = 0.0
        #: Topics whose offsets may jump (compacted): never sought back.
        self.jumps_allowed: frozenset[str] = frozenset()


def state_of(consumer: Any) -> GuardState:
    found: GuardState | None = consumer.__dict__.get("_trailpay_guard")
    if found is None:
        found = consumer.__dict__["_trailpay_guard"] = GuardState()
    return found


def next_expected(read_offset: int | None, sought: bool) -> int | None:
    """The offset the next record of a partition must have, from Faust's read offset: the
    sought offset itself after a seek (0 when nothing was committed: the consumer starts at
    the earliest record), one past the last delivered record otherwise (``None`` when Faust
    has no read offset and did not seek: nothing to check against)."""
    if read_offset is None:  # a seek to offset 0 (nothing committed) leaves None too
        return 0 if sought else None
    return read_offset if sought else read_offset + 1


def unprocessed(offset: int, committed: int | None, acked: Iterable[int]) -> bool:
    """Whether a record below Faust's read offset still needs processing: at or above the
    committed offset (the next to read) and not acked since."""
    return (committed is None or offset >= committed) and offset not in acked


def head_blocked(committed: int | None, acked: Iterable[int], gap_start: int | None) -> bool:
    """Whether committing now would pass an offset nobody acked: the lowest acked (or
    gap-marked) offset is above the committed one, the next to read."""
    if committed is None:
        return False
    lowest = min(acked, default=None)
    if lowest is None:
        return False
    if gap_start is not None:
        lowest = min(lowest, gap_start)
    return lowest > committed


#: Rewinds to the same offset before a jump is let through: records gone to retention jump
#: every time, a stale batch racing a seek not three times in a row.
GIVE_UP_AFTER = 3


def rewinds(state: GuardState, tp: Any, target: int) -> int:
    """How many times ``tp`` was sought back to ``target`` without getting past it."""
    last = state.rewound.get(tp)
    return last[1] if last is not None and last[0] == target else 0


#: A partition with records to read and none delivered for this long, while the worker is
#: settled and no stream holds one of its records, is fetched again (seen in CI: a
#: partition's provider commands not delivered for 150 s after a rebalance).
STALL_S = 20.0
STALL_CHECK_EVERY_S = 5.0


def find_stalls(consumer: Any, state: GuardState, acking: Callable[[str], bool]) -> None:
    """Mark the partitions stalled for :data:`STALL_S` to be fetched again."""
    now = time.monotonic()
    if now - state.stall_checked < STALL_CHECK_EVERY_S:
        return
    state.stall_checked = now
    holding = {m.tp for m in list(consumer._unacked_messages)}
    for tp in consumer.assignment():
        if tp.topic in state.jumps_allowed or not acking(tp.topic) or tp in state.skipped:
            continue
        try:
            high = consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - no fetch yet: nothing known to read
            high = None
        committed = consumer._committed_offset.get(tp) or 0
        last = state.delivered_at.get(tp)
        if high is None or high <= committed or last is None or tp in holding:
            state.delivered_at[tp] = now  # nothing to read, or at work: the clock starts again
        elif now - last >= STALL_S:
            state.skipped[tp] = (f"nothing delivered for {now - last:.0f} s with records "
                                 f"{committed}..{high - 1} to read")
            state.delivered_at[tp] = now


HELD_WARNING_S = 30.0
#: How long a commit may be held by a record nobody is processing before the partition is
#: fetched again from the committed offset (``rewind``).
HELD_REFETCH_S = 20.0


def in_flight(consumer: Any, tp: Any, offset: int | None) -> bool:
    """Whether a stream holds the message at ``offset`` of ``tp`` unacked (being processed)."""
    return any(m.tp == tp and m.offset == offset for m in list(consumer._unacked_messages))


def tell_held(consumer: Any, state: GuardState, tp: Any, committed: int | None, refetch: bool) -> None:
    """When a partition's commit has been held for :data:`HELD_REFETCH_S` by a record no
    stream holds, the partition is fetched again from the committed offset (a record lost in
    Faust's hands in a way not corrected above is then processed, twice at worst); a warning
    after :data:`HELD_WARNING_S`, then once a minute, says the lag grows meanwhile."""
    now = time.monotonic()
    since = state.held_since.setdefault(tp, now)
    if (now - since >= HELD_REFETCH_S and refetch and tp.topic not in state.jumps_allowed
            and not in_flight(consumer, tp, committed)):
        log.warning("commit of %s:%d held at %s for %.0f s by a record no stream holds; fetching "
                    "again from %s", tp.topic, tp.partition, committed, now - since, committed)
        state.skipped[tp] = f"its commit held at {committed} for {now - since:.0f} s"
        state.held_since[tp] = now
        return
    if now - since >= HELD_WARNING_S and now - state.held_told.get(tp, 0.0) >= 60.0:
        state.held_told[tp] = now
        log.warning("commit of %s:%d held at %s for %.0f s: that record was delivered but never "
                    "processed in this generation", tp.topic, tp.partition, committed, now - since)
