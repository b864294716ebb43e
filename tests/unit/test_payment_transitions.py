"""The payment status transition table and what a provider status event does in every
status, both written out by hand as matrices (the oracle is the text, not the table under test)."""

from __future__ import annotations

import pytest

from tests.unit.payment_factory import REF, cancel, created, in_status, status_event
from trailpay.domain.attempts import LateDecision
from trailpay.domain.errors import IllegalTransition
from trailpay.domain.events import NotificationTemplate, ProviderCommandKind, stable_id
from trailpay.domain.payment import Verdict
from trailpay.domain.state_machine import apply
from trailpay.domain.status import PaymentStatus, transition

S = PaymentStatus

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
