"""Values a database would refuse, turned into a form it stores, and counted.

A payment that moved money must land downstream even when a field of it is hostile
(ARCHITECTURE.md property 11). PostgreSQL refuses a NUL character in text and in JSONB, a
string longer than its ``VARCHAR(n)``, text that is not UTF-8 (a lone surrogate decoded
from ``"\\ud800"``), and JSON nested deeper than its parser's stack (our bulk writes also
travel through orjson, which stops at 255 levels); clickhouse-connect cannot encode a lone
surrogate. Rather than dead-lettering the whole record for one such value, the sinks store:

- NUL as the six characters ``\\u0000`` (:data:`NUL_ESCAPE`; readable, never a NUL again);
- a lone surrogate as U+FFFD;
- an over-long string as its head plus ``~`` and 8 hex digits of its SHA-256, exactly the
  column's length, so two different long values stay two different values;
- a JSON value nested deeper than the limit as the marker :data:`TOO_DEEP`.

Each change is an :class:`Alteration`; the sink logs it (with the row's key) and counts it in
``trailpay_sink_values_altered_total{sink,table,column,how}``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from sinks import metrics

log = logging.getLogger(__name__)

NUL_ESCAPE = "\\u0000"
REPLACEMENT = "\ufffd"
TOO_DEEP = "[nested too deep: dropped]"
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Alteration:
    column: str
    how: str  # "nul" | "surrogate" | "truncated" | "too_deep"


def clean_text(value: str, limit: int | None = None, *, nul: bool = True) -> tuple[str, list[str]]:
    """``value`` as a storable string (at most ``limit`` characters; NUL escaped unless
    ``nul`` is False) and what was changed."""
    hows: list[str] = []
    if nul and "\x00" in value:
        value = value.replace("\x00", NUL_ESCAPE)
        hows.append("nul")
    if not value.isascii() and _SURROGATE.search(value):
        value = _SURROGATE.sub(REPLACEMENT, value)
        hows.append("surrogate")
    if limit is not None and len(value) > limit:
        value = shorten(value, limit)
        hows.append("truncated")
    return value, hows


def shorten(value: str, limit: int) -> str:
    """Head of ``value`` + ``~`` + 8 hex digits of its hash: ``limit`` characters at most."""
    if limit < 12:
        return value[:limit]
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{value[:limit - 9]}~{digest}"


def clean_json(value: Any, max_depth: int) -> tuple[Any, list[str]]:
    """A JSON value with every string (and key) cleaned and nothing deeper than ``max_depth``.

    Recursion is bounded by ``max_depth`` itself: a deeper container becomes :data:`TOO_DEEP`
    before it is entered, so a hostile 5,000-level value costs ``max_depth`` frames. The
    common case costs one orjson dump: a value orjson can write (no surrogate, at most 255
    levels) without a NUL is taken as it is."""
    try:
        if b"\\u0000" not in orjson.dumps(value):
            return value, []
    except (TypeError, ValueError):  # orjson.JSONEncodeError: too deep, surrogates, ...
        pass
    hows: set[str] = set()

    def walk(item: Any, depth: int) -> Any:
        if isinstance(item, str):
            text, changed = clean_text(item)
            hows.update(changed)
            return text
        if isinstance(item, dict | list | tuple):
            if depth >= max_depth:
                hows.add("too_deep")
                return TOO_DEEP
            if isinstance(item, dict):
                return {walk(str(k), depth): walk(v, depth + 1) for k, v in item.items()}
            return [walk(v, depth + 1) for v in item]
        return item

    cleaned = walk(value, 0)
    return cleaned, sorted(hows)


def record_alterations(sink: str, table: str, key: Any, alterations: Iterable[Alteration]) -> None:
    """Log and count what was changed in one row (``key`` names the row in the log)."""
    found = list(alterations)
    if not found:
        return
    for a in found:
        metrics.ALTERED.labels(sink, table, a.column, a.how).inc()
    shown = ", ".join(f"{a.column} ({a.how})" for a in found)
    log.warning("%s: stored %s row %s with altered values: %s", sink, table,
                clean_text(str(key), 80)[0], shown)
