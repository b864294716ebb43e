"""What a provider's status report does to a payment (the provider is the source of truth).

* A success is applied whatever we concluded before (property 9). After ``failed``,
  ``expired`` or ``cancelled``, or while our cancel is pending at the provider, the payment
  becomes ``succeeded`` *late*: ``late_from`` says what we had concluded, the customer gets
  a notification of its own kind, and :class:`~trailpay.domain.rules.PaymentRules` decides
  ``keep`` or ``refund`` (with ``refund``, the refund command is emitted here).
* A failure the provider recovers from (:func:`~trailpay.domain.provider_status.keeps_payment_open`)
  ends the *attempt*: the payment goes back to ``pending`` while another attempt may be
  started; the last one allowed fails the payment, and a card payment's PaymentIntent,
  still open at Stripe, is cancelled.
* Reports about an attempt already ended (an older STK push, a second report of the same
  Stripe decline) are stale; an unpaid report after a paid one is stale (refunds come as
  refund events).
* A refused command: our cancel refused (the money moved, or is moving) asks the provider
  for the payment's status; a refused Stripe confirm is a declined attempt.

Every event is cross-checked first (:mod:`~trailpay.domain.cross_checks`). A success
*callback* from a provider in ``PaymentRules.confirm_by_query`` (live Daraja: callbacks are
unsigned) is not applied: it asks the provider (a QUERY about the attempt it names), and the
answer is applied.
"""

from __future__ import annotations

from typing import Literal

from trailpay.domain.attempts import (
    Attempt,
    AttemptOutcome,
    LateDecision,
    attempt_of,
    end_attempt,
    name_attempt,
    open_attempt,
    start_attempt,
    transaction_attempt,
)
from trailpay.domain.cross_checks import OWN_TRANSACTION_IDS, check_provider_event
from trailpay.domain.errors import IllegalTransition
from trailpay.domain.events import (
    Money,
    NotificationTemplate,
    PaymentSnapshot,
    Provider,
    ProviderCommandKind,
    ProviderEvent,
    ProviderEventKind,
    RefundState,
    stable_id,
)
from trailpay.domain.payment import Outcome, Payment, stale
from trailpay.domain.provider_status import customer_may_retry, keeps_payment_open
from trailpay.domain.refunds import refundable
from trailpay.domain.rules import CANCELS_AT_PROVIDER, PaymentRules
from trailpay.domain.snapshot_update import SnapshotUpdate
from trailpay.domain.status import OPEN, RANK, PaymentStatus
from trailpay.domain.step import Step

S = PaymentStatus
Cmd = ProviderCommandKind

#: Statuses that mean "no money moved"; a late one after another is stale, not illegal.
UNPAID_ENDS: frozenset[PaymentStatus] = frozenset({S.FAILED, S.CANCELLED, S.EXPIRED})
#: Statuses in which money moved.
PAID: frozenset[PaymentStatus] = frozenset({S.SUCCEEDED, S.PARTIALLY_REFUNDED, S.REFUNDED})
#: Providers whose attempts all carry the payment's one reference (the PaymentIntent id).
ONE_REFERENCE: frozenset[Provider] = frozenset({Provider.STRIPE})

IdentityField = Literal["customer_id", "payment_method_id"]
#: Provider facts filled in when missing, never overwritten (a late event must not undo an
#: earlier one). The provider reference is the current attempt's (see ``identity_updates``).
#: Not the Stripe client secret: a snapshot travels on payments.state.v1, the worker's
#: changelog, PostgreSQL and the admin API, and the secret lets whoever holds it confirm the
#: payment; its owner fetches it from Stripe on demand (``/client-secret/``).
IDENTITY_FIELDS: tuple[IdentityField, ...] = ("customer_id", "payment_method_id")

#: Who settled a payment, by the source of the provider event that settled it.
SETTLED_BY: dict[str, Literal["callback", "dispatcher", "sweep"]] = {
    "webhook": "callback", "dispatcher": "dispatcher", "sweep": "sweep", "reconcile": "sweep",
}
ENDED_AS: dict[PaymentStatus, AttemptOutcome] = {
    S.FAILED: "failed", S.CANCELLED: "cancelled", S.EXPIRED: "expired",
}


