"""The stream worker: every agent module, assembled into one Faust app."""

from __future__ import annotations

import asyncio
import importlib
import logging

from streams import fetchwait
from streams.app import Registrar, StreamContext, build
from trailpay import highwater
from trailpay.settings import Settings

log = logging.getLogger(__name__)

#: Agent modules run by `trailpay worker`; each exposes ``register(ctx)``.
#: Order matters where one module uses another's service (the sweeper uses payments).
REGISTRARS: list[str] = [
    "streams.agents.dedup",
    "streams.agents.payments",
    "streams.agents.sweeper",
    "streams.agents.dispatcher",
    "streams.agents.bookings",
    "streams.agents.notifications",
    "streams.agents.restore",
    "streams.agents.observe",
]


def load_registrars(names: list[str] | None = None) -> list[Registrar]:
    return [importlib.import_module(name).register for name in (names or REGISTRARS)]


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
                 fast_loop: bool = True) -> StreamContext:
    """The Faust app with the agent modules ``names`` (default: all of REGISTRARS).

    Installs the broker workarounds first (:func:`install_broker_workarounds`), and
    uvloop unless ``fast_loop`` is off."""
    installed = install_broker_workarounds(settings)
    log.info("broker %s: workarounds %s", settings.broker_kind or "of unknown kind",
             ", ".join(installed) or "none")
    if fast_loop and use_uvloop():
        log.debug("event loop: uvloop")
    return build(settings, load_registrars(names))
