"""Topic records -> PostgreSQL rows (pure functions, no database).

Secrets never reach a row: callback tokens in query strings and credential headers are
redacted. payments.state.v1 brings the phone number and e-mail masked, with both sealed
beside them for the worker's restore (:mod:`trailpay.domain.contact`); the archive of state
changes (``payment_events.record``) keeps that seal, which replay needs. The payment row's
phone, its snapshot and the archive mask again whatever came unmasked (a change published
before sealing existed); the e-mail columns keep what the topic carries.
"""

from __future__ import annotations

import json
from typing import Any

from trailpay.domain.events import (
    BookingEvent,
    DeadLetter,
    PaymentSnapshot,
    PaymentStateChanged,
    Provider,
    RawWebhook,
)
from trailpay.domain.masking import mask_email, mask_phone
from trailpay.domain.references import booking_reference

Row = dict[str, Any]

REDACTED = "[redacted]"
_SECRET_WORDS = ("token", "secret", "password", "passkey", "authorization", "cookie", "api-key",
                 "api_key", "apikey")
#: Headers kept verbatim although they look sensitive: needed to verify the body again.
_KEEP_HEADERS = frozenset({"stripe-signature"})


def _redact(mapping: dict[str, str], keep: frozenset[str] = frozenset()) -> dict[str, str]:
    out = {}
    for name, value in mapping.items():
        lowered = name.lower()
        if lowered not in keep and any(word in lowered for word in _SECRET_WORDS):
            out[name] = REDACTED
        else:
            out[name] = value
    return out


def masked_snapshot(snapshot: PaymentSnapshot) -> dict[str, Any]:
    data = snapshot.model_dump(mode="json")
    if data.get("phone_number"):
        data["phone_number"] = mask_phone(data["phone_number"])
    if data.get("email"):
        data["email"] = mask_email(data["email"])
    return data


def archived_record(change: PaymentStateChanged) -> dict[str, Any]:
    """The state change as ``payment_events.record`` keeps it: whole but for the masked
    phone number and e-mail (the seal, if any, stays: a restore opens it)."""
    data = change.model_dump(mode="json")
    data["payment"] = masked_snapshot(change.payment)
    return data


def payment_row(change: PaymentStateChanged) -> Row:
    p = change.payment
    return {
        "reference": p.reference,
        "version": p.version,
        "status": p.status.value,
        "user_id": p.user_id,
        "booking_id": p.booking_id,
        "amount_minor": p.amount.amount,
        "currency": p.amount.currency,
        "provider": p.provider.value,
        "method": p.method.value,
        "country": p.country,
        "phone_masked": mask_phone(p.phone_number) or None,
        "email": p.email,  # masked by the worker that published it (trailpay.pii_crypto)
        "description": p.description,
        "provider_reference": p.provider_reference,
        "provider_status": p.provider_status,
        "provider_code": p.provider_code,
        "provider_message": p.provider_message,
        "customer_id": p.customer_id,
        "payment_method_id": p.payment_method_id,
        "client_secret": p.client_secret,
        "refunded_minor": p.refunded_amount,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
        "deadline_at": p.deadline_at,
        "settled_by": p.settled_by,
        "snapshot": masked_snapshot(p),
    }


def event_row(change: PaymentStateChanged, partition: int | None, offset: int | None) -> Row:
    return {
        "event_id": change.event_id,
        "reference": change.reference,
        "version": change.version,
        "from_status": change.from_status.value if change.from_status else None,
        "to_status": change.to_status.value,
        "cause": change.cause[:64],
        "cause_event_id": change.cause_event_id[:200],
        "at": change.occurred_at,
        "record": archived_record(change),
        "kafka_partition": partition,
        "kafka_offset": offset,
    }


def intent_row(change: PaymentStateChanged) -> Row | None:
    """The Stripe PaymentIntent behind a card payment, once the payment has one."""
    p = change.payment
    if p.provider != Provider.STRIPE or not (p.provider_reference or "").startswith("pi_"):
        return None
    return {
        "payment_intent_id": p.provider_reference,
        "reference": p.reference,
        "version": p.version,
        "status": p.provider_status,
        "payment_status": p.status.value,
        "amount_minor": p.amount.amount,
        "currency": p.amount.currency,
        "customer_id": p.customer_id,
        "payment_method_id": p.payment_method_id,
        "client_secret": p.client_secret,
        "last_error_code": p.provider_code,
        "last_error_message": p.provider_message,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    }


