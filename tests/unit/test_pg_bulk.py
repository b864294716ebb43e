"""The set-based PostgreSQL writes keep the per-row statements' conflict rules."""

from __future__ import annotations

import base64
import json

import pytest
from sqlalchemy.dialects.postgresql import insert as pg_insert

from sinks.postgres import schema
from sinks.postgres.bulk import BulkWrite
from sinks.postgres.sink import WRITES


def test_upsert_keeps_the_version_guard_and_writes_only_given_columns() -> None:
    sql, params = WRITES["payments"].params([{"reference": "TP1", "version": 3, "status": "pending"}])
    assert sql.startswith('INSERT INTO "payments" ("reference", "version", "status") SELECT')
    assert "jsonb_to_recordset(%(rows)s::jsonb)" in sql
    assert sql.endswith("WHERE payments.version < excluded.version")
    assert "ON CONFLICT (reference) DO UPDATE SET" in sql
    assert json.loads(params["rows"]) == [{"reference": "TP1", "version": 3, "status": "pending"}]


def test_bytes_travel_as_base64_and_are_decoded_by_postgres() -> None:
    sql, params = WRITES["dead_letters"].params([{"event_id": "e1", "value": b"\x00\xffraw"}])
    assert "decode(r.\"value\", 'base64')" in sql
    assert '"value" text' in sql
    row = json.loads(params["rows"])[0]
    assert base64.b64decode(row["value"]) == b"\x00\xffraw"


def test_insert_if_absent_keeps_do_nothing() -> None:
    sql, _ = WRITES["payment_events"].params([{"event_id": "e1"}])
    assert sql.endswith("ON CONFLICT DO NOTHING")


def test_a_statement_without_on_conflict_is_refused() -> None:
    with pytest.raises(ValueError, match="ON CONFLICT"):
        BulkWrite.of(pg_insert(schema.payments))
