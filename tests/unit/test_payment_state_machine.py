"""The payment state machine: create, idempotency, cancel and confirm, refunds, deadlines.

The transition table is tested in ``test_payment_transitions.py`` and the provider status
mappings in ``test_provider_status_mapping.py``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.unit.payment_factory import (
    REF,
    T0,
    at,
    cancel,
    create,
    created,
    in_status,
    refund,
    refund_event,
    status_event,
)
from trailpay.domain.attempts import LateDecision
from trailpay.domain.commands import command_id, expire_request, query_command
from trailpay.domain.deadlines import DeadlinePolicy
from trailpay.domain.errors import IllegalTransition, Suspicious
from trailpay.domain.events import (
    CancelPayment,
    ConfirmPayment,
    ExpirePayment,
    NotificationTemplate,
    PaymentStateChanged,
    Provider,
    ProviderCommandKind,
    ProviderEvent,
    ProviderEventKind,
    stable_id,
)
from trailpay.domain.payment import MAX_APPLIED, Payment, RequestRefused, Verdict
from trailpay.domain.rules import PaymentRules
from trailpay.domain.state_machine import apply
from trailpay.domain.status import PaymentStatus

S = PaymentStatus
PAID = {S.SUCCEEDED, S.PARTIALLY_REFUNDED, S.REFUNDED}


# ----------------------------------------------------------------------------- create


def test_create_emits_version_one_and_initiate():
    outcome = apply(None, create(REF, seconds=0))
    assert outcome.verdict is Verdict.APPLIED and outcome.change is not None
    assert outcome.change.event_id == f"{REF}:1" and outcome.change.from_status is None
    assert outcome.change.occurred_at == T0
    (command,) = outcome.commands
    assert command.kind is ProviderCommandKind.INITIATE
    assert command.event_id == stable_id(REF, 1, "initiate") == command_id(REF, 1, ProviderCommandKind.INITIATE)
    assert command.idempotency_key == f"trailpay-{command.event_id}"
    assert outcome.payment is not None
    assert outcome.payment.snapshot.deadline_at == T0 + timedelta(seconds=120)


def test_create_again_is_duplicate_and_conflicting_create_refused():
    payment = created(REF)
    assert apply(payment, create(REF, event_id="another-id")).verdict is Verdict.DUPLICATE
    with pytest.raises(RequestRefused, match="different payment"):
        apply(payment, create(REF, amount=999, event_id="x"))


def test_requests_for_unknown_payment_refused_and_events_parked():
    with pytest.raises(RequestRefused, match="unknown payment"):
        apply(None, cancel(REF))
    assert apply(None, status_event(REF, S.SUCCEEDED)).verdict is Verdict.PARK


# ----------------------------------------------------------------------------- idempotency


def test_redelivered_record_is_duplicate():
    payment = created(REF)
    event = status_event(REF, S.PENDING, event_id="mpesa:ws_CO_1:0")
    first = apply(payment, event)
    assert first.verdict is Verdict.APPLIED and first.payment is not None
    again = apply(first.payment, event)
    assert again.verdict is Verdict.DUPLICATE and again.change is None


def test_reapplying_to_the_same_state_emits_identical_records():
    payment = created(REF)
    event = status_event(REF, S.SUCCEEDED, provider_code="0", provider_message="ok")
    one, two = apply(payment, event, at(100)), apply(Payment.from_json(payment.to_json()), event, at(999))
    assert one.change is not None and two.change is not None
    assert one.change.model_dump_json() == two.change.model_dump_json()
    assert [n.model_dump_json() for n in one.notifications] == [n.model_dump_json() for n in two.notifications]


def test_applied_ids_are_bounded():
    payment = created(REF)
    for i in range(MAX_APPLIED + 20):
        outcome = apply(payment, status_event(REF, S.PENDING, provider_reference=None,
                                              client_secret=f"s{i}" if i == 0 else None))
        payment = outcome.payment if outcome.applied else payment
    payment = Payment(snapshot=payment.snapshot, applied=tuple(f"id{i}" for i in range(MAX_APPLIED)))
    bumped = apply(payment, status_event(REF, S.SUCCEEDED, event_id="last"))
    assert bumped.payment is not None
    assert len(bumped.payment.applied) == MAX_APPLIED and bumped.payment.applied[-1] == "last"


def test_late_lower_status_is_stale_but_keeps_new_identity():
    payment = apply(created(REF, provider=Provider.STRIPE),
                    status_event(REF, S.PROCESSING, provider=Provider.STRIPE)).payment
    assert payment is not None
    late = status_event(REF, S.PENDING, provider=Provider.STRIPE, source="dispatcher",
                        provider_reference="pi_123", client_secret="pi_123_secret_x")
    outcome = apply(payment, late)
    assert outcome.verdict is Verdict.APPLIED and outcome.payment is not None
    assert outcome.payment.status is S.PROCESSING
    assert outcome.payment.snapshot.provider_reference == "pi_123"
    assert outcome.payment.snapshot.client_secret is None  # issue 16: never in a snapshot
    assert apply(outcome.payment, status_event(REF, S.PENDING, provider=Provider.STRIPE)).verdict is Verdict.STALE


def test_identity_is_never_overwritten_and_another_reference_is_suspicious():
    payment = apply(created(REF), status_event(REF, S.PENDING, provider_reference="ws_CO_1")).payment
    assert payment is not None
    with pytest.raises(Suspicious, match="reference_mismatch"):
        apply(payment, status_event(REF, S.SUCCEEDED, provider_reference="ws_CO_other"))
    outcome = apply(payment, status_event(REF, S.SUCCEEDED, provider_reference="ws_CO_1"))
    assert outcome.payment is not None and outcome.payment.snapshot.provider_reference == "ws_CO_1"


# ----------------------------------------------------------------------------- cancel


def test_cancel_mobile_money_is_immediate_without_command():
    outcome = apply(created(REF), cancel(REF))
    assert outcome.payment is not None and outcome.payment.status is S.CANCELLED
    assert outcome.commands == () and outcome.payment.snapshot.settled_by == "request"
    assert outcome.payment.snapshot.deadline_at is None
    assert apply(outcome.payment, cancel(REF, seconds=9)).verdict is Verdict.STALE


def test_cancel_stripe_is_pending_until_stripe_confirms():
    outcome = apply(created(REF, provider=Provider.STRIPE), cancel(REF))
    assert outcome.payment is not None and outcome.payment.status is S.CREATED
    (command,) = outcome.commands
    assert command.kind is ProviderCommandKind.CANCEL and command.event_id == stable_id(REF, 2, "cancel")
    request = outcome.payment.snapshot.cancel_request
    assert request is not None and (request.command_id, request.reason, request.refused) == (
        stable_id(REF, 2, "cancel"), "requested_by_customer", False)
    assert apply(outcome.payment, cancel(REF, seconds=6)).verdict is Verdict.STALE


@pytest.mark.parametrize("status", sorted(PAID))
def test_cancel_after_paid_is_illegal(status):
    with pytest.raises(IllegalTransition):
        apply(in_status(status), cancel(REF))


@pytest.mark.parametrize("status", [S.FAILED, S.EXPIRED])
def test_cancel_after_unpaid_end_is_remembered_for_late_money(status):
    outcome = apply(in_status(status), cancel(REF))
    assert outcome.payment is not None and outcome.payment.status is status
    assert outcome.commands == () and outcome.payment.snapshot.cancel_request is not None


def test_confirm_only_for_stripe_and_open():
    confirm = ConfirmPayment(event_id="cf1", occurred_at=at(3), reference=REF, payment_method_id="pm_card_visa")
    outcome = apply(created(REF, provider=Provider.STRIPE), confirm)
    assert outcome.payment is not None and outcome.payment.status is S.CREATED
    (command,) = outcome.commands
    assert command.kind is ProviderCommandKind.CONFIRM and command.payment_method_id == "pm_card_visa"
    with pytest.raises(RequestRefused):
        apply(created(REF), confirm)
    with pytest.raises(IllegalTransition):
        apply(in_status(S.SUCCEEDED, provider=Provider.STRIPE), confirm)


# ----------------------------------------------------------------------------- refunds


def _succeeded(provider: Provider = Provider.MPESA) -> Payment:
    payment = apply(created(REF, provider=provider),
                    status_event(REF, S.SUCCEEDED, provider=provider, provider_reference="ref-1")).payment
    assert payment is not None
    return payment


def test_full_refund():
    asked = apply(_succeeded(), refund(REF, "rf1", None))
    assert asked.payment is not None and asked.payment.status is S.SUCCEEDED
    (command,) = asked.commands
    assert command.kind is ProviderCommandKind.REFUND and command.refund_amount is not None
    assert command.refund_amount.amount == 1000 and command.provider_reference == "ref-1"
    assert command.event_id == stable_id(REF, 3, "refund", "rf1")
    done = apply(asked.payment, refund_event(REF, "rf1"))
    assert done.payment is not None and done.payment.status is S.REFUNDED
    assert done.payment.snapshot.refunded_amount == 1000
    assert [n.template for n in done.notifications] == [NotificationTemplate.REFUND_SUCCEEDED]
    assert apply(done.payment, refund_event(REF, "rf1", event_id="other")).verdict is Verdict.STALE


def test_partial_refunds_then_full():
    payment = _succeeded()
    for refund_id, amount, expected in (("a", 300, S.PARTIALLY_REFUNDED), ("b", 200, S.PARTIALLY_REFUNDED),
                                        ("c", None, S.REFUNDED)):
        payment = apply(payment, refund(REF, refund_id, amount)).payment
        payment = apply(payment, refund_event(REF, refund_id)).payment
        assert payment is not None and payment.status is expected
    assert payment.snapshot.refunded_amount == 1000
    assert [r.amount.amount for r in payment.snapshot.refunds] == [300, 200, 500]


def _refused(payment, record):
    """Apply a refund request the state machine refuses: applied (the owner sees it), no
    command, the payment's status unchanged; answers the refused refund."""
    outcome = apply(payment, record)
    assert outcome.applied and outcome.commands == ()
    assert outcome.payment is not None and outcome.payment.status is payment.status
    [refund] = [r for r in outcome.payment.snapshot.refunds if r.refund_id == record.refund_id]
    assert refund.status == "refused"
    return outcome.payment, refund


