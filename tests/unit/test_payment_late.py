"""Late money: the provider's success or refund wins over what we had concluded."""

from __future__ import annotations

import pytest

from tests.unit.payment_factory import at, cancel, created, in_status, refund_event, status_event
from trailpay.domain.attempts import LateDecision
from trailpay.domain.commands import command_id
from trailpay.domain.events import (
    CancelPayment,
    ExpirePayment,
    NotificationTemplate,
    Provider,
    ProviderCommandKind,
    ProviderEvent,
    ProviderEventKind,
    stable_id,
)
from trailpay.domain.payment import Payment, Verdict
from trailpay.domain.rules import PaymentRules
from trailpay.domain.state_machine import apply
from trailpay.domain.status import PaymentStatus

S = PaymentStatus
REF = "TPTEST0000000000000001"
STRIPE = Provider.STRIPE


def _expired() -> Payment:
    payment = created(REF)
    outcome = apply(payment, ExpirePayment(event_id="exp-1", occurred_at=at(200), reference=REF))
    assert outcome.payment is not None and outcome.payment.status is S.EXPIRED
    return outcome.payment


def _success(seconds: float = 300, **extra: object) -> ProviderEvent:
    return status_event(REF, S.SUCCEEDED, seconds=seconds, event_id=f"mpesa:ws_CO_1:0:{seconds}",
                        provider_code="0", provider_message="processed", **extra)


#: (policy, how the payment ended before the money came) -> the decision. Written from the
#: rule: auto refunds when a cancel was asked for (customer, ops or the booking), else keeps.
LATE_DECISIONS = {
    ("auto", "expired"): LateDecision.KEEP,
    ("auto", "failed"): LateDecision.KEEP,
    ("auto", "cancelled_on_phone"): LateDecision.KEEP,
    ("auto", "cancelled_on_request"): LateDecision.REFUND,
    ("auto", "booking_cancelled_after_expiry"): LateDecision.REFUND,
    ("keep", "cancelled_on_request"): LateDecision.KEEP,
    ("refund", "expired"): LateDecision.REFUND,
}


def _after_retry_window(decline: ProviderEvent, ends: PaymentStatus) -> Payment:
    """A customer decline (at 1 s) ends the attempt; the payment ends when the 180 s retry
    window passes with no retry (the sweeper's request, at 181 s)."""
    waiting = apply(created(REF), decline).payment
    assert waiting is not None and waiting.status is S.PENDING
    outcome = apply(waiting, ExpirePayment(event_id="window-1", occurred_at=at(181), reference=REF))
    assert outcome.payment is not None and outcome.payment.status is ends
    return outcome.payment


def _ended(how: str) -> Payment:
    if how == "expired":
        return _expired()
    if how == "failed":
        return _after_retry_window(status_event(REF, S.FAILED, provider_code="1"), S.FAILED)
    if how == "cancelled_on_phone":  # Daraja 1032: the customer declined the prompt
        return _after_retry_window(status_event(REF, S.CANCELLED, provider_code="1032"), S.CANCELLED)
    if how == "cancelled_on_request":
        return apply(created(REF), cancel(REF)).payment
    assert how == "booking_cancelled_after_expiry"
    booking = CancelPayment(event_id="bk-1", occurred_at=at(250), reference=REF,
                            reason="booking cancelled", refund_if_paid=True)
    return apply(_expired(), booking).payment


@pytest.mark.parametrize(("case", "decision"), LATE_DECISIONS.items(), ids=[f"{p}-{h}" for p, h in LATE_DECISIONS])
def test_late_success_policy(case, decision):
    mode, how = case
    before = _ended(how)
    outcome = apply(before, _success(), rules=PaymentRules(late_payment=mode))
    assert outcome.payment is not None and outcome.payment.status is S.SUCCEEDED
    snap = outcome.payment.snapshot
    assert (snap.late, snap.late_from, snap.late_decision) == (True, before.status, decision)
    assert snap.deadline_at is None and (snap.provider_code, snap.provider_message) == ("0", "processed")
    (note,) = outcome.notifications
    assert note.template is NotificationTemplate.PAYMENT_SUCCEEDED_LATE
    expected_detail = f"it arrived after the payment was {before.status.value}; " + (
        "it is being refunded in full" if decision is LateDecision.REFUND else "it is kept as your payment")
    assert note.detail == expected_detail
    refunds = [c for c in outcome.commands if c.kind is ProviderCommandKind.REFUND]
    if decision is LateDecision.KEEP:
        assert refunds == [] and snap.refunds == ()
        return
    (command,) = refunds
    refund_id = "late-" + stable_id("mpesa:ws_CO_1:0:300")[:20]
    assert (command.refund_id, command.refund_amount.amount, command.reason) == (refund_id, 1000, "late_payment")
    assert [(r.refund_id, r.status) for r in snap.refunds] == [(refund_id, "requested")]
    done = apply(outcome.payment, refund_event(REF, refund_id, seconds=400))
    assert done.payment is not None and done.payment.status is S.REFUNDED


