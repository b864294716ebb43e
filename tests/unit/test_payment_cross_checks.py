"""Cross-checks: a provider event is applied only to the payment it really is about."""

from __future__ import annotations

import pytest

from tests.unit.payment_factory import created, refund_event, status_event
from trailpay.domain.errors import PermanentError, Suspicious
from trailpay.domain.events import Money, Provider
from trailpay.domain.payment import Payment
from trailpay.domain.state_machine import apply
from trailpay.domain.status import PaymentStatus

S = PaymentStatus
REF = "TPTEST0000000000000001"


def _mpesa_pushed(amount: int = 10_000) -> Payment:
    """KES 100.00 by M-Pesa, STK push ws_CO_1 sent."""
    payment = apply(created(REF, amount=amount),
                    status_event(REF, S.PENDING, provider_reference="ws_CO_1", source="dispatcher")).payment
    assert payment is not None
    return payment


#: Events that must not be applied, with the reason the dead letter and metric carry.
SUSPICIOUS = {
    "another payment's CheckoutRequestID": (
        {"provider_reference": "ws_CO_other", "amount": Money(amount=10_000, currency="KES")},
        "reference_mismatch"),
    "Amount 1 on KES 100": (
        {"provider_reference": "ws_CO_1", "amount": Money(amount=100, currency="KES")}, "amount_mismatch"),
    "no amount in the callback": ({"provider_reference": "ws_CO_1", "amount": None}, "amount_missing"),
    "another currency": (
        {"provider_reference": "ws_CO_1", "amount": Money(amount=10_000, currency="UGX")}, "currency_mismatch"),
    "an Airtel TS for an M-Pesa payment": (
        {"provider": Provider.AIRTEL, "provider_reference": "MP123",
         "amount": Money(amount=10_000, currency="KES")}, "provider_mismatch"),
    "a signed Stripe event for USD 0.01": (
        {"provider": Provider.STRIPE, "provider_reference": "pi_x", "amount": Money(amount=1, currency="USD")},
        "provider_mismatch"),
}


@pytest.mark.parametrize(("fields", "reason"), SUSPICIOUS.values(), ids=list(SUSPICIOUS))
def test_mismatched_success_is_suspicious(fields, reason):
    payment = _mpesa_pushed()
    with pytest.raises(Suspicious) as err:
        apply(payment, status_event(REF, S.SUCCEEDED, **fields))
    assert (err.value.reference, err.value.reason) == (REF, reason)
    assert isinstance(err.value, PermanentError)


def test_matching_success_is_applied():
    outcome = apply(_mpesa_pushed(), status_event(REF, S.SUCCEEDED, provider_reference="ws_CO_1",
                                                  amount=Money(amount=10_000, currency="KES")))
    assert outcome.payment is not None and outcome.payment.status is S.SUCCEEDED


def test_a_failure_naming_another_reference_is_suspicious_too():
    with pytest.raises(Suspicious, match="reference_mismatch"):
        apply(_mpesa_pushed(), status_event(REF, S.FAILED, provider_reference="ws_CO_other"))


def test_the_reference_of_a_new_attempt_is_adopted_before_the_initiate_answer():
    payment = created(REF, amount=10_000)
    outcome = apply(payment, status_event(REF, S.SUCCEEDED, provider_reference="ws_CO_early",
                                          amount=Money(amount=10_000, currency="KES")))
    assert outcome.payment is not None and outcome.payment.snapshot.provider_reference == "ws_CO_early"
    assert outcome.payment.snapshot.attempts[0].provider_reference == "ws_CO_early"


def test_signed_or_fetched_successes_may_omit_the_amount():
    stripe = apply(created(REF, provider=Provider.STRIPE),
                   status_event(REF, S.PENDING, provider=Provider.STRIPE, provider_reference="pi_1")).payment
    webhook = status_event(REF, S.SUCCEEDED, provider=Provider.STRIPE, provider_reference="pi_1", amount=None)
    assert apply(stripe, webhook).payment.status is S.SUCCEEDED
    query = status_event(REF, S.SUCCEEDED, provider_reference="ws_CO_1", source="sweep", amount=None)
    assert apply(_mpesa_pushed(), query).payment.status is S.SUCCEEDED
    airtel = created(REF, provider=Provider.AIRTEL)
    callback = status_event(REF, S.SUCCEEDED, provider=Provider.AIRTEL, provider_reference="MP1", amount=None)
    assert apply(airtel, callback).payment.status is S.SUCCEEDED


def test_a_refund_event_from_another_provider_is_suspicious():
    paid = apply(_mpesa_pushed(1000), status_event(REF, S.SUCCEEDED, provider_reference="ws_CO_1")).payment
    with pytest.raises(Suspicious, match="provider_mismatch"):
        apply(paid, refund_event(REF, "re_1", amount=1000, provider=Provider.STRIPE))
