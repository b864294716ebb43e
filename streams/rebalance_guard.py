"""Corrections to Faust's consumer (faust-streaming 0.15.3) that lost events at a rebalance.

Found with :mod:`streams.offsettrace` on Apache Kafka (tests/fault/test_scale_out.py, three
workers, one killed). Both are Faust's, not aiokafka's or the broker's: aiokafka drops a
fetched batch whose partition was sought since (``FetchResult.check_assignment``).

1. **Records fetched before a seek, delivered after it.** ``Consumer.getmany``
   (faust/transport/consumer.py:738-739) reads the consumer generation *after*
   ``_wait_next_records`` returned, so a batch aiokafka handed over before the rebalance
   (positions then at, say, 73) reaches the drain loop after the recovery sought the
   partition back to its committed offset (40) and is delivered as the new generation's.
   ``_drain_messages`` (consumer.py:1207-1229) then takes the jump from 40 to 56 for a
   compacted-topic gap: ``_add_gap`` marks 41..56 as acked, and the records 40..55 the
   fetcher returns next are below the read offset and dropped ("DROPPED MESSAGE ROFF").
   The next commit moves past them: whatever of them was fetched but not processed before
   the revoke (cleared from the stream buffers by ``flow_control.clear()``) is never
   processed by anyone. Seen in the traces as ``gap payments.requests.v1:2 41..56
   (committed 40)`` right after the seek, in the runs that lost payments.

   The guard: the stream-topic records of a batch whose fetch overlapped a seek or a
   generation change are discarded and their partitions are sought back to the next
   offset not yet delivered in this epoch (the sought offset, or one past the last
   delivered record), so aiokafka fetches them again, in order.

2. **Skipped records acked.** A stream skips a record of an older generation, or one taken
   while flow control is suspended, and acks it (faust/streams.py:1287-1299 and 1336-1345:
   ``do_ack or value is skipped_value``), even under ``take_events``, which disabled acks
   precisely so that only processed records are acked. The revoke had already dropped the
   partition's acks, so the skipped offset counts as processed towards the next commit.

   The guard: an ack of a record of another generation, or while flow control is
   suspended, marks the message acked but does not count it for the commit. Records that
   were processed and acked during a rebalance are then processed again after it, which
   every agent already tolerates (redelivery after a crash).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

log = logging.getLogger(__name__)

_installed = False


def parts(chosen: str) -> set[str]:
    """Which corrections ``Settings.rebalance_guard`` (``TRAILPAY_REBALANCE_GUARD``) asks for:
    ``refetch``, ``acks`` (both: ``1``; none: ``0``, the default, see the README's Scaling)."""
    if chosen in ("", "0"):
        return set()
    return {"refetch", "acks"} if chosen == "1" else {p.strip() for p in chosen.split(",")}


def install(which: set[str]) -> None:
    """Patch Faust's consumer class (once per process, for every broker kind)."""
    global _installed
    if _installed or not which:
        return
    _installed = True
    # Imported here: the patch reaches into Faust's internals, loaded only in a worker.
    from faust.transport import consumer as fc
    from faust.types import TP

    base: Any = fc.Consumer

    def epoch(consumer: Any) -> tuple[Any, int]:
        return consumer.app.consumer_generation_id, getattr(consumer, "_guard_seeks", 0)

    def expected(consumer: Any) -> dict[TP, int]:
        found: dict[TP, int] | None = getattr(consumer, "_guard_next", None)
        if found is None:
            found = {}
            consumer._guard_next = found
        return found

    original_perform_seek = base.perform_seek

    async def perform_seek(self: Any) -> None:
        self._guard_seeks = getattr(self, "_guard_seeks", 0) + 1
        try:
            await original_perform_seek(self)
        finally:
            self._guard_seeks += 1
        nxt = expected(self)
        nxt.clear()
        for tp, offset in self._committed_offset.items():
            if offset is not None:
                nxt[tp] = offset

    original_wait = base._wait_next_records

    async def _wait_next_records(self: Any, timeout: float) -> tuple[Any, Any]:  # noqa: ASYNC109 - Faust's signature
        before = epoch(self)
        records, active = await original_wait(self, timeout)
        if records and epoch(self) != before:
            # Only the stream topics: changelog records belong to table recovery, which
            # positions those partitions itself.
            acking = self.app.topics.acks_enabled_for
            stale = {tp: r for tp, r in records.items() if acking(tp.topic)}
            if stale:
                await _refetch(self, stale)
                records = {tp: r for tp, r in records.items() if tp not in stale}
        return records, active

    async def _refetch(consumer: Any, records: Any) -> None:
        nxt = expected(consumer)
        back = {tp: nxt[tp] for tp in records if tp in nxt}
        log.info("discarded %d records fetched across a rebalance or seek; fetching them "
                 "again from %s", sum(len(r) for r in records.values()),
                 ", ".join(f"{tp.topic}:{tp.partition}@{o}" for tp, o in sorted(back.items())))
        unknown = [tp for tp in records if tp not in nxt]
        try:
            if unknown:
                await consumer.perform_seek()
            elif back:
                await consumer.seek_wait(back)
                consumer._guard_seeks = getattr(consumer, "_guard_seeks", 0) + 1
        except Exception as exc:
            if consumer.app.rebalancing:  # its recovery seeks every partition again
                log.warning("seek after discarding records failed during a rebalance: %r", exc)
                return
            raise

    original_getmany = base.getmany

    async def getmany(self: Any, timeout: float) -> AsyncIterator[tuple[Any, Any]]:  # noqa: ASYNC109 - Faust's
        nxt = expected(self)
        async for tp, message in original_getmany(self, timeout):
            if message.offset + 1 > nxt.get(tp, -1):
                nxt[tp] = message.offset + 1
            yield tp, message

    original_ack = base.ack

    def ack(self: Any, message: Any) -> bool:
        app = self.app
        if (getattr(message, "generation_id", None) != app.consumer_generation_id
                or not app.flow_control.is_active()):
            if not message.acked:
                message.acked = True
                self._unacked_messages.discard(message)
            return False
        result: bool = original_ack(self, message)
        return result

    if "refetch" in which:
        base.perform_seek = perform_seek
        base._wait_next_records = _wait_next_records
        base.getmany = getmany
    if "acks" in which:
        base.ack = ack
    log.info("Faust consumer corrections installed: %s", ", ".join(sorted(which)))