def identity_updates(snap: PaymentSnapshot, event: ProviderEvent) -> SnapshotUpdate:
    updates: SnapshotUpdate = {}
    for name in IDENTITY_FIELDS:
        new = getattr(event, name)
        if new is not None and getattr(snap, name) is None:
            updates[name] = new
    named = event.provider_reference
    if not named or attempt_of(snap.attempts, named) is not None:
        return updates
    current = open_attempt(snap.attempts)
    own = _own_transaction_attempt(snap, snap.attempts, named)
    if own is not None:
        # a transaction id of ours (Airtel): it names its attempt whoever answers first
        if own.provider_reference is None:
            updates["attempts"] = name_attempt(snap.attempts, own, named)
            if snap.provider_reference is None and current is not None and current.number == own.number:
                updates["provider_reference"] = named
        return updates
    started = next((a for a in snap.attempts if event.command_id and a.command_id == event.command_id), None)
    if started is not None and (current is None or started.number != current.number):
        # the answer to an earlier attempt's command (a retry overtook it): its reference
        if started.provider_reference is None:
            updates["attempts"] = name_attempt(snap.attempts, started, named)
        return updates
    if snap.provider_reference is None:
        updates["provider_reference"] = named
        if current is not None and current.provider_reference is None:
            updates["attempts"] = name_attempt(snap.attempts, current, named)
    return updates


def _own_transaction_attempt(snap: PaymentSnapshot, attempts: tuple[Attempt, ...],
                             named: str | None) -> Attempt | None:
    """The attempt a transaction id of ours names, for a provider that takes ours."""
    if snap.provider not in OWN_TRANSACTION_IDS:
        return None
    return transaction_attempt(attempts, snap.reference, named)


def _words(event: ProviderEvent) -> SnapshotUpdate:
    return {"provider_status": event.provider_status, "provider_code": event.provider_code,
            "provider_message": event.provider_message}


def _no_change(payment: Payment, event: ProviderEvent, identity: SnapshotUpdate,
               reason: str) -> Step | Outcome:
    if identity:
        return Step(payment.status, event.source, identity)
    return stale(payment, reason)


def _attempts_of(snap: PaymentSnapshot, identity: SnapshotUpdate) -> tuple[Attempt, ...]:
    return identity.get("attempts", snap.attempts)


def _target_attempt(snap: PaymentSnapshot, attempts: tuple[Attempt, ...],
                    event: ProviderEvent) -> tuple[Attempt | None, bool]:
    """The attempt ``event`` reports on, and whether it is the current one."""
    current = open_attempt(attempts)
    if snap.provider in ONE_REFERENCE:
        return current, True
    named = (attempt_of(attempts, event.provider_reference)
             or _own_transaction_attempt(snap, attempts, event.provider_reference))
    if named is not None and (current is None or named.number != current.number):
        return named, False
    return current, True


def _reports_an_earlier_attempt(attempts: tuple[Attempt, ...], current: Attempt,
                                event: ProviderEvent) -> bool:
    """Whether an unpaid report reached a one-reference provider's payment (Stripe: one
    PaymentIntent for every attempt) after the next attempt had started, and is about an
    earlier one. Stripe reports a decline twice, in the confirm's answer and in the
    ``payment_intent.payment_failed`` webhook; the second copy may come after the customer
    confirmed again, and must not fail that new attempt.

    Our dispatcher's answer names its command, so it is an earlier attempt's when that is an
    earlier attempt's command. A webhook is dated by Stripe's ``created`` (whole seconds, so
    never later than the decline itself): it is an earlier attempt's when it was created no
    later than an earlier attempt ended. A genuine decline of the new attempt within that
    same second of the previous end is missed here, and applied when the confirm's own
    answer arrives (it names the new attempt's command)."""
    earlier = [a for a in attempts if a.number < current.number]
    if not earlier:
        return False
    if event.command_id is not None:
        return (current.command_id is not None and event.command_id != current.command_id
                and any(a.command_id == event.command_id for a in earlier))
    if event.source != "webhook":
        return False
    ended = [a.ended_at for a in earlier if a.ended_at is not None]
    return bool(ended) and event.occurred_at <= max(ended)


