"""The payment aggregate and its one state-changing function, :func:`apply`.

``apply(payment, record)`` takes the current :class:`Payment` (or None for a reference not
seen yet) and one input record (a payment request or a provider event) and says what
happens, as an :class:`Outcome`:

* ``APPLIED``: a new version of the payment plus the records to emit (one
  :class:`PaymentStateChanged`, maybe provider commands and notifications);
* ``DUPLICATE``: the record's effect is already in the state (a redelivery);
* ``STALE``: nothing to do (a late ``pending`` after ``succeeded``, a second cancel);
* ``PARK``: a provider event for a payment not created yet; the caller holds it a while;

or it raises :class:`IllegalTransition` / :class:`RequestRefused` (dead-letter it).

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

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from trailpay.domain.deadlines import DeadlinePolicy
from trailpay.domain.errors import IllegalTransition, PermanentError
from trailpay.domain.events import (
    CancelPayment,
    ConfirmPayment,
    CreatePayment,
    ExpirePayment,
    Money,
    Notification,
    NotificationTemplate,
    PaymentMethod,
    PaymentSnapshot,
    PaymentStateChanged,
    Provider,
    ProviderCommand,
    ProviderCommandKind,
    ProviderEvent,
    ProviderEventKind,
    RefundPayment,
    RefundState,
    stable_id,
)
from trailpay.domain.status import (
    CANCELLABLE,
    OPEN,
    RANK,
    REFUNDABLE,
    SETTLED,
    PaymentStatus,
    can_transition,
)

S = PaymentStatus
Cmd = ProviderCommandKind

#: How many applied input ids a payment remembers (a payment sees a handful of inputs).
MAX_APPLIED = 64

#: Statuses that mean "no money moved"; a late one after another is stale, not illegal.
UNPAID_ENDS: frozenset[PaymentStatus] = frozenset({S.FAILED, S.CANCELLED, S.EXPIRED})

#: Provider facts that identify the payment at the provider: filled in when missing,
#: never overwritten (a late event must not undo an earlier one).
IDENTITY_FIELDS = ("provider_reference", "client_secret", "customer_id", "payment_method_id")

PaymentInput = (
    CreatePayment | CancelPayment | RefundPayment | ConfirmPayment | ExpirePayment | ProviderEvent
)


class RequestRefused(PermanentError):
    """A payment request that cannot be carried out (over-refund, unknown payment, ...)."""

    def __init__(self, reference: str, reason: str) -> None:
        super().__init__(f"payment {reference}: {reason}")
        self.reference = reference
        self.reason = reason


class Verdict(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"
    PARK = "park"


class Payment(BaseModel):
    """One payment's whole state: the snapshot every state change carries, plus the ids of
    the inputs already applied (for idempotent re-processing)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    snapshot: PaymentSnapshot
    applied: tuple[str, ...] = ()

    @property
    def reference(self) -> str:
        return self.snapshot.reference

    @property
    def status(self) -> PaymentStatus:
        return self.snapshot.status

    @property
    def version(self) -> int:
        return self.snapshot.version

    def seen(self, event_id: str) -> bool:
        return event_id in self.applied

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Payment:
        return cls.model_validate_json(data)


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    payment: Payment | None
    change: PaymentStateChanged | None = None
    commands: tuple[ProviderCommand, ...] = ()
    notifications: tuple[Notification, ...] = ()
    reason: str = ""

    @property
    def applied(self) -> bool:
        return self.verdict is Verdict.APPLIED


@dataclass
class _Step:
    """What one applied input changes, before it is turned into records."""

    status: PaymentStatus
    cause: str
    updates: dict[str, Any] = field(default_factory=dict)
    commands: list[tuple[ProviderCommandKind, dict[str, Any]]] = field(default_factory=list)
    notify: NotificationTemplate | None = None
    detail: str = ""


DEFAULT_POLICY = DeadlinePolicy()


def transition(reference: str, current: PaymentStatus, target: PaymentStatus) -> PaymentStatus:
    """The one check of the transition table: ``target`` or :class:`IllegalTransition`."""
    if not can_transition(current, target):
        raise IllegalTransition(reference, current.value, target.value)
    return target


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
        return Outcome(Verdict.DUPLICATE, payment, reason=f"{record.event_id} already applied")
    if isinstance(record, CreatePayment):
        return _create(payment, record, policy)
    if payment is None:
        if isinstance(record, ProviderEvent):
            return Outcome(Verdict.PARK, None, reason=f"no payment {record.reference} yet")
        raise RequestRefused(record.reference, f"unknown payment ({record.kind} request)")
    step = _decide(payment, record)
    if isinstance(step, Outcome):
        if step.verdict is Verdict.STALE and now is not None:
            late = (now - record.occurred_at).total_seconds()
            return Outcome(step.verdict, step.payment, reason=f"{step.reason} ({late:.0f}s old)")
        return step
    return _advance(payment, record, step, policy)


