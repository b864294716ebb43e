"""``normalize_webhooks``: raw webhooks -> verified, normalised, deduplicated provider events.

webhooks.raw.v1 -> the provider's :class:`WebhookHandler` (verify unless the ingress already
did, normalise) -> drop events whose id (``stripe:evt_...``, ``mpesa:<CheckoutRequestID>:
<ResultCode>``, ``airtel:<id>:<status>``) was seen in the last ``dedup_ttl_s`` (72 h: Stripe
retries for 3 days) -> provider.events.v1 keyed by payment reference.

Webhooks the ingress marked ``verified=False`` are never applied (the sinks keep them for
audit). Undecodable, unverifiable or unparseable webhooks become dead letters.

The dedup memory is the table ``webhook-dedup`` (:func:`dedup_key` -> first-seen time and
partition) with a timer that deletes entries older than the TTL, a bounded number per tick.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.providers.base import WebhookHandler
from streams import offsettrace
from streams.agents.common import Incoming, Meter, Outbox, Pipeline, TableWrites, table_delete, table_put
from streams.app import StreamContext
from trailpay import codec, topics
from trailpay.domain.errors import PermanentError
from trailpay.domain.events import Provider, ProviderEvent, RawWebhook

log = logging.getLogger(__name__)

STAGE = "dedup"
BATCH_SIZE = 1000
BATCH_WITHIN_S = 0.02
#: Most dedup entries one purge tick deletes.
MAX_PURGE_PER_TICK = 20_000


class NoHandler(PermanentError):
    """No webhook handler is configured for the webhook's provider."""


@dataclass
class DedupMemory:
    """Which event ids were seen, and when, in the order they expire. Pure bookkeeping:
    the Faust glue mirrors every change into the table."""

    ttl_s: float
    seen: dict[str, tuple[float, int]] = field(default_factory=dict)
    _queue: list[tuple[float, str]] = field(default_factory=list)

    def __contains__(self, event_id: str) -> bool:
        return event_id in self.seen

    def add(self, event_id: str, first_seen: float, partition: int) -> None:
        self.seen[event_id] = (first_seen, partition)
        heapq.heappush(self._queue, (first_seen, event_id))

    def expired(self, now: float, limit: int) -> list[tuple[str, int]]:
        """Remove and return up to ``limit`` (event id, partition) older than the TTL."""
        gone: list[tuple[str, int]] = []
        cutoff = now - self.ttl_s
        while self._queue and len(gone) < limit and self._queue[0][0] <= cutoff:
            first_seen, event_id = heapq.heappop(self._queue)
            entry = self.seen.get(event_id)
            if entry is not None and entry[0] == first_seen:
                del self.seen[event_id]
                gone.append((event_id, entry[1]))
        return gone

    @staticmethod
    def encode(first_seen: float, partition: int) -> bytes:
        return f"{first_seen:.3f}:{partition}".encode()

    @classmethod
    def rebuilt(cls, ttl_s: float, items: Iterable[tuple[bytes, bytes]]) -> DedupMemory:
        memory = cls(ttl_s)
        for key, value in items:
            first, _, partition = value.decode().partition(":")
            memory.add(key.decode(), float(first), int(partition or 0))
        return memory


def dedup_key(event: ProviderEvent) -> str:
    """What makes two provider events one delivery: the provider's event id *and* what a
    forged copy could change while keeping that id (the payment named, the provider
    reference, the amount).

    Unsigned callbacks (M-Pesa) are identified by fields anyone who saw one can write. Keyed
    by the id alone, a callback forged with a genuine one's id (another payment's
    CheckoutRequestID under our reference, or ``Amount: 1``) is remembered here, dropped as
    suspicious by the state machine, and the genuine callback that follows is then dropped
    here as its duplicate: a charged customer shown unpaid (#15). Daraja's own repeats are
    identical in all of these, so they still collapse."""
    amount = "" if event.amount is None else f"{event.amount.amount}{event.amount.currency}"
    return "|".join((event.event_id, event.reference, event.provider_reference or "", amount))


