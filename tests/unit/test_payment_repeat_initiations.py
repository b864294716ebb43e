"""A provider command executed twice (a worker died between the call and its record): both
prompts belong to the one attempt, either callback settles the payment, and a second
success is flagged as a double charge, never dropped (trailpay.domain.repeat_initiations)."""

from __future__ import annotations

import pytest

from tests.unit.payment_factory import REF, created, status_event
from trailpay.domain.commands import command_id
from trailpay.domain.errors import Suspicious
from trailpay.domain.events import Money, ProviderCommandKind, ProviderEvent, ProviderEventKind
from trailpay.domain.payment import Payment, Verdict
from trailpay.domain.state_machine import apply
from trailpay.domain.status import PaymentStatus

S = PaymentStatus
INITIATE = command_id(REF, 1, ProviderCommandKind.INITIATE)


def _answer(reference: str, event_id: str, seconds: float) -> ProviderEvent:
    """Our dispatcher's answer to the INITIATE command: STK push sent, ``reference``."""
    return status_event(REF, S.PENDING, event_id=event_id, provider_reference=reference,
                        source="dispatcher", command_id=INITIATE, seconds=seconds)


def _applied(payment: Payment, event: ProviderEvent) -> Payment:
    outcome = apply(payment, event)
    assert outcome.verdict is Verdict.APPLIED, outcome.reason
    assert outcome.payment is not None
    return outcome.payment


def _pushed_twice() -> Payment:
    """KES 10.00 by M-Pesa, INITIATE executed twice: ws_CO_1, then ws_CO_2 (the repeat)."""
    first = _applied(created(), _answer("ws_CO_1", f"cmd:{INITIATE}", 1))
    return _applied(first, _answer("ws_CO_2", f"cmd:{INITIATE}:repeat-1", 2))


def test_the_repeat_answer_is_recorded_on_the_same_attempt():
    payment = _pushed_twice()
    snap = payment.snapshot
    assert snap.status is S.PENDING
    assert snap.provider_reference == "ws_CO_1"
    assert len(snap.attempts) == 1
    assert snap.attempts[0].provider_reference == "ws_CO_1"
    assert snap.attempts[0].repeat_references == ("ws_CO_2",)


def test_the_second_prompt_paid_first_becomes_the_reference():
    paid = _applied(_pushed_twice(), status_event(REF, S.SUCCEEDED, provider_reference="ws_CO_2", seconds=5))
    snap = paid.snapshot
    assert snap.status is S.SUCCEEDED
    assert snap.provider_reference == "ws_CO_2"
    assert (snap.attempts[0].provider_reference, snap.attempts[0].repeat_references) == ("ws_CO_2", ("ws_CO_1",))
    assert snap.attempts[0].outcome == "succeeded"


@pytest.mark.parametrize(("first", "second"), [("ws_CO_1", "ws_CO_2"), ("ws_CO_2", "ws_CO_1")])
def test_both_prompts_paid_flags_a_double_charge(first, second):
    paid = _applied(_pushed_twice(), status_event(REF, S.SUCCEEDED, provider_reference=first, seconds=5))
    outcome = apply(paid, status_event(REF, S.SUCCEEDED, provider_reference=second, seconds=6))
    assert outcome.verdict is Verdict.APPLIED
    assert outcome.change is not None and outcome.payment is not None
    assert (outcome.change.cause, outcome.change.from_status, outcome.change.to_status) == (
        "double_charge", S.SUCCEEDED, S.SUCCEEDED)
    snap = outcome.payment.snapshot
    assert snap.provider_reference == first
    assert snap.attempts[0].double_charged == (second,)
    assert outcome.commands == ()
    again = apply(outcome.payment, status_event(REF, S.SUCCEEDED, provider_reference=second, seconds=7))
    assert again.verdict is Verdict.STALE


def test_the_same_success_reported_twice_is_no_double_charge():
    paid = _applied(_pushed_twice(), status_event(REF, S.SUCCEEDED, provider_reference="ws_CO_1", seconds=5))
    again = apply(paid, status_event(REF, S.SUCCEEDED, provider_reference="ws_CO_1", seconds=6,
                                     source="sweep"))
    assert again.verdict is Verdict.STALE


def test_the_repeat_prompt_refused_leaves_the_first_one_deciding():
    refused = status_event(REF, S.FAILED, provider_reference="ws_CO_2", provider_code="1001", seconds=3)
    assert apply(_pushed_twice(), refused).verdict is Verdict.STALE
    paid = _applied(_pushed_twice(), status_event(REF, S.SUCCEEDED, provider_reference="ws_CO_1", seconds=5))
    assert paid.snapshot.status is S.SUCCEEDED


def test_a_repeat_the_provider_refused_outright_changes_nothing():
    first = _applied(created(), _answer("ws_CO_1", f"cmd:{INITIATE}", 1))
    refused = ProviderEvent(event_id=f"cmd:{INITIATE}:repeat-1", occurred_at=first.snapshot.updated_at,
                            kind=ProviderEventKind.COMMAND_FAILED, reference=REF,
                            provider=first.snapshot.provider, status=S.FAILED, source="dispatcher",
                            command_id=INITIATE, provider_code="500.001.1001")
    outcome = apply(first, refused)
    assert outcome.verdict is Verdict.STALE
    assert first.snapshot.status is S.PENDING


def test_a_callback_naming_a_third_reference_is_still_suspicious():
    with pytest.raises(Suspicious) as err:
        apply(_pushed_twice(), status_event(REF, S.SUCCEEDED, provider_reference="ws_CO_3", seconds=5))
    assert err.value.reason == "reference_mismatch"


def test_only_our_dispatcher_adds_a_reference():
    first = _applied(created(), _answer("ws_CO_1", f"cmd:{INITIATE}", 1))
    forged = status_event(REF, S.PENDING, provider_reference="ws_CO_2", source="webhook",
                          command_id=INITIATE, seconds=2)
    with pytest.raises(Suspicious):
        apply(first, forged)


def test_a_double_charge_must_state_the_amount_asked_for():
    paid = _applied(_pushed_twice(), status_event(REF, S.SUCCEEDED, provider_reference="ws_CO_1", seconds=5))
    with pytest.raises(Suspicious) as err:
        apply(paid, status_event(REF, S.SUCCEEDED, provider_reference="ws_CO_2", seconds=6,
                                 amount=Money(amount=1, currency="KES")))
    assert err.value.reason == "amount_mismatch"
