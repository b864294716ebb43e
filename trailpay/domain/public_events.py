"""The public event contract (``payments.events.v1``): what the booking platform may know.

``payments.state.v1`` is internal: its snapshots carry phone numbers, e-mails and Stripe
client secrets. :func:`public_events` turns one internal state change into the business
facts it stands for (none, one or a few), each a :class:`PublicPaymentEvent` with nothing
personal or secret in it: no phone number, e-mail, client secret, token, user id, provider
message or description.

One event per business fact, with an id derived from the payment reference, the fact and
the contract version (and, for facts that can happen more than once on a payment, the
refund id): the same fact read from a redelivered, replayed or restored state change has
the same ``event_id``, so receivers deduplicate on it. docs/events.md is the reader's
documentation of this module.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from trailpay.domain.events import (
    PaymentMethod,
    PaymentSnapshot,
    PaymentStateChanged,
    Provider,
    RefundState,
    stable_id,
)
from trailpay.domain.money import Currency
from trailpay.domain.status import PaymentStatus
from trailpay.domain.times import UtcDatetime

#: The contract's version; a change that is not backwards compatible gets a new topic
#: (``payments.events.v2``) and a new version, additions keep both.
SCHEMA_VERSION: Literal[1] = 1

S = PaymentStatus


class PublicEventType(StrEnum):
    PAYMENT_CREATED = "payment.created"
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_EXPIRED = "payment.expired"
    PAYMENT_CANCELLED = "payment.cancelled"
    PAYMENT_REFUNDED = "payment.refunded"
    PAYMENT_PARTIALLY_REFUNDED = "payment.partially_refunded"
    #: Money the provider confirmed after the payment had failed, expired or been cancelled.
    PAYMENT_LATE_SUCCEEDED = "payment.late_succeeded"
    REFUND_FAILED = "refund.failed"


T = PublicEventType

#: The fact a move into each status is (payments that succeed late: see :func:`_status_fact`).
STATUS_FACTS: dict[PaymentStatus, PublicEventType] = {
    S.SUCCEEDED: T.PAYMENT_SUCCEEDED,
    S.FAILED: T.PAYMENT_FAILED,
    S.EXPIRED: T.PAYMENT_EXPIRED,
    S.CANCELLED: T.PAYMENT_CANCELLED,
    S.REFUNDED: T.PAYMENT_REFUNDED,
    S.PARTIALLY_REFUNDED: T.PAYMENT_PARTIALLY_REFUNDED,
}
REFUND_FACTS = frozenset({T.PAYMENT_REFUNDED, T.PAYMENT_PARTIALLY_REFUNDED})


class PublicRefund(BaseModel):
    """The refund a refund fact is about."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    refund_id: str
    amount: int = Field(ge=0, description="Minor units")
    currency: Currency
    status: Literal["requested", "succeeded", "failed", "refused"]
    failure_code: str | None = None


class PublicPaymentEvent(BaseModel):
    """One business fact about one payment, as published on ``payments.events.v1`` and
    POSTed to webhook endpoints."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str = Field(min_length=1, max_length=64,
                          description="Deterministic: the same fact always has the same id")
    type: PublicEventType
    occurred_at: UtcDatetime
    reference: str = Field(description="TrailPay's payment reference")
    booking_id: str | None = None
    amount: int = Field(ge=0, description="The payment's amount in minor units")
    currency: Currency
    provider: Provider
    method: PaymentMethod
    status: PaymentStatus = Field(description="The payment's status after this fact")
    attempts: int = Field(ge=0, description="Attempts at the provider so far")
    refunded_amount: int = Field(default=0, ge=0, description="Minor units refunded so far")
    payment_version: int = Field(ge=1, description="The payment's version this fact was read from")
    late_from: PaymentStatus | None = Field(
        default=None, description="What the payment was when money arrived late")
    provider_code: str | None = Field(default=None, description="The provider's result code")
    refund: PublicRefund | None = None

    @property
    def key(self) -> str:
        """The record key: the booking id, the payment reference when there is none."""
        return self.booking_id or self.reference


def event_id_for(reference: str, fact: PublicEventType, discriminator: str = "") -> str:
    """The id of ``fact`` about payment ``reference`` under this contract version."""
    return stable_id("payments.events", SCHEMA_VERSION, reference, fact.value, discriminator)


def _status_fact(change: PaymentStateChanged) -> PublicEventType | None:
    to = change.to_status
    if to is change.from_status:
        return T.PAYMENT_PARTIALLY_REFUNDED if to is S.PARTIALLY_REFUNDED else None
    if to is S.SUCCEEDED and change.payment.late:
        return T.PAYMENT_LATE_SUCCEEDED
    return STATUS_FACTS.get(to)


def settled_refund(change: PaymentStateChanged) -> RefundState | None:
    """The refund that succeeded in this change: the one settled at the change's time;
    for a move into a refunded status, else the last one that succeeded."""
    succeeded = [r for r in change.payment.refunds if r.status == "succeeded"]
    now = [r for r in succeeded if r.updated_at == change.occurred_at]
    if now:
        return now[-1]
    if change.to_status is not change.from_status and succeeded:
        return max(succeeded, key=lambda r: r.updated_at)
    return None


def _public_refund(refund: RefundState) -> PublicRefund:
    return PublicRefund(refund_id=refund.refund_id, amount=refund.amount.amount,
                        currency=refund.amount.currency, status=refund.status,
                        failure_code=refund.failure_code)


def _event(change: PaymentStateChanged, fact: PublicEventType,
           refund: RefundState | None = None) -> PublicPaymentEvent:
    snap: PaymentSnapshot = change.payment
    return PublicPaymentEvent(
        event_id=event_id_for(snap.reference, fact, refund.refund_id if refund else ""),
        type=fact, occurred_at=change.occurred_at, reference=snap.reference,
        booking_id=snap.booking_id, amount=snap.amount.amount, currency=snap.amount.currency,
        provider=snap.provider, method=snap.method, status=snap.status,
        attempts=len(snap.attempts), refunded_amount=snap.refunded_amount,
        payment_version=snap.version, late_from=snap.late_from,
        provider_code=refund.failure_code if refund and fact is T.REFUND_FAILED else snap.provider_code,
        refund=_public_refund(refund) if refund else None,
    )


def public_events(change: PaymentStateChanged) -> tuple[PublicPaymentEvent, ...]:
    """The business facts one state change stands for, in the order they happened."""
    out: list[PublicPaymentEvent] = []
    if change.from_status is None:
        out.append(_event(change, T.PAYMENT_CREATED))
    fact = _status_fact(change)
    if fact in REFUND_FACTS:
        refund = settled_refund(change)
        if refund is not None:
            out.append(_event(change, fact, refund))
    elif fact is not None:
        out.append(_event(change, fact))
    for refund in change.payment.refunds:
        if refund.status in ("failed", "refused") and refund.updated_at == change.occurred_at:
            out.append(_event(change, T.REFUND_FAILED, refund))
    return tuple(out)


__all__ = [
    "SCHEMA_VERSION",
    "PublicEventType",
    "PublicPaymentEvent",
    "PublicRefund",
    "event_id_for",
    "public_events",
    "settled_refund",
]
