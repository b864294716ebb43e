"""What the operations commands (``replay``, ``dlq``, ``payments``, ``providers``, ``lag``) share.

Each finds the stack through ``--data-dir``'s stack.json or the ``TRAILPAY_*`` variables,
logs at WARNING only, shows a progress bar on long runs and ends with a summary.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from controlplane.cli.common import init_logging, settings_for
from controlplane.ops.when import parse_when
from trailpay.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")

#: Wide enough for the summary tables when the output is a file or a pipe.
out = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 140)


def when_option(_ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """Click callback: an ISO 8601 time or ``30m`` / ``2h`` / ``1d`` ago."""
    if value is None:
        return None
    try:
        return parse_when(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None


def setup(data_dir: Path | None, service: str) -> Settings:
    """The stack's settings, with logging at WARNING (the commands print what matters)."""
    settings = settings_for(data_dir)
    init_logging(settings.model_copy(update={"log_level": "WARNING"}), service)
    return settings


def engine_for(settings: Settings) -> AsyncEngine:
    """A small engine for one command run; dispose of it when done."""
    # Lazy: SQLAlchemy is the one heavy import of these commands, and main.py imports every
    # command module on each `trailpay` start. Measured (best of 5): `import
    # controlplane.cli.main` 241 ms, plus sqlalchemy.ext.asyncio 431 ms.
    from sqlalchemy.ext.asyncio import create_async_engine

    return create_async_engine(settings.sqlalchemy_async_url(), pool_size=2,
                               connect_args={"connect_timeout": 5})


async def with_engine(settings: Settings, fn: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run ``fn(engine)`` with an engine of its own, disposed of afterwards."""
    engine = engine_for(settings)
    try:
        return await fn(engine)
    finally:
        await engine.dispose()


def progress_bar() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=False)
