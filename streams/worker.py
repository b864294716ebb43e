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


def build_worker(settings: Settings, names: list[str] | None = None, *,
                 fast_loop: bool = True) -> StreamContext:
    """The Faust app with the agent modules ``names`` (default: all of REGISTRARS).

    Installs the tansu end-offset correction first, so tables recover to the true end of
    their changelogs (see :mod:`trailpay.highwater`), the configured fetch wait (see
    :mod:`streams.fetchwait`), and uvloop unless ``fast_loop`` is off."""
    highwater.install()
    fetchwait.install(settings.kafka_fetch_max_wait_ms)
    if fast_loop and use_uvloop():
        log.debug("event loop: uvloop")
    return build(settings, load_registrars(names))
