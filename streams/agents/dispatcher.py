"""``dispatch_provider_commands``: provider.commands.v1 -> provider APIs -> provider.events.v1.

Each command is carried out by its provider's :class:`ProviderGateway` with bounded
concurrency (``provider_concurrency``); commands for the same payment in one batch run in
order. The outcome events (ids ``cmd:<command id>`` / ``query:<command id>``) are sent keyed
by payment reference, and only after the broker has them is the command recorded as done in
the table ``provider-commands-done`` (command id -> the events emitted). A redelivered
command is answered from that table, so it never calls the provider twice; a command redone
because the crash came before the table write calls the provider again with the same
idempotency key (Stripe replays its answer; Airtel refuses the duplicate transaction id, which
we read as "already sent") and yields the same event ids.

A retriable failure (outage, timeout, 5xx, 429 after the client's own retries) is retried
here under ``POLICIES.dispatcher`` (:mod:`trailpay.retry`); then the command goes to dead
letters (stage ``dispatcher.exhausted``) with the reason, and the sweeper settles the payment
by asking the provider once its deadline passes. A refusal becomes a ``command_failed``
event; an exception that is no TrailPay error is a bug (``dispatcher.bug``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.providers.base import ProviderGateway
from connectors.providers.outcomes import refused_by_error
from streams.agents.common import Incoming, Meter, Outbox
from streams.agents.retention import ExpiringTable, register_purge
from streams.app import StreamContext
from trailpay import codec, topics
from trailpay.domain.errors import PermanentError
from trailpay.domain.events import Provider, ProviderCommand, ProviderEvent
from trailpay.retry import POLICIES, RetryPolicy, retry

log = logging.getLogger(__name__)

STAGE = "dispatcher"
TABLE = "provider-commands-done"


class NoGateway(PermanentError):
    """No gateway is configured for the command's provider."""


def encode_events(events: list[ProviderEvent]) -> bytes:
    return json.dumps([e.model_dump(mode="json") for e in events]).encode()


def decode_events(data: bytes) -> list[ProviderEvent]:
    return [ProviderEvent.model_validate(item) for item in json.loads(data)]


@dataclass
class Dispatcher:
    #: Finished commands (command id -> the events they emitted), forgotten after a TTL.
    table: ExpiringTable
    gateways: dict[Provider, ProviderGateway]
    concurrency: int
    policy: RetryPolicy = POLICIES.dispatcher
    meter: Meter = field(default_factory=lambda: Meter("dispatcher"))
    calls: int = 0

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.concurrency)

    async def process(self, events: list[Any], producer: Any) -> None:
        """One batch: decide every outcome, send them, then record the commands as done."""
        out = Outbox()
        done: list[tuple[Incoming, ProviderCommand, list[ProviderEvent]]] = []
        by_reference: dict[bytes | None, list[Incoming]] = defaultdict(list)
        for event in events:
            incoming = Incoming.of(event)
            by_reference[incoming.key].append(incoming)

        async def run_in_order(items: list[Incoming]) -> None:
            for incoming in items:
                result = await self._one(incoming, out)
                if result is not None:
                    done.append(result)

        await asyncio.gather(*(run_in_order(items) for items in by_reference.values()))
        await out.flush(producer)
        for incoming, command, emitted in done:
            self.table.put(incoming.partition, command.event_id.encode(), encode_events(emitted))
        self.meter.add("records", len(events))
        self.meter.maybe_log()

    async def _one(self, incoming: Incoming, out: Outbox
                   ) -> tuple[Incoming, ProviderCommand, list[ProviderEvent]] | None:
        reference: str | None = None
        try:
            command: ProviderCommand = codec.decode(topics.PROVIDER_COMMANDS, incoming.value)
            reference = command.reference
            stored = self.table.get(command.event_id.encode())
            if stored is not None:
                self.meter.add("replayed")
                for ev in decode_events(stored):
                    out.add(topics.PROVIDER_EVENTS, ev.reference, ev)
                return None
            emitted = await self._execute(command)
        except Exception as exc:  # noqa: BLE001 - routed by type: permanent, exhausted or a bug
            self.meter.add("dead_lettered")
            out.dead_letter(incoming, exc, STAGE, reference=reference)
            return None
        for ev in emitted:
            out.add(topics.PROVIDER_EVENTS, ev.reference, ev)
        self.meter.add(f"{command.provider}.{command.kind}")
        return incoming, command, emitted

    async def _execute(self, command: ProviderCommand) -> list[ProviderEvent]:
        gateway = self.gateways.get(command.provider)
        if gateway is None:
            raise NoGateway(f"no gateway for provider {command.provider}")

        async def call() -> list[ProviderEvent]:
            async with self._slots:
                self.calls += 1
                return await gateway.execute(command)

        try:
            # A retriable error the policy gave up on goes on to its dead letter
            # (``dispatcher.exhausted``); so does anything that is no TrailPay error (a bug).
            return await retry(call, self.policy,
                               what=f"{command.provider} {command.kind} for {command.reference}")
        except PermanentError as exc:
            # Gateways turn refusals into command_failed events; this is the fallback.
            return [refused_by_error(command, exc)]


def register(ctx: StreamContext, gateways: Callable[[], Mapping[Provider, ProviderGateway]],
             policy: RetryPolicy = POLICIES.dispatcher) -> Callable[[], Dispatcher]:
    """The ``dispatch_provider_commands`` agent and its table. ``gateways()`` is called on
    first use, inside the worker's event loop (the HTTP clients bind to it); the returned
    function gives the dispatcher (built then)."""
    app = ctx.app
    settings = ctx.settings
    table = app.Table(TABLE, key_type=bytes, value_type=bytes, partitions=settings.partitions,
                      help="provider command id -> the provider events it produced")
    done = ExpiringTable(table, settings.idempotency_ttl_s, TABLE)
    register_purge(ctx, done)
    built: list[Dispatcher] = []

    def dispatcher() -> Dispatcher:
        if not built:
            built.append(Dispatcher(done, dict(gateways()), settings.provider_concurrency, policy))
        return built[0]

    @app.agent(ctx.topic(topics.PROVIDER_COMMANDS), name="dispatch_provider_commands")
    async def dispatch_provider_commands(stream: Any) -> None:
        async for events in stream.take_events(settings.provider_concurrency, within=0.05):
            await dispatcher().process(events, app.producer)

    return dispatcher
