"""Alembic migrations of the PostgreSQL schema, run by ``trailpay up``, ``trailpay init`` and
``trailpay db upgrade``.

The migration scripts ship inside the package, so :func:`upgrade` works from an installed
wheel without an ``alembic.ini`` on disk.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config

from trailpay.settings import Settings

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent


def sync_url(settings: Settings) -> str:
    """The database URL with psycopg 3 (works both sync and async in SQLAlchemy 2)."""
    return settings.sqlalchemy_async_url()


def alembic_config(settings: Settings) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    # Passed as an attribute rather than an ini option: ``%`` in a password would break
    # configparser interpolation.
    cfg.attributes["url"] = sync_url(settings)
    return cfg


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the database to ``revision`` (default: the newest). Safe to run again."""
    log.info("migrating PostgreSQL to %s", revision)
    command.upgrade(alembic_config(settings), revision)


def downgrade(settings: Settings, revision: str) -> None:
    command.downgrade(alembic_config(settings), revision)


def current(settings: Settings) -> str | None:
    """The revision the database is at (None when never migrated)."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(sync_url(settings))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
