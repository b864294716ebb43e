"""`trailpay reconcile`: the comparison of TrailPay's record with the provider's answer, the
fix events it sends, the provider lookups (over fake clients) and the schedule's metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.providers.lookup import ProviderAnswer, ProviderLookup, not_found, stripe_answer
from connectors.providers.mpesa_client import StkQueryResult
from controlplane.ops.reconcile import Mismatch, Recorded, compare, fix_event
from controlplane.ops.reconcile_run import Result, Window
from controlplane.ops.reconcile_schedule import ReconcileMetrics
from trailpay.domain.errors import ProviderRejected
from trailpay.domain.events import Money, Provider, ProviderEventKind
from trailpay.domain.status import PaymentStatus

S = PaymentStatus
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
KES_150 = Money(amount=15000, currency="KES")


def recorded(status: S, provider: Provider = Provider.MPESA, amount: Money = KES_150,
             refs: tuple[str, ...] = ("ws_CO_1",)) -> Recorded:
    return Recorded(reference="TP-REC-1", provider=provider, status=status, version=3, amount=amount,
                    provider_reference=refs[-1] if refs else None, created_at=T0, updated_at=T0,
                    provider_references=refs)


def said(status: S | None, *, known: bool = True, open_: bool = False, amount: Money | None = None,
         provider: Provider = Provider.MPESA) -> ProviderAnswer:
    return ProviderAnswer(provider, known=known, open=open_, status=status, provider_status="x",
                          provider_code="0", provider_reference="ws_CO_1", amount=amount)


OPEN_AT_PROVIDER = said(None, open_=True)
UNKNOWN = said(None, known=False)


@pytest.mark.parametrize(("ours", "theirs", "kind", "fixable"), [
    # money at the provider, none at TrailPay: a charged customer shown unpaid
    (S.EXPIRED, said(S.SUCCEEDED), "paid_at_provider", True),
    (S.FAILED, said(S.SUCCEEDED), "paid_at_provider", True),
    (S.CANCELLED, said(S.SUCCEEDED), "paid_at_provider", True),
    (S.PENDING, said(S.SUCCEEDED), "paid_at_provider", True),
    (S.PROCESSING, said(S.SUCCEEDED), "paid_at_provider", True),
    # TrailPay still waiting for an outcome the provider has
    (S.PENDING, said(S.FAILED), "unpaid_at_provider", True),
    (S.CREATED, said(S.EXPIRED), "unpaid_at_provider", True),
    # paid at TrailPay, not at the provider: an unpaid payment shown paid
    (S.SUCCEEDED, said(S.FAILED), "unpaid_at_provider", False),
    (S.SUCCEEDED, OPEN_AT_PROVIDER, "unpaid_at_provider", False),
    (S.REFUNDED, said(S.CANCELLED), "unpaid_at_provider", False),
    (S.SUCCEEDED, UNKNOWN, "unknown_at_provider", False),
    (S.PARTIALLY_REFUNDED, UNKNOWN, "unknown_at_provider", False),
])
def test_disagreements(ours: S, theirs: ProviderAnswer, kind: str, fixable: bool) -> None:
    mismatch = compare(recorded(ours), theirs)
    assert mismatch is not None
    assert (mismatch.kind, mismatch.fixable) == (kind, fixable)


@pytest.mark.parametrize(("ours", "theirs"), [
    (S.SUCCEEDED, said(S.SUCCEEDED)),
    (S.REFUNDED, said(S.SUCCEEDED)),
    (S.PARTIALLY_REFUNDED, said(S.SUCCEEDED)),
    (S.PENDING, OPEN_AT_PROVIDER),
    (S.PROCESSING, OPEN_AT_PROVIDER),
    (S.PENDING, UNKNOWN),  # the push never got through: nothing to settle yet
    # both unpaid: no money moved, whatever word each side uses
    (S.EXPIRED, said(S.FAILED)),
    (S.FAILED, said(S.EXPIRED)),
    (S.CANCELLED, said(S.CANCELLED)),
    (S.FAILED, OPEN_AT_PROVIDER),  # Stripe keeps a declined PaymentIntent open for another card
    (S.EXPIRED, UNKNOWN),
])
def test_agreements(ours: S, theirs: ProviderAnswer) -> None:
    assert compare(recorded(ours), theirs) is None


def test_amounts_are_compared_when_the_provider_states_one() -> None:
    usd = recorded(S.SUCCEEDED, Provider.STRIPE, Money(amount=4250, currency="USD"), ("pi_1",))
    same = said(S.SUCCEEDED, amount=Money(amount=4250, currency="USD"), provider=Provider.STRIPE)
    less = said(S.SUCCEEDED, amount=Money(amount=1, currency="USD"), provider=Provider.STRIPE)
    assert compare(usd, same) is None
    mismatch = compare(usd, less)
    assert mismatch is not None and (mismatch.kind, mismatch.fixable) == ("amount", False)
    assert mismatch.as_dict()["amount_asked"] == {"amount": 4250, "currency": "USD"}
    assert mismatch.as_dict()["amount_at_provider"] == {"amount": 1, "currency": "USD"}


def test_recorded_from_a_row_lists_every_attempt_oldest_first() -> None:
    row: dict[str, Any] = {
        "reference": "TP-ROW-1", "provider": "mpesa", "status": "pending", "version": 5,
        "amount_minor": 15000, "currency": "KES", "provider_reference": "ws_CO_3",
        "created_at": T0, "updated_at": T0 + timedelta(minutes=2),
        "snapshot": {"attempts": [{"number": 1, "provider_reference": "ws_CO_1"},
                                  {"number": 2, "provider_reference": None},
                                  {"number": 3, "provider_reference": "ws_CO_3"}]},
    }
    r = Recorded.from_row(row)
    assert r.provider_references == ("ws_CO_1", "ws_CO_3")
    assert (r.provider, r.status, r.amount) == (Provider.MPESA, S.PENDING, KES_150)
    no_snapshot = Recorded.from_row({**row, "snapshot": None})
    assert no_snapshot.provider_references == ("ws_CO_3",)


def test_the_fix_event_is_the_providers_answer_with_a_stable_id() -> None:
    mismatch = compare(recorded(S.EXPIRED), said(S.SUCCEEDED))
    assert mismatch is not None
    first = fix_event(mismatch, T0)
    again = fix_event(mismatch, T0 + timedelta(hours=1))
    assert first is not None and again is not None
    assert first.event_id == again.event_id
    assert first.event_id.startswith("reconcile:TP-REC-1:")
    assert (first.source, first.kind, first.status) == ("reconcile", ProviderEventKind.STATUS, S.SUCCEEDED)
    assert (first.reference, first.provider, first.provider_reference) == ("TP-REC-1", Provider.MPESA, "ws_CO_1")
    failed = fix_event(Mismatch(recorded(S.PENDING), said(S.FAILED), "unpaid_at_provider"), T0)
    assert failed is not None and failed.event_id != first.event_id


def test_no_fix_event_for_what_the_state_machine_cannot_undo() -> None:
    paid_here = compare(recorded(S.SUCCEEDED), said(S.FAILED))
    assert paid_here is not None and fix_event(paid_here, T0) is None


def test_a_stripe_intent_as_an_answer() -> None:
    declined = stripe_answer({"id": "pi_9", "status": "requires_payment_method", "amount": 4250,
                              "currency": "usd", "amount_received": 0,
                              "last_payment_error": {"code": "card_declined", "decline_code": "generic_decline",
                                                     "message": "Your card was declined."}})
    assert (declined.known, declined.open, declined.status, declined.says) == (True, True, None, "open")
    paid = stripe_answer({"id": "pi_9", "status": "succeeded", "amount": 4250, "currency": "usd",
                          "amount_received": 4250})
    assert (paid.status, paid.amount, paid.provider_reference) == (
        S.SUCCEEDED, Money(amount=4250, currency="USD"), "pi_9")
    cancelled = stripe_answer({"id": "pi_9", "status": "canceled", "amount": 4250, "currency": "usd"})
    assert (cancelled.open, cancelled.status, cancelled.says) == (False, S.CANCELLED, "cancelled")


class FakeDaraja:
    """STK Query answers by CheckoutRequestID; an unknown id is refused as Daraja does."""

    def __init__(self, answers: dict[str, str | None], password_ok: bool = True) -> None:
        self.answers = answers
        self.password_ok = password_ok
        self.asked: list[str] = []

    async def stk_query(self, checkout_id: str) -> StkQueryResult:
        self.asked.append(checkout_id)
        if not self.password_ok:
            raise ProviderRejected("mpesa", "400.002.02", "Bad Request - Invalid Password")
        if checkout_id not in self.answers:
            raise ProviderRejected("mpesa", "400.002.02", "Bad Request - Invalid CheckoutRequestID")
        return StkQueryResult(checkout_id, self.answers[checkout_id], "desc")


def lookup_with(daraja: FakeDaraja) -> ProviderLookup:
    return ProviderLookup(stripe=None, daraja=daraja, airtel=None)  # type: ignore[arg-type]


async def test_mpesa_a_success_on_an_earlier_prompt_is_money() -> None:
    daraja = FakeDaraja({"ws_CO_1": "0", "ws_CO_2": None})
    answer = await lookup_with(daraja).ask(Provider.MPESA, "TP-1", ("ws_CO_1", "ws_CO_2"))
    assert daraja.asked == ["ws_CO_2", "ws_CO_1"]
    assert (answer.status, answer.provider_reference, answer.provider_code) == (S.SUCCEEDED, "ws_CO_1", "0")


async def test_mpesa_the_newest_known_answer_otherwise() -> None:
    answer = await lookup_with(FakeDaraja({"ws_CO_1": "1037", "ws_CO_2": "1032"})).ask(
        Provider.MPESA, "TP-1", ("ws_CO_1", "ws_CO_2"))
    assert (answer.status, answer.provider_reference) == (S.CANCELLED, "ws_CO_2")
    pending = await lookup_with(FakeDaraja({"ws_CO_1": None})).ask(Provider.MPESA, "TP-1", ("ws_CO_1",))
    assert (pending.known, pending.open, pending.says) == (True, True, "open")
    gone = await lookup_with(FakeDaraja({})).ask(Provider.MPESA, "TP-1", ("ws_CO_7",))
    assert (gone.known, gone.provider_code, gone.says) == (False, "400.002.02", "unknown")
    never = await lookup_with(FakeDaraja({})).ask(Provider.MPESA, "TP-1", ())
    assert (never.known, never.says) == (False, "unknown")


def test_summary_and_json() -> None:
    window = Window(since=T0, until=T0 + timedelta(days=1))
    result = Result(window)
    result.checked.update({"mpesa": 2, "stripe": 1})
    mismatch = compare(recorded(S.EXPIRED), said(S.SUCCEEDED))
    assert mismatch is not None
    result.mismatches.append(mismatch)
    assert result.summary() == ("3 payments checked (mpesa 2, stripe 1); 1 mismatches; "
                                "0 not checked (provider errors)")
    doc = result.as_json()
    assert doc["total"] == 3 and doc["since"] == "2026-12-01T09:00:00+00:00"
    assert doc["mismatches"] == [{
        "reference": "TP-REC-1", "provider": "mpesa", "kind": "paid_at_provider",
        "trailpay_says": "expired", "provider_says": "succeeded", "provider_status": "x",
        "provider_code": "0", "provider_reference": "ws_CO_1",
        "amount_asked": {"amount": 15000, "currency": "KES"}, "amount_at_provider": None,
        "fixable": True}]


def test_schedule_metrics_hold_the_last_run() -> None:
    metrics = ReconcileMetrics()
    result = Result(Window(since=T0, until=T0 + timedelta(days=1)))
    mismatch = compare(recorded(S.EXPIRED), said(S.SUCCEEDED))
    assert mismatch is not None
    result.mismatches.append(mismatch)
    metrics.record(result)
    value = metrics.registry.get_sample_value
    assert value("trailpay_reconcile_mismatches", {"provider": "mpesa", "kind": "paid_at_provider"}) == 1.0
    assert value("trailpay_reconcile_runs_total", {"outcome": "mismatches"}) == 1.0
    metrics.record(Result(result.window))
    assert value("trailpay_reconcile_mismatches", {"provider": "mpesa", "kind": "paid_at_provider"}) is None
    assert value("trailpay_reconcile_runs_total", {"outcome": "none"}) == 1.0
    metrics.record(None)
    assert value("trailpay_reconcile_runs_total", {"outcome": "error"}) == 1.0


def test_the_table_and_the_hints(capsys: pytest.CaptureFixture[str]) -> None:
    from controlplane.cli.reconcile_cmd import _print

    result = Result(Window(since=T0, until=T0 + timedelta(days=1)))
    result.checked.update({"stripe": 1})
    card = recorded(S.PROCESSING, Provider.STRIPE, Money(amount=4250, currency="USD"), ("pi_1",))
    mismatch = compare(card, said(S.SUCCEEDED, amount=Money(amount=4250, currency="USD"), provider=Provider.STRIPE))
    assert mismatch is not None
    result.mismatches.append(mismatch)
    result.errors.append((recorded(S.PENDING), "mpesa unavailable: 500 Internal Server Error"))
    _print(result, fixed=False)
    printed = capsys.readouterr()
    assert "TP-REC-1" in printed.out and "processing" in printed.out and "42.50 USD" in printed.out
    assert "1 payments checked (stripe 1); 1 mismatches; 1 not checked (provider errors)" in printed.out
    assert "Next: --fix" in printed.out
    assert "not checked: TP-REC-1 (mpesa): mpesa unavailable: 500 Internal Server Error" in printed.err
    assert "check TRAILPAY_MPESA_BASE_URL" in printed.err


async def test_a_refusal_that_is_not_not_found_is_no_answer() -> None:
    with pytest.raises(ProviderRejected):
        await lookup_with(FakeDaraja({"ws_CO_1": "0"}, password_ok=False)).ask(Provider.MPESA, "TP-1", ("ws_CO_1",))


@pytest.mark.parametrize(("provider", "code", "message", "expected"), [
    (Provider.STRIPE, "resource_missing", "No such payment_intent: 'pi_x'", True),
    (Provider.STRIPE, "authentication_required", "Invalid API Key provided", False),
    (Provider.MPESA, "400.002.02", "Bad Request - Invalid CheckoutRequestID", True),
    (Provider.MPESA, "400.002.02", "Bad Request - Invalid Timestamp", False),
    (Provider.MPESA, "404.001.03", "Invalid Access Token", False),
    (Provider.AIRTEL, "DP00800001010", "Transaction not found", True),
    (Provider.AIRTEL, "ESB000008", "Field validation failed", False),
])
def test_not_found(provider: Provider, code: str, message: str, expected: bool) -> None:
    assert not_found(provider, ProviderRejected(provider.value, code, message)) is expected
