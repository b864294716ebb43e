"""The payment state machine: :func:`apply`, the one function that changes a payment.

``apply(payment, record)`` decides what one input does to a payment (see
:mod:`trailpay.domain.payment` for the verdicts) in two halves: a decision per input type,
found in :data:`DECIDERS`, says what changes as a :class:`Step`; :func:`_emit` turns the
step into the new version and the records to send. Provider status reports are decided in
:mod:`trailpay.domain.provider_events` (after the cross-checks). What a deployment chooses
comes in as values: the :class:`DeadlinePolicy` and the :class:`PaymentRules` (attempts per
payment, the late-payment policy).

Cancels: with a provider that can cancel (Stripe) a cancel is *pending*: the payment keeps
its open status with a ``cancel_request`` (and the CANCEL command's id) until the provider
confirms ``cancelled``; a refusal asks the provider for the payment's status, and money it
reports is a late payment (policy: refund, as a cancel was asked for). Mobile-money cancels
are local and immediate (an STK prompt cannot be withdrawn); money that still arrives is a
late payment likewise.

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
from typing import Any

from trailpay.domain.attempts import CancelRequest, end_attempt, open_attempt, start_attempt
from trailpay.domain.commands import command_id, make_command
from trailpay.domain.cross_checks import check_provider_event
from trailpay.domain.deadlines import DEFAULT_POLICY, DeadlinePolicy, awaits_retry
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
    ProviderCommandKind,
    ProviderEvent,
    RefundPayment,
    RetryPayment,
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
from trailpay.domain.provider_events import UNPAID_ENDS, decide_provider_status
from trailpay.domain.refunds import (
    decide_refund_on_cancel,
    decide_refund_outcome,
    decide_refund_request,
    is_refund_outcome,
)
from trailpay.domain.repeat_initiations import decide_repeat
from trailpay.domain.rules import CANCELS_AT_PROVIDER, DEFAULT_RULES, PaymentRules
from trailpay.domain.snapshot_update import SnapshotUpdate, revise
from trailpay.domain.status import (
    CANCELLABLE,
    OPEN,
    REFUNDABLE,
    PaymentStatus,
    transition,
)
from trailpay.domain.step import Step

S = PaymentStatus
Cmd = ProviderCommandKind


def apply(
    payment: Payment | None,
    record: PaymentInput,
    now: datetime | None = None,
    *,
    policy: DeadlinePolicy = DEFAULT_POLICY,
    rules: PaymentRules = DEFAULT_RULES,
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
    step = decide(payment, record, rules)
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
    at = record.occurred_at
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
        return_url=record.return_url,
        created_at=at,
        updated_at=at,
        deadline_at=policy.deadline(S.CREATED, at, record.provider),
        attempts=start_attempt((), at, record.payment_method_id or record.method.value,
                               command_id=command_id(record.reference, 1, Cmd.INITIATE)),
    )
    created = Payment(snapshot=snapshot, applied=(record.event_id,))
    command = make_command(snapshot, Cmd.INITIATE, at, confirm=record.confirm,
                           setup_future_usage=record.setup_future_usage)
    return Outcome(Verdict.APPLIED, created, _state_change(snapshot, None, record, "create"), (command,))


# ----------------------------------------------------------------------------- decide


def _decide_provider_event(payment: Payment, event: ProviderEvent, rules: PaymentRules) -> Step | Outcome:
    if is_refund_outcome(event):
        check_provider_event(payment.snapshot, event, status_event=False)
        return decide_refund_outcome(payment, event)
    repeated = decide_repeat(payment, event, rules)  # a command executed twice, money taken twice
    if repeated is not None:
        return repeated
    return decide_provider_status(payment, event, rules)


def _decide_cancel(payment: Payment, record: CancelPayment, rules: PaymentRules) -> Step | Outcome:
    snap = payment.snapshot
    current = snap.status
    if current is S.CANCELLED or snap.cancel_request is not None:
        return stale(payment, "already cancelled" if current is S.CANCELLED else "cancel already asked for")
    if record.refund_if_paid and current in REFUNDABLE | {S.REFUNDED}:
        return decide_refund_on_cancel(payment, record)
    request = CancelRequest(requested_at=record.occurred_at, reason=record.reason,
                            for_booking=record.refund_if_paid)
    if current in UNPAID_ENDS:
        # Nothing to cancel, but remembered: money that still arrives is refunded (policy).
        return Step(current, "cancel", {"cancel_request": request})
    if current not in CANCELLABLE:
        raise IllegalTransition(payment.reference, current.value, S.CANCELLED.value)
    if snap.provider in CANCELS_AT_PROVIDER:
        # Pending until the provider confirms; a refusal means the money may have moved.
        asked = request.model_copy(update={
            "command_id": command_id(snap.reference, snap.version + 1, Cmd.CANCEL)})
        return Step(current, "cancel", {"cancel_request": asked}, [(Cmd.CANCEL, {"reason": record.reason})])
    step = Step(transition(payment.reference, current, S.CANCELLED), "cancel",
                {"settled_by": "request", "provider_message": record.reason, "cancel_request": request})
    attempt = open_attempt(snap.attempts)
    if attempt is not None:
        step.updates["attempts"] = end_attempt(snap.attempts, attempt, "cancelled", record.occurred_at,
                                               None, record.reason)
    return step


def _decide_expire(payment: Payment, record: ExpirePayment, rules: PaymentRules) -> Step | Outcome:
    snap = payment.snapshot
    if snap.status not in OPEN:
        return stale(payment, f"expire after {snap.status.value}")
    if snap.deadline_at is not None and record.occurred_at < snap.deadline_at:
        return stale(payment, "expire before the current deadline (the payment moved on)")
    if awaits_retry(snap):
        return _retry_window_passed(payment, record)
    step = Step(transition(snap.reference, snap.status, S.EXPIRED), "expire",
                {"settled_by": "sweep", "provider_message": record.reason},
                notify=NotificationTemplate.PAYMENT_FAILED, detail=record.reason)
    attempt = open_attempt(snap.attempts)
    if attempt is not None:
        step.updates["attempts"] = end_attempt(snap.attempts, attempt, "expired", record.occurred_at,
                                               None, record.reason)
    if snap.provider in CANCELS_AT_PROVIDER:
        step.commands.append((Cmd.CANCEL, {"reason": "abandoned"}))
    return step


def _retry_window_passed(payment: Payment, record: ExpirePayment) -> Step:
    """No retry came within the retry window: the payment ends as its last attempt did
    (``failed``; ``cancelled`` after a prompt the customer cancelled), with that attempt's
    provider code and message, not ``expired`` (the provider gave its answer)."""
    snap = payment.snapshot
    last = snap.attempts[-1]
    final = S.CANCELLED if last.outcome == "cancelled" else S.FAILED
    step = Step(transition(snap.reference, snap.status, final), "retry_window",
                {"settled_by": "sweep", "provider_code": last.provider_code,
                 "provider_message": last.provider_message})
    if final is S.FAILED:
        step.notify = NotificationTemplate.PAYMENT_FAILED
        step.detail = last.provider_message or final.value
    return step


def _new_attempt(payment: Payment, at: datetime, method: str | None, rules: PaymentRules) -> SnapshotUpdate:
    """Start another attempt when the last one ended (bounded by ``rules.max_attempts``)."""
    snap = payment.snapshot
    if open_attempt(snap.attempts) is not None:
        return {}
    if len(snap.attempts) >= rules.max_attempts:
        raise RequestRefused(snap.reference, f"no attempts left ({rules.max_attempts} allowed)")
    started_by = command_id(snap.reference, snap.version + 1, Cmd.CONFIRM)
    return {"attempts": start_attempt(snap.attempts, at, method, command_id=started_by)}


def _open_for_attempt(payment: Payment, what: str) -> None:
    snap = payment.snapshot
    if snap.status not in OPEN:
        raise IllegalTransition(snap.reference, snap.status.value, what)
    if snap.cancel_request is not None:
        raise RequestRefused(snap.reference, f"a cancel was asked for; no {what}")


def _decide_confirm(payment: Payment, record: ConfirmPayment, rules: PaymentRules) -> Step | Outcome:
    snap = payment.snapshot
    if snap.provider not in CANCELS_AT_PROVIDER:
        raise RequestRefused(snap.reference, f"confirm is for card payments, not {snap.provider.value}")
    _open_for_attempt(payment, "confirm")
    method = record.payment_method_id or snap.payment_method_id
    updates: SnapshotUpdate = _new_attempt(payment, record.occurred_at, method, rules)
    if record.payment_method_id:
        updates["payment_method_id"] = record.payment_method_id
    return Step(snap.status, "confirm", updates,
                [(Cmd.CONFIRM, {"payment_method_id": method, "return_url": record.return_url})])


def _decide_retry(payment: Payment, record: RetryPayment, rules: PaymentRules) -> Step | Outcome:
    """A new STK push / Airtel request on the same payment: a new attempt, a new provider
    reference (the old one stays on its attempt), a new deadline."""
    snap = payment.snapshot
    if snap.method is not PaymentMethod.MOBILE_MONEY:
        raise RequestRefused(snap.reference, "card payments retry by confirming with another payment method")
    _open_for_attempt(payment, "retry")
    if len(snap.attempts) >= rules.max_attempts:
        raise RequestRefused(snap.reference, f"no attempts left ({rules.max_attempts} allowed)")
    attempts = start_attempt(snap.attempts, record.occurred_at, snap.method.value,
                             command_id=command_id(snap.reference, snap.version + 1, Cmd.INITIATE))
    return Step(S.PENDING if snap.status is S.CREATED else snap.status, "retry",
                {"attempts": attempts, "provider_reference": None},
                [(Cmd.INITIATE, {})], restart_deadline=True)


#: Input type -> its decision (a create is handled before: it may find no payment).
DECIDERS: Mapping[type[PaymentInput], Callable[[Payment, Any, PaymentRules], Step | Outcome]] = {
    ProviderEvent: _decide_provider_event,
    CancelPayment: _decide_cancel,
    RefundPayment: lambda payment, record, rules: decide_refund_request(payment, record),
    ConfirmPayment: _decide_confirm,
    ExpirePayment: _decide_expire,
    RetryPayment: _decide_retry,
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
    if step.retry_window:
        updates["deadline_at"] = policy.retry_deadline(at)
    elif step.status is not old.status or step.restart_deadline:
        updates["deadline_at"] = policy.deadline(step.status, at, old.provider)
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
