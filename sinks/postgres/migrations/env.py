"""Alembic environment: runs migrations online over psycopg 3 with TrailPay's metadata."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from sinks.postgres.schema import metadata

config = context.config


def run_migrations_online() -> None:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL given to the TrailPay migrations")
    connectable = config.attributes.get("connection")
    if connectable is not None:
        context.configure(connection=connectable, target_metadata=metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=metadata, compare_type=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("TrailPay migrations run online only (trailpay db upgrade)")
run_migrations_online()
