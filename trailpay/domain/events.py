"""Event contracts: one pydantic model for every record on every topic.

Every record carries ``event_id`` (stable across redelivery and replay), ``occurred_at``
(timezone-aware UTC) and ``schema_version``. Money is integer minor units plus currency.
Models are frozen and refuse unknown fields, so a producer typo is an error, not a silent drop.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from trailpay.domain.attempts import Attempt, CancelRequest, LateDecision
from trailpay.domain.card_saving import FutureUsage
from trailpay.domain.contact import SealedContact
from trailpay.domain.money import Currency, Money
from trailpay.domain.status import PaymentStatus
from trailpay.domain.times import UtcDatetime, utcnow


def stable_id(*parts: object) -> str:
    """A deterministic id from its parts: the same inputs give the same id on every pass."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return digest[:32]


class Provider(StrEnum):
    STRIPE = "stripe"
    MPESA = "mpesa"
    AIRTEL = "airtel"


class PaymentMethod(StrEnum):
    CARD = "card"
    MOBILE_MONEY = "mobile_money"


class Record(BaseModel):
    """Fields every record on every topic carries."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    schema_version: int = 1
    event_id: str = Field(min_length=1, max_length=200)
    occurred_at: UtcDatetime


# --------------------------------------------------------------------------- bookings


class BookingEventKind(StrEnum):
    CREATED = "created"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    AMENDED = "amended"


class BookingEvent(Record):
    """What the booking platform publishes on ``bookings.events``."""

    kind: BookingEventKind
    booking_id: str = Field(min_length=1, max_length=100)
    user_id: str = Field(min_length=1, max_length=100)
    amount: Money
    country: str = Field(min_length=2, max_length=2, description="ISO-3166 alpha-2")
    preferred_method: PaymentMethod | None = None
    provider: Provider | None = None
    phone_number: str | None = None
    email: str | None = None
    description: str = ""
    #: Bumped by the platform on every amendment; a new revision means a new amount to pay.
    revision: int = Field(default=1, ge=1)


# --------------------------------------------------------------------------- requests


class CreatePayment(Record):
    """Ask for a new payment (from the API or the booking bridge)."""

    kind: Literal["create"] = "create"
    reference: str = Field(min_length=1, max_length=64)
    user_id: str
    amount: Money
    provider: Provider
    method: PaymentMethod
    phone_number: str | None = None
    email: str | None = None
    description: str = ""
    booking_id: str | None = None
    country: str | None = None
    customer_id: str | None = Field(default=None, description="Stripe customer")
    payment_method_id: str | None = Field(default=None, description="Stripe saved method")
    confirm: bool = Field(default=False, description="Stripe: confirm at creation")
    return_url: str | None = Field(default=None, description="Stripe: where 3-D Secure returns "
                                   "the customer (sent with a confirm at creation)")
    source: Literal["api", "booking", "replay"] = "api"
    setup_future_usage: FutureUsage | None = Field(default=None, description="Stripe: save the card")


class CancelPayment(Record):
    kind: Literal["cancel"] = "cancel"
    reference: str
    user_id: str | None = None
    reason: str = "requested_by_customer"
    #: Booking cancellations: the sender cannot know whether the payment was already paid;
    #: when it was (succeeded / partially refunded), refund what is left instead of refusing.
    refund_if_paid: bool = False


class RefundPayment(Record):
    kind: Literal["refund"] = "refund"
    reference: str
    refund_id: str = Field(min_length=1, max_length=64)
    amount: Money | None = Field(default=None, description="None = the whole remaining amount")
    reason: str = "requested_by_customer"
    user_id: str | None = None


class ConfirmPayment(Record):
    """Stripe: confirm a PaymentIntent (optionally with a payment method)."""

    kind: Literal["confirm"] = "confirm"
    reference: str
    payment_method_id: str | None = None
    return_url: str | None = None
    user_id: str | None = None


class RetryPayment(Record):
    """Mobile money: start a new attempt (a new STK push or Airtel request) on an open
    payment. Card payments retry by confirming with another payment method."""

    kind: Literal["retry"] = "retry"
    reference: str
    user_id: str | None = None


class ExpirePayment(Record):
    """Emitted by the sweeper after the provider was asked and the deadline passed."""

    kind: Literal["expire"] = "expire"
    reference: str
    reason: str = "deadline passed"


PaymentRequest = Annotated[CreatePayment | CancelPayment | RefundPayment | ConfirmPayment | ExpirePayment
                           | RetryPayment, Field(discriminator="kind")]
PAYMENT_REQUEST_ADAPTER: TypeAdapter[PaymentRequest] = TypeAdapter(PaymentRequest)


# --------------------------------------------------------------------------- webhooks


class RawWebhook(Record):
    """A provider webhook or callback exactly as received: durable before it is answered."""

    provider: Provider
    body: bytes
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, str] = Field(default_factory=dict)
    received_at: UtcDatetime
    #: Payment reference when the ingress could tell it (callback URL, metadata, id).
    reference: str | None = None
    #: None = not checked at the ingress; False = failed (kept for audit, never applied).
    verified: bool | None = None
    verification_error: str | None = None


# --------------------------------------------------------------------------- provider events


class ProviderEventKind(StrEnum):
    STATUS = "status"  # the payment's status at the provider
    REFUND = "refund"  # a refund's outcome
    COMMAND_FAILED = "command_failed"  # the provider refused our command


class ProviderEvent(Record):
    """A provider fact, normalised and keyed by payment reference.

    ``event_id`` is the provider's event identity (Stripe ``evt_...``; Daraja
    CheckoutRequestID + ResultCode; Airtel transaction id + status; for dispatcher results
    the command id), so a redelivery carries the same id.
    """

    kind: ProviderEventKind
    reference: str
    provider: Provider
    status: PaymentStatus | None = Field(default=None, description="Mapped target status")
    provider_status: str | None = Field(default=None, description="Provider's own status")
    provider_code: str | None = None
    provider_message: str | None = None
    provider_reference: str | None = None
    amount: Money | None = None
    refund_id: str | None = None
    refund_succeeded: bool | None = None
    client_secret: str | None = Field(default=None, description="Stripe PI client secret")
    customer_id: str | None = None
    payment_method_id: str | None = None
    source: Literal["webhook", "dispatcher", "sweep", "replay", "reconcile"] = "webhook"
    command_id: str | None = None


# --------------------------------------------------------------------------- commands


class ProviderCommandKind(StrEnum):
    INITIATE = "initiate"
    CONFIRM = "confirm"
    QUERY = "query"
    CANCEL = "cancel"
    REFUND = "refund"


class ProviderCommand(Record):
    """An instruction to call a provider. ``event_id`` doubles as the idempotency key."""

    kind: ProviderCommandKind
    reference: str
    provider: Provider
    amount: Money
    user_id: str
    phone_number: str | None = None
    email: str | None = None
    description: str = ""
    booking_id: str | None = None
    provider_reference: str | None = None
    customer_id: str | None = None
    payment_method_id: str | None = None
    confirm: bool = False
    return_url: str | None = None
    refund_id: str | None = None
    refund_amount: Money | None = None
    reason: str | None = None
    setup_future_usage: FutureUsage | None = None  # INITIATE: Stripe keeps it on the PaymentIntent

    @property
    def idempotency_key(self) -> str:
        return f"trailpay-{self.event_id}"


# --------------------------------------------------------------------------- state


class RefundState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    refund_id: str
    amount: Money
    reason: str
    #: ``refused``: the state machine would not ask the provider (nothing left, payment not
    #: paid, ...); ``failed``: the provider refused or failed it.
    status: Literal["requested", "succeeded", "failed", "refused"]
    provider_reference: str | None = None
    requested_at: UtcDatetime
    updated_at: UtcDatetime
    #: Why it failed or was refused (the provider's code and words, or ours): the refund's
    #: own, so the payment's provider code and message stay the payment's.
    failure_code: str | None = None
    failure_message: str | None = None


class PaymentSnapshot(BaseModel):
    """The whole current state of one payment, as carried by every state change."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reference: str
    version: int = Field(ge=1)
    status: PaymentStatus
    user_id: str
    amount: Money
    provider: Provider
    method: PaymentMethod
    booking_id: str | None = None
    country: str | None = None
    phone_number: str | None = None
    email: str | None = None
    description: str = ""
    provider_reference: str | None = None
    provider_status: str | None = None
    provider_code: str | None = None
    provider_message: str | None = None
    customer_id: str | None = None
    payment_method_id: str | None = None
    client_secret: str | None = None
    #: Stripe: the create's return_url, sent with a confirm (at creation or later)
    return_url: str | None = None
    refunded_amount: int = Field(default=0, ge=0, description="Minor units refunded so far")
    refunds: tuple[RefundState, ...] = ()
    created_at: UtcDatetime
    updated_at: UtcDatetime
    deadline_at: UtcDatetime | None = None
    settled_by: Literal["callback", "dispatcher", "sweep", "request"] | None = None
    attempts: tuple[Attempt, ...] = ()
    cancel_request: CancelRequest | None = None
    #: A provider-confirmed success (or refund) after we had concluded ``late_from``
    #: (failed, expired, cancelled; a cancel still pending counts as cancelled).
    late_from: PaymentStatus | None = None
    late_decision: LateDecision | None = None

    @property
    def late(self) -> bool:
        return self.late_from is not None