def test_over_refund_refused_counting_unsettled_requests():
    payment = apply(_succeeded(), refund(REF, "a", 600)).payment
    assert payment is not None
    payment, b = _refused(payment, refund(REF, "b", 500))
    assert (b.failure_code, b.failure_message) == (
        "exceeds_refundable", "refund of 500 exceeds the 400 minor units still refundable")
    assert b.amount.amount == 500
    _, z = _refused(_succeeded(), refund(REF, "z", 1001))
    assert z.failure_code == "exceeds_refundable"
    # a failed refund gives its amount back; a refused one never held any
    failed = apply(payment, refund_event(REF, "a", succeeded=False)).payment
    assert failed is not None and failed.status is S.SUCCEEDED
    again = apply(failed, refund(REF, "c", 1000))
    assert again.applied and len(again.commands) == 1
    assert again.commands[0].refund_amount.amount == 1000


def test_a_failed_refund_keeps_the_payments_own_provider_words():
    paid = _succeeded()
    words = (paid.snapshot.provider_code, paid.snapshot.provider_message)
    asked = apply(paid, refund(REF, "a", 600)).payment
    event = refund_event(REF, "a", succeeded=False).model_copy(update={
        "provider_code": "charge_disputed", "provider_message": "the charge is disputed"})
    failed = apply(asked, event).payment
    assert failed is not None
    assert (failed.snapshot.provider_code, failed.snapshot.provider_message) == words
    [a] = failed.snapshot.refunds
    assert (a.status, a.failure_code, a.failure_message) == ("failed", "charge_disputed",
                                                            "the charge is disputed")


