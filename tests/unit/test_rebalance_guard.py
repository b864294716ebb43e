"""The corrections of Faust's consumer at a rebalance (streams.rebalance_guard, issue 14).

``head`` runs on Faust's own ``Consumer._new_offset`` with the bookkeeping the traces showed
(``gap payments.requests.v1:2 41..56 (committed 40)``): Faust alone commits 57, past records
nobody processed. ``rewind`` runs on a stand-in with Faust's consumer interface (read offsets,
``seek_wait``, a ``getmany`` generator), since its input is what Faust's fetch hands over.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP
from intervaltree import IntervalTree

from streams import rebalance_guard
from streams.rebalance_guard import head_blocked, next_expected, parts

REQUESTS = TP("payments.requests.v1", 2)
WEBHOOKS = TP("webhooks.raw.v1", 0)  # nothing committed yet
STATE = TP("payments.state.v1", 2)  # compacted: its offsets may jump


def test_parts_by_name() -> None:
    assert parts("1") == {"rewind", "head", "acks", "recovery"}
    assert parts("0") == set()
    assert parts("") == set()
    assert parts("rewind, acks") == {"rewind", "acks"}
    with pytest.raises(ValueError, match="refetch"):
        parts("refetch")


def test_next_expected_after_a_seek_is_the_sought_offset() -> None:
    assert next_expected(40, sought=True) == 40
    assert next_expected(40, sought=False) == 41
    assert next_expected(None, sought=True) == 0  # sought to nothing committed: from the start
    assert next_expected(None, sought=False) is None
    assert next_expected(0, sought=False) == 1


def test_head_blocked_when_the_committed_record_was_never_acked() -> None:
    assert head_blocked(40, [41, 42], None) is True
    assert head_blocked(40, [57, 58], 41) is True
    assert head_blocked(40, [40, 41], None) is False
    assert head_blocked(40, [57], 40) is False
    assert head_blocked(None, [57], None) is False
    assert head_blocked(0, [1], None) is True
    assert head_blocked(40, [], None) is False


class _Bookkeeping:
    """The attributes Faust's ``_new_offset`` reads, as after the stale batch of the traces."""

    def __init__(self) -> None:
        self._acked: dict[TP, list[int]] = defaultdict(list)
        self._acked_index: dict[TP, set[int]] = defaultdict(set)
        self._gap: dict[TP, IntervalTree] = defaultdict(IntervalTree)
        self._committed_offset: dict[TP, int | None] = defaultdict(lambda: None)
        self._committed_offset[REQUESTS] = 40
        self._gap[REQUESTS].addi(41, 57)  # Faust's _add_gap(tp, 41, 56): intervals exclude the end
        self._acked[REQUESTS].extend(range(57, 73))
        self._acked_index[REQUESTS].update(range(57, 73))


def test_faust_alone_commits_past_records_nobody_processed() -> None:
    """The defect: 40 was never acked, yet Faust's next commit is 73."""
    assert FaustConsumer._new_offset(_Bookkeeping(), REQUESTS) == 73  # type: ignore[arg-type]


def _head_corrected() -> Any:
    """The traces' bookkeeping, with ``head`` installed over Faust's own ``_new_offset``."""
    class Base:
        _new_offset = FaustConsumer._new_offset

    rebalance_guard._install_head(Base)
    books: Any = _Bookkeeping()
    books.__class__ = type("Patched", (_Bookkeeping, Base), {})
    return books


def test_head_keeps_the_commit_until_the_committed_record_is_processed() -> None:
    books = _head_corrected()
    assert books._new_offset(REQUESTS) is None
    books._acked[REQUESTS].append(40)  # record 40 processed after all
    books._acked_index[REQUESTS].add(40)
    assert books._new_offset(REQUESTS) == 73


class _Unacked(list[Any]):
    """Faust's WeakSet of unacked messages, as far as the corrections use it."""

    def discard(self, message: Any) -> None:
        if message in self:
            self.remove(message)


class _Fetch:
    """A stand-in of Faust's consumer: ``getmany`` hands over the batches given, in order."""

    def __init__(self, batches: list[list[tuple[TP, int]]], assigned: set[TP] | None = None) -> None:
        self.batches = batches
        self.sought_to: list[dict[TP, int]] = []
        self._unacked_messages: list[Any] = []
        self.highwaters: dict[TP, int] = {}
        self._read_offset: dict[TP, int | None] = defaultdict(lambda: None)
        self._committed_offset: dict[TP, int | None] = defaultdict(lambda: None)
        self._committed_offset[REQUESTS] = 40
        self._acked_index: dict[TP, set[int]] = defaultdict(set)
        self.assigned = assigned if assigned is not None else {REQUESTS, STATE, WEBHOOKS}
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: True),
                                   flow_control=SimpleNamespace(is_active=lambda: True),
                                   rebalancing=False, consumer_generation_id=3)

    def assignment(self) -> set[TP]:
        return self.assigned

    def highwater(self, tp: TP) -> int | None:
        return self.highwaters.get(tp)

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        if not set(partitions) <= self.assigned:
            raise RuntimeError("IllegalStateError: no current assignment for partition")
        self.sought_to.append(dict(partitions))
        for tp, offset in partitions.items():  # as Faust's _seek_wait: 0 leaves no read offset
            if offset > 0:
                self._read_offset[tp] = offset
            else:
                self._read_offset.pop(tp, None)

    async def perform_seek(self) -> None:  # the recovery's seek to the committed offsets
        self._read_offset[REQUESTS] = 40

    async def seek(self, partition: TP, offset: int) -> None:
        self._read_offset[partition] = offset

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        for tp, offset in self.batches.pop(0):
            yield tp, SimpleNamespace(offset=offset)


