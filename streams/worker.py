"""The stream worker: every agent, built in order and wired by hand into one Faust app.

:func:`wire` is the one place that knows what each agent needs: it builds the payments
processor before the sweeper and the restore agent that are given it, and takes what talks
to the world outside the worker (provider gateways, webhook handlers, the mail sender, the
retry policies) from :class:`Adapters`, where tests put their fakes.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import faust

from connectors.email.senders import Sender, sender_for
from connectors.providers import registry
from connectors.providers.base import ProviderGateway, WebhookHandler
from streams import fetchwait, offsettrace, rebalance_guard
from streams.agents import bookings, dedup, dispatcher, notifications, observe, payments, restore, sweeper
from streams.agents import public_events as public_events_agent
from streams.agents.bookings import Bridge
from streams.agents.dedup import WebhookNormalizer
from streams.agents.dispatcher import Dispatcher
from streams.agents.notifications import Notifier
from streams.agents.payments import PaymentProcessor
from streams.app import StreamContext, build
from trailpay import highwater, topics
from trailpay.domain.deadlines import DeadlinePolicy
from trailpay.domain.events import Provider
from trailpay.retry import POLICIES, RetryPolicies
from trailpay.settings import Settings

log = logging.getLogger(__name__)

DEDUP = "streams.agents.dedup"
PAYMENTS = "streams.agents.payments"
SWEEPER = "streams.agents.sweeper"
DISPATCHER = "streams.agents.dispatcher"
BOOKINGS = "streams.agents.bookings"
NOTIFICATIONS = "streams.agents.notifications"
RESTORE = "streams.agents.restore"
OBSERVE = "streams.agents.observe"
PUBLIC_EVENTS = "streams.agents.public_events"

#: The agents `trailpay worker` runs (``--only`` picks some of them by these names).
AGENTS: tuple[str, ...] = (DEDUP, PAYMENTS, SWEEPER, DISPATCHER, BOOKINGS, NOTIFICATIONS, RESTORE, OBSERVE,
                           PUBLIC_EVENTS)

#: Agents that work on another agent's state, and the agent they need in the same worker.
NEEDS: dict[str, str] = {SWEEPER: PAYMENTS, RESTORE: PAYMENTS}


@dataclass(frozen=True)
class Adapters:
    """What the agents talk to outside the worker; ``None``: built from the settings.

    ``gateways`` is a factory: the dispatcher calls it on first use, inside the worker's
    event loop, which the HTTP clients bind to."""

    gateways: Callable[[], Mapping[Provider, ProviderGateway]] | None = None
    webhook_handlers: Mapping[Provider, WebhookHandler] | None = None
    mail_sender: Sender | None = None
    retry: RetryPolicies = POLICIES


@dataclass
class WorkerParts:
    """The parts of one worker, as :func:`wire` built them (``None``: not selected)."""

    ctx: StreamContext
    agents: tuple[str, ...]
    dedup: WebhookNormalizer | None = None
    payments: PaymentProcessor | None = None
    #: The dispatcher, built on its first batch (see :class:`Adapters`).
    dispatcher: Callable[[], Dispatcher] | None = None
    bookings: Bridge | None = None
    notifications: Notifier | None = None
    #: Modules outside :data:`AGENTS` whose ``register(ctx)`` was called (benchmarks).
    extensions: list[str] = field(default_factory=list)

    @property
    def app(self) -> faust.App:
        """The Faust app that runs them."""
        return self.ctx.app


def wire(ctx: StreamContext, names: Iterable[str] | None = None,
         adapters: Adapters | None = None) -> WorkerParts:
    """Build the agents ``names`` (default: all of :data:`AGENTS`) on ``ctx``'s app, in
    dependency order whatever the order of ``names``.

    A name outside :data:`AGENTS` is a module whose ``register(ctx)`` declares agents that
    need nothing but the app (the benchmarks' pass-through baseline)."""
    chosen = list(dict.fromkeys(names or AGENTS))
    for name, needed in NEEDS.items():
        if name in chosen and needed not in chosen:
            raise ValueError(f"{name} works on the state of {needed}: run them together")
    adapters = adapters or Adapters()
    settings = ctx.settings
    parts = WorkerParts(ctx, tuple(chosen))
    if DEDUP in chosen:
        handlers = adapters.webhook_handlers
        if handlers is None:
            handlers = registry.webhook_handlers(settings)
        parts.dedup = dedup.register(ctx, handlers)
    if PAYMENTS in chosen:
        parts.payments = payments.register(ctx, policy=DeadlinePolicy.from_settings(settings),
                                           rules=settings.payment_rules())
        if SWEEPER in chosen:
            sweeper.register(ctx, parts.payments)
        if RESTORE in chosen:
            restore.register(ctx, parts.payments)
    if DISPATCHER in chosen:
        gateways = adapters.gateways or (lambda: registry.gateways(settings))
        parts.dispatcher = dispatcher.register(ctx, gateways, adapters.retry.dispatcher)
    if BOOKINGS in chosen:
        parts.bookings = bookings.register(ctx)
    if NOTIFICATIONS in chosen:
        sender = adapters.mail_sender or sender_for(settings)
        parts.notifications = notifications.register(ctx, sender, adapters.retry.notifications)
    if OBSERVE in chosen:
        observe.register(ctx)
    if PUBLIC_EVENTS in chosen:
        public_events_agent.register(ctx)
    for name in chosen:
        if name not in AGENTS:
            importlib.import_module(name).register(ctx)
            parts.extensions.append(name)
    return parts


def use_uvloop() -> bool:
    """Run the worker's event loops (Faust's main one and its consumer thread's) on uvloop.

    The worker is CPU-bound in asyncio machinery (futures, callbacks, socket writes for
    every produce request); uvloop does that work in C. Call before any loop exists."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def install_broker_workarounds(settings: Settings) -> list[str]:
    """The one place that patches Faust/aiokafka for the broker, by ``settings.broker_kind``.

    tansu (or a broker of unknown kind, ``TRAILPAY_BROKER_KIND`` unset) gets both tansu
    corrections: the end-offset fix for table recovery (:mod:`trailpay.highwater`) and a
    short consumer fetch wait (:mod:`streams.fetchwait`). Apache Kafka gets neither; measured
    on Kafka 3.9.2 (tests/integration/test_broker_workarounds.py): ListOffsets equals the
    fetch high watermark after several produce batches, and a record produced into an idle
    partition reaches a consumer waiting 1,500 ms (Faust's own setting) in a few ms, because
    Kafka answers a waiting fetch as soon as data arrives. Returns what was installed."""
    if settings.broker_kind == "apache-kafka":
        return []
    highwater.install()
    fetchwait.install(settings.kafka_fetch_max_wait_ms)
    return ["highwater", "fetchwait"]


def build_worker(settings: Settings, names: list[str] | None = None, *,
                 adapters: Adapters | None = None, fast_loop: bool = True) -> WorkerParts:
    """The Faust app with the agents ``names`` (default: all of :data:`AGENTS`).

    Installs the broker workarounds first (:func:`install_broker_workarounds`), and
    uvloop unless ``fast_loop`` is off."""
    installed = install_broker_workarounds(settings)
    rebalance_guard.install(rebalance_guard.parts(settings.rebalance_guard),  # Faust, at a rebalance
                            compacted=[spec.name for spec in topics.TOPICS if spec.compacted])
    if settings.trace_offsets:
        offsettrace.install()
    log.info("broker %s: workarounds %s", settings.broker_kind or "of unknown kind",
             ", ".join(installed) or "none")
    if fast_loop and use_uvloop():
        log.debug("event loop: uvloop")
    return wire(build(settings), names, adapters)
