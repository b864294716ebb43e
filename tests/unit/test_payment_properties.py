"""Property: order and duplication of a payment's inputs do not change what it ends as,
and re-processing (after a crash, from any committed offset) never emits a state-change id
with new content.

A *valid* history is: the create request; the provider's status reports (each maybe twice,
from the webhook and from the dispatcher, with the same words); then refund requests, each
followed at some point by its outcome. Provider reports may arrive in any order and before
the create (they are parked, as the agent does). Refund outcomes follow their request
(the dispatcher only refunds what was asked).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.payment_factory import create, refund, refund_event, status_event
from trailpay.domain.events import CreatePayment, Provider
from trailpay.domain.payment import Payment, PaymentInput, Verdict
from trailpay.domain.state_machine import apply
from trailpay.domain.status import PaymentStatus

S = PaymentStatus
REF = "TPPROP00000000000000001"
AMOUNT = 1000


@dataclass
class Driver:
    """The agent's loop in miniature: apply, park events for an unknown payment, replay them
    after the create, keep every emitted state change by id."""

    payment: Payment | None = None
    parked: list[PaymentInput] = field(default_factory=list)
    changes: dict[str, str] = field(default_factory=dict)

    def feed(self, record: PaymentInput) -> None:
        outcome = apply(self.payment, record)
        if outcome.verdict is Verdict.PARK:
            self.parked.append(record)
            return
        if not outcome.applied:
            return
        assert outcome.change is not None
        content = outcome.change.model_dump_json()
        previous = self.changes.setdefault(outcome.change.event_id, content)
        assert previous == content, f"{outcome.change.event_id} emitted with two contents"
        self.payment = outcome.payment
        if isinstance(record, CreatePayment):
            waiting, self.parked = self.parked, []
            for parked in waiting:
                self.feed(parked)

    def copy(self) -> Driver:
        return Driver(self.payment, list(self.parked), dict(self.changes))


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[PaymentInput], dict[str, object]]:
    provider = draw(st.sampled_from(list(Provider)))
    end = draw(st.sampled_from([S.SUCCEEDED, S.FAILED, S.CANCELLED, S.EXPIRED]))
    steps = [S.PENDING] + ([S.PROCESSING] if draw(st.booleans()) else []) + [end]
    reports: list[PaymentInput] = []
    for i, status in enumerate(steps):
        words = {"provider_code": f"{status.value}-code", "provider_message": f"{status.value} text",
                 "provider_reference": "prov-ref-1"}
        if status is S.PENDING and provider is Provider.STRIPE:
            words["client_secret"] = "pi_1_secret"
        reports.append(status_event(REF, status, seconds=10 + i, provider=provider,
                                    event_id=f"webhook-{status.value}", **words))
        if draw(st.booleans()):  # the same fact, also from the dispatcher
            reports.append(status_event(REF, status, seconds=11 + i, provider=provider, source="dispatcher",
                                        event_id=f"cmd-{status.value}", **words))
    first = draw(st.permutations([create(REF, provider=provider, amount=AMOUNT), *reports]))

    later: list[PaymentInput] = []
    refunded = 0
    refunds: dict[str, str] = {}
    if end is S.SUCCEEDED:
        # never more than captured in total, so no order makes one of them an over-refund
        amounts = draw(st.lists(st.sampled_from([100, 250, 333, 500]), max_size=3)
                       .filter(lambda xs: sum(xs) <= AMOUNT))
        pairs = []
        for n, amount in enumerate(amounts):
            ok = draw(st.booleans())
            refunded += amount if ok else 0
            refunds[f"rf{n}"] = "succeeded" if ok else "failed"
            pairs.append((refund(REF, f"rf{n}", amount, seconds=100 + n),
                          refund_event(REF, f"rf{n}", succeeded=ok, seconds=200 + n, provider=provider)))
        # each refund index twice, shuffled: its first appearance is the request, the
        # second the outcome, so an outcome always follows its own request
        tokens = draw(st.permutations([i for i in range(len(pairs)) for _ in (0, 1)]))
        sent: set[int] = set()
        for i in tokens:
            later.append(pairs[i][1] if i in sent else pairs[i][0])
            sent.add(i)
    history = first + later
    dupes = draw(st.lists(st.tuples(st.integers(0, len(history) - 1), st.integers(0, len(history))),
                          max_size=6))
    for source, position in dupes:  # a duplicate arrives after (or as) its original
        history.insert(max(position, source + 1), history[source])
    expected_status = end
    if refunded:
        expected_status = S.REFUNDED if refunded == AMOUNT else S.PARTIALLY_REFUNDED
    return history, {"status": expected_status, "refunded": refunded, "refunds": refunds,
                     "stripe": provider is Provider.STRIPE, "end": end}


def _final(driver: Driver) -> dict[str, object]:
    assert driver.payment is not None, "the create was applied"
    snap = driver.payment.snapshot
    return {
        "status": snap.status,
        "refunded": snap.refunded_amount,
        "refunds": {r.refund_id: r.status for r in snap.refunds},
        "provider_reference": snap.provider_reference,
        "client_secret": snap.client_secret,
        "words": (snap.provider_status, snap.provider_code, snap.provider_message)
        if not snap.refunds else None,
    }


@settings(max_examples=400, deadline=None)
@given(histories(), st.data())
def test_any_order_and_duplication_gives_same_end_and_stable_ids(case, data):
    history, expected = case
    driver = Driver()
    for record in history:
        driver.feed(record)
    final = _final(driver)
    assert final["status"] is expected["status"]
    assert final["refunded"] == expected["refunded"]
    assert final["refunds"] == expected["refunds"]
    assert final["provider_reference"] == "prov-ref-1"
    assert final["client_secret"] is None  # issue 16: a client secret never enters a snapshot
    if final["words"] is not None:
        end = expected["end"]
        assert final["words"] == (None, f"{end.value}-code", f"{end.value} text")
    assert not driver.parked
    versions = sorted(int(i.rsplit(":", 1)[1]) for i in driver.changes)
    assert versions == list(range(1, len(versions) + 1))

    # A crash: the table kept the effects up to record `saved`, but Faust redelivers from
    # the older committed offset `committed`. Re-processing emits nothing new.
    committed = data.draw(st.integers(0, len(history)), label="committed")
    saved = data.draw(st.integers(committed, len(history)), label="saved")
    replay = Driver()
    for record in history[:saved]:
        replay.feed(record)
    replay = replay.copy()
    for record in history[committed:]:
        replay.feed(record)
    for change_id, content in replay.changes.items():
        assert driver.changes.get(change_id, content) == content
    assert set(replay.changes) == set(driver.changes)
    assert _final(replay) == final


def test_provider_events_before_create_wait_for_it():
    driver = Driver()
    driver.feed(status_event(REF, S.SUCCEEDED, event_id="early"))
    assert driver.payment is None and len(driver.parked) == 1
    driver.feed(create(REF))
    assert driver.payment is not None and driver.payment.status is S.SUCCEEDED
    assert not driver.parked
