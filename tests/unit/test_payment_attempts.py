"""Attempts: a decline the provider recovers from ends an attempt, not the payment."""

from __future__ import annotations

import pytest

from tests.unit.payment_factory import at, created, status_event
from trailpay.domain.errors import IllegalTransition
from trailpay.domain.events import (
    ConfirmPayment,
    NotificationTemplate,
    Provider,
    ProviderCommandKind,
    ProviderEvent,
    ProviderEventKind,
    RetryPayment,
    stable_id,
)
from trailpay.domain.payment import Payment, RequestRefused, Verdict
from trailpay.domain.rules import PaymentRules
from trailpay.domain.state_machine import apply
from trailpay.domain.status import PaymentStatus

S = PaymentStatus
REF = "TPTEST0000000000000001"
STRIPE = Provider.STRIPE


def _stripe_pending() -> Payment:
    """A card payment whose PaymentIntent pi_1 waits for a payment method."""
    outcome = apply(created(REF, provider=STRIPE),
                    status_event(REF, S.PENDING, provider=STRIPE, source="dispatcher", seconds=1,
                                 provider_reference="pi_1", provider_status="requires_payment_method",
                                 client_secret="pi_1_secret_a"))
    assert outcome.payment is not None
    return outcome.payment


def _declined(seconds: float, event_id: str, code: str = "card_declined") -> ProviderEvent:
    return status_event(REF, S.FAILED, provider=STRIPE, seconds=seconds, event_id=event_id,
                        provider_reference="pi_1", provider_status="requires_payment_method",
                        provider_code=code, provider_message="Your card was declined.")


def _confirm(seconds: float, method: str) -> ConfirmPayment:
    return ConfirmPayment(event_id=f"confirm-{seconds}", occurred_at=at(seconds), reference=REF,
                          payment_method_id=method)


def _outcomes(payment: Payment) -> list[tuple[int, str | None, str, str | None]]:
    return [(a.number, a.provider_reference, a.outcome, a.provider_code) for a in payment.snapshot.attempts]


def test_create_opens_the_first_attempt():
    payment = created(REF)
    (attempt,) = payment.snapshot.attempts
    assert (attempt.number, attempt.provider_reference, attempt.method, attempt.outcome,
            attempt.started_at, attempt.ended_at) == (1, None, "mobile_money", "open", at(0), None)
    pending = apply(payment, status_event(REF, S.PENDING, provider_reference="ws_CO_1")).payment
    assert pending is not None and _outcomes(pending) == [(1, "ws_CO_1", "open", None)]


def test_stripe_decline_is_a_failed_attempt_and_the_payment_stays_open():
    outcome = apply(_stripe_pending(), _declined(10, "evt_decline_1"))
    assert outcome.payment is not None and outcome.payment.status is S.PENDING
    assert outcome.notifications == () and outcome.commands == ()
    assert _outcomes(outcome.payment) == [(1, "pi_1", "failed", "card_declined")]
    assert outcome.payment.snapshot.attempts[0].ended_at == at(10)
    assert outcome.payment.snapshot.deadline_at == at(10 + 86_400)  # a new day to retry
    # the dispatcher's report of the same decline is stale: the attempt already ended
    again = apply(outcome.payment, _declined(11, "cmd:confirm-1"))
    assert again.verdict is Verdict.STALE


def test_confirm_after_a_decline_starts_the_next_attempt_and_it_succeeds():
    declined = apply(_stripe_pending(), _declined(10, "evt_decline_1")).payment
    confirmed = apply(declined, _confirm(20, "pm_card_visa"))
    assert confirmed.payment is not None and confirmed.payment.status is S.PENDING
    assert _outcomes(confirmed.payment) == [(1, "pi_1", "failed", "card_declined"), (2, None, "open", None)]
    assert confirmed.payment.snapshot.attempts[1].method == "pm_card_visa"
    (command,) = confirmed.commands
    assert (command.kind, command.payment_method_id, command.provider_reference) == (
        ProviderCommandKind.CONFIRM, "pm_card_visa", "pi_1")
    paid = apply(confirmed.payment, status_event(REF, S.SUCCEEDED, provider=STRIPE, seconds=25,
                                                 provider_reference="pi_1", provider_status="succeeded"))
    assert paid.payment is not None and paid.payment.status is S.SUCCEEDED
    assert _outcomes(paid.payment) == [(1, "pi_1", "failed", "card_declined"), (2, None, "succeeded", None)]
    assert paid.payment.snapshot.late_from is None
    assert [n.template for n in paid.notifications] == [NotificationTemplate.PAYMENT_SUCCEEDED]