def decide_provider_status(payment: Payment, event: ProviderEvent, rules: PaymentRules) -> Step | Outcome:
    snap = payment.snapshot
    check_provider_event(snap, event, status_event=True)
    identity = identity_updates(snap, event)
    target = event.status
    if target is None:
        if event.kind is ProviderEventKind.COMMAND_FAILED:
            return _refused_command(payment, event, identity, rules)
        return _no_change(payment, event, identity, f"{event.kind} event without a status")
    if target in (S.PARTIALLY_REFUNDED, S.REFUNDED):
        raise IllegalTransition(snap.reference, snap.status.value,
                                f"{target.value} (refunds come as refund events)")
    if target is S.SUCCEEDED:
        if _confirm_first(snap, event, rules):
            # An unauthenticated success callback: ask the provider about the attempt it
            # names; the answer (source ``sweep``) is what gets applied.
            return Step(snap.status, event.source, {**identity},
                        [(Cmd.QUERY, {"provider_reference": event.provider_reference})])
        return _succeeded(payment, event, identity, rules)
    if target in UNPAID_ENDS:
        return _unpaid(payment, event, identity, rules, target)
    current = snap.status
    if current in OPEN and RANK[target] > RANK[current]:
        updates: SnapshotUpdate = {**identity, **_words(event)}
        attempts = _attempts_of(snap, identity)
        if open_attempt(attempts) is None:
            ended = attempts[-1].ended_at if attempts else None
            if ended is not None and event.occurred_at <= ended:  # news of the attempt that ended
                return _no_change(payment, event, identity,
                                  f"{target.value} from before the last attempt ended")
            # a Stripe.js retry we did not start
            updates["attempts"] = start_attempt(attempts, event.occurred_at, event.payment_method_id,
                                                event.provider_reference)
        return Step(target, event.source, updates)
    return _no_change(payment, event, identity, f"{target.value} after {current.value}")


def _confirm_first(snap: PaymentSnapshot, event: ProviderEvent, rules: PaymentRules) -> bool:
    return (event.source == "webhook" and event.provider in rules.confirm_by_query
            and snap.status not in PAID)


def _succeeded(payment: Payment, event: ProviderEvent, identity: SnapshotUpdate,
               rules: PaymentRules) -> Step | Outcome:
    snap, current, at = payment.snapshot, payment.status, event.occurred_at
    if current in PAID:
        return _no_change(payment, event, identity, f"succeeded after {current.value}")
    attempts = _attempts_of(snap, identity)
    attempt, is_current = _target_attempt(snap, attempts, event)
    updates: SnapshotUpdate = {**identity, **_words(event),
                               "settled_by": SETTLED_BY.get(event.source, "callback")}
    if attempt is None:
        attempts = start_attempt(attempts, at, event.payment_method_id, event.provider_reference)
        attempt = attempts[-1]
    elif not is_current:  # an older push went through after all: it holds the money
        superseded = open_attempt(attempts)
        if superseded is not None:
            attempts = end_attempt(attempts, superseded, "superseded", at, None, None)
        if attempt.provider_reference:
            updates["provider_reference"] = attempt.provider_reference
    updates["attempts"] = end_attempt(attempts, attempt, "succeeded", at, event.provider_code,
                                      event.provider_message)
    late_from = current if current in UNPAID_ENDS else (
        S.CANCELLED if snap.cancel_request is not None else None)
    if late_from is None:
        return Step(S.SUCCEEDED, event.source, updates, notify=NotificationTemplate.PAYMENT_SUCCEEDED)
    decision = rules.late_decision(snap)
    updates["late_from"] = late_from
    updates["late_decision"] = decision
    step = Step(S.SUCCEEDED, event.source, updates, notify=NotificationTemplate.PAYMENT_SUCCEEDED_LATE,
                detail=f"it arrived after the payment was {late_from.value}; " + (
                    "it is being refunded in full" if decision is LateDecision.REFUND
                    else "it is kept as your payment"))
    if decision is LateDecision.REFUND:
        refund = late_refund(snap, event)
        updates["refunds"] = (*snap.refunds, refund)
        step.commands.append((Cmd.REFUND, {"refund_id": refund.refund_id, "refund_amount": refund.amount,
                                           "reason": refund.reason}))
    return step


