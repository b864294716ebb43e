"""Aware UTC times: the one datetime type every record and state field uses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


#: A timezone-aware datetime, normalised to UTC. Naive datetimes are refused.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


def utcnow() -> datetime:
    return datetime.now(UTC)
