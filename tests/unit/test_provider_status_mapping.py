"""Each provider's statuses mapped onto ours, written out from the provider's documentation;
the last column is what the mapped status does to a payment that is pending at the provider."""

from __future__ import annotations

import pytest

from tests.unit.payment_factory import REF, in_status, status_event
from trailpay.domain import provider_status as ps
from trailpay.domain.payment import Verdict
from trailpay.domain.state_machine import apply
from trailpay.domain.status import PaymentStatus

S = PaymentStatus

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
