"""The one serializer used by producers, Faust agents, sinks and tools.

Records travel as UTF-8 JSON (bytes as base64). Decoding validates against the topic's
contract; a failure raises :class:`InvalidRecord` with a readable reason, which consumers
turn into a dead letter carrying the original bytes.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from trailpay import topics
from trailpay.domain import events as ev
from trailpay.domain.errors import InvalidRecord
from trailpay.domain.public_events import PublicPaymentEvent

M = TypeVar("M", bound=BaseModel)

CONTRACTS: dict[str, TypeAdapter[Any]] = {
    topics.BOOKING_EVENTS: TypeAdapter(ev.BookingEvent),
    topics.PAYMENT_REQUESTS: ev.PAYMENT_REQUEST_ADAPTER,
    topics.WEBHOOKS_RAW: TypeAdapter(ev.RawWebhook),
    topics.PROVIDER_EVENTS: TypeAdapter(ev.ProviderEvent),
    topics.PAYMENT_STATE: TypeAdapter(ev.PaymentStateChanged),
    topics.PROVIDER_COMMANDS: TypeAdapter(ev.ProviderCommand),
    topics.NOTIFICATIONS: TypeAdapter(ev.Notification),
    topics.DEAD_LETTERS: TypeAdapter(ev.DeadLetter),
    topics.PAYMENT_EVENTS: TypeAdapter(PublicPaymentEvent),
}


def encode(record: BaseModel) -> bytes:
    return record.model_dump_json().encode()


def encode_key(key: str | None) -> bytes | None:
    return None if key is None else key.encode()


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data, the way records travel.

    Times ISO 8601 (a naive one is UTC, as ClickHouse returns them: ``...Z``), Decimals as
    exact strings, bytes as base64, enums by value, models as their JSON form, NaN and
    infinities as null (JSON has no word for them).
    """
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, datetime):
        return value.isoformat() + ("Z" if value.tzinfo is None else "")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value


def dumps(value: Any, **options: Any) -> str:
    """JSON text of :func:`jsonable` ``(value)``; ``options`` go to :func:`json.dumps`."""
    return json.dumps(jsonable(value), **options)


def describe(exc: ValidationError) -> str:
    """One readable line per field error: ``amount.currency: unknown currency 'XYZ'``."""
    parts = []
    for err in exc.errors()[:10]:
        loc = ".".join(str(p) for p in err["loc"]) or "record"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def decode_as(model: type[M], data: bytes | str) -> M:
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise InvalidRecord(f"not a valid {model.__name__}: {describe(exc)}") from exc


def decode(topic: str, data: bytes | str | None) -> Any:
    """Decode a record from ``topic`` against its contract."""
    if data is None:
        raise InvalidRecord(f"empty record on {topic}")
    try:
        adapter = CONTRACTS[topic]
    except KeyError:
        raise InvalidRecord(f"no contract for topic {topic!r}") from None
    try:
        return adapter.validate_json(data)
    except ValidationError as exc:
        raise InvalidRecord(f"not a valid record for {topic}: {describe(exc)}") from exc