def test_refund_edge_cases():
    pending = apply(created(REF), status_event(REF, S.PENDING)).payment
    _, early = _refused(pending, refund(REF, "a", 10))
    assert early.failure_code == "not_refundable"
    assert early.failure_message == ("payment is pending; only succeeded or partially refunded "
                                     "payments can be refunded")
    payment = apply(_succeeded(), refund(REF, "a", 100)).payment
    assert apply(payment, refund(REF, "a", 100)).verdict is Verdict.DUPLICATE
    _, usd = _refused(_succeeded(), refund(REF, "u", 100, currency="USD"))
    assert (usd.failure_code, usd.failure_message) == ("currency_mismatch", "refund in USD, payment in KES")
    everything = apply(_succeeded(), refund(REF, "all", None)).payment
    everything, nothing = _refused(everything, refund(REF, "n", None))
    assert (nothing.failure_code, nothing.amount.amount) == ("nothing_left", 0)
    assert apply(everything, refund(REF, "n", None)).verdict is Verdict.DUPLICATE
    _, late = _refused(in_status(S.REFUNDED), refund(REF, "n", None))
    assert late.failure_code == "not_refundable"


def test_external_refund_is_recorded_when_it_fits():
    outcome = apply(_succeeded(), refund_event(REF, "re_ext", amount=250))
    assert outcome.payment is not None and outcome.payment.status is S.PARTIALLY_REFUNDED
    with pytest.raises(Suspicious, match="refund_exceeds_capture"):
        apply(outcome.payment, refund_event(REF, "re_big", amount=900))


# ----------------------------------------------------------------------------- deadlines


def test_deadlines_follow_the_status():
    policy = DeadlinePolicy(pending_s=30, processing_s=300)
    payment = apply(None, create(REF, seconds=0), policy=policy).payment
    assert payment is not None and payment.snapshot.deadline_at == at(30)
    processing = apply(payment, status_event(REF, S.PROCESSING, seconds=10), policy=policy).payment
    assert processing is not None and processing.snapshot.deadline_at == at(310)
    info = apply(processing, status_event(REF, S.PENDING, seconds=20, provider_reference="x"), policy=policy)
    assert info.payment is not None and info.payment.snapshot.deadline_at == at(310)
    done = apply(info.payment, status_event(REF, S.SUCCEEDED, seconds=40), policy=policy).payment
    assert done is not None and done.snapshot.deadline_at is None


