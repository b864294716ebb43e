"""A mobile-money decline the customer caused ends the attempt, not the payment (#15 item 1).

Daraja 1 (no funds), 1032 (prompt cancelled), 2001 (wrong PIN) and Airtel TF leave the
payment ``pending`` for the retry window (180 s by default) while attempts are left; a
retry starts the next push; the last allowed attempt's decline ends the payment at once;
a window that passes with no retry ends it as the last attempt did, with that attempt's
code and message (not ``expired``). Other failures (Daraja 1025) still end the payment.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.unit.payment_factory import at, created, status_event
from trailpay.domain.commands import expire_request
from trailpay.domain.deadlines import DeadlinePolicy, awaits_retry
from trailpay.domain.events import (
    ExpirePayment,
    NotificationTemplate,
    Provider,
    ProviderCommandKind,
    ProviderEvent,
    RetryPayment,
)
from trailpay.domain.payment import Payment, Verdict
from trailpay.domain.provider_status import customer_may_retry
from trailpay.domain.rules import PaymentRules
from trailpay.domain.state_machine import apply
from trailpay.domain.status import PaymentStatus

S = PaymentStatus
REF = "TPTEST0000000000000001"
CANCELLED_BY_USER = "Request cancelled by user"


def _outcomes(payment: Payment) -> list[tuple[int, str | None, str, str | None]]:
    return [(a.number, a.provider_reference, a.outcome, a.provider_code) for a in payment.snapshot.attempts]


def _pushed(reference: str = "ws_CO_1", seconds: float = 1, payment: Payment | None = None) -> Payment:
    answer = status_event(REF, S.PENDING, provider_reference=reference, source="dispatcher", seconds=seconds)
    outcome = apply(payment or created(REF), answer)
    assert outcome.payment is not None
    return outcome.payment


def _declined_1032(payment: Payment, reference: str = "ws_CO_1", seconds: float = 10) -> ProviderEvent:
    return status_event(REF, S.CANCELLED, provider_reference=reference, seconds=seconds,
                        provider_code="1032", provider_message=CANCELLED_BY_USER)


def test_a_cancelled_prompt_ends_the_attempt_and_a_retry_pays() -> None:
    declined = apply(_pushed(), _declined_1032(_pushed()))
    waiting = declined.payment
    assert waiting is not None and waiting.status is S.PENDING
    assert _outcomes(waiting) == [(1, "ws_CO_1", "cancelled", "1032")]
    assert waiting.snapshot.deadline_at == at(10 + 180)  # the retry window
    assert (waiting.snapshot.provider_code, waiting.snapshot.provider_message) == ("1032", CANCELLED_BY_USER)
    assert declined.notifications == () and declined.commands == ()
    assert awaits_retry(waiting.snapshot)

    retried = apply(waiting, RetryPayment(event_id="retry-1", occurred_at=at(30), reference=REF))
    assert retried.payment is not None and retried.payment.status is S.PENDING
    assert [c.kind for c in retried.commands] == [ProviderCommandKind.INITIATE]
    assert retried.payment.snapshot.deadline_at == at(30 + 120)  # a new push: the push window
    assert not awaits_retry(retried.payment.snapshot)

    second = _pushed("ws_CO_2", seconds=31, payment=retried.payment)
    paid = apply(second, status_event(REF, S.SUCCEEDED, provider_reference="ws_CO_2", seconds=40,
                                      provider_code="0", provider_message="processed"))
    assert paid.payment is not None and paid.payment.status is S.SUCCEEDED
    assert _outcomes(paid.payment) == [(1, "ws_CO_1", "cancelled", "1032"), (2, "ws_CO_2", "succeeded", "0")]
    assert paid.payment.snapshot.late is False


@pytest.mark.parametrize(("provider", "status", "code", "message", "ends"), [
    (Provider.MPESA, S.FAILED, "1", "The balance is insufficient for the transaction.", "failed"),
    (Provider.MPESA, S.FAILED, "2001", "The initiator information is invalid.", "failed"),
    (Provider.MPESA, S.CANCELLED, "1032", "Request cancelled by user", "cancelled"),
    (Provider.AIRTEL, S.FAILED, "TF", "Incorrect PIN", "failed"),
])
def test_every_customer_decline_waits_for_a_retry(provider, status, code, message, ends) -> None:
    payment = created(REF, provider=provider)
    outcome = apply(payment, status_event(REF, status, provider=provider, provider_code=code,
                                          provider_message=message, seconds=5))
    assert outcome.payment is not None and outcome.payment.status is S.PENDING
    assert [(a.number, a.outcome, a.provider_code, a.provider_message)
            for a in outcome.payment.snapshot.attempts] == [(1, ends, code, message)]
    assert outcome.payment.snapshot.deadline_at == at(185)


def test_a_failure_that_is_not_the_customers_still_ends_the_payment() -> None:
    outcome = apply(_pushed(), status_event(REF, S.FAILED, provider_reference="ws_CO_1", seconds=10,
                                            provider_code="1025", provider_message="push error"))
    assert outcome.payment is not None and outcome.payment.status is S.FAILED
    assert _outcomes(outcome.payment) == [(1, "ws_CO_1", "failed", "1025")]
    (note,) = outcome.notifications
    assert (note.template, note.detail) == (NotificationTemplate.PAYMENT_FAILED, "push error")


def test_the_last_allowed_attempt_fails_the_payment_at_once() -> None:
    rules = PaymentRules(max_attempts=2)
    first = apply(_pushed(), status_event(REF, S.FAILED, provider_reference="ws_CO_1", seconds=10,
                                          provider_code="2001", provider_message="wrong PIN"), rules=rules)
    assert first.payment is not None and first.payment.status is S.PENDING
    retried = apply(first.payment, RetryPayment(event_id="retry-1", occurred_at=at(20), reference=REF), rules=rules)
    assert retried.payment is not None
    second = _pushed("ws_CO_2", seconds=21, payment=retried.payment)
    last = apply(second, status_event(REF, S.FAILED, provider_reference="ws_CO_2", seconds=30,
                                      provider_code="1", provider_message="no funds"), rules=rules)
    assert last.payment is not None and last.payment.status is S.FAILED
    assert _outcomes(last.payment) == [(1, "ws_CO_1", "failed", "2001"), (2, "ws_CO_2", "failed", "1")]
    assert (last.payment.snapshot.provider_code, last.payment.snapshot.provider_message) == ("1", "no funds")
    assert last.payment.snapshot.deadline_at is None and last.commands == ()
    (note,) = last.notifications
    assert (note.template, note.detail) == (NotificationTemplate.PAYMENT_FAILED, "no funds")


def test_the_window_passes_with_no_retry_and_the_payment_fails_with_the_last_code() -> None:
    policy = DeadlinePolicy(retry_window_s=4)
    waiting = apply(_pushed(), status_event(REF, S.FAILED, provider_reference="ws_CO_1", seconds=10,
                                            provider_code="2001", provider_message="wrong PIN"),
                    policy=policy).payment
    assert waiting is not None and waiting.snapshot.deadline_at == at(14)

    request = expire_request(waiting, policy)
    assert request.occurred_at == at(14)  # no grace: nothing is asked of the provider
    assert request.reason == "no retry within 4s of the failed attempt"
    early = apply(waiting, ExpirePayment(event_id="early", occurred_at=at(13), reference=REF), policy=policy)
    assert early.verdict is Verdict.STALE

    ended = apply(waiting, request, policy=policy)
    assert ended.payment is not None and ended.payment.status is S.FAILED
    snap = ended.payment.snapshot
    assert (snap.provider_code, snap.provider_message, snap.settled_by) == ("2001", "wrong PIN", "sweep")
    assert ended.change is not None and ended.change.cause == "retry_window"
    assert _outcomes(ended.payment) == [(1, "ws_CO_1", "failed", "2001")]
    (note,) = ended.notifications
    assert (note.template, note.detail) == (NotificationTemplate.PAYMENT_FAILED, "wrong PIN")

    # the provider's word still wins: the first push's success after the window
    late = apply(ended.payment, status_event(REF, S.SUCCEEDED, provider_reference="ws_CO_1", seconds=60,
                                             provider_code="0", provider_message="processed"), policy=policy)
    assert late.payment is not None and late.payment.status is S.SUCCEEDED
    assert (late.payment.snapshot.late, late.payment.snapshot.late_from) == (True, S.FAILED)


def test_a_cancelled_prompt_with_no_retry_ends_cancelled_with_1032() -> None:
    waiting = apply(_pushed(), _declined_1032(_pushed())).payment
    assert waiting is not None
    ended = apply(waiting, ExpirePayment(event_id="w", occurred_at=at(190), reference=REF))
    assert ended.payment is not None and ended.payment.status is S.CANCELLED
    snap = ended.payment.snapshot
    assert (snap.provider_code, snap.provider_message) == ("1032", CANCELLED_BY_USER)
    assert ended.notifications == ()  # as a 1032 that ends the payment at once


def test_a_success_for_the_declined_attempt_during_the_window_wins() -> None:
    waiting = apply(_pushed(), _declined_1032(_pushed())).payment
    assert waiting is not None
    paid = apply(waiting, status_event(REF, S.SUCCEEDED, provider_reference="ws_CO_1", seconds=50,
                                       provider_code="0", provider_message="processed"))
    assert paid.payment is not None and paid.payment.status is S.SUCCEEDED
    assert _outcomes(paid.payment) == [(1, "ws_CO_1", "succeeded", "0")]


def test_the_retry_window_is_a_setting() -> None:
    assert DeadlinePolicy().retry_window_s == 180

    class Configured:
        mobile_retry_window_s = 30

    assert DeadlinePolicy.from_settings(Configured()).retry_window_s == 30
    assert DeadlinePolicy(retry_window_s=30).retry_deadline(at(0)) == at(0) + timedelta(seconds=30)


@pytest.mark.parametrize(("provider", "status", "code", "expected"), [
    (Provider.MPESA, S.FAILED, "1", True), (Provider.MPESA, S.CANCELLED, "1032", True),
    (Provider.MPESA, S.FAILED, "2001", True), (Provider.MPESA, S.FAILED, "1025", False),
    (Provider.MPESA, S.EXPIRED, "1037", False), (Provider.MPESA, S.FAILED, "1001", False),
    (Provider.AIRTEL, S.FAILED, "TF", True), (Provider.AIRTEL, S.FAILED, "tf", True),
    (Provider.AIRTEL, S.EXPIRED, "TE", False), (Provider.STRIPE, S.FAILED, "card_declined", False),
])
def test_which_codes_are_the_customers(provider, status, code, expected) -> None:
    event = status_event(REF, status, provider=provider, provider_code=code)
    assert customer_may_retry(event) is expected