class PaymentStateChanged(Record):
    """One transition of one payment. ``event_id`` is ``<reference>:<version>``: the same
    transition has the same id and the same content on every emission."""

    reference: str
    version: int = Field(ge=1)
    from_status: PaymentStatus | None
    to_status: PaymentStatus
    cause_event_id: str
    cause: str = Field(description="What moved it: request kind or provider event source")
    payment: PaymentSnapshot
    sealed_contact: SealedContact | None = None  # as published: see trailpay.domain.contact

    @staticmethod
    def id_for(reference: str, version: int) -> str:
        return f"{reference}:{version}"


# --------------------------------------------------------------------------- notifications


class NotificationTemplate(StrEnum):
    PAYMENT_SUCCEEDED = "payment_succeeded"
    PAYMENT_FAILED = "payment_failed"
    #: Money arrived after we had told the customer the payment failed or was cancelled.
    PAYMENT_SUCCEEDED_LATE = "payment_succeeded_late"
    REFUND_SUCCEEDED = "refund_succeeded"


class Notification(Record):
    template: NotificationTemplate
    reference: str
    user_id: str
    email: str | None
    amount: Money
    provider: Provider
    booking_id: str | None = None
    detail: str = ""


# --------------------------------------------------------------------------- dead letters


class DeadLetter(Record):
    """A record that could not be decoded or applied, with the original bytes."""

    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key: bytes | None = None
    value: bytes
    error_type: str
    error_message: str
    stage: str = Field(description="Which consumer gave up on it")
    reference: str | None = None
    redrive_of: str | None = Field(default=None, description="Dead letter this re-drive came from")


__all__ = [
    "PAYMENT_REQUEST_ADAPTER",
    "BookingEvent",
    "BookingEventKind",
    "CancelPayment",
    "ConfirmPayment",
    "CreatePayment",
    "Currency",
    "DeadLetter",
    "ExpirePayment",
    "Money",
    "Notification",
    "NotificationTemplate",
    "PaymentMethod",
    "PaymentRequest",
    "PaymentSnapshot",
    "PaymentStateChanged",
    "Provider",
    "ProviderCommand",
    "ProviderCommandKind",
    "ProviderEvent",
    "ProviderEventKind",
    "RawWebhook",
    "Record",
    "RefundPayment",
    "RefundState",
    "RetryPayment",
    "UtcDatetime",
    "stable_id",
    "utcnow",
]
