"""The webhook dedup memory: entries live at least the TTL, then are purged, a bounded
number at a time, and it rebuilds from the table after a rebalance."""

from __future__ import annotations

from streams.agents.dedup import DedupMemory

TTL = 72 * 3600


def test_seen_ids_live_the_ttl_then_go():
    memory = DedupMemory(TTL)
    memory.add("stripe:evt_1", 1000.0, 0)
    memory.add("mpesa:ws_CO_1:0", 2000.0, 3)
    assert "stripe:evt_1" in memory
    assert memory.expired(1000.0 + TTL - 1, 100) == []
    assert memory.expired(1000.0 + TTL, 100) == [("stripe:evt_1", 0)]
    assert "stripe:evt_1" not in memory and "mpesa:ws_CO_1:0" in memory


def test_purge_is_bounded_per_tick():
    memory = DedupMemory(60)
    for i in range(250):
        memory.add(f"airtel:{i}:TS", float(i), i % 4)
    assert len(memory.expired(10_000, 100)) == 100
    assert len(memory.expired(10_000, 100)) == 100
    assert len(memory.expired(10_000, 100)) == 50
    assert memory.seen == {}


def test_rebuilt_from_table_values():
    items = [(b"stripe:evt_9", DedupMemory.encode(123.5, 2))]
    memory = DedupMemory.rebuilt(TTL, items)
    assert memory.seen == {"stripe:evt_9": (123.5, 2)}
    assert memory.expired(123.5 + TTL, 10) == [("stripe:evt_9", 2)]
