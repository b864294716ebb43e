"""The payment state machine: :func:`apply`, the one function that changes a payment.

``apply(payment, record)`` decides what one input does to a payment (see
:mod:`trailpay.domain.payment` for the verdicts) in two halves: a decision per input type,
found in :data:`DECIDERS`, says what changes as a :class:`Step`; :func:`_emit` turns the
step into the new version and the records to send.

Exactly-once effect under at-least-once delivery rests on two rules kept here:

1. Every emitted record is a pure function of (previous state, input record): ids are
   ``<reference>:<version>`` for state changes and ``stable_id(...)`` for commands and
   notifications; times come from the input record, never from the wall clock. Re-applying
   the same record to the same state emits byte-for-byte the same records.
2. The state remembers the ids of the inputs it applied (a bounded tail), so a record
   redelivered after its effect reached the table is a no-op. Beyond that tail, old
   records still fall out as stale: statuses only move forward and refunds are keyed by
   their refund id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal

from trailpay.domain.commands import make_command
from trailpay.domain.deadlines import DEFAULT_POLICY, DeadlinePolicy
from trailpay.domain.errors import IllegalTransition
from trailpay.domain.events import (
    CancelPayment,
    ConfirmPayment,
    CreatePayment,
    ExpirePayment,
    Notification,
    NotificationTemplate,
    PaymentMethod,
    PaymentSnapshot,
    PaymentStateChanged,
    Provider,
    ProviderCommandKind,
    ProviderEvent,
    RefundPayment,
    stable_id,
)
from trailpay.domain.payment import (
    MAX_APPLIED,
    Outcome,
    Payment,
    PaymentInput,
    RequestRefused,
    Verdict,
    duplicate,
    stale,
)
from trailpay.domain.refunds import (
    decide_refund_on_cancel,
    decide_refund_outcome,
    decide_refund_request,
    is_refund_outcome,
)
from trailpay.domain.snapshot_update import SnapshotUpdate, revise
from trailpay.domain.status import (
    CANCELLABLE,
    OPEN,
    RANK,
    REFUNDABLE,
    SETTLED,
    PaymentStatus,
    can_transition,
    transition,
)
from trailpay.domain.step import Step

S = PaymentStatus
Cmd = ProviderCommandKind

#: Statuses that mean "no money moved"; a late one after another is stale, not illegal.
UNPAID_ENDS: frozenset[PaymentStatus] = frozenset({S.FAILED, S.CANCELLED, S.EXPIRED})

IdentityField = Literal["provider_reference", "client_secret", "customer_id", "payment_method_id"]
#: Provider facts that identify the payment at the provider: filled in when missing,
#: never overwritten (a late event must not undo an earlier one).
IDENTITY_FIELDS: tuple[IdentityField, ...] = (
    "provider_reference", "client_secret", "customer_id", "payment_method_id",
)

#: Who settled a payment, by the source of the provider event that settled it.
SETTLED_BY: dict[str, Literal["callback", "dispatcher", "sweep"]] = {
    "webhook": "callback", "dispatcher": "dispatcher", "sweep": "sweep",
}


def apply(
    payment: Payment | None,
    record: PaymentInput,
    now: datetime | None = None,
    *,
    policy: DeadlinePolicy = DEFAULT_POLICY,
) -> Outcome:
    """Apply one input to a payment. ``now`` only explains verdicts (how late a record
    is); nothing emitted depends on it, so a re-application emits identical records."""
    if payment is not None and payment.seen(record.event_id):
        return duplicate(payment, f"{record.event_id} already applied")
    if isinstance(record, CreatePayment):  # the one input that may find no payment
        return _create(payment, record, policy)
    if payment is None:
        if isinstance(record, ProviderEvent):
            return Outcome(Verdict.PARK, None, reason=f"no payment {record.reference} yet")
        raise RequestRefused(record.reference, f"unknown payment ({record.kind} request)")
    try:
        decide = DECIDERS[type(record)]
    except KeyError:  # pragma: no cover - PaymentInput and DECIDERS are kept in step by a test
        raise TypeError(f"not a payment input: {type(record).__name__}") from None
    step = decide(payment, record)
    if isinstance(step, Outcome):
        if step.verdict is Verdict.STALE and now is not None:
            late = (now - record.occurred_at).total_seconds()
            return Outcome(step.verdict, step.payment, reason=f"{step.reason} ({late:.0f}s old)")
        return step
    return _emit(payment, record, step, policy)


# ----------------------------------------------------------------------------- create


def _create(payment: Payment | None, record: CreatePayment, policy: DeadlinePolicy) -> Outcome:
    if payment is not None:
        same = (
            payment.snapshot.amount == record.amount
            and payment.snapshot.user_id == record.user_id
            and payment.snapshot.provider == record.provider
        )
        if same:
            return duplicate(payment, "payment created again (same request)")
        raise RequestRefused(record.reference, "reference already used by a different payment")
    if record.method is PaymentMethod.MOBILE_MONEY and not record.phone_number:
        raise RequestRefused(record.reference, "mobile money needs a phone number")
    if record.amount.amount <= 0:
        raise RequestRefused(record.reference, "amount must be positive")
    snapshot = PaymentSnapshot(
        reference=record.reference,
        version=1,
        status=S.CREATED,
        user_id=record.user_id,
        amount=record.amount,
        provider=record.provider,
        method=record.method,
        booking_id=record.booking_id,
        country=record.country,
        phone_number=record.phone_number,
        email=record.email,
        description=record.description,
        customer_id=record.customer_id,
        payment_method_id=record.payment_method_id,
        created_at=record.occurred_at,
        updated_at=record.occurred_at,
        deadline_at=policy.deadline(S.CREATED, record.occurred_at),
    )
    created = Payment(snapshot=snapshot, applied=(record.event_id,))
    command = make_command(snapshot, Cmd.INITIATE, record.occurred_at, confirm=record.confirm)
    return Outcome(Verdict.APPLIED, created, _state_change(snapshot, None, record, "create"), (command,))


# ----------------------------------------------------------------------------- decide


def _identity_updates(snapshot: PaymentSnapshot, event: ProviderEvent) -> SnapshotUpdate:
    updates: SnapshotUpdate = {}
    for name in IDENTITY_FIELDS:
        new = getattr(event, name)
        if new is not None and getattr(snapshot, name) is None:
            updates[name] = new
    return updates


def _decide_provider_event(payment: Payment, event: ProviderEvent) -> Step | Outcome:
    if is_refund_outcome(event):
        return decide_refund_outcome(payment, event)
    return _decide_provider_status(payment, event)


def _decide_provider_status(payment: Payment, event: ProviderEvent) -> Step | Outcome:
    snap = payment.snapshot
    current = snap.status
    target = event.status
    identity = _identity_updates(snap, event)
    if target is None:
        if identity:
            return Step(current, event.source, identity)
        return stale(payment, f"{event.kind} event without a status")
    if target in (S.PARTIALLY_REFUNDED, S.REFUNDED):
        raise IllegalTransition(snap.reference, current.value,
                                f"{target.value} (refunds come as refund events)")
    if can_transition(current, target):
        step = Step(target, event.source, {
            **identity,
            "provider_status": event.provider_status,
            "provider_code": event.provider_code,
            "provider_message": event.provider_message,
        })
        if target in SETTLED:
            step.updates["settled_by"] = SETTLED_BY.get(event.source, "callback")
        if target is S.SUCCEEDED:
            step.notify = NotificationTemplate.PAYMENT_SUCCEEDED
        elif target in (S.FAILED, S.EXPIRED):
            step.notify = NotificationTemplate.PAYMENT_FAILED
            step.detail = event.provider_message or target.value
        return step
    if target is current or RANK[target] < RANK[current] or (
        current in UNPAID_ENDS and target in UNPAID_ENDS
    ):
        if identity:
            return Step(current, event.source, identity)
        return stale(payment, f"{target.value} after {current.value}")
    # e.g. succeeded after cancelled/expired: money moved on a payment we gave up on.
    raise IllegalTransition(snap.reference, current.value, target.value)


def _decide_cancel(payment: Payment, record: CancelPayment) -> Step | Outcome:
    current = payment.status
    if current is S.CANCELLED:
        return stale(payment, "already cancelled")
    if record.refund_if_paid and current in REFUNDABLE | {S.REFUNDED}:
        return decide_refund_on_cancel(payment, record)
    if current not in CANCELLABLE:
        raise IllegalTransition(payment.reference, current.value, S.CANCELLED.value)
    step = Step(transition(payment.reference, current, S.CANCELLED), "cancel",
                {"settled_by": "request", "provider_message": record.reason})
    if payment.snapshot.provider is Provider.STRIPE:
        step.commands.append((Cmd.CANCEL, {"reason": record.reason}))
    return step


def _decide_expire(payment: Payment, record: ExpirePayment) -> Step | Outcome:
    snap = payment.snapshot
    if snap.status not in OPEN:
        return stale(payment, f"expire after {snap.status.value}")
    if snap.deadline_at is not None and record.occurred_at < snap.deadline_at:
        return stale(payment, "expire before the current deadline (the payment moved on)")
    step = Step(transition(snap.reference, snap.status, S.EXPIRED), "expire",
                {"settled_by": "sweep", "provider_message": record.reason},
                notify=NotificationTemplate.PAYMENT_FAILED, detail=record.reason)
    if snap.provider is Provider.STRIPE:
        step.commands.append((Cmd.CANCEL, {"reason": "abandoned"}))
    return step


def _decide_confirm(payment: Payment, record: ConfirmPayment) -> Step | Outcome:
    snap = payment.snapshot
    if snap.provider is not Provider.STRIPE:
        raise RequestRefused(snap.reference, f"confirm is for card payments, not {snap.provider.value}")
    if snap.status not in OPEN:
        raise IllegalTransition(snap.reference, snap.status.value, "confirm")
    updates: SnapshotUpdate = {}
    if record.payment_method_id:
        updates["payment_method_id"] = record.payment_method_id
    method = record.payment_method_id or snap.payment_method_id
    return Step(snap.status, "confirm", updates,
                [(Cmd.CONFIRM, {"payment_method_id": method, "return_url": record.return_url})])


#: Input type -> its decision (a create is handled before: it may find no payment).
DECIDERS: Mapping[type[PaymentInput], Callable[[Payment, Any], Step | Outcome]] = {
    ProviderEvent: _decide_provider_event,
    CancelPayment: _decide_cancel,
    RefundPayment: decide_refund_request,
    ConfirmPayment: _decide_confirm,
    ExpirePayment: _decide_expire,
}


# ----------------------------------------------------------------------------- emit


def _state_change(snapshot: PaymentSnapshot, from_status: PaymentStatus | None, record: PaymentInput,
                  cause: str) -> PaymentStateChanged:
    return PaymentStateChanged(
        event_id=PaymentStateChanged.id_for(snapshot.reference, snapshot.version),
        occurred_at=record.occurred_at,
        reference=snapshot.reference,
        version=snapshot.version,
        from_status=from_status,
        to_status=snapshot.status,
        cause_event_id=record.event_id,
        cause=cause,
        payment=snapshot,
    )


def _emit(payment: Payment, record: PaymentInput, step: Step, policy: DeadlinePolicy) -> Outcome:
    """The step as the payment's next version, with its state change, commands and
    notification."""
    old = payment.snapshot
    at = record.occurred_at
    updates: SnapshotUpdate = {
        **step.updates,
        "version": old.version + 1,
        "status": step.status,
        "updated_at": max(old.updated_at, at),
    }
    if step.status is not old.status:
        updates["deadline_at"] = policy.deadline(step.status, at)
    snapshot = revise(old, updates)
    applied = (*payment.applied, record.event_id)[-MAX_APPLIED:]
    commands = tuple(make_command(snapshot, kind, at, **options) for kind, options in step.commands)
    notes: tuple[Notification, ...] = ()
    if step.notify is not None:
        notes = (Notification(
            event_id=stable_id(old.reference, snapshot.version, step.notify.value),
            occurred_at=at,
            template=step.notify,
            reference=old.reference,
            user_id=snapshot.user_id,
            email=snapshot.email,
            amount=snapshot.amount,
            provider=snapshot.provider,
            booking_id=snapshot.booking_id,
            detail=step.detail,
        ),)
    return Outcome(Verdict.APPLIED, Payment(snapshot=snapshot, applied=applied),
                   _state_change(snapshot, old.status, record, step.cause), commands, notes)
