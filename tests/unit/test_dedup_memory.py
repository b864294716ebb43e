"""The webhook dedup memory: entries live at least the TTL, then are purged, a bounded
number at a time, and it rebuilds from the table after a rebalance."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from streams.agents.dedup import DedupMemory, dedup_key
from trailpay.domain.events import Money, Provider, ProviderEvent, ProviderEventKind
from trailpay.domain.status import PaymentStatus

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


def _callback(reference: str, checkout: str, shillings: int) -> ProviderEvent:
    return ProviderEvent(event_id=f"mpesa:{checkout}:0", occurred_at=datetime(2026, 12, 1, tzinfo=UTC),
                         kind=ProviderEventKind.STATUS, reference=reference, provider=Provider.MPESA,
                         status=PaymentStatus.SUCCEEDED, provider_reference=checkout,
                         amount=Money.of(Decimal(shillings), "KES"), source="webhook")


def test_dedup_key_tells_a_forged_copy_from_the_genuine_callback() -> None:
    genuine = _callback("TPA", "ws_CO_A", 100)
    assert dedup_key(genuine) == "mpesa:ws_CO_A:0|TPA|ws_CO_A|10000KES"
    assert dedup_key(_callback("TPA", "ws_CO_A", 100)) == dedup_key(genuine)  # Daraja's repeat
    assert dedup_key(_callback("TPA", "ws_CO_A", 1)) != dedup_key(genuine)  # Amount: 1
    assert dedup_key(_callback("TPB", "ws_CO_A", 100)) != dedup_key(genuine)  # under another reference