def late_refund(snap: PaymentSnapshot, event: ProviderEvent) -> RefundState:
    """The automatic refund of a late payment: all that is refundable, with an id derived
    from the event (the same event always asks for the same refund)."""
    amount = Money(amount=refundable(snap), currency=snap.amount.currency)
    return RefundState(refund_id=f"late-{stable_id(event.event_id)[:20]}", amount=amount,
                       reason="late_payment", status="requested", requested_at=event.occurred_at,
                       updated_at=event.occurred_at)


def _unpaid(payment: Payment, event: ProviderEvent, identity: SnapshotUpdate, rules: PaymentRules,
            target: PaymentStatus) -> Step | Outcome:
    snap, current, at = payment.snapshot, payment.status, event.occurred_at
    if current not in OPEN:
        return _no_change(payment, event, identity, f"{target.value} after {current.value}")
    attempts = _attempts_of(snap, identity)
    attempt, is_current = _target_attempt(snap, attempts, event)
    if not is_current or (attempt is None and target is S.FAILED) or (
            attempt is not None and snap.provider in ONE_REFERENCE
            and _reports_an_earlier_attempt(attempts, attempt, event)):
        return _no_change(payment, event, identity, f"{target.value} of an attempt already ended")
    updates: SnapshotUpdate = {**identity, **_words(event)}
    recoverable = keeps_payment_open(event) and (target is S.FAILED or customer_may_retry(event))
    if recoverable and attempt is not None and len(attempts) < rules.max_attempts:
        updates["attempts"] = end_attempt(attempts, attempt, ENDED_AS[target], at, event.provider_code,
                                          event.provider_message)
        if snap.provider in CANCELS_AT_PROVIDER:  # the card's own (long) pending deadline
            return Step(S.PENDING, event.source, updates, restart_deadline=True)
        return Step(S.PENDING, event.source, updates, retry_window=True)  # mobile: a short wait
    if attempt is not None:
        updates["attempts"] = end_attempt(attempts, attempt, ENDED_AS[target], at, event.provider_code,
                                          event.provider_message)
    by_request = target is S.CANCELLED and snap.cancel_request is not None
    updates["settled_by"] = "request" if by_request else SETTLED_BY.get(event.source, "callback")
    step = Step(target, event.source, updates)
    if target in (S.FAILED, S.EXPIRED):
        step.notify = NotificationTemplate.PAYMENT_FAILED
        step.detail = event.provider_message or target.value
    if recoverable and snap.provider in CANCELS_AT_PROVIDER:
        # the last attempt: the PaymentIntent is still open at Stripe
        step.commands.append((Cmd.CANCEL, {"reason": "abandoned"}))
    return step


def _refused_command(payment: Payment, event: ProviderEvent, identity: SnapshotUpdate,
                     rules: PaymentRules) -> Step | Outcome:
    snap = payment.snapshot
    cancel = snap.cancel_request
    if snap.status not in OPEN:
        return _no_change(payment, event, identity, f"refused command after {snap.status.value}")
    if cancel is not None and cancel.command_id is not None and cancel.command_id == event.command_id:
        # The provider would not cancel: the customer's payment may have won. Ask.
        return Step(snap.status, event.source,
                    {**identity, "cancel_request": cancel.model_copy(update={"refused": True}),
                     "provider_code": event.provider_code, "provider_message": event.provider_message},
                    [(Cmd.QUERY, {})])
    if keeps_payment_open(event):  # a declined confirm of an open PaymentIntent
        return _unpaid(payment, event, identity, rules, S.FAILED)
    return _no_change(payment, event, identity, "refused command without a status")