def test_query_and_expire_are_deterministic():
    policy = DeadlinePolicy(pending_s=30, processing_s=300)
    payment = apply(None, create(REF, seconds=0), policy=policy).payment
    assert payment is not None
    query = query_command(payment)
    assert query.kind is ProviderCommandKind.QUERY and query.event_id == stable_id(REF, 1, "query")
    assert query.occurred_at == at(30) and query_command(payment) == query
    expire = expire_request(payment, policy)
    assert expire.occurred_at == at(30 + 15) and expire.event_id == stable_id(REF, 1, "expire")
    outcome = apply(payment, expire, policy=policy)
    assert outcome.payment is not None and outcome.payment.status is S.EXPIRED
    assert [n.template for n in outcome.notifications] == [NotificationTemplate.PAYMENT_FAILED]
    assert apply(outcome.payment, status_event(REF, S.FAILED)).verdict is Verdict.STALE
    late = apply(outcome.payment, status_event(REF, S.SUCCEEDED))
    assert late.payment is not None and late.payment.status is S.SUCCEEDED
    assert (late.payment.snapshot.late_from, late.payment.snapshot.late_decision) == (
        S.EXPIRED, LateDecision.KEEP)


def test_expire_before_deadline_or_after_settlement_is_stale():
    payment = created(REF)
    early = ExpirePayment(event_id="e1", occurred_at=at(5), reference=REF)
    assert apply(payment, early).verdict is Verdict.STALE
    late = ExpirePayment(event_id="e2", occurred_at=at(9999), reference=REF)
    assert apply(_succeeded(), late).verdict is Verdict.STALE


def test_expire_stripe_cancels_the_intent_after_a_day():
    payment = created(REF, provider=Provider.STRIPE)
    assert payment.snapshot.deadline_at == at(86_400)
    early = ExpirePayment(event_id="e0", occurred_at=at(9999), reference=REF)
    assert apply(payment, early).verdict is Verdict.STALE
    outcome = apply(payment, ExpirePayment(event_id="e1", occurred_at=at(86_430), reference=REF))
    assert [c.kind for c in outcome.commands] == [ProviderCommandKind.CANCEL]


def test_state_change_id_and_round_trip():
    # one attempt allowed: the customer's decline (1, no funds) ends the payment at once
    outcome = apply(created(REF), status_event(REF, S.FAILED, provider_code="1", provider_message="no funds"),
                    rules=PaymentRules(max_attempts=1))
    assert outcome.change is not None and outcome.payment is not None
    assert outcome.change.event_id == PaymentStateChanged.id_for(REF, 2)
    assert outcome.notifications[0].detail == "no funds"
    assert Payment.from_json(outcome.payment.to_json()) == outcome.payment
    assert ProviderEventKind.COMMAND_FAILED  # kind used by the dispatcher for refusals


def test_command_failed_on_initiate_fails_payment_and_on_refund_fails_refund():
    failed = ProviderEvent(event_id="cmd:x", occurred_at=at(2), kind=ProviderEventKind.COMMAND_FAILED,
                           reference=REF, provider=Provider.MPESA, status=S.FAILED, provider_code="1001",
                           source="dispatcher")
    outcome = apply(created(REF), failed)
    assert outcome.payment is not None and outcome.payment.status is S.FAILED
    payment = apply(_succeeded(), refund(REF, "a", 100)).payment
    refused = ProviderEvent(event_id="cmd:y", occurred_at=at(30), kind=ProviderEventKind.COMMAND_FAILED,
                            reference=REF, provider=Provider.MPESA, refund_id="a", source="dispatcher")
    outcome = apply(payment, refused)
    assert outcome.payment is not None
    assert outcome.payment.snapshot.refunds[0].status == "failed"


def test_cancel_with_refund_if_paid_refunds_what_is_left():
    booking_cancel = CancelPayment(event_id="bk-cancel-1", occurred_at=at(50), reference=REF,
                                   reason="booking cancelled", refund_if_paid=True)
    paid = apply(_succeeded(), refund(REF, "a", 300)).payment
    outcome = apply(paid, booking_cancel)
    (command,) = outcome.commands
    assert command.kind is ProviderCommandKind.REFUND and command.refund_amount.amount == 700
    assert outcome.payment is not None and outcome.payment.status is S.SUCCEEDED
    assert apply(outcome.payment, booking_cancel).verdict is Verdict.DUPLICATE
    open_one = apply(created(REF), booking_cancel)
    assert open_one.payment is not None and open_one.payment.status is S.CANCELLED
    assert apply(in_status(S.REFUNDED), booking_cancel).verdict is Verdict.STALE