def test_a_late_success_applied_twice_is_a_duplicate_and_a_second_report_stale():
    first = apply(_expired(), _success())
    assert first.payment is not None
    assert apply(first.payment, _success()).verdict is Verdict.DUPLICATE
    assert apply(first.payment, _success(seconds=301)).verdict is Verdict.STALE


# ----------------------------------------------------------------------------- Stripe cancel


def _stripe_cancel_asked() -> Payment:
    payment = apply(created(REF, provider=STRIPE),
                    status_event(REF, S.PENDING, provider=STRIPE, source="dispatcher",
                                 provider_reference="pi_1", provider_status="requires_payment_method")).payment
    outcome = apply(payment, cancel(REF, seconds=10))
    assert outcome.payment is not None and outcome.payment.status is S.PENDING
    return outcome.payment


def test_stripe_confirms_the_cancel():
    asked = _stripe_cancel_asked()
    outcome = apply(asked, status_event(REF, S.CANCELLED, provider=STRIPE, source="dispatcher", seconds=11,
                                        provider_reference="pi_1", provider_status="canceled"))
    assert outcome.payment is not None and outcome.payment.status is S.CANCELLED
    snap = outcome.payment.snapshot
    assert (snap.settled_by, snap.late_from, snap.attempts[0].outcome) == ("request", None, "cancelled")
    assert outcome.notifications == ()


def test_a_refused_cancel_asks_stripe_and_the_success_then_gets_the_policy():
    asked = _stripe_cancel_asked()
    cancel_id = command_id(REF, 3, ProviderCommandKind.CANCEL)
    assert asked.snapshot.cancel_request is not None and asked.snapshot.cancel_request.command_id == cancel_id
    refused = ProviderEvent(event_id=f"cmd:{cancel_id}", occurred_at=at(11), kind=ProviderEventKind.COMMAND_FAILED,
                            reference=REF, provider=STRIPE, provider_code="payment_intent_unexpected_state",
                            provider_message="This PaymentIntent could not be canceled", source="dispatcher",
                            command_id=cancel_id)
    outcome = apply(asked, refused)
    assert outcome.payment is not None and outcome.payment.status is S.PENDING
    assert outcome.payment.snapshot.cancel_request.refused is True
    (query,) = outcome.commands
    assert query.kind is ProviderCommandKind.QUERY and query.provider_reference == "pi_1"
    paid = apply(outcome.payment, status_event(REF, S.SUCCEEDED, provider=STRIPE, source="sweep", seconds=12,
                                               provider_reference="pi_1", provider_status="succeeded"))
    assert paid.payment is not None and paid.payment.status is S.SUCCEEDED
    snap = paid.payment.snapshot
    assert (snap.late_from, snap.late_decision) == (S.CANCELLED, LateDecision.REFUND)
    assert [c.kind for c in paid.commands] == [ProviderCommandKind.REFUND]
    assert paid.commands[0].provider_reference == "pi_1"


def test_success_racing_a_pending_cancel_is_late_and_refunded():
    paid = apply(_stripe_cancel_asked(), status_event(REF, S.SUCCEEDED, provider=STRIPE, seconds=11,
                                                      provider_reference="pi_1"))
    assert paid.payment is not None and paid.payment.status is S.SUCCEEDED
    assert paid.payment.snapshot.late_decision is LateDecision.REFUND


# ----------------------------------------------------------------------------- refunds


@pytest.mark.parametrize(("status", "late_from"), [
    (S.EXPIRED, S.EXPIRED), (S.FAILED, S.FAILED), (S.CANCELLED, S.CANCELLED), (S.PENDING, None),
])
def test_a_provider_refund_is_applied_whatever_we_concluded(status, late_from):
    outcome = apply(in_status(status), refund_event(REF, "re_ext", amount=1000))
    assert outcome.payment is not None and outcome.payment.status is S.REFUNDED
    snap = outcome.payment.snapshot
    assert (snap.refunded_amount, snap.late_from, snap.deadline_at) == (1000, late_from, None)
    assert [(r.refund_id, r.status, r.reason) for r in snap.refunds] == [("re_ext", "succeeded", "external")]
