"""Reading PostgreSQL rows in tests and benchmarks: one async reader, one blocking one.

:func:`rows` (SQLAlchemy, ``:name`` parameters) for async tests; :func:`pg_rows`
(psycopg, ``%s`` parameters) for code that is not async. Both open a connection of their
own per call: a test reads what the services committed, never a cached view.
"""

from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import create_async_engine

from trailpay.settings import Settings


async def rows(settings: Settings, sql: str, **params: Any) -> list[Row[Any]]:
    """The rows of one query (``:name`` parameters)."""
    engine = create_async_engine(settings.sqlalchemy_async_url())
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(sql), params)).all())
    finally:
        await engine.dispose()


async def scalar(settings: Settings, sql: str, **params: Any) -> Any:
    """The first column of the first row (``None`` without rows)."""
    found = await rows(settings, sql, **params)
    return found[0][0] if found else None


def plain_url(settings: Settings) -> str:
    """The database URL as psycopg takes it."""
    return settings.sqlalchemy_async_url().replace("postgresql+psycopg://", "postgresql://")


def pg_rows(settings: Settings, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """The rows of one query (``%s`` parameters), blocking.

    A dropped connection is retried (seen once on a loaded machine: a connection closed
    with nothing in the server log)."""
    for attempt in range(3):
        try:
            with psycopg.connect(plain_url(settings), autocommit=True) as conn:
                return list(conn.execute(sql, params).fetchall())
        except psycopg.OperationalError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
