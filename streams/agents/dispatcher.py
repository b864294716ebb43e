"""``dispatch_provider_commands``: provider.commands.v1 -> provider APIs -> provider.events.v1.

Each command is carried out by its provider's :class:`ProviderGateway` with bounded
concurrency (``provider_concurrency``); commands for the same payment in one batch run in
order. The outcome events (ids ``cmd:<command id>`` / ``query:<command id>``) are sent keyed
by payment reference, and only after the broker has them is the command recorded as done in
the table ``provider-commands-done`` (command id -> the events emitted). A redelivered
command is answered from that table, so it never calls the provider twice.

Before calling, the command is marked *started* in the same table (``{"started": n}``, on
the broker before the call goes out). A worker that dies between the call and the done
record leaves that mark: the partition's next owner then knows it is executing the command
again. It calls the provider again (it cannot know whether the first call went out; a
payment never prompted would sit until its deadline): Stripe replays its answer for the
same idempotency key, Airtel refuses the duplicate transaction id (read as "already sent"),
and Daraja, which has neither, sends a second prompt with its own CheckoutRequestID. The
re-execution's events get ids of their own (``cmd:<command id>:repeat-<n>``) so the state
machine sees that second reference instead of dropping it as a duplicate: it records it on
the same attempt and flags a second success as a double charge
(:mod:`trailpay.domain.repeat_initiations`). Each re-execution is logged and counted
(``repeated`` in the dispatcher's meter).

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
from streams import rebalance_guard
from streams.agents.common import Incoming, Meter, Outbox, TableWrites
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


def encode_started(times: int) -> bytes:
    return json.dumps({"started": times}).encode()


def started_times(data: bytes | None) -> int:
    """How many executions of a command began without a recorded answer (0: none)."""
    if data is None or not data.startswith(b"{"):
        return 0
    return int(json.loads(data).get("started", 0))


def as_repeat(events: list[ProviderEvent], times: int) -> list[ProviderEvent]:
    """The events of the ``times``-th re-execution, with ids of their own."""
    return [e.model_copy(update={"event_id": f"{e.event_id}:repeat-{times}"}) for e in events]


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
        #: The current batch's commands marked started (command id -> executions before)
        #: and those executed so far.
        self._started: dict[bytes, int] = {}
        self._executed: set[bytes] = set()

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

        self._started.clear()
        self._executed.clear()
        await self._mark_started(list(by_reference.values()), producer)
        await asyncio.gather(*(run_in_order(items) for items in by_reference.values()))
        await out.flush(producer)
        writes = TableWrites()
        for incoming, command, emitted in done:
            self.table.put(incoming.partition, command.event_id.encode(), encode_events(emitted), writes)
        await writes.send(producer)
        self.meter.add("records", len(events))
        self.meter.maybe_log()

    async def _mark_started(self, groups: list[list[Incoming]], producer: Any) -> None:
        """Mark the batch's commands not done yet as started, on the broker before any call."""
        writes = TableWrites()
        for items in groups:
            for incoming in items:
                try:
                    command: ProviderCommand = codec.decode(topics.PROVIDER_COMMANDS, incoming.value)
                except Exception:  # noqa: BLE001 - _one dead-letters it
                    continue
                key = command.event_id.encode()
                stored = self.table.get(key)
                if key in self._started or (stored is not None and started_times(stored) == 0):
                    continue  # twice in the batch, or done: answered from the table
                self._started[key] = started_times(stored)
                self.table.put(incoming.partition, key, encode_started(self._started[key] + 1), writes)
        if writes.items:
            await writes.send(producer)
            await producer.flush()

    async def _one(self, incoming: Incoming, out: Outbox
                   ) -> tuple[Incoming, ProviderCommand, list[ProviderEvent]] | None:
        reference: str | None = None
        try:
            command: ProviderCommand = codec.decode(topics.PROVIDER_COMMANDS, incoming.value)
            reference = command.reference
            key = command.event_id.encode()
            if key in self._executed:
                self.meter.add("replayed")  # twice in one batch: the first one's events stand
                return None
            self._executed.add(key)
            before = self._started.get(key)
            if before is None:
                stored = self.table.get(key)
                if stored is not None and started_times(stored) == 0:
                    self.meter.add("replayed")
                    for ev in decode_events(stored):
                        out.add(topics.PROVIDER_EVENTS, ev.reference, ev)
                    return None
                before = started_times(stored)
            emitted = await self._execute(command)
            if before:
                log.warning("provider command %s (%s %s for %s) executed again: started %d time(s) "
                            "before without a recorded answer", command.event_id, command.provider,
                            command.kind, command.reference, before)
                self.meter.add("repeated")
                emitted = as_repeat(emitted, before)
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
            # A batch taken before a rebalance is not called: its partition's new owner calls
            # it too, and Daraja has no idempotency key (a second STK push).
            taken = rebalance_guard.current(app, events)
            if taken:
                await dispatcher().process(taken, app.producer)

    return dispatcher
