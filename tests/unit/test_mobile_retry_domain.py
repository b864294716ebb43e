"""Mobile money in the state machine (#15 items 1, 3, 7): a push Daraja refused because
another prompt is open ends the attempt, not the payment, so the customer can retry; an
unauthenticated success callback is confirmed by an STK Query before it is applied."""

from __future__ import annotations

from tests.unit.payment_factory import at, created, status_event
from trailpay.domain.events import (
    Provider,
    ProviderCommandKind,
    ProviderEvent,
    ProviderEventKind,
    RetryPayment,
    stable_id,
)
from trailpay.domain.payment import Payment
from trailpay.domain.rules import PaymentRules
from trailpay.domain.state_machine import apply
from trailpay.domain.status import PaymentStatus

S = PaymentStatus
REF = "TPTEST0000000000000001"
LOCKED = "Unable to lock subscriber, a transaction is already in process for the current subscriber"
CONFIRMING = PaymentRules(confirm_by_query=frozenset({Provider.MPESA}))


def _push_refused(seconds: float, code: str = "500.001.1001", command_version: int = 1) -> ProviderEvent:
    """What the dispatcher reports when Daraja refuses the STK Push (``refused()``)."""
    return ProviderEvent(event_id=f"cmd:push-{seconds}", occurred_at=at(seconds),
                         kind=ProviderEventKind.COMMAND_FAILED, reference=REF, provider=Provider.MPESA,
                         status=S.FAILED, provider_code=code, provider_message=LOCKED, source="dispatcher",
                         command_id=stable_id(REF, command_version, "initiate"))


def _outcomes(payment: Payment) -> list[tuple[int, str | None, str, str | None]]:
    return [(a.number, a.provider_reference, a.outcome, a.provider_code) for a in payment.snapshot.attempts]


def test_a_locked_subscriber_fails_the_attempt_and_the_retry_pays() -> None:
    refused = apply(created(REF), _push_refused(2))
    assert refused.payment is not None and refused.payment.status is S.PENDING
    assert _outcomes(refused.payment) == [(1, None, "failed", "500.001.1001")]
    assert refused.commands == ()
    assert refused.payment.snapshot.deadline_at == at(2 + 180)  # the retry window, not the 120 s push window

    retried = apply(refused.payment, RetryPayment(event_id="retry-1", occurred_at=at(10), reference=REF))
    assert retried.payment is not None and [c.kind for c in retried.commands] == [ProviderCommandKind.INITIATE]
    pushed = apply(retried.payment, status_event(REF, S.PENDING, provider_reference="ws_CO_2",
                                                 source="dispatcher", seconds=11))
    assert pushed.payment is not None
    paid = apply(pushed.payment, status_event(REF, S.SUCCEEDED, provider_reference="ws_CO_2", seconds=20))
    assert paid.payment is not None and paid.payment.status is S.SUCCEEDED
    assert _outcomes(paid.payment) == [(1, None, "failed", "500.001.1001"), (2, "ws_CO_2", "succeeded", None)]


def test_a_locked_subscriber_on_the_last_attempt_fails_the_payment_without_a_cancel() -> None:
    outcome = apply(created(REF), _push_refused(2), rules=PaymentRules(max_attempts=1))
    assert outcome.payment is not None and outcome.payment.status is S.FAILED
    assert _outcomes(outcome.payment) == [(1, None, "failed", "500.001.1001")]
    assert outcome.commands == ()  # an STK push cannot be cancelled at Daraja


def test_other_push_refusals_still_fail_the_payment() -> None:
    outcome = apply(created(REF), _push_refused(2, code="400.002.02"))
    assert outcome.payment is not None and outcome.payment.status is S.FAILED


def test_a_success_callback_is_confirmed_by_a_query_first() -> None:
    pushed = apply(created(REF), status_event(REF, S.PENDING, provider_reference="ws_CO_1",
                                              source="dispatcher")).payment
    assert pushed is not None
    outcome = apply(pushed, status_event(REF, S.SUCCEEDED, provider_reference="ws_CO_1", seconds=5),
                    rules=CONFIRMING)
    assert outcome.payment is not None and outcome.payment.status is S.PENDING
    (query,) = outcome.commands
    assert (query.kind, query.provider_reference) == (ProviderCommandKind.QUERY, "ws_CO_1")
    assert query.event_id == stable_id(REF, 3, "query")
    # the query's answer (our own call to Daraja) is applied
    answer = status_event(REF, S.SUCCEEDED, provider_reference="ws_CO_1", seconds=6, source="sweep",
                          amount=None)
    paid = apply(outcome.payment, answer, rules=CONFIRMING)
    assert paid.payment is not None and paid.payment.status is S.SUCCEEDED


def test_a_success_callback_for_an_earlier_push_queries_that_push() -> None:
    pushed = apply(created(REF), status_event(REF, S.PENDING, provider_reference="ws_CO_1",
                                              source="dispatcher")).payment
    retried = apply(pushed, RetryPayment(event_id="retry-1", occurred_at=at(3), reference=REF)).payment
    second = apply(retried, status_event(REF, S.PENDING, provider_reference="ws_CO_2", source="dispatcher",
                                         seconds=4)).payment
    assert second is not None
    outcome = apply(second, status_event(REF, S.SUCCEEDED, provider_reference="ws_CO_1", seconds=5),
                    rules=CONFIRMING)
    (query,) = outcome.commands
    assert query.provider_reference == "ws_CO_1"


def test_without_the_rule_a_success_callback_is_applied_at_once() -> None:
    pushed = apply(created(REF), status_event(REF, S.PENDING, provider_reference="ws_CO_1",
                                              source="dispatcher")).payment
    outcome = apply(pushed, status_event(REF, S.SUCCEEDED, provider_reference="ws_CO_1", seconds=5))
    assert outcome.payment is not None and outcome.payment.status is S.SUCCEEDED
    assert [c.kind for c in outcome.commands] == []