# ----------------------------------------------------------------------------- create


def _create(payment: Payment | None, record: CreatePayment, policy: DeadlinePolicy) -> Outcome:
    if payment is not None:
        same = (
            payment.snapshot.amount == record.amount
            and payment.snapshot.user_id == record.user_id
            and payment.snapshot.provider == record.provider
        )
        if same:
            return Outcome(Verdict.DUPLICATE, payment, reason="payment created again (same request)")
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
    change = PaymentStateChanged(
        event_id=PaymentStateChanged.id_for(record.reference, 1),
        occurred_at=record.occurred_at,
        reference=record.reference,
        version=1,
        from_status=None,
        to_status=S.CREATED,
        cause_event_id=record.event_id,
        cause="create",
        payment=snapshot,
    )
    command = _command(snapshot, Cmd.INITIATE, record, confirm=record.confirm)
    return Outcome(Verdict.APPLIED, created, change, (command,))


# ----------------------------------------------------------------------------- decide


def _decide(payment: Payment, record: PaymentInput) -> _Step | Outcome:
    if isinstance(record, ProviderEvent):
        if record.kind is ProviderEventKind.REFUND or (
            record.kind is ProviderEventKind.COMMAND_FAILED and record.refund_id
        ):
            return _refund_outcome(payment, record)
        return _provider_status(payment, record)
    if isinstance(record, CancelPayment):
        return _cancel(payment, record)
    if isinstance(record, RefundPayment):
        return _refund_request(payment, record)
    if isinstance(record, ConfirmPayment):
        return _confirm(payment, record)
    if isinstance(record, ExpirePayment):
        return _expire(payment, record)
    raise TypeError(f"not a payment input: {type(record).__name__}")  # pragma: no cover


def _stale(payment: Payment, reason: str) -> Outcome:
    return Outcome(Verdict.STALE, payment, reason=reason)


def _identity_updates(snapshot: PaymentSnapshot, event: ProviderEvent) -> dict[str, Any]:
    updates: dict[str, Any] = {}
    for name in IDENTITY_FIELDS:
        new = getattr(event, name)
        if new is not None and getattr(snapshot, name) is None:
            updates[name] = new
    return updates


def _provider_words(event: ProviderEvent) -> dict[str, Any]:
    return {
        "provider_status": event.provider_status,
        "provider_code": event.provider_code,
        "provider_message": event.provider_message,
    }


def _settled_by(event: ProviderEvent) -> str:
    return {"webhook": "callback", "dispatcher": "dispatcher", "sweep": "sweep"}.get(
        event.source, "callback"
    )


def _provider_status(payment: Payment, event: ProviderEvent) -> _Step | Outcome:
    snap = payment.snapshot
    current = snap.status
    target = event.status
    identity = _identity_updates(snap, event)
    if target is None:
        if identity:
            return _Step(current, event.source, identity)
        return _stale(payment, f"{event.kind} event without a status")
    if target in (S.PARTIALLY_REFUNDED, S.REFUNDED):
        raise IllegalTransition(snap.reference, current.value,
                                f"{target.value} (refunds come as refund events)")
    if can_transition(current, target):
        words = _provider_words(event)
        step = _Step(target, event.source, {**identity, **words})
        if target in SETTLED:
            step.updates["settled_by"] = _settled_by(event)
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
            return _Step(current, event.source, identity)
        return _stale(payment, f"{target.value} after {current.value}")
    # e.g. succeeded after cancelled/expired: money moved on a payment we gave up on.
    raise IllegalTransition(snap.reference, current.value, target.value)


def _cancel(payment: Payment, record: CancelPayment) -> _Step | Outcome:
    current = payment.status
    if current is S.CANCELLED:
        return _stale(payment, "already cancelled")
    if record.refund_if_paid and current in REFUNDABLE | {S.REFUNDED}:
        return _refund_on_cancel(payment, record)
    if current not in CANCELLABLE:
        raise IllegalTransition(payment.reference, current.value, S.CANCELLED.value)
    step = _Step(transition(payment.reference, current, S.CANCELLED), "cancel",
                 {"settled_by": "request", "provider_message": record.reason})
    if payment.snapshot.provider is Provider.STRIPE:
        step.commands.append((Cmd.CANCEL, {"reason": record.reason}))
    return step


def _refund_on_cancel(payment: Payment, record: CancelPayment) -> _Step | Outcome:
    """A booking cancelled after it was paid: refund whatever is still refundable."""
    if refundable(payment.snapshot) <= 0:
        return _stale(payment, "cancelled after payment, and nothing is left to refund")
    refund = RefundPayment(event_id=record.event_id, occurred_at=record.occurred_at,
                           reference=record.reference, refund_id=f"cancel-{stable_id(record.event_id)[:20]}",
                           reason=record.reason, user_id=record.user_id)
    return _refund_request(payment, refund)


