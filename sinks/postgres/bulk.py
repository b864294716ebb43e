"""Set-based batch writes: one statement per table, the rows sent as one JSON document.

``executemany`` of an ``INSERT ... ON CONFLICT`` costs Python time per row and per column
(SQLAlchemy binds each parameter, psycopg dumps each one); a profile of a replay put that
at about a quarter of the replaying process. Here the batch's rows travel as a single
JSONB parameter that PostgreSQL unpacks itself with ``jsonb_to_recordset``::

    INSERT INTO payments (reference, version, ...)
    SELECT r.reference, r.version, ... FROM jsonb_to_recordset(%(rows)s::jsonb)
        AS r(reference VARCHAR(32), version BIGINT, ...)
    ON CONFLICT (reference) DO UPDATE SET ... WHERE payments.version < excluded.version

The ``ON CONFLICT`` clause is the one SQLAlchemy compiles for the equivalent per-row
statement, so both forms keep the same idempotency rules. Only the columns a row carries
are written (a column left out keeps its server default). ``bytea`` columns travel as
base64 text and are decoded by PostgreSQL.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson
from sqlalchemy import LargeBinary, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import Insert

DIALECT = postgresql.dialect()
CONFLICT = " ON CONFLICT "


@dataclass(frozen=True)
class BulkWrite:
    """``insert`` (a per-row SQLAlchemy statement) turned into one statement per batch."""

    table: Table
    conflict: str

    @classmethod
    def of(cls, insert: Insert) -> BulkWrite:
        compiled = str(insert.compile(dialect=DIALECT))
        _, found, clause = compiled.partition(CONFLICT)
        if not found or "%(" in clause:
            raise ValueError(f"expected an INSERT with a parameter-free ON CONFLICT clause: {compiled}")
        table = insert.table
        assert isinstance(table, Table)
        return cls(table, CONFLICT + clause)

    def sql(self, columns: tuple[str, ...]) -> str:
        return _sql(self, columns)

    def params(self, rows: Sequence[dict[str, Any]]) -> tuple[str, dict[str, str]]:
        """The statement for these rows and its one parameter (every row has the same keys)."""
        columns = tuple(rows[0])
        binary = self.binary_columns()
        if binary:
            rows = [{k: _b64(v) if k in binary else v for k, v in row.items()} for row in rows]
        document = orjson.dumps(rows).decode()
        return self.sql(columns), {"rows": document}

    def binary_columns(self) -> frozenset[str]:
        return frozenset(c.name for c in self.table.c if isinstance(c.type, LargeBinary))


def _b64(value: Any) -> Any:
    return base64.b64encode(value).decode() if isinstance(value, bytes | bytearray) else value


@cache
def _sql(write: BulkWrite, columns: tuple[str, ...]) -> str:
    table = write.table
    binary = write.binary_columns()
    definitions = []
    selected = []
    for name in columns:
        column = table.c[name]
        if name in binary:
            definitions.append(f'"{name}" text')
            selected.append(f"decode(r.\"{name}\", 'base64')")
        else:
            definitions.append(f'"{name}" {column.type.compile(dialect=DIALECT)}')
            selected.append(f'r."{name}"')
    names = ", ".join(f'"{n}"' for n in columns)
    return (f'INSERT INTO "{table.name}" ({names}) SELECT {", ".join(selected)} '
            f'FROM jsonb_to_recordset(%(rows)s::jsonb) AS r({", ".join(definitions)})'
            f"{write.conflict}")