def refund_rows(change: PaymentStateChanged) -> list[Row]:
    p = change.payment
    return [
        {
            "refund_id": r.refund_id,
            "reference": p.reference,
            "version": p.version,
            "amount_minor": r.amount.amount,
            "currency": r.amount.currency,
            "reason": r.reason[:200],
            "status": r.status,
            "provider_reference": r.provider_reference,
            "requested_at": r.requested_at,
            "updated_at": r.updated_at,
            "failure_code": r.failure_code[:100] if r.failure_code else None,
            "failure_message": r.failure_message,
        }
        for r in p.refunds
    ]


def customer_row(change: PaymentStateChanged) -> Row | None:
    p = change.payment
    if p.provider != Provider.STRIPE or not p.customer_id:
        return None
    return {"user_id": p.user_id, "customer_id": p.customer_id, "email": p.email}


def _dig(data: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _text(value: Any, limit: int) -> str | None:
    """A scalar as text; a container (a hostile body can nest one anywhere) is not text."""
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)[:limit]


def provider_outcome(provider: Provider, body: bytes) -> tuple[str | None, str | None, str | None]:
    """(event type, provider code, provider text) read from a webhook body, best effort:
    a body that is no JSON object, or nested deeper than the parser's recursion limit
    (anyone can post one to a callback URL), has none."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None, None, None
    if not isinstance(data, dict):
        return None, None, None
    if provider == Provider.MPESA:
        cb = _dig(data, "Body", "stkCallback")
        return ("stkCallback" if cb else None, _text(_dig(cb, "ResultCode"), 100),
                _text(_dig(cb, "ResultDesc"), 2000))
    if provider == Provider.AIRTEL:
        tx = data.get("transaction")
        return ("transaction" if tx else None, _text(_dig(tx, "status_code"), 100),
                _text(_dig(tx, "message"), 2000))
    obj = _dig(data, "data", "object")
    error = _dig(obj, "last_payment_error")
    code = _dig(error, "decline_code") or _dig(error, "code") or _dig(obj, "status")
    return _text(data.get("type"), 100), _text(code, 100), _text(_dig(error, "message"), 2000)


def callback_row(hook: RawWebhook, partition: int | None, offset: int | None) -> Row:
    event_type, code, message = provider_outcome(hook.provider, hook.body)
    return {
        "event_id": hook.event_id,
        "provider": hook.provider.value,
        "reference": hook.reference,
        "received_at": hook.received_at,
        "occurred_at": hook.occurred_at,
        "verified": hook.verified,
        "verification_error": hook.verification_error,
        "event_type": event_type,
        "provider_code": code,
        "provider_message": message,
        "headers": _redact(hook.headers, _KEEP_HEADERS),
        "query": _redact(hook.query),
        "body": hook.body,
        "kafka_partition": partition,
        "kafka_offset": offset,
    }


def booking_row(event: BookingEvent) -> Row:
    return {
        "booking_id": event.booking_id,
        "revision": event.revision,
        "reference": booking_reference(event.booking_id, event.revision),
        "status": event.kind.value,
        "user_id": event.user_id,
        "amount_minor": event.amount.amount,
        "currency": event.amount.currency,
        "country": event.country,
        "preferred_method": event.preferred_method.value if event.preferred_method else None,
        "provider": event.provider.value if event.provider else None,
        "last_event_id": event.event_id,
        "last_event_at": event.occurred_at,
        "kind_rank": KIND_RANK.get(event.kind.value, 0),
        "created_at": event.occurred_at,
    }


#: Lifecycle order of booking events, to order two events of one revision and instant.
KIND_RANK = {"created": 0, "amended": 1, "confirmed": 2, "cancelled": 3}


def booking_order(row: Row) -> tuple[int, Any, int, str]:
    """Which of two events of one booking is newer: revision, time, lifecycle, then id."""
    return (row["revision"], row["last_event_at"], row["kind_rank"], row["last_event_id"])


def dead_letter_row(letter: DeadLetter) -> Row:
    return {
        "event_id": letter.event_id,
        "source_topic": letter.source_topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "key": letter.key,
        "value": letter.value,
        "error_type": letter.error_type[:200],
        "error_message": letter.error_message,
        "stage": letter.stage[:100],
        "reference": (letter.reference or None) and letter.reference[:64],
        "redrive_of": letter.redrive_of,
        "failed_at": letter.occurred_at,
    }
