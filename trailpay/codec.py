"""The one serializer used by producers, Faust agents, sinks and tools.

Records travel as UTF-8 JSON (bytes as base64). Decoding validates against the topic's
contract; a failure raises :class:`InvalidRecord` with a readable reason, which consumers
turn into a dead letter carrying the original bytes.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from trailpay import topics
from trailpay.domain import events as ev
from trailpay.domain.errors import InvalidRecord

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
}


def encode(record: BaseModel) -> bytes:
    return record.model_dump_json().encode()


def encode_key(key: str | None) -> bytes | None:
    return None if key is None else key.encode()


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
