"""``trailpay worker``: the Faust stream worker (state machine, webhook dedup, sweeper, ...)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from controlplane.cli.common import data_dir_option, friendly_errors, init_logging, settings_for
from trailpay.logs import ScrubFilter
from trailpay.settings import Settings, load_settings


def _worker_settings(data_dir: Path | None) -> Settings:
    """TRAILPAY_KAFKA_BOOTSTRAP if set (the worker needs nothing else), else the running stack."""
    base = load_settings(**({"data_dir": data_dir} if data_dir else {}))
    return base if base.kafka_bootstrap else settings_for(data_dir)


def scrub_every_handler() -> None:
    """Put the personal-data scrubber on every log handler, Faust's and mode's included."""
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, ScrubFilter) for f in handler.filters):
                handler.addFilter(ScrubFilter())


@click.command()
@data_dir_option
@click.option("--only", "only", multiple=True, metavar="MODULE",
              help="Run only this agent module (repeatable), e.g. streams.agents.payments. "
              "Default: every agent in streams.worker.AGENTS.")
@click.option("--metrics-port", type=int, default=None,
              help="Serve /metrics, /healthz and /readyz on this port (default: none)")
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Address of the metrics server (0.0.0.0 in containers)")
@friendly_errors
def worker(data_dir: Path | None, only: tuple[str, ...], metrics_port: int | None = None,
           metrics_host: str = "127.0.0.1") -> None:
    """Run the stream worker: one Faust worker process (no web server) with every agent.

    Consumer group and table changelogs are named after $TRAILPAY_WORKER_ID (default
    "trailpay"); run several workers with the same id to share the partitions.
    """
    import faust

    from streams.worker import build_worker

    settings = _worker_settings(data_dir)
    init_logging(settings, "worker")
    ctx = build_worker(settings, list(only) or None)

    class Worker(faust.Worker):
        async def on_first_start(self) -> None:
            scrub_every_handler()
            await super().on_first_start()
            scrub_every_handler()

    options: dict[str, Any] = {
        "loglevel": settings.log_level,
        "override_logging": False,
        "redirect_stdouts": False,
        "quiet": True,
    }
    if metrics_port is not None:
        from streams.metrics_endpoint import start as start_metrics

        start_metrics(settings, ctx.app, metrics_port, metrics_host)
    runner = Worker(ctx.app, **options)
    runner.spinner = None
    click.echo(f"TrailPay stream worker {settings.worker_id!r} on {settings.kafka_bootstrap}", err=True)
    runner.execute_from_commandline()
