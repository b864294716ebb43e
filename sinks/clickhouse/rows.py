"""Topic records -> ClickHouse fact rows (pure functions, in :data:`schema.COLUMNS` order).

No personal data reaches ClickHouse: no phone numbers (only the country and operator
prefix, for regional charts), no e-mail, no client secrets.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sinks.postgres.rows import provider_outcome
from trailpay.domain.events import (
    BookingEvent,
    PaymentStateChanged,
    ProviderCommand,
    ProviderEvent,
    RawWebhook,
)
from trailpay.domain.masking import phone_prefix
from trailpay.domain.references import booking_reference

Row = tuple[Any, ...]


def change_prefix(change: PaymentStateChanged) -> str | None:
    """The phone prefix of a state change: the one it carries beside its sealed contact
    (its snapshot's number is masked), or that of the number of an older, unsealed change."""
    sealed = change.sealed_contact
    return sealed.phone_prefix if sealed is not None else phone_prefix(change.payment.phone_number)


def _ms(delta_end: datetime, start: datetime) -> int:
    return int((delta_end - start).total_seconds() * 1000)


def payment(change: PaymentStateChanged) -> Row:
    p = change.payment
    return (
        p.reference, p.version, p.status.value, p.user_id, p.booking_id, p.amount.amount,
        p.amount.currency, p.provider.value, p.method.value, p.country, change_prefix(change),
        p.provider_reference, p.provider_status, p.provider_code, p.provider_message,
        p.refunded_amount, p.settled_by, p.created_at, p.updated_at,
    )


def payment_change(change: PaymentStateChanged) -> Row:
    p = change.payment
    return (
        change.event_id, change.reference, change.version,
        change.from_status.value if change.from_status else None, change.to_status.value,
        change.cause, change.cause_event_id, change.occurred_at, p.user_id, p.booking_id,
        p.provider.value, p.method.value, p.country, change_prefix(change), p.amount.amount,
        p.amount.currency, p.refunded_amount, p.provider_code, p.provider_message, p.settled_by,
        p.created_at, _ms(change.occurred_at, p.created_at),
    )


def refunds(change: PaymentStateChanged) -> list[Row]:
    p = change.payment
    return [
        (r.refund_id, p.reference, p.version, p.provider.value, r.amount.amount, r.amount.currency,
         r.reason, r.status, r.requested_at, r.updated_at)
        for r in p.refunds
    ]


def provider_command(cmd: ProviderCommand) -> Row:
    amount = cmd.refund_amount or cmd.amount
    return (cmd.event_id, cmd.reference, cmd.kind.value, cmd.provider.value, amount.amount,
            amount.currency, cmd.refund_id, cmd.occurred_at)


def provider_event(event: ProviderEvent) -> Row:
    return (
        event.event_id, event.reference, event.kind.value, event.provider.value,
        event.status.value if event.status else None, event.provider_status, event.provider_code,
        event.provider_message, event.source, event.command_id, event.occurred_at,
    )


def webhook(hook: RawWebhook, timestamp_ms: int | None) -> Row:
    event_type, code, _message = provider_outcome(hook.provider, hook.body)
    latency = None
    if timestamp_ms is not None and timestamp_ms > 0:
        durable = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
        latency = _ms(durable, hook.received_at)
    return (hook.event_id, hook.provider.value, hook.reference, hook.received_at, hook.verified,
            hook.verification_error, event_type, code, latency)


def booking(event: BookingEvent) -> Row:
    return (
        event.event_id, event.booking_id, event.revision, event.kind.value,
        booking_reference(event.booking_id, event.revision), event.user_id, event.amount.amount,
        event.amount.currency, event.country,
        event.preferred_method.value if event.preferred_method else None,
        event.provider.value if event.provider else None, event.occurred_at,
    )
