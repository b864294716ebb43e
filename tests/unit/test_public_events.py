"""The public event contract: which facts each state change is, deterministic ids, no
personal data, and a JSON round trip."""

from __future__ import annotations

import json

from tests.unit.payment_factory import REF, at, cancel, create, refund, refund_event, status_event
from trailpay import codec, topics
from trailpay.domain.events import ExpirePayment, PaymentStateChanged
from trailpay.domain.payment import Payment
from trailpay.domain.public_events import PublicPaymentEvent, event_id_for, public_events
from trailpay.domain.snapshot_update import revise
from trailpay.domain.state_machine import apply
from trailpay.domain.status import PaymentStatus

S = PaymentStatus


def step(payment: Payment | None, record: object) -> tuple[Payment, list[PublicPaymentEvent]]:
    outcome = apply(payment, record)  # type: ignore[arg-type]
    assert outcome.payment is not None and outcome.change is not None
    return outcome.payment, list(public_events(outcome.change))


def types(events: list[PublicPaymentEvent]) -> list[str]:
    return [e.type.value for e in events]


def paid() -> tuple[Payment, list[PublicPaymentEvent]]:
    payment, first = step(None, create(REF))
    payment, second = step(payment, status_event(REF, S.SUCCEEDED, seconds=5, provider_code="0",
                                                 provider_reference="ws_CO_1"))
    return payment, first + second


def test_created_then_succeeded_with_the_contract_fields() -> None:
    _payment, events = paid()
    assert types(events) == ["payment.created", "payment.succeeded"]
    succeeded = events[1]
    assert succeeded.model_dump(mode="json") == {
        "schema_version": 1,
        "event_id": succeeded.event_id,
        "type": "payment.succeeded",
        "occurred_at": "2025-03-01T08:00:05Z",
        "reference": "TPTEST0000000000000001",
        "booking_id": "bk-1",
        "amount": 1000,
        "currency": "KES",
        "provider": "mpesa",
        "method": "mobile_money",
        "status": "succeeded",
        "attempts": 1,
        "refunded_amount": 0,
        "payment_version": 2,
        "late_from": None,
        "provider_code": "0",
        "refund": None,
    }
    assert succeeded.key == "bk-1"


def test_event_ids_are_deterministic_and_distinct() -> None:
    _p, first = paid()
    _p, again = paid()
    assert [e.event_id for e in first] == [e.event_id for e in again]
    assert len({e.event_id for e in first}) == 2
    assert first[0].event_id == event_id_for(REF, first[0].type)
    assert len(first[0].event_id) == 32


def test_refunds_partial_failed_then_whole() -> None:
    payment, _ = paid()
    payment, events = step(payment, refund(REF, "rf-1", 300, seconds=10))
    assert events == []  # asked for: not a fact yet
    payment, events = step(payment, refund_event(REF, "rf-1", seconds=20))
    assert types(events) == ["payment.partially_refunded"]
    assert events[0].refund is not None and events[0].refund.model_dump() == {
        "refund_id": "rf-1", "amount": 300, "currency": "KES", "status": "succeeded",
        "failure_code": None}
    assert events[0].refunded_amount == 300 and events[0].status is S.PARTIALLY_REFUNDED
    payment, _ = step(payment, refund(REF, "rf-2", 200, seconds=30))
    payment, events = step(payment, refund_event(REF, "rf-2", succeeded=False, seconds=40))
    assert types(events) == ["refund.failed"]
    assert events[0].refund is not None and events[0].refund.refund_id == "rf-2"
    assert events[0].status is S.PARTIALLY_REFUNDED
    payment, _ = step(payment, refund(REF, "rf-3", 200, seconds=50))
    payment, events = step(payment, refund_event(REF, "rf-3", seconds=60))
    assert types(events) == ["payment.partially_refunded"]
    assert events[0].refund is not None and events[0].refund.refund_id == "rf-3"
    payment, _ = step(payment, refund(REF, "rf-4", None, seconds=70))
    payment, events = step(payment, refund_event(REF, "rf-4", seconds=80))
    assert types(events) == ["payment.refunded"]
    assert events[0].refunded_amount == 1000 and events[0].refund is not None
    assert events[0].refund.amount == 500


def test_failed_expired_cancelled() -> None:
    payment, _ = step(None, create(REF))
    # 1025: Daraja could not send the push, which ends the payment (not the customer's decline)
    _p, events = step(payment, status_event(REF, S.FAILED, seconds=3, provider_code="1025"))
    assert types(events) == ["payment.failed"]
    assert events[0].provider_code == "1025"
    _p, events = step(payment, ExpirePayment(event_id="exp-1", occurred_at=at(200), reference=REF))
    assert types(events) == ["payment.expired"]
    _p, events = step(payment, cancel(REF))
    assert types(events) == ["payment.cancelled"]


def test_a_declined_attempt_the_customer_may_retry_is_no_public_fact() -> None:
    payment, _ = step(None, create(REF))
    # 1: insufficient funds; the payment stays open for a retry (TRAILPAY_MOBILE_RETRY_WINDOW_S)
    payment, events = step(payment, status_event(REF, S.FAILED, seconds=3, provider_code="1"))
    assert events == [] and payment.status is S.PENDING


def test_money_after_a_failure_is_a_late_success() -> None:
    payment, _ = step(None, create(REF))
    payment, _ = step(payment, status_event(REF, S.FAILED, seconds=3, provider_code="1025"))
    payment, events = step(payment, status_event(REF, S.SUCCEEDED, seconds=300, provider_code="0",
                                                 provider_reference="ws_CO_1"))
    assert types(events) == ["payment.late_succeeded"]
    assert events[0].late_from is S.FAILED and events[0].status is S.SUCCEEDED


def test_no_personal_data_and_a_round_trip() -> None:
    payment, events = paid()
    payment, more = step(payment, refund(REF, "rf-1", 300, seconds=10))
    payment, more = step(payment, refund_event(REF, "rf-1", seconds=20))
    for event in events + more:
        text = event.model_dump_json()
        for personal in ("254700000010", "walker@example.com", "Kilimanjaro", "user-1",
                         "client_secret", "phone", "email"):
            assert personal not in text
        decoded = codec.decode(topics.PAYMENT_EVENTS, text.encode())
        assert decoded == event
        assert json.loads(text)["occurred_at"].endswith("Z")


def test_secrets_on_the_internal_snapshot_stay_there() -> None:
    payment, _ = step(None, create(REF))
    change = apply(payment, status_event(REF, S.SUCCEEDED, seconds=5, provider_code="0",
                                         provider_reference="ws_CO_1")).change
    assert isinstance(change, PaymentStateChanged)
    leaky = change.model_copy(update={"payment": revise(change.payment, {
        "client_secret": "pi_1_secret_abc", "customer_id": "cus_1", "payment_method_id": "pm_1"})})
    (event,) = public_events(leaky)
    text = event.model_dump_json()
    for secret in ("pi_1_secret_abc", "cus_1", "pm_1", "254700000010"):
        assert secret not in text
