"""``trailpay db upgrade|current`` and ``trailpay sink-postgres``."""

from __future__ import annotations

from pathlib import Path

import click

from trailpay.cli.common import data_dir_option, friendly_errors, init_logging, settings_for
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