def _expire(payment: Payment, record: ExpirePayment) -> _Step | Outcome:
    snap = payment.snapshot
    if snap.status not in OPEN:
        return _stale(payment, f"expire after {snap.status.value}")
    if snap.deadline_at is not None and record.occurred_at < snap.deadline_at:
        return _stale(payment, "expire before the current deadline (the payment moved on)")
    step = _Step(transition(snap.reference, snap.status, S.EXPIRED), "expire",
                 {"settled_by": "sweep", "provider_message": record.reason},
                 notify=NotificationTemplate.PAYMENT_FAILED, detail=record.reason)
    if snap.provider is Provider.STRIPE:
        step.commands.append((Cmd.CANCEL, {"reason": "abandoned"}))
    return step


def _confirm(payment: Payment, record: ConfirmPayment) -> _Step | Outcome:
    snap = payment.snapshot
    if snap.provider is not Provider.STRIPE:
        raise RequestRefused(snap.reference, f"confirm is for card payments, not {snap.provider.value}")
    if snap.status not in OPEN:
        raise IllegalTransition(snap.reference, snap.status.value, "confirm")
    updates: dict[str, Any] = {}
    if record.payment_method_id:
        updates["payment_method_id"] = record.payment_method_id
    method = record.payment_method_id or snap.payment_method_id
    return _Step(snap.status, "confirm", updates,
                 [(Cmd.CONFIRM, {"payment_method_id": method, "return_url": record.return_url})])


# ----------------------------------------------------------------------------- refunds


def committed_refunds(snapshot: PaymentSnapshot) -> int:
    """Minor units refunded or asked for and not failed: what can no longer be refunded."""
    return sum(r.amount.amount for r in snapshot.refunds if r.status != "failed")


def refundable(snapshot: PaymentSnapshot) -> int:
    return snapshot.amount.amount - committed_refunds(snapshot)


def _refund_request(payment: Payment, record: RefundPayment) -> _Step | Outcome:
    snap = payment.snapshot
    if any(r.refund_id == record.refund_id for r in snap.refunds):
        return Outcome(Verdict.DUPLICATE, payment, reason=f"refund {record.refund_id} already asked for")
    if snap.status not in REFUNDABLE:
        target = S.REFUNDED if record.amount is None else S.PARTIALLY_REFUNDED
        raise IllegalTransition(snap.reference, snap.status.value, target.value)
    left = refundable(snap)
    if record.amount is not None and record.amount.currency != snap.amount.currency:
        raise RequestRefused(snap.reference, f"refund in {record.amount.currency}, payment in "
                             f"{snap.amount.currency}")
    wanted = left if record.amount is None else record.amount.amount
    if wanted <= 0:
        raise RequestRefused(snap.reference, "nothing left to refund")
    if wanted > left:
        raise RequestRefused(snap.reference, f"refund of {wanted} exceeds the {left} minor units "
                             "still refundable")
    amount = Money(amount=wanted, currency=snap.amount.currency)
    refund = RefundState(refund_id=record.refund_id, amount=amount, reason=record.reason,
                         status="requested", requested_at=record.occurred_at,
                         updated_at=record.occurred_at)
    return _Step(snap.status, "refund", {"refunds": (*snap.refunds, refund)},
                 [(Cmd.REFUND, {"refund_id": record.refund_id, "refund_amount": amount,
                                "reason": record.reason})])


def _refund_outcome(payment: Payment, event: ProviderEvent) -> _Step | Outcome:
    snap = payment.snapshot
    refund_id = event.refund_id
    succeeded = bool(event.refund_succeeded) and event.kind is ProviderEventKind.REFUND
    if refund_id is None:
        return _stale(payment, "refund event without a refund id")
    known = next((r for r in snap.refunds if r.refund_id == refund_id), None)
    if known is None:
        # A refund made outside TrailPay (e.g. the Stripe dashboard): record it if it fits.
        if not succeeded or event.amount is None:
            return _stale(payment, f"outcome of unknown refund {refund_id}")
        if snap.status not in REFUNDABLE:
            raise IllegalTransition(snap.reference, snap.status.value, S.REFUNDED.value)
        if event.amount.amount > refundable(snap) or event.amount.currency != snap.amount.currency:
            raise RequestRefused(snap.reference, f"external refund {refund_id} exceeds what was captured")
        known = RefundState(refund_id=refund_id, amount=event.amount, reason="external",
                            status="requested", requested_at=event.occurred_at,
                            updated_at=event.occurred_at)
        refunds = (*snap.refunds, known)
    elif known.status != "requested":
        return _stale(payment, f"refund {refund_id} already {known.status}")
    else:
        refunds = snap.refunds
    settled = known.model_copy(update={
        "status": "succeeded" if succeeded else "failed",
        "provider_reference": event.provider_reference or known.provider_reference,
        "updated_at": max(known.updated_at, event.occurred_at),
    })
    refunds = tuple(settled if r.refund_id == refund_id else r for r in refunds)
    words = {"provider_code": event.provider_code, "provider_message": event.provider_message}
    if not succeeded:
        return _Step(snap.status, event.source, {"refunds": refunds, **words})
    total = snap.refunded_amount + known.amount.amount
    target = S.REFUNDED if total >= snap.amount.amount else S.PARTIALLY_REFUNDED
    return _Step(transition(snap.reference, snap.status, target), event.source,
                 {"refunds": refunds, "refunded_amount": total, **words},
                 notify=NotificationTemplate.REFUND_SUCCEEDED,
                 detail=f"refund {refund_id}: {known.amount.amount} {known.amount.currency}")