def test_a_stripe_js_retry_we_did_not_start_is_an_attempt_of_its_own():
    declined = apply(_stripe_pending(), _declined(10, "evt_decline_1")).payment
    paid = apply(declined, status_event(REF, S.SUCCEEDED, provider=STRIPE, seconds=30,
                                        provider_reference="pi_1", payment_method_id="pm_other"))
    assert paid.payment is not None and paid.payment.status is S.SUCCEEDED
    assert _outcomes(paid.payment) == [(1, "pi_1", "failed", "card_declined"), (2, "pi_1", "succeeded", None)]
    assert paid.payment.snapshot.attempts[1].method == "pm_other"


def test_the_last_attempt_fails_the_payment_and_cancels_the_payment_intent():
    rules = PaymentRules(max_attempts=2)
    first = apply(_stripe_pending(), _declined(10, "evt_1"), rules=rules).payment
    second = apply(first, _confirm(20, "pm_card_chargeDeclined"), rules=rules).payment
    final = apply(second, _declined(30, "evt_2", code="generic_decline"), rules=rules)
    assert final.payment is not None and final.payment.status is S.FAILED
    assert _outcomes(final.payment) == [(1, "pi_1", "failed", "card_declined"),
                                        (2, None, "failed", "generic_decline")]
    (command,) = final.commands
    assert (command.kind, command.reason, command.provider_reference) == (
        ProviderCommandKind.CANCEL, "abandoned", "pi_1")
    assert [n.template for n in final.notifications] == [NotificationTemplate.PAYMENT_FAILED]
    with pytest.raises(IllegalTransition):
        apply(final.payment, _confirm(40, "pm_card_visa"), rules=rules)


def test_one_attempt_allowed_means_the_first_decline_is_final():
    outcome = apply(_stripe_pending(), _declined(10, "evt_1"), rules=PaymentRules(max_attempts=1))
    assert outcome.payment is not None and outcome.payment.status is S.FAILED
    assert [c.kind for c in outcome.commands] == [ProviderCommandKind.CANCEL]
    with pytest.raises(ValueError, match="at least 1"):
        PaymentRules(max_attempts=0)


def test_a_declined_confirm_reported_by_the_dispatcher_is_a_failed_attempt():
    refused = ProviderEvent(event_id="cmd:c1", occurred_at=at(12), kind=ProviderEventKind.COMMAND_FAILED,
                            reference=REF, provider=STRIPE, provider_code="insufficient_funds",
                            provider_message="Your card has insufficient funds.",
                            provider_reference="pi_1", source="dispatcher")
    outcome = apply(_stripe_pending(), refused)
    assert outcome.payment is not None and outcome.payment.status is S.PENDING
    assert _outcomes(outcome.payment) == [(1, "pi_1", "failed", "insufficient_funds")]


def test_an_initiate_refused_before_any_payment_intent_fails_the_payment():
    refused = ProviderEvent(event_id="cmd:i1", occurred_at=at(2), kind=ProviderEventKind.COMMAND_FAILED,
                            reference=REF, provider=STRIPE, status=S.FAILED,
                            provider_code="amount_too_small", provider_message="Amount too small",
                            source="dispatcher")
    outcome = apply(created(REF, provider=STRIPE), refused)
    assert outcome.payment is not None and outcome.payment.status is S.FAILED
    assert outcome.commands == ()


