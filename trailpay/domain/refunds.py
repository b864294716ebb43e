"""Refunds: asking for one, recording its outcome, and what is still refundable.

A payment's refunds are keyed by refund id, so a request or an outcome seen twice is
recognised however late it comes. An amount asked for counts against what is refundable
until its refund fails, so two requests in flight can never refund more than was captured.
A refund the provider confirms is applied whatever we concluded before (property 9): on a
payment we had as open or unpaid it means the money moved and came back.

A request the state machine will not send to the provider (the payment is not paid,
nothing is left, more than is left, another currency) is not an error to dead-letter: it is
recorded on the payment as a refund ``refused`` with the reason, so the owner sees it. A
refund the provider fails carries the provider's code and words on the refund itself; the
payment's own provider code and message stay as they were.
"""

from __future__ import annotations

from trailpay.domain.errors import Suspicious
from trailpay.domain.events import (
    CancelPayment,
    Money,
    NotificationTemplate,
    PaymentSnapshot,
    ProviderCommandKind,
    ProviderEvent,
    ProviderEventKind,
    RefundPayment,
    RefundState,
    stable_id,
)
from trailpay.domain.payment import Outcome, Payment, duplicate, stale
from trailpay.domain.snapshot_update import SnapshotUpdate
from trailpay.domain.status import REFUNDABLE, PaymentStatus, transition
from trailpay.domain.step import Step

S = PaymentStatus
#: Statuses in which we had concluded no money moved.
UNPAID: frozenset[PaymentStatus] = frozenset({S.FAILED, S.CANCELLED, S.EXPIRED})


#: Refund statuses that hold no money: what they asked for is refundable again.
NOT_COMMITTED = frozenset({"failed", "refused"})


def committed_refunds(snapshot: PaymentSnapshot) -> int:
    """Minor units refunded or asked for and not failed: what can no longer be refunded."""
    return sum(r.amount.amount for r in snapshot.refunds if r.status not in NOT_COMMITTED)


def refundable(snapshot: PaymentSnapshot) -> int:
    return snapshot.amount.amount - committed_refunds(snapshot)


def is_refund_outcome(event: ProviderEvent) -> bool:
    """A refund's result: a refund event, or the provider refusing our refund command."""
    return event.kind is ProviderEventKind.REFUND or (
        event.kind is ProviderEventKind.COMMAND_FAILED and bool(event.refund_id)
    )


def refusal(snap: PaymentSnapshot, record: RefundPayment) -> tuple[str, str] | None:
    """Why the state machine will not ask for this refund (code, sentence), or None."""
    if snap.status not in REFUNDABLE:
        return "not_refundable", (f"payment is {snap.status.value}; only succeeded or partially "
                                  "refunded payments can be refunded")
    if record.amount is not None and record.amount.currency != snap.amount.currency:
        return "currency_mismatch", (f"refund in {record.amount.currency}, payment in "
                                     f"{snap.amount.currency}")
    left = refundable(snap)
    wanted = left if record.amount is None else record.amount.amount
    if wanted <= 0:
        return "nothing_left", "nothing left to refund"
    if wanted > left:
        return "exceeds_refundable", (f"refund of {wanted} exceeds the {left} minor units "
                                      "still refundable")
    return None


def decide_refund_request(payment: Payment, record: RefundPayment) -> Step | Outcome:
    snap = payment.snapshot
    if any(r.refund_id == record.refund_id for r in snap.refunds):
        return duplicate(payment, f"refund {record.refund_id} already asked for")
    refused = refusal(snap, record)
    if refused is not None:
        code, why = refused
        shown = record.amount if record.amount is not None else Money(
            amount=max(refundable(snap), 0), currency=snap.amount.currency)
        refund = RefundState(refund_id=record.refund_id, amount=shown, reason=record.reason,
                             status="refused", requested_at=record.occurred_at,
                             updated_at=record.occurred_at, failure_code=code, failure_message=why)
        return Step(snap.status, "refund", {"refunds": (*snap.refunds, refund)})
    amount = Money(amount=refundable(snap) if record.amount is None else record.amount.amount,
                   currency=snap.amount.currency)
    refund = RefundState(refund_id=record.refund_id, amount=amount, reason=record.reason,
                         status="requested", requested_at=record.occurred_at,
                         updated_at=record.occurred_at)
    return Step(snap.status, "refund", {"refunds": (*snap.refunds, refund)},
                [(ProviderCommandKind.REFUND, {"refund_id": record.refund_id, "refund_amount": amount,
                                               "reason": record.reason})])


