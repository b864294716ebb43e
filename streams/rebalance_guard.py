"""Corrections to Faust's consumer (faust-streaming 0.15.3) that lost records at a rebalance.

Found with :mod:`streams.offsettrace` on Apache Kafka (tests/fault/test_scale_out.py, three
workers, one killed; issue 14). The records are lost by Faust's offset bookkeeping, not by
aiokafka or the broker: aiokafka drops a fetched batch whose partition was sought since
(``FetchResult.check_assignment``), and the records were on the broker, read by nobody.

The traces of the runs that lost payments show, right after "Seek stream partitions to
committed offsets", a gap such as ``payments.requests.v1:2 41..56 (committed 40)``: the first
record the drain loop saw after the seek was 57, from a batch aiokafka had handed over for the
generation before (Faust reads the generation only after the fetch returned,
faust/transport/consumer.py:738-739). Two of Faust's rules then commit past 40..56:

1. **Every jump is taken for compaction.** ``_drain_messages`` (consumer.py:1207-1229) marks
   the skipped offsets 41..56 as acked (``_add_gap``) and drops the records 40..56 the fetcher
   returns next, as below the read offset ("DROPPED MESSAGE ROFF").
2. **One missing record at the head is allowed.** ``_new_offset`` refuses to commit only when
   the lowest acked offset is *more than one* above the committed one (consumer.py:1138-1141,
   ``min(acked) - committed_offset > 1``), and not at all when the committed offset is 0; so
   with 41..56 marked and 40 never processed it commits 57.

Whatever of 40..56 had not been processed before the revoke (the stream buffers are cleared
then) was processed by no one: the "booking never bridged" and "payment stuck in created"
losses. A third rule lets a skipped record count:

3. **Skipped records are acked.** A stream skips a record of an older generation, or one
   taken while flow control is suspended, and acks it (faust/streams.py:1287-1299 and
   1336-1345), so its offset counts towards the next commit though it was not processed.

The corrections, each on by name (``Settings.rebalance_guard``, default all four):

- ``rewind``: a jump in the offsets of a stream topic that is neither compacted nor
  transactional (ours: only the current-state topics are compacted, and nothing is
  transactional) is not a gap but records the fetch skipped. The record and the rest of its
  partition's batch are withheld and the partition is sought back to its committed offset
  (what was delivered since may have been cleared from a stream buffer), so aiokafka fetches
  them again in order; a partition with nothing committed must start at offset 0. If the
  same jump comes back three rewinds in a row (the records are gone: retention moved the
  log start), it is let through as Faust would, with a warning, so a partition can never
  loop. No seek is made while the tables recover (one stalled a recovery): the partition
  is sought back when the rebalance is over. And a record fetched again after a seek that
  Faust would drop as already read is delivered when nothing acked it since the commit:
  Faust's drain loop sets the read offset after each delivery, so a delivery that
  straddles a seek leaves it past the sought offset (seen: sought to 18, read offset 58,
  records 40..58 dropped, 19 bookings never bridged). A record a stream skipped (and
  acked) in the current generation is fetched again the same way, and so is a partition
  with records to read and none delivered for :data:`STALL_S` while the worker is settled
  (seen once in CI under load, not traced further).
- ``head``: never commit a partition while its lowest acked offset is above its committed
  one, unless that jump is one ``rewind`` let through.
- ``acks``: an ack of a record of another generation, or taken while flow control is
  suspended, marks the message acked but does not count it for the commit. Such a record is
  processed again after the rebalance, which every agent tolerates (redelivery after a
  crash).
- ``recovery``: a table recovery whose changelog partitions have all delivered nothing for
  15 s asks the group to rebalance, which starts it again (:mod:`streams.recovery_watchdog`).

An earlier correction discarded every batch fetched across a seek and sought back to the
next undelivered offset (kept in git history): it stalled partitions in one run of six, and
is replaced by ``rewind``, which acts only where an offset is really missing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from streams import recovery_watchdog
from streams.rebalance_state import (
    GIVE_UP_AFTER,
    HELD_REFETCH_S,
    HELD_WARNING_S,
    STALL_S,
    GuardState,
    find_stalls,
    head_blocked,
    next_expected,
    rewinds,
    state_of,
    tell_held,
    unprocessed,
)

log = logging.getLogger(__name__)

__all__ = ["GIVE_UP_AFTER", "HELD_REFETCH_S", "HELD_WARNING_S", "PARTS", "STALL_S", "current",
           "head_blocked", "install", "installed", "next_expected", "parts", "unprocessed"]
_State = GuardState
_state = state_of

PARTS = frozenset({"rewind", "head", "acks", "recovery"})

_installed: set[str] = set()


def installed(part: str) -> bool:
    """Whether correction ``part`` is active in this process."""
    return part in _installed


def current(app: Any, events: list[Any]) -> list[Any]:
    """The events of a batch that are still this worker's to act on: none while a rebalance
    is under way, and none delivered in a consumer generation before the current one (their
    partitions may belong to another worker now, which processes them from the committed
    offset). Only with ``acks`` installed, since that is what keeps the dropped events'
    acks from counting; without it every event is kept."""
    if not events or "acks" not in _installed:
        return events
    if not app.flow_control.is_active():
        kept: list[Any] = []
    else:
        generation = app.consumer_generation_id
        kept = [e for e in events if getattr(e.message, "generation_id", generation) == generation]
    if len(kept) < len(events):
        log.info("left %d of %d events taken before a rebalance to their partitions' owner",
                 len(events) - len(kept), len(events))
    return kept


def parts(chosen: str) -> set[str]:
    """Which corrections ``chosen`` (``TRAILPAY_REBALANCE_GUARD``) asks for: ``1`` all of
    :data:`PARTS`, ``0`` none, or a comma-separated list of their names."""
    chosen = chosen.strip()
    if chosen in ("", "0"):
        return set()
    if chosen == "1":
        return set(PARTS)
    named = {p.strip() for p in chosen.split(",") if p.strip()}
    unknown = named - PARTS
    if unknown:
        raise ValueError(f"unknown rebalance corrections {sorted(unknown)}; choose from {sorted(PARTS)}")
    return named


def install(which: set[str], compacted: Iterable[str] = ()) -> None:
    """Patch Faust's consumer class (once per process and correction). ``compacted``: topics
    whose offsets may legitimately jump; ``rewind`` leaves them alone."""
    todo = set(which) - _installed
    if not todo:
        return
    _installed.update(todo)
    # Imported here: the patch reaches into Faust's internals, loaded only in a worker.
    from faust.transport import consumer as fc

    base: Any = fc.Consumer
    jumps_allowed = frozenset(compacted)
    if "rewind" in todo:
        _install_rewind(base, jumps_allowed)
    if "head" in todo:
        _install_head(base)
    if "acks" in todo:
        _install_acks(base)
    if "recovery" in todo:
        recovery_watchdog.install()
    log.info("Faust consumer corrections installed: %s", ", ".join(sorted(_installed)))


def _install_rewind(base: Any, jumps_allowed: frozenset[str]) -> None:
    original_perform_seek = base.perform_seek
    original_seek = base.seek
    original_getmany = base.getmany

    async def perform_seek(self: Any) -> None:
        await original_perform_seek(self)
        # Every assigned partition: one with nothing committed is not in the read offsets
        # at all, and its first record must then be the log's first (offset 0).
        _state(self).sought.update(self._read_offset, self.assignment())

    async def seek(self: Any, partition: Any, offset: int) -> None:
        await original_seek(self, partition, offset)
        _state(self).sought.add(partition)

    async def getmany(self: Any, timeout: float) -> AsyncIterator[tuple[Any, Any]]:  # noqa: ASYNC109 - Faust's
        state = _state(self)
        state.jumps_allowed = jumps_allowed
        acking = self.app.topics.acks_enabled_for
        read_offset = self._read_offset
        withheld: set[Any] = set()
        redelivered: set[Any] = set()
        settled = self.app.flow_control.is_active() and not self.app.rebalancing
        if settled:
            find_stalls(self, state, acking)
        if state.skipped and settled:
            await _fetch_skipped_again(self, state)
        async for tp, message in original_getmany(self, timeout):
            if tp in withheld:
                continue
            read = read_offset.get(tp)
            offset = message.offset
            if tp.topic not in jumps_allowed and acking(tp.topic):
                committed = self._committed_offset.get(tp)
                if read is not None and offset < read:
                    if unprocessed(offset, committed, self._acked_index.get(tp, ())):
                        # Faust would drop it as read ("DROPPED MESSAGE ROFF"): its read offset
                        # was set by a delivery that straddled a seek, and nothing processed
                        # this record since the commit.
                        read_offset[tp] = read = offset
                        if tp not in redelivered:
                            redelivered.add(tp)
                            log.info("records %s:%d from %d fetched again after a seek were never "
                                     "processed; delivering them", tp.topic, tp.partition, offset)
                else:
                    expected = next_expected(read, tp in state.sought)
                    if expected is not None and committed is not None:
                        expected = max(expected, committed)  # below it all is processed
                    if expected is not None and offset > expected:
                        target = committed if committed is not None else 0
                        if rewinds(state, tp, target) < GIVE_UP_AFTER:
                            withheld.add(tp)
                            if settled:
                                await _rewind(self, state, tp, target, expected, offset)
                            else:  # no seek while tables recover (it stalled a recovery)
                                state.skipped[tp] = "a jump seen while the tables recovered"
                            continue
                        log.warning("records %s:%d %d..%d are not on the broker any more (fetched "
                                    "again, still missing); going on from %d", tp.topic,
                                    tp.partition, expected, offset - 1, offset)
                        state.accepted.add(tp)
            if read is None or offset >= read:  # the drain loop delivers it (else: ROFF)
                state.delivered_at[tp] = time.monotonic()
                state.sought.discard(tp)
                if state.rewound.get(tp, (-1, 0))[0] < offset:
                    state.rewound.pop(tp, None)
            yield tp, message

    base.perform_seek = perform_seek
    base.seek = seek
    base.getmany = getmany


async def _rewind(consumer: Any, state: _State, tp: Any, offset: int, expected: int, seen: int) -> None:
    """Seek ``tp`` back to ``offset`` (its committed offset: whatever was delivered since may
    be lost in a stream buffer, and is processed again) after a jump from ``expected`` to
    ``seen``."""
    log.warning("records %s:%d %d..%d were skipped by the fetch (a batch from before a rebalance "
                "or seek); fetching again from %d", tp.topic, tp.partition, expected, seen - 1, offset)
    await _seek_back(consumer, state, tp, offset)


async def _fetch_skipped_again(consumer: Any, state: _State) -> None:
    """Seek the partitions marked in ``state.skipped`` back to their committed offsets, each
    logged with its reason (a record a stream skipped: Faust's recovery resumes and seeks the
    stream partitions before it resumes flow control, while the consumer's flow runs since
    the changelogs were read, so a record delivered in between is skipped by its stream and
    no seek follows; a jump seen during recovery; a held commit; a stalled partition)."""
    skipped, state.skipped = state.skipped, {}
    assigned = consumer.assignment()
    for tp in sorted(set(skipped) & assigned):
        if tp.topic in state.jumps_allowed:
            continue
        committed = consumer._committed_offset.get(tp)
        target = committed if committed is not None else 0
        log.warning("fetching %s:%d again from %d: %s", tp.topic, tp.partition, target, skipped[tp])
        await _seek_back(consumer, state, tp, target)


async def _seek_back(consumer: Any, state: _State, tp: Any, offset: int) -> None:
    """Seek ``tp`` to ``offset`` in the consumer's thread (aiokafka's seek is not thread-safe;
    Faust's ``seek_wait`` also sets the read offset). A partition revoked meanwhile is left
    alone: its new owner starts from the committed offset."""
    state.rewound[tp] = (offset, rewinds(state, tp, offset) + 1)
    try:
        await consumer.seek_wait({tp: offset})
        state.sought.add(tp)
    except Exception as exc:  # IllegalStateError from aiokafka: no longer assigned
        if tp in consumer.assignment():
            raise
        log.info("%s:%d was revoked before it could be sought back (%r)", tp.topic, tp.partition, exc)


def _install_head(base: Any) -> None:
    original_new_offset = base._new_offset

    def _new_offset(self: Any, tp: Any) -> int | None:
        acked = self._acked.get(tp)
        if acked:
            gap = self._gap.get(tp)
            gap_start = gap.begin() if gap else None
            committed = self._committed_offset.get(tp)
            state = _state(self)
            if head_blocked(committed, acked, gap_start):
                if tp not in state.accepted:
                    tell_held(self, state, tp, committed, refetch="rewind" in _installed)
                    return None
                state.accepted.discard(tp)
            state.held_since.pop(tp, None)
        found: int | None = original_new_offset(self, tp)
        return found

    base._new_offset = _new_offset


def _install_acks(base: Any) -> None:
    original_ack = base.ack

    def ack(self: Any, message: Any) -> bool:
        app = self.app
        current = getattr(message, "generation_id", None) == app.consumer_generation_id
        if not current or not app.flow_control.is_active():
            if not message.acked:
                message.acked = True
                self._unacked_messages.discard(message)
                if current and "rewind" in _installed and app.topics.acks_enabled_for(message.topic):
                    _state(self).skipped[message.tp] = "a record skipped by a stream"  # no seek follows
            return False
        result: bool = original_ack(self, message)
        return result

    base.ack = ack
