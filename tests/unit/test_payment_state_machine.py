"""The payment state machine: the transition table, provider mappings, refunds, deadlines."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.unit.payment_factory import (
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
from trailpay.domain import provider_status as ps
from trailpay.domain.attempts import LateDecision
from trailpay.domain.commands import command_id, expire_request, query_command
from trailpay.domain.deadlines import DeadlinePolicy
from trailpay.domain.errors import IllegalTransition, Suspicious
from trailpay.domain.events import (
    ConfirmPayment,
    ExpirePayment,
    NotificationTemplate,
    PaymentStateChanged,
    Provider,
    ProviderCommandKind,
    ProviderEventKind,
    stable_id,
)
from trailpay.domain.payment import MAX_APPLIED, Payment, RequestRefused, Verdict
from trailpay.domain.state_machine import apply
from trailpay.domain.status import PaymentStatus, transition

S = PaymentStatus
REF = "TPTEST0000000000000001"
PAID = {S.SUCCEEDED, S.PARTIALLY_REFUNDED, S.REFUNDED}

#: Column headings of the matrices below.
COLUMNS = {
    "cre": S.CREATED, "pen": S.PENDING, "pro": S.PROCESSING, "suc": S.SUCCEEDED, "fai": S.FAILED,
    "can": S.CANCELLED, "exp": S.EXPIRED, "par": S.PARTIALLY_REFUNDED, "ref": S.REFUNDED,
}


def _matrix(text: str) -> dict[tuple[PaymentStatus, PaymentStatus], str]:
    """A hand-written (row status, column status) -> mark table; it must cover all 81 pairs."""
    header, *rows = text.strip().splitlines()
    targets = [COLUMNS[name] for name in header.split()[1:]]
    cells = {}
    for row in rows:
        name, *marks = row.split()
        assert len(marks) == len(targets), row
        cells.update({(S(name), target): mark for target, mark in zip(targets, marks, strict=True)})
    assert len(cells) == len(S) ** 2
    return cells


def _ids(pairs):
    return [f"{c.value}->{t.value}" for c, t in pairs]


# ----------------------------------------------------------------------------- the table

#: The lifecycle (ARCHITECTURE.md "Payment lifecycle"): created -> pending -> processing ->
#: succeeded | failed | cancelled | expired; succeeded -> partially_refunded -> refunded.
#: Early states may jump forward (a provider webhook can overtake the dispatcher's answer);
#: a full refund goes straight to refunded; a second partial refund stays partially refunded.
#: Y = allowed, . = refused.
TRANSITION_MATRIX = _matrix("""
from->to            cre pen pro suc fai can exp par ref
created              .   Y   Y   Y   Y   Y   Y   .   .
pending              .   .   Y   Y   Y   Y   Y   .   .
processing           .   .   .   Y   Y   Y   Y   .   .
succeeded            .   .   .   .   .   .   .   Y   Y
failed               .   .   .   .   .   .   .   .   .
cancelled            .   .   .   .   .   .   .   .   .
expired              .   .   .   .   .   .   .   .   .
partially_refunded   .   .   .   .   .   .   .   Y   Y
refunded             .   .   .   .   .   .   .   .   .
""")
ALLOWED = [pair for pair, mark in TRANSITION_MATRIX.items() if mark == "Y"]
REFUSED = [pair for pair, mark in TRANSITION_MATRIX.items() if mark == "."]


def test_matrix_marks():
    assert set(TRANSITION_MATRIX.values()) == {"Y", "."}
    assert len(ALLOWED) == 6 + 5 + 4 + 2 + 2


@pytest.mark.parametrize(("current", "target"), ALLOWED, ids=_ids(ALLOWED))
def test_allowed_transition(current, target):
    assert transition(REF, current, target) is target


@pytest.mark.parametrize(("current", "target"), REFUSED, ids=_ids(REFUSED))
def test_refused_transition(current, target):
    with pytest.raises(IllegalTransition) as err:
        transition(REF, current, target)
    assert (err.value.reference, err.value.current, err.value.target) == (REF, current.value, target.value)


#: What a provider status event does to a payment in each status (row: the payment's
#: status, column: the status the event reports). A = applied; L = applied *late*: the
#: provider confirms money on a payment we had given up on, so it becomes succeeded with
#: ``late_from`` = the row (ARCHITECTURE.md property 9); s = stale (late or repeated:
#: ignored and logged, as is one unpaid end after another, or an unpaid report after money
#: moved: a report of an attempt that cannot undo the payment); X = IllegalTransition (a
#: status event cannot carry a refund status: refunds come as refund events).
PROVIDER_EVENT_MATRIX = _matrix("""
status\\event        cre pen pro suc fai can exp par ref
created              s   A   A   A   A   A   A   X   X
pending              s   s   A   A   A   A   A   X   X
processing           s   s   s   A   A   A   A   X   X
succeeded            s   s   s   s   s   s   s   X   X
failed               s   s   s   L   s   s   s   X   X
cancelled            s   s   s   L   s   s   s   X   X
expired              s   s   s   L   s   s   s   X   X
partially_refunded   s   s   s   s   s   s   s   X   X
refunded             s   s   s   s   s   s   s   X   X
""")
PROVIDER_EVENT_CASES = sorted(PROVIDER_EVENT_MATRIX.items())


@pytest.mark.parametrize(("pair", "mark"), PROVIDER_EVENT_CASES, ids=_ids(p for p, _ in PROVIDER_EVENT_CASES))
def test_provider_status_event_in_every_status(pair, mark):
    current, target = pair
    payment = in_status(current)
    event = status_event(REF, target, provider_code="X1", provider_message="text")
    if mark == "X":
        with pytest.raises(IllegalTransition):
            apply(payment, event)
        return
    outcome = apply(payment, event)
    if mark in ("A", "L"):
        assert outcome.verdict is Verdict.APPLIED
        assert outcome.change is not None and outcome.payment is not None
        assert outcome.change.from_status is current and outcome.change.to_status is target
        assert outcome.change.event_id == f"{REF}:6"  # in_status() leaves the payment at version 5
        assert outcome.payment.snapshot.provider_code == "X1"
        assert outcome.payment.snapshot.provider_message == "text"
        assert outcome.payment.snapshot.late_from is (current if mark == "L" else None)
    else:
        assert mark == "s"
        assert outcome.verdict is Verdict.STALE
        assert outcome.change is None and outcome.payment is payment


def test_succeeded_after_cancelled_is_applied_late_and_refunded():
    payment = apply(created(), cancel(REF)).payment
    assert payment is not None and payment.status is S.CANCELLED
    outcome = apply(payment, status_event(REF, S.SUCCEEDED, event_id="mpesa:ws_CO_9:0"))
    assert outcome.payment is not None and outcome.payment.status is S.SUCCEEDED
    snap = outcome.payment.snapshot
    assert (snap.late_from, snap.late_decision) == (S.CANCELLED, LateDecision.REFUND)
    assert [n.template for n in outcome.notifications] == [NotificationTemplate.PAYMENT_SUCCEEDED_LATE]
    (command,) = outcome.commands
    assert command.kind is ProviderCommandKind.REFUND and command.refund_amount.amount == 1000
    assert command.refund_id == "late-" + stable_id("mpesa:ws_CO_9:0")[:20]


# ----------------------------------------------------------------------------- provider mappings
# Each provider's statuses, written out from the provider's documentation; the last column is
# what the mapped status does to a payment that is pending at the provider.

APPLIED, STALE = Verdict.APPLIED, Verdict.STALE

#: Stripe PaymentIntent.status -> (ours, verdict on a pending payment).
STRIPE_INTENTS = {
    "requires_payment_method": (S.PENDING, STALE),  # before any attempt: waiting for a card
    "requires_confirmation": (S.PENDING, STALE),
    "requires_action": (S.PROCESSING, APPLIED),  # 3-D Secure
    "processing": (S.PROCESSING, APPLIED),
    "requires_capture": (S.PROCESSING, APPLIED),
    "succeeded": (S.SUCCEEDED, APPLIED),
    "canceled": (S.CANCELLED, APPLIED),
}

#: Stripe webhook event type -> ours (None: not a status change) and the verdict on a pending payment.
STRIPE_EVENTS = {
    "payment_intent.created": (S.PENDING, STALE),
    "payment_intent.requires_action": (S.PROCESSING, APPLIED),
    "payment_intent.processing": (S.PROCESSING, APPLIED),
    "payment_intent.amount_capturable_updated": (S.PROCESSING, APPLIED),
    "payment_intent.succeeded": (S.SUCCEEDED, APPLIED),
    "payment_intent.payment_failed": (S.FAILED, APPLIED),
    "payment_intent.canceled": (S.CANCELLED, APPLIED),
    "charge.refunded": (None, None),  # refunds are their own event kind
    "charge.refund.updated": (None, None),
    "refund.updated": (None, None),
    "refund.failed": (None, None),
}

#: Daraja STK Push ResultCode -> (ours, Daraja's text, verdict on a pending payment).
DARAJA_RESULTS = {
    0: (S.SUCCEEDED, "The service request is processed successfully.", APPLIED),
    1: (S.FAILED, "The balance is insufficient for the transaction.", APPLIED),
    1001: (S.FAILED, "Unable to lock subscriber, a transaction is already in process.", APPLIED),
    1019: (S.EXPIRED, "Transaction has expired.", APPLIED),
    1025: (S.FAILED, "An error occurred while sending a push request.", APPLIED),
    1032: (S.CANCELLED, "Request cancelled by user.", APPLIED),
    1037: (S.EXPIRED, "DS timeout user cannot be reached.", APPLIED),
    2001: (S.FAILED, "The initiator information is invalid.", APPLIED),  # wrong PIN
    9999: (S.FAILED, "An error occurred while sending a push request.", APPLIED),
}

#: Airtel Money transaction status -> (ours, Airtel's text, verdict on a pending payment).
AIRTEL_STATUSES = {
    "TS": (S.SUCCEEDED, "Transaction Success", APPLIED),
    "TF": (S.FAILED, "Transaction Failed", APPLIED),
    "TIP": (S.PROCESSING, "Transaction in Progress", APPLIED),
    "TA": (S.PROCESSING, "Transaction Ambiguous", APPLIED),  # confirmed by a status enquiry
    "TE": (S.EXPIRED, "Transaction Expired", APPLIED),
}


def _verdict_on_pending(status: PaymentStatus) -> Verdict:
    return apply(in_status(S.PENDING), status_event(REF, status)).verdict


def test_every_provider_status_is_written_out_here():
    assert set(ps.STRIPE_INTENT_STATUS) == set(STRIPE_INTENTS)
    assert set(ps.STRIPE_EVENT_STATUS) == set(STRIPE_EVENTS)
    assert set(ps.DARAJA_RESULT) == set(DARAJA_RESULTS)
    assert set(ps.AIRTEL_STATUS) == set(AIRTEL_STATUSES)


@pytest.mark.parametrize(("stripe", "expected"), STRIPE_INTENTS.items(), ids=list(STRIPE_INTENTS))
def test_stripe_intent_status(stripe, expected):
    ours, verdict = expected
    mapped = ps.map_stripe_intent(stripe)
    assert (mapped.status, mapped.code, mapped.message) == (ours, stripe, stripe.replace("_", " "))
    assert _verdict_on_pending(mapped.status) is verdict


def test_stripe_declined_after_attempt_is_failed_with_code():
    mapped = ps.map_stripe_intent("requires_payment_method", decline_code="insufficient_funds",
                                  decline_message="Your card has insufficient funds.")
    assert (mapped.status, mapped.code, mapped.message) == (
        S.FAILED, "insufficient_funds", "Your card has insufficient funds.")
    attempted = ps.map_stripe_intent("requires_payment_method", after_attempt=True)
    assert (attempted.status, attempted.code, attempted.message) == (
        S.FAILED, "card_declined", "The payment method was declined")
    with pytest.raises(ValueError, match="unknown Stripe"):
        ps.map_stripe_intent("exploded")


@pytest.mark.parametrize(("event_type", "expected"), STRIPE_EVENTS.items(), ids=list(STRIPE_EVENTS))
def test_stripe_event_types(event_type, expected):
    ours, verdict = expected
    assert ps.STRIPE_EVENT_STATUS[event_type] is ours
    if ours is not None:
        assert _verdict_on_pending(ours) is verdict


@pytest.mark.parametrize(("code", "expected"), DARAJA_RESULTS.items(), ids=[str(c) for c in DARAJA_RESULTS])
def test_daraja_result_codes(code, expected):
    ours, text, verdict = expected
    for raw in (code, str(code)):  # int in callbacks, string in query replies
        mapped = ps.map_daraja_result(raw)
        assert (mapped.status, mapped.code, mapped.message) == (ours, str(code), text)
    assert ps.map_daraja_result(code, "provider words").message == "provider words"
    assert _verdict_on_pending(ours) is verdict


def test_daraja_unknown_codes_fail_with_their_code():
    other = ps.map_daraja_result(4242)
    assert (other.status, other.code, other.message) == (S.FAILED, "4242", "Payment failed at the provider")
    garbage = ps.map_daraja_result("abc", None)
    assert (garbage.status, garbage.code, garbage.message) == (S.FAILED, "abc", "unrecognised result code")


@pytest.mark.parametrize(("code", "expected"), AIRTEL_STATUSES.items(), ids=list(AIRTEL_STATUSES))
def test_airtel_status(code, expected):
    ours, text, verdict = expected
    for raw in (code, code.lower()):
        mapped = ps.map_airtel_status(raw)
        assert (mapped.status, mapped.code, mapped.message) == (ours, code, text)
    assert ps.map_airtel_status(code, "provider words").message == "provider words"
    assert _verdict_on_pending(ours) is verdict


def test_airtel_unknown_is_failed_with_code():
    mapped = ps.map_airtel_status("ZZ", "odd")
    assert (mapped.status, mapped.code, mapped.message) == (S.FAILED, "ZZ", "odd")
    bare = ps.map_airtel_status("zz")
    assert (bare.status, bare.code, bare.message) == (S.FAILED, "ZZ", "unrecognised Airtel status")


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
    assert outcome.payment.snapshot.client_secret == "pi_123_secret_x"
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


def test_over_refund_refused_counting_unsettled_requests():
    payment = apply(_succeeded(), refund(REF, "a", 600)).payment
    assert payment is not None
    with pytest.raises(RequestRefused, match="exceeds"):
        apply(payment, refund(REF, "b", 500))
    with pytest.raises(RequestRefused, match="exceeds"):
        apply(_succeeded(), refund(REF, "z", 1001))
    # a failed refund gives its amount back
    failed = apply(payment, refund_event(REF, "a", succeeded=False)).payment
    assert failed is not None and failed.status is S.SUCCEEDED
    again = apply(failed, refund(REF, "b", 1000))
    assert again.applied


def test_refund_edge_cases():
    with pytest.raises(IllegalTransition):
        apply(apply(created(REF), status_event(REF, S.PENDING)).payment, refund(REF, "a", 10))
    payment = apply(_succeeded(), refund(REF, "a", 100)).payment
    assert apply(payment, refund(REF, "a", 100)).verdict is Verdict.DUPLICATE
    with pytest.raises(RequestRefused, match="USD"):
        apply(_succeeded(), refund(REF, "u", 100, currency="USD"))
    everything = apply(_succeeded(), refund(REF, "all", None)).payment
    with pytest.raises(RequestRefused, match="nothing left"):
        apply(everything, refund(REF, "n", None))
    with pytest.raises(IllegalTransition):
        apply(in_status(S.REFUNDED), refund(REF, "n", None))


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
    outcome = apply(created(REF), status_event(REF, S.FAILED, provider_code="1", provider_message="no funds"))
    assert outcome.change is not None and outcome.payment is not None
    assert outcome.change.event_id == PaymentStateChanged.id_for(REF, 2)
    assert outcome.notifications[0].detail == "no funds"
    assert Payment.from_json(outcome.payment.to_json()) == outcome.payment
    assert ProviderEventKind.COMMAND_FAILED  # kind used by the dispatcher for refusals


def test_command_failed_on_initiate_fails_payment_and_on_refund_fails_refund():
    from trailpay.domain.events import ProviderEvent
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
    from trailpay.domain.events import CancelPayment
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
