"""Options and helpers shared by every command."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from controlplane.stack.state import stack_settings
from trailpay.domain.errors import TrailPayError
from trailpay.logs import setup_logging
from trailpay.settings import Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Embedded stack directory (its stack.json tells where everything runs). "
    "Default: $TRAILPAY_DATA_DIR or ./.trailpay",
)


def settings_for(data_dir: Path | None, *, running_stack: bool = True) -> Settings:
    """Settings for a command: from a running stack's stack.json, or the environment."""
    if running_stack:
        return stack_settings(data_dir)
    return load_settings(**({"data_dir": data_dir} if data_dir else {}))


def friendly_errors(fn: F) -> F:
    """Turn TrailPay errors into one readable line and exit code 2, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TrailPayError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def init_logging(settings: Settings, service: str) -> None:
    setup_logging(settings.log_level, settings.log_format, service)