def test_mobile_money_failure_is_final_on_the_last_attempt():
    # one attempt allowed (with attempts left, a wrong PIN waits for a retry: test_mobile_declines.py)
    outcome = apply(created(REF), status_event(REF, S.FAILED, provider_reference="ws_CO_1",
                                               provider_code="2001", provider_message="wrong PIN"),
                    rules=PaymentRules(max_attempts=1))
    assert outcome.payment is not None and outcome.payment.status is S.FAILED
    assert _outcomes(outcome.payment) == [(1, "ws_CO_1", "failed", "2001")]
    with pytest.raises(IllegalTransition):
        apply(outcome.payment, RetryPayment(event_id="r1", occurred_at=at(5), reference=REF))


def _retry(seconds: float) -> RetryPayment:
    return RetryPayment(event_id=f"retry-{seconds}", occurred_at=at(seconds), reference=REF)


def test_retry_starts_a_new_push_with_a_new_reference():
    pushed = apply(created(REF), status_event(REF, S.PENDING, provider_reference="ws_CO_1",
                                              source="dispatcher")).payment
    outcome = apply(pushed, _retry(40))
    assert outcome.payment is not None and outcome.payment.status is S.PENDING
    snap = outcome.payment.snapshot
    assert (snap.provider_reference, snap.deadline_at) == (None, at(40 + 120))
    assert _outcomes(outcome.payment) == [(1, "ws_CO_1", "superseded", None), (2, None, "open", None)]
    (command,) = outcome.commands
    assert command.kind is ProviderCommandKind.INITIATE and command.event_id == stable_id(REF, 3, "initiate")
    second = apply(outcome.payment, status_event(REF, S.PENDING, provider_reference="ws_CO_2",
                                                 source="dispatcher", seconds=41)).payment
    assert second is not None and second.snapshot.provider_reference == "ws_CO_2"
    assert _outcomes(second) == [(1, "ws_CO_1", "superseded", None), (2, "ws_CO_2", "open", None)]
    # the first push's late failure is stale; its late success is applied (the money moved)
    assert apply(second, status_event(REF, S.FAILED, provider_reference="ws_CO_1", seconds=50)).verdict \
        is Verdict.STALE
    paid = apply(second, status_event(REF, S.SUCCEEDED, provider_reference="ws_CO_1", seconds=55)).payment
    assert paid is not None and paid.status is S.SUCCEEDED and paid.snapshot.provider_reference == "ws_CO_1"
    assert _outcomes(paid) == [(1, "ws_CO_1", "succeeded", None), (2, "ws_CO_2", "superseded", None)]


def test_an_old_reference_is_not_adopted_by_the_new_attempt():
    pushed = apply(created(REF), status_event(REF, S.PENDING, provider_reference="ws_CO_1")).payment
    retried = apply(pushed, _retry(40)).payment
    late = apply(retried, status_event(REF, S.PROCESSING, provider_reference="ws_CO_1", seconds=42))
    assert late.verdict is Verdict.APPLIED and late.payment is not None
    assert late.payment.snapshot.provider_reference is None  # still waiting for push 2's reference


def test_retry_is_bounded_and_for_mobile_money_only():
    payment = created(REF)
    rules = PaymentRules(max_attempts=2)
    payment = apply(payment, _retry(10), rules=rules).payment
    with pytest.raises(RequestRefused, match="no attempts left"):
        apply(payment, _retry(20), rules=rules)
    with pytest.raises(RequestRefused, match="confirming"):
        apply(created(REF, provider=STRIPE), _retry(10))


def test_the_first_push_answer_after_a_retry_names_the_first_attempt():
    retried = apply(created(REF), _retry(3)).payment
    first = status_event(REF, S.PENDING, source="dispatcher", seconds=4, provider_reference="ws_CO_1",
                         command_id=stable_id(REF, 1, "initiate"))
    one = apply(retried, first).payment
    assert one is not None and one.snapshot.provider_reference is None
    assert _outcomes(one) == [(1, "ws_CO_1", "superseded", None), (2, None, "open", None)]
    second = status_event(REF, S.PENDING, source="dispatcher", seconds=5, provider_reference="ws_CO_2",
                          command_id=stable_id(REF, 2, "initiate"))
    two = apply(one, second).payment
    assert two is not None and two.snapshot.provider_reference == "ws_CO_2"
    assert _outcomes(two) == [(1, "ws_CO_1", "superseded", None), (2, "ws_CO_2", "open", None)]


