"""The Alembic migrations build exactly the schema in sinks/postgres/schema.py."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from sinks.postgres.migrations import alembic_config, current, upgrade
from sinks.postgres.schema import metadata

pytestmark = pytest.mark.integration


def test_migrations_match_the_schema_and_rerun_safely(stack):
    settings = stack.settings
    upgrade(settings)  # `trailpay up` ran it already; a second run changes nothing
    head = ScriptDirectory.from_config(alembic_config(settings)).get_current_head()
    assert current(settings) == head
    engine = create_engine(settings.sqlalchemy_async_url())
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, metadata) == []
    finally:
        engine.dispose()
