"""The stream worker: every agent module, assembled into one Faust app."""

from __future__ import annotations

import importlib

from streams import highwater
from streams.app import Registrar, StreamContext, build
from trailpay.settings import Settings

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


def build_worker(settings: Settings, names: list[str] | None = None) -> StreamContext:
    """The Faust app with the agent modules ``names`` (default: all of REGISTRARS).

    Installs the tansu end-offset correction first, so tables recover to the true end of
    their changelogs (see :mod:`streams.highwater`)."""
    highwater.install()
    return build(settings, load_registrars(names))