def test_stripe_progress_from_before_a_decline_is_stale():
    declined = apply(_stripe_pending(), _declined(10, "evt_decline_1")).payment
    old = status_event(REF, S.PROCESSING, provider=STRIPE, seconds=9, provider_reference="pi_1",
                       provider_status="requires_action")
    assert apply(declined, old).verdict is Verdict.STALE
    new = apply(declined, status_event(REF, S.PROCESSING, provider=STRIPE, seconds=15,
                                       provider_reference="pi_1", provider_status="requires_action"))
    assert new.payment is not None and new.payment.status is S.PROCESSING
    assert _outcomes(new.payment) == [(1, "pi_1", "failed", "card_declined"), (2, "pi_1", "open", None)]


def _second_attempt_open() -> Payment:
    """Attempt 1 declined (reported first by the confirm's answer at 10 s), attempt 2 started
    by a confirm with another card at 20 s."""
    first = _stripe_pending().snapshot.attempts[0]
    assert first.command_id is not None
    declined = apply(_stripe_pending(), status_event(
        REF, S.FAILED, provider=STRIPE, seconds=10, event_id="cmd:initiate-answer", source="dispatcher",
        command_id=first.command_id, provider_reference="pi_1", provider_status="requires_payment_method",
        provider_code="card_declined", provider_message="Your card was declined.")).payment
    confirmed = apply(declined, _confirm(20, "pm_card_visa")).payment
    assert confirmed is not None
    assert _outcomes(confirmed) == [(1, "pi_1", "failed", "card_declined"), (2, None, "open", None)]
    return confirmed


def test_the_webhook_copy_of_the_first_decline_after_the_next_confirm_changes_nothing():
    # Seen in the suite: attempts failed, failed, succeeded. Stripe's payment_failed webhook
    # of the first decline (created at 9 s, before attempt 1 ended) came after the confirm.
    outcome = apply(_second_attempt_open(), _declined(9, "stripe:evt_decline_1"))
    assert outcome.payment is not None and outcome.payment.status is S.PENDING
    assert _outcomes(outcome.payment) == [(1, "pi_1", "failed", "card_declined"), (2, None, "open", None)]
    assert outcome.commands == () and outcome.notifications == ()


def test_the_dispatchers_copy_of_an_earlier_decline_after_the_next_confirm_changes_nothing():
    payment = _second_attempt_open()
    first = payment.snapshot.attempts[0]
    outcome = apply(payment, status_event(
        REF, S.FAILED, provider=STRIPE, seconds=22, event_id="cmd:initiate-answer-again", source="dispatcher",
        command_id=first.command_id, provider_reference="pi_1", provider_status="requires_payment_method",
        provider_code="card_declined", provider_message="Your card was declined."))
    assert outcome.payment is not None and outcome.payment.status is S.PENDING
    assert _outcomes(outcome.payment) == [(1, "pi_1", "failed", "card_declined"), (2, None, "open", None)]


def test_a_decline_of_the_new_attempt_still_ends_it():
    payment = _second_attempt_open()
    webhook = apply(payment, _declined(25, "stripe:evt_decline_2", code="insufficient_funds"))
    assert webhook.payment is not None and webhook.payment.status is S.PENDING
    assert _outcomes(webhook.payment) == [(1, "pi_1", "failed", "card_declined"),
                                          (2, None, "failed", "insufficient_funds")]
    second = payment.snapshot.attempts[1]
    answer = apply(payment, status_event(
        REF, S.FAILED, provider=STRIPE, seconds=21, event_id="cmd:confirm-answer", source="dispatcher",
        command_id=second.command_id, provider_reference="pi_1", provider_status="requires_payment_method",
        provider_code="generic_decline", provider_message="Your card was declined."))
    assert answer.payment is not None
    assert _outcomes(answer.payment) == [(1, "pi_1", "failed", "card_declined"),
                                         (2, None, "failed", "generic_decline")]
