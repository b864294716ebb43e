"""PostgreSQL rows made storable (:mod:`sinks.representable`), column by column.

Text columns lose NUL and lone surrogates and are kept within their ``VARCHAR(n)``; JSONB
columns get the same for every string and key, and nothing deeper than the limit. Other
columns (numbers, times, ``bytea``) take any value the contracts let through.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import String, Table
from sqlalchemy.dialects.postgresql import JSONB

from sinks.representable import Alteration, clean_json, clean_text, record_alterations

Row = dict[str, Any]


@cache
def _columns(table: Table) -> tuple[dict[str, int | None], frozenset[str]]:
    """(text column -> its length, or None when unbounded; JSONB columns)."""
    text = {c.name: c.type.length for c in table.c if isinstance(c.type, String)}
    return text, frozenset(c.name for c in table.c if isinstance(c.type, JSONB))


def storable(table: Table, rows: Sequence[Row], sink: str, json_depth: int) -> list[Row]:
    """``rows`` of ``table`` with every value PostgreSQL would refuse replaced, each
    replacement logged and counted; rows with nothing to replace are passed as they are."""
    text, json_columns = _columns(table)
    key = next(iter(table.primary_key.columns)).name
    out: list[Row] = []
    for row in rows:
        changed: list[Alteration] = []
        fixed: Row | None = None
        for name, value in row.items():
            if value is None:
                continue
            if name in text and isinstance(value, str):
                limit = text[name]
                if value.isascii() and "\x00" not in value and (limit is None or len(value) <= limit):
                    continue  # the common case, without building anything
                new, hows = clean_text(value, limit)
            elif name in json_columns:
                new, hows = clean_json(value, json_depth)
            else:
                continue
            if hows:
                fixed = fixed if fixed is not None else dict(row)
                fixed[name] = new
                changed += [Alteration(name, how) for how in hows]
        if fixed is None:
            out.append(row)
            continue
        record_alterations(sink, table.name, row.get(key), changed)
        out.append(fixed)
    return out