@dataclass
class WebhookNormalizer:
    ctx: StreamContext
    table: Any
    handlers: dict[Provider, WebhookHandler]
    memory: DedupMemory
    stale: bool = True
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    meter: Meter = field(default_factory=lambda: Meter("dedup"))
    pipeline: Pipeline = field(default_factory=lambda: Pipeline("dedup"))
    #: Event ids forwarded by batches whose outputs are not acknowledged yet.
    pending: dict[str, int] = field(default_factory=dict)

    def _refresh(self) -> None:
        if self.stale:
            self.memory = DedupMemory.rebuilt(self.memory.ttl_s, list(self.table.data.items()))
            self.stale = False

    async def process(self, events: list[Any]) -> None:
        """Normalize, send and remember one batch; the table holds it when this returns."""
        await self.submit(events, ack=False)
        await self.pipeline.drain()

    async def submit(self, events: list[Any], *, ack: bool = True) -> None:
        """One batch through the pipeline: ids are remembered (table) once the broker has
        the forwarded events, in batch order; until then they are in ``pending``."""
        async with self.lock:
            self._refresh()
            out = Outbox()
            fresh: dict[str, int] = {}
            repeated: list[str] = []
            for event in events:
                incoming = Incoming.of(event)
                for provider_event in self._normalize(incoming, out):
                    event_id = dedup_key(provider_event)
                    if event_id in self.memory or event_id in self.pending or event_id in fresh:
                        self.meter.add("duplicate")
                        repeated.append(event_id)
                        continue
                    fresh[event_id] = incoming.partition
                    out.add(topics.PROVIDER_EVENTS, provider_event.reference, provider_event)
            acks = await out.send(self.ctx.app.producer)
            self.pending.update(fresh)
            offsettrace.batch("dedup", events, f"forwarded={len(fresh)} duplicates={repeated[:8]}")

            def commit() -> Awaitable[None]:
                now = time.time()
                writes = TableWrites()
                for event_id, partition in fresh.items():
                    self.memory.add(event_id, now, partition)
                    table_put(self.table, partition, event_id.encode(), DedupMemory.encode(now, partition),
                              writes)
                    self.pending.pop(event_id, None)
                return writes.send(self.ctx.app.producer)

            await self.pipeline.submit(acks, commit, events if ack else [])
            self.meter.add("records", len(events))
            self.meter.add("batches")
            self.meter.add("forwarded", len(fresh))
            self.meter.maybe_log()

    def _normalize(self, incoming: Incoming, out: Outbox) -> list[ProviderEvent]:
        reference: str | None = None
        try:
            raw: RawWebhook = codec.decode(topics.WEBHOOKS_RAW, incoming.value)
            reference = raw.reference
            if raw.verified is False:
                log.info("webhook %s failed verification at the ingress (%s); not applied",
                         raw.event_id, raw.verification_error)
                self.meter.add("unverified")
                return []
            handler = self.handlers.get(raw.provider)
            if handler is None:
                raise NoHandler(f"no webhook handler for provider {raw.provider.value}")
            if raw.verified is None:
                handler.verify(raw)
            return handler.normalize(raw)
        except Exception as exc:  # noqa: BLE001 - routed by type: unverifiable, unparseable or a bug
            out.dead_letter(incoming, exc, STAGE, reference=reference)
            return []

    async def purge(self, limit: int = MAX_PURGE_PER_TICK) -> int:
        async with self.lock:
            await self.pipeline.drain()
            self._refresh()
            gone = self.memory.expired(time.time(), limit)
            for event_id, partition in gone:
                table_delete(self.table, partition, event_id.encode())
            return len(gone)


def register(ctx: StreamContext, handlers: Mapping[Provider, WebhookHandler]) -> WebhookNormalizer:
    """The ``normalize_webhooks`` agent with ``handlers`` (by provider), its table and purge timer."""
    app = ctx.app
    settings = ctx.settings
    table = app.Table("webhook-dedup", key_type=bytes, value_type=bytes, partitions=settings.partitions,
                      help="provider event id -> first seen (epoch s) and partition")
    normalizer = WebhookNormalizer(ctx, table, dict(handlers), DedupMemory(settings.dedup_ttl_s),
                                   pipeline=Pipeline("dedup", on_failure=app.crash))

    @app.agent(ctx.topic(topics.WEBHOOKS_RAW), name="normalize_webhooks")
    async def normalize_webhooks(stream: Any) -> None:
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_S):
            await normalizer.submit(events)

    @app.on_rebalance_complete.connect
    def _rebalanced(sender: Any, /, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        normalizer.stale = True

    purge_interval = max(5.0, min(600.0, settings.dedup_ttl_s / 10))

    @app.timer(interval=purge_interval, name="purge_webhook_dedup")
    async def purge_webhook_dedup() -> None:
        if app.rebalancing:
            return
        count = await normalizer.purge()
        if count:
            log.info("forgot %d webhook ids older than %ss", count, settings.dedup_ttl_s)

    return normalizer
