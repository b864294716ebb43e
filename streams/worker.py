"""The stream worker: every agent module, assembled into one Faust app."""

from __future__ import annotations

import importlib

from streams.app import Registrar, StreamContext, build
from trailpay.settings import Settings

#: Agent modules run by `trailpay worker`; each exposes ``register(ctx)``.
REGISTRARS: list[str] = []


def load_registrars(names: list[str] | None = None) -> list[Registrar]:
    return [importlib.import_module(name).register for name in (names or REGISTRARS)]


def build_worker(settings: Settings, names: list[str] | None = None) -> StreamContext:
    return build(settings, load_registrars(names))