# ----------------------------------------------------------------------------- emit


def _advance(payment: Payment, record: PaymentInput, step: _Step, policy: DeadlinePolicy) -> Outcome:
    old = payment.snapshot
    version = old.version + 1
    at = record.occurred_at
    updates = dict(step.updates)
    if step.status is not old.status:
        updates["deadline_at"] = policy.deadline(step.status, at)
    snapshot = old.model_copy(update={
        **updates,
        "version": version,
        "status": step.status,
        "updated_at": max(old.updated_at, at),
    })
    applied = (*payment.applied, record.event_id)[-MAX_APPLIED:]
    change = PaymentStateChanged(
        event_id=PaymentStateChanged.id_for(old.reference, version),
        occurred_at=at,
        reference=old.reference,
        version=version,
        from_status=old.status,
        to_status=step.status,
        cause_event_id=record.event_id,
        cause=step.cause,
        payment=snapshot,
    )
    commands = tuple(_command(snapshot, kind, record, **extra) for kind, extra in step.commands)
    notes: tuple[Notification, ...] = ()
    if step.notify is not None:
        notes = (Notification(
            event_id=stable_id(old.reference, version, step.notify.value),
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
    return Outcome(Verdict.APPLIED, Payment(snapshot=snapshot, applied=applied), change, commands, notes)


def command_id(reference: str, version: int, kind: ProviderCommandKind, refund_id: str | None = None) -> str:
    parts: list[object] = [reference, version, kind.value]
    if refund_id is not None:
        parts.append(refund_id)
    return stable_id(*parts)


def _command(snapshot: PaymentSnapshot, kind: ProviderCommandKind, record: Any,
             **extra: Any) -> ProviderCommand:
    return make_command(snapshot, kind, record.occurred_at, **extra)


def make_command(snapshot: PaymentSnapshot, kind: ProviderCommandKind, at: datetime,
                 **extra: Any) -> ProviderCommand:
    """A provider command for the payment as of ``snapshot``; its id (the idempotency key)
    is ``stable_id(reference, version, kind[, refund_id])``."""
    fields: dict[str, Any] = {
        "kind": kind,
        "reference": snapshot.reference,
        "provider": snapshot.provider,
        "amount": snapshot.amount,
        "user_id": snapshot.user_id,
        "phone_number": snapshot.phone_number,
        "email": snapshot.email,
        "description": snapshot.description,
        "booking_id": snapshot.booking_id,
        "provider_reference": snapshot.provider_reference,
        "customer_id": snapshot.customer_id,
        "payment_method_id": snapshot.payment_method_id,
    }
    fields.update({k: v for k, v in extra.items() if v is not None or k not in fields})
    return ProviderCommand(
        event_id=command_id(snapshot.reference, snapshot.version, kind, extra.get("refund_id")),
        occurred_at=at,
        **fields,
    )


def query_command(payment: Payment) -> ProviderCommand:
    """The sweeper's question to the provider once a deadline passed. Deterministic: one
    QUERY per (reference, version), dated at the deadline."""
    snap = payment.snapshot
    at = snap.deadline_at or snap.updated_at
    return make_command(snap, Cmd.QUERY, at)


def expire_request(payment: Payment, policy: DeadlinePolicy = DEFAULT_POLICY) -> ExpirePayment:
    """The sweeper's expiry for a payment still open a grace period after its deadline."""
    snap = payment.snapshot
    deadline = snap.deadline_at or snap.updated_at
    return ExpirePayment(
        event_id=stable_id(snap.reference, snap.version, "expire"),
        occurred_at=deadline + policy.grace(snap.status),
        reference=snap.reference,
        reason=f"no provider answer {int(policy.grace(snap.status).total_seconds())}s after the "
               f"{snap.status.value} deadline",
    )
