"""The open payments with a deadline, kept beside the ``payments`` table for the sweeper.

The deadline sweeper visits open payments whose deadline passed; parsing the whole table
every tick would cost more than the sweep. The payments processor keeps this index as it
writes the table (:meth:`OpenIndex.note`) and rebuilds it from the table after a rebalance
(:meth:`OpenIndex.rebuild`), when the partitions this worker owns have changed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from streams.agents.packing import unpack_json
from trailpay.domain.events import PaymentSnapshot
from trailpay.domain.payment import Payment
from trailpay.domain.status import OPEN


@dataclass(slots=True)
class OpenEntry:
    """What the sweeper needs about an open payment, without parsing the table."""

    deadline: datetime
    partition: int
    queried: bool = False
    expired: bool = False


@dataclass
class OpenIndex:
    """reference key -> :class:`OpenEntry` for every open payment with a deadline."""

    entries: dict[bytes, OpenEntry] = field(default_factory=dict)
    #: Rebuild from the table before the next use (set on rebalance).
    stale: bool = True

    def note(self, key: bytes, partition: int, snapshot: PaymentSnapshot) -> None:
        """Follow one table write: a new deadline resets the entry, a settled payment leaves."""
        if snapshot.status in OPEN and snapshot.deadline_at is not None:
            entry = self.entries.get(key)
            if entry is None or entry.deadline != snapshot.deadline_at:
                self.entries[key] = OpenEntry(snapshot.deadline_at, partition)
        else:
            self.entries.pop(key, None)

    def rebuild(self, table_items: Iterable[tuple[bytes, bytes]]) -> None:
        """The open payments of the table's values (packed or plain JSON); what the sweeper
        already sent for a payment whose deadline did not change is kept."""
        index: dict[bytes, OpenEntry] = {}
        for key, raw in table_items:
            snap = json.loads(unpack_json(raw))["snapshot"]
            if snap["status"] in OPEN and snap.get("deadline_at"):
                old = self.entries.get(key)
                deadline = datetime.fromisoformat(snap["deadline_at"].replace("Z", "+00:00"))
                entry = OpenEntry(deadline, old.partition if old else -1)
                if old is not None and old.deadline == deadline:
                    entry.queried, entry.expired = old.queried, old.expired
                index[key] = entry
        self.entries = index
        self.stale = False


@dataclass
class OpenPayments:
    """The sweeper's view: taken under the processor's lock with every decided batch in the
    tables (``PaymentProcessor.open_payments``). The sweeper marks entries (``queried`` /
    ``expired``) in place."""

    entries: dict[bytes, OpenEntry]
    load: Callable[[bytes], Payment | None]

    def forget(self, key: bytes) -> None:
        """Drop a payment that is no longer open (the next table write would too)."""
        self.entries.pop(key, None)
