"""Times on the command line: ISO 8601 (UTC when no offset is given) or "how long ago"."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """``2026-11-26T10:00:00Z``, ``2026-11-26 10:00`` (UTC), ``90m`` / ``2h`` / ``1d`` (ago),
    or ``now``. Raises ValueError with the accepted forms."""
    now = now or datetime.now(UTC)
    value = text.strip()
    if value.lower() == "now":
        return now
    match = _AGO.match(value.lower())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use ISO 8601 (2026-11-26T10:00:00Z), "
                         "a duration ago (30m, 2h, 1d) or now") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