def decide_refund_on_cancel(payment: Payment, record: CancelPayment) -> Step | Outcome:
    """A booking cancelled after it was paid: refund whatever is still refundable."""
    if refundable(payment.snapshot) <= 0:
        return stale(payment, "cancelled after payment, and nothing is left to refund")
    refund = RefundPayment(event_id=record.event_id, occurred_at=record.occurred_at,
                           reference=record.reference, refund_id=f"cancel-{stable_id(record.event_id)[:20]}",
                           reason=record.reason, user_id=record.user_id)
    return decide_refund_request(payment, refund)


#: ``provider_code`` of a refund an operator recorded (``trailpay refunds record-external``):
#: money returned outside TrailPay (cash, a bank transfer, the provider's portal). Its
#: ``provider_message`` is the operator's reason, kept as the refund's reason.
RECORDED_EXTERNALLY = "recorded_external"


def _external_refund(snap: PaymentSnapshot, event: ProviderEvent, refund_id: str,
                     amount: Money) -> RefundState:
    """A refund the provider made without our asking (e.g. the Stripe dashboard), or one an
    operator recorded, applied whatever we concluded: money moved. More than was captured
    cannot be true of this payment: :class:`Suspicious`."""
    if amount.amount > refundable(snap):
        raise Suspicious(snap.reference, event.provider.value, "refund_exceeds_capture",
                         f"external refund {refund_id} of {amount} exceeds what is refundable")
    reason = "external"
    if event.provider_code == RECORDED_EXTERNALLY and event.provider_message:
        reason = event.provider_message
    return RefundState(refund_id=refund_id, amount=amount, reason=reason,
                       status="requested", requested_at=event.occurred_at,
                       updated_at=event.occurred_at)


def decide_refund_outcome(payment: Payment, event: ProviderEvent) -> Step | Outcome:
    snap = payment.snapshot
    refund_id = event.refund_id
    succeeded = bool(event.refund_succeeded) and event.kind is ProviderEventKind.REFUND
    if refund_id is None:
        return stale(payment, "refund event without a refund id")
    known = next((r for r in snap.refunds if r.refund_id == refund_id), None)
    if known is None:
        if not succeeded or event.amount is None:
            return stale(payment, f"outcome of unknown refund {refund_id}")
        known = _external_refund(snap, event, refund_id, event.amount)
        refunds = (*snap.refunds, known)
    elif known.status != "requested":
        return stale(payment, f"refund {refund_id} already {known.status}")
    else:
        refunds = snap.refunds
    settled = RefundState(refund_id=known.refund_id, amount=known.amount, reason=known.reason,
                          status="succeeded" if succeeded else "failed",
                          provider_reference=event.provider_reference or known.provider_reference,
                          requested_at=known.requested_at,
                          updated_at=max(known.updated_at, event.occurred_at),
                          failure_code=None if succeeded else event.provider_code,
                          failure_message=None if succeeded else event.provider_message)
    refunds = tuple(settled if r.refund_id == refund_id else r for r in refunds)
    if not succeeded:  # the refund's words are its own: the payment's stay as they were
        return Step(snap.status, event.source, {"refunds": refunds})
    total = snap.refunded_amount + known.amount.amount
    target = S.REFUNDED if total >= snap.amount.amount else S.PARTIALLY_REFUNDED
    updates: SnapshotUpdate = {"refunds": refunds, "refunded_amount": total,
                               "provider_code": event.provider_code,
                               "provider_message": event.provider_message}
    if snap.status in REFUNDABLE:
        target = transition(snap.reference, snap.status, target)
    elif snap.status in UNPAID:  # paid and refunded while we thought it unpaid
        updates["late_from"] = snap.status
    return Step(target, event.source, updates, notify=NotificationTemplate.REFUND_SUCCEEDED,
                detail=f"refund {refund_id}: {known.amount.amount} {known.amount.currency}")