def _patched(fetch: _Fetch) -> Any:
    cls = type("Guarded", (_Fetch,), {})
    rebalance_guard._install_rewind(cls, frozenset({STATE.topic}))
    fetch.__class__ = cls
    return fetch


async def _drain(consumer: Any) -> list[tuple[TP, int]]:
    """Faust's drain loop in short: deliver what is at or above the read offset."""
    delivered = []
    async for tp, message in consumer.getmany(1.0):
        read = consumer._read_offset[tp]
        if read is None or message.offset >= read:
            delivered.append((tp, message.offset))
            consumer._read_offset[tp] = message.offset
    return delivered


async def test_a_stale_batch_after_the_seek_is_fetched_again_from_the_committed_offset() -> None:
    stale = [(REQUESTS, o) for o in range(57, 60)] + [(STATE, 9), (STATE, 30)]
    again = [(REQUESTS, o) for o in range(40, 60)]
    consumer = _patched(_Fetch([stale, again]))
    await consumer.perform_seek()  # "Seek stream partitions to committed offsets": 40
    first = await _drain(consumer)
    assert first == [(STATE, 9), (STATE, 30)]  # the compacted topic's jump is left alone
    assert consumer.sought_to == [{REQUESTS: 40}]
    second = await _drain(consumer)
    assert second == [(REQUESTS, o) for o in range(40, 60)]


async def test_a_partition_with_nothing_committed_starts_at_the_first_record() -> None:
    """Faust has no read offset for it, so it accepts any first record and commits from
    there; the records before that were never processed."""
    consumer = _patched(_Fetch([[(WEBHOOKS, 15), (WEBHOOKS, 16)], [(WEBHOOKS, 0), (WEBHOOKS, 1)]]))
    await consumer.perform_seek()
    assert await _drain(consumer) == []
    assert consumer.sought_to == [{WEBHOOKS: 0}]
    assert await _drain(consumer) == [(WEBHOOKS, 0), (WEBHOOKS, 1)]


async def test_no_rewind_when_the_jump_ends_at_the_committed_offset() -> None:
    """Sought while nothing was committed, then records 0..3 committed: 4 is the next one."""
    consumer = _patched(_Fetch([[(WEBHOOKS, 4), (WEBHOOKS, 5)]]))
    await consumer.perform_seek()
    consumer._committed_offset[WEBHOOKS] = 4
    assert await _drain(consumer) == [(WEBHOOKS, 4), (WEBHOOKS, 5)]
    assert consumer.sought_to == []


async def test_a_jump_between_delivered_records_rewinds_to_the_committed_offset() -> None:
    """Records delivered since the commit may sit in a cleared stream buffer: all of them are
    fetched again (processing twice is harmless, never is not)."""
    consumer = _patched(_Fetch([[(REQUESTS, 40), (REQUESTS, 41), (REQUESTS, 45), (REQUESTS, 46)],
                                [(REQUESTS, 40), (REQUESTS, 41), (REQUESTS, 42)]]))
    assert await _drain(consumer) == [(REQUESTS, 40), (REQUESTS, 41)]
    assert consumer.sought_to == [{REQUESTS: 40}]
    assert await _drain(consumer) == [(REQUESTS, 40), (REQUESTS, 41), (REQUESTS, 42)]


async def test_records_refetched_after_a_straddled_seek_are_delivered_if_nobody_acked_them() -> None:
    """Seen in a run: sought to 18, but a delivery that straddled the seek set the read offset
    to 58 afterwards; Faust alone drops the refetched 40..58 as read."""
    consumer = _patched(_Fetch([[(REQUESTS, 38), (REQUESTS, 39), (REQUESTS, 40), (REQUESTS, 41)]]))
    consumer._read_offset[REQUESTS] = 58
    consumer._acked_index[REQUESTS].add(40)  # processed and acked since the commit
    assert await _drain(consumer) == [(REQUESTS, 41)]
    assert consumer.sought_to == []


async def test_no_seek_while_the_tables_recover_the_rewind_waits_for_the_end() -> None:
    """A seek during table recovery stalled the recovery in a run: the jump is withheld and
    the partition sought back once the rebalance is over."""
    consumer = _patched(_Fetch([[(REQUESTS, 57)], [(REQUESTS, 58)], [(REQUESTS, 40)]]))
    await consumer.perform_seek()
    consumer.app.rebalancing = True
    assert await _drain(consumer) == []
    assert consumer.sought_to == []
    consumer.app.rebalancing = False
    assert await _drain(consumer) == []  # sought back; 58, fetched before, is a jump again
    assert consumer.sought_to == [{REQUESTS: 40}, {REQUESTS: 40}]
    assert await _drain(consumer) == [(REQUESTS, 40)]


