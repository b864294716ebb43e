"""``trailpay db upgrade|current`` and ``trailpay sink-postgres``."""

from __future__ import annotations

from pathlib import Path

import click

from controlplane.cli.common import data_dir_option, friendly_errors, init_logging, settings_for
from trailpay.settings import Settings, load_settings


def _db_settings(data_dir: Path | None) -> Settings:
    """TRAILPAY_DATABASE_URL when set, else the running stack's database."""
    base = load_settings(**({"data_dir": data_dir} if data_dir else {}))
    if base.database_url:
        return base
    return settings_for(data_dir)


@click.group("db")
def db_group() -> None:
    """PostgreSQL schema migrations (Alembic)."""


@db_group.command("upgrade")
@data_dir_option
@click.option("--revision", default="head", show_default=True, help="Target revision")
@friendly_errors
def db_upgrade(data_dir: Path | None, revision: str) -> None:
    """Migrate the database to the newest schema (safe to run again)."""
    from sinks.postgres.migrations import current, upgrade

    settings = _db_settings(data_dir)
    init_logging(settings, "db")
    upgrade(settings, revision)
    click.echo(f"database at revision {current(settings)}")


@db_group.command("current")
@data_dir_option
@friendly_errors
def db_current(data_dir: Path | None) -> None:
    """Print the revision the database is at."""
    from sinks.postgres.migrations import current

    click.echo(current(_db_settings(data_dir)) or "(not migrated)")


@click.command("sink-postgres")
@data_dir_option
@click.option("--group", default=None, help="Consumer group (default trailpay-sink-postgres)")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=500, show_default=True)
@click.option("--max-wait", type=click.FloatRange(0.01, 60), default=0.1, show_default=True,
              help="Seconds a record may wait for its batch")
@click.option("--metrics-port", type=int, default=None,
              help="Serve Prometheus metrics on this port (default: none)")
@click.option("--topic-prefix", default="", hidden=True,
              help="Read <prefix><topic> instead (tests and replays into separate topics)")
@friendly_errors
def sink_postgres(data_dir: Path | None, group: str | None, batch_size: int, max_wait: float,
                  metrics_port: int | None, topic_prefix: str) -> None:
    """Run the PostgreSQL sink: payments, transitions, webhooks, bookings, dead letters."""
    import asyncio

    from sinks.postgres.sink import serve

    settings = settings_for(data_dir)
    init_logging(settings, "sink-postgres")
    if metrics_port is not None:
        from sinks import health
        from trailpay.metrics import serve_metrics

        # /readyz: not crash-looping, not lagging (issue 16); /metrics as before.
        serve_metrics(metrics_port, ready=health.start(settings, "sink-postgres").ready)
    asyncio.run(serve(settings, group_id=group, topic_prefix=topic_prefix,
                      batch_size=batch_size, max_wait_s=max_wait))
