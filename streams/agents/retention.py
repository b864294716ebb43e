"""A time to live for the worker's idempotency tables.

The dispatcher (finished provider commands), the booking bridge (handled payment requests)
and the notifier (sent notifications) each keep a table of ids, so that a redelivered record
does nothing the second time. Redelivery comes within minutes of the first delivery (a
rebalance, a crash before the offset commit); kept forever, those tables would grow with
every payment ever made and so would the worker's memory and recovery time.

Each entry therefore carries the time it was written and the partition of its changelog
(``b"<epoch s>:<partition>|" + payload``), and a timer forgets entries older than
``Settings.idempotency_ttl_s`` (72 h by default), a bounded number per tick, with a
tombstone on the changelog: the way the webhook dedup table is purged. An entry written
before stamping (no prefix) is kept: the partition of its changelog is not known.
A replay of an older range is not what these tables guard against: replayed requests,
commands and state changes are deduplicated by their deterministic ids further on (the
state machine's applied ids, ``trailpay replay`` refusing the command and notification
topics).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streams.agents.common import TableWrites, table_delete, table_put
from streams.agents.dedup import DedupMemory
from streams.app import StreamContext

log = logging.getLogger(__name__)

#: Most entries one purge tick forgets per table.
MAX_PURGE_PER_TICK = 20_000
_STAMP = re.compile(rb"^(\d+(?:\.\d+)?):(\d+)\|")


def stamp(payload: bytes, written_at: float, partition: int) -> bytes:
    return b"%.0f:%d|" % (written_at, partition) + payload


def unstamp(stored: bytes) -> tuple[float | None, int | None, bytes]:
    """(written at, changelog partition, payload); ``None``s for an entry without a stamp."""
    found = _STAMP.match(stored)
    if found is None:
        return None, None, stored
    return float(found.group(1)), int(found.group(2)), stored[found.end():]


@dataclass
class ExpiringTable:
    """A Faust table whose entries expire ``ttl_s`` after they were written."""

    table: Any
    ttl_s: float
    name: str
    clock: Callable[[], float] = time.time
    #: Rebuild the expiry schedule from the table before the next purge (set on rebalance).
    stale: bool = True
    _schedule: DedupMemory = field(init=False)

    def __post_init__(self) -> None:
        self._schedule = DedupMemory(self.ttl_s)

    def get(self, key: bytes) -> bytes | None:
        stored = self.table.data.get(key)
        return None if stored is None else unstamp(stored)[2]

    def __contains__(self, key: bytes) -> bool:
        return key in self.table.data

    def put(self, partition: int, key: bytes, payload: bytes,
            writes: TableWrites | None = None) -> None:
        now = self.clock()
        table_put(self.table, partition, key, stamp(payload, now, partition), writes)
        if not self.stale:
            self._schedule.add(key.decode(), now, partition)

    def _rebuild(self) -> None:
        now = self.clock()
        schedule = DedupMemory(self.ttl_s)
        for key, stored in list(self.table.data.items()):
            written_at, partition, _ = unstamp(stored)
            if partition is None:
                # Written before entries were stamped: its changelog partition is unknown,
                # so it stays (a few entries from before an upgrade).
                continue
            schedule.add(key.decode(), now if written_at is None else written_at, partition)
        self._schedule = schedule
        self.stale = False

    def purge(self, limit: int = MAX_PURGE_PER_TICK) -> int:
        """Forget up to ``limit`` entries older than the TTL; how many were forgotten."""
        if self.stale:
            self._rebuild()
        gone = self._schedule.expired(self.clock(), limit)
        for key, partition in gone:
            table_delete(self.table, partition, key.encode())
        return len(gone)


def purge_interval(ttl_s: float) -> float:
    """How often to purge: a tenth of the TTL, between 5 s and 10 min."""
    return max(5.0, min(600.0, ttl_s / 10))


def register_purge(ctx: StreamContext, expiring: ExpiringTable) -> None:
    """A Faust timer that purges ``expiring``, and a rebalance hook that marks it stale."""
    app = ctx.app

    @app.on_rebalance_complete.connect
    def _rebalanced(sender: Any, /, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        expiring.stale = True

    async def purge() -> None:
        if app.rebalancing:
            return
        count = expiring.purge()
        if count:
            log.info("%s: forgot %d entries older than %ss", expiring.name, count, expiring.ttl_s)

    purge.__name__ = f"purge_{expiring.name.replace('-', '_')}"
    app.timer(interval=purge_interval(expiring.ttl_s), name=purge.__name__)(purge)