async def test_records_gone_from_the_broker_are_let_through_after_one_rewind() -> None:
    """Retention moved the log start past the committed offset: the jump comes back after
    three rewinds and is then accepted, so the partition cannot loop."""
    consumer = _patched(_Fetch([[(REQUESTS, 100), (REQUESTS, 101)]] * 4))
    await consumer.perform_seek()
    for _ in range(3):
        assert await _drain(consumer) == []
    assert await _drain(consumer) == [(REQUESTS, 100), (REQUESTS, 101)]
    assert consumer.sought_to == [{REQUESTS: 40}] * 3


async def test_a_partition_revoked_before_its_rewind_is_left_to_its_new_owner() -> None:
    consumer = _patched(_Fetch([[(REQUESTS, 57)]], assigned={STATE}))
    await consumer.perform_seek()
    assert await _drain(consumer) == []
    assert consumer.sought_to == []


def test_current_drops_events_of_an_older_generation_only_with_acks(monkeypatch: pytest.MonkeyPatch) -> None:
    app = SimpleNamespace(consumer_generation_id=7,
                          flow_control=SimpleNamespace(is_active=lambda: True))
    events = [SimpleNamespace(message=SimpleNamespace(generation_id=g)) for g in (6, 7, 7)]
    monkeypatch.setattr(rebalance_guard, "_installed", set())
    assert rebalance_guard.current(app, events) == events
    monkeypatch.setattr(rebalance_guard, "_installed", {"acks"})
    assert rebalance_guard.current(app, events) == events[1:]
    app.flow_control = SimpleNamespace(is_active=lambda: False)  # a rebalance under way
    assert rebalance_guard.current(app, events) == []


async def test_a_record_a_stream_skipped_in_this_generation_is_fetched_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Faust's recovery resumes fetching before flow control: the stream skips the record
    (Faust acks it) and no seek follows, so nothing would ever process it."""
    flow = {"active": False}
    cls = type("Guarded", (_Fetch,), {"ack": lambda self, message: True})
    rebalance_guard._install_rewind(cls, frozenset({STATE.topic}))
    rebalance_guard._install_acks(cls)
    consumer: Any = _Fetch([[(REQUESTS, 40), (REQUESTS, 41)]])
    consumer.__class__ = cls
    consumer._unacked_messages = _Unacked()
    consumer.app.consumer_generation_id = 3
    consumer.app.flow_control = SimpleNamespace(is_active=lambda: flow["active"])
    monkeypatch.setattr(rebalance_guard, "_installed", {"rewind", "acks"})
    skipped = SimpleNamespace(acked=False, generation_id=3, tp=REQUESTS, topic=REQUESTS.topic)
    assert consumer.ack(skipped) is False
    assert skipped.acked is True
    flow["active"] = True
    assert await _drain(consumer) == [(REQUESTS, 40), (REQUESTS, 41)]
    assert consumer.sought_to == [{REQUESTS: 40}]


def test_a_commit_held_by_a_record_no_stream_holds_fetches_the_partition_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    books = _head_corrected()
    books._unacked_messages = [SimpleNamespace(tp=REQUESTS, offset=57)]  # 40 is in no stream
    monkeypatch.setattr(rebalance_guard, "_installed", {"rewind", "head"})
    state = rebalance_guard._state(books)
    assert books._new_offset(REQUESTS) is None
    assert not state.skipped  # held, but only just
    state.held_since[REQUESTS] -= rebalance_guard.HELD_REFETCH_S
    assert books._new_offset(REQUESTS) is None
    assert set(state.skipped) == {REQUESTS}
    state.skipped.clear()
    books._unacked_messages.append(SimpleNamespace(tp=REQUESTS, offset=40))  # now in flight
    state.held_since[REQUESTS] -= rebalance_guard.HELD_REFETCH_S
    assert books._new_offset(REQUESTS) is None
    assert not state.skipped


async def test_a_partition_with_records_to_read_and_nothing_delivered_is_fetched_again() -> None:
    consumer = _patched(_Fetch([[(REQUESTS, 40)], [(REQUESTS, 40)], [(REQUESTS, 40)]]))
    consumer.highwaters[REQUESTS] = 52  # 40..51 on the broker, committed 40
    state = rebalance_guard._state(consumer)
    state.delivered_at[REQUESTS] = 0.0  # long ago
    consumer._unacked_messages.append(SimpleNamespace(tp=REQUESTS, offset=40))  # at work
    assert await _drain(consumer) == [(REQUESTS, 40)]
    assert consumer.sought_to == []
    consumer._unacked_messages.clear()
    state.delivered_at[REQUESTS] = 0.0
    state.stall_checked = 0.0
    assert await _drain(consumer) == [(REQUESTS, 40)]
    assert consumer.sought_to == [{REQUESTS: 40}]
