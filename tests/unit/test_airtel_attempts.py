"""Airtel retries (#15 item 1): each attempt has a transaction id of its own, the payment
reference for the first and ``<reference>-A<n>`` after; commands carry it, callbacks and
enquiries name it, and refunds look up the paid attempt's."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from connectors.providers.airtel_callbacks import AirtelCallbackHandler
from connectors.providers.airtel_client import AirtelClient, AirtelGateway
from connectors.providers.lookup import ProviderLookup
from connectors.sandboxes.airtel_api import AirtelSandbox
from connectors.sandboxes.callbacks import CallbackSender
from connectors.sandboxes.faults import Fault, FaultBook, FaultMiddleware
from tests.unit.payment_factory import at, create, status_event
from trailpay.domain.attempts import attempt_transaction_id, split_transaction_id
from trailpay.domain.commands import make_command, query_command
from trailpay.domain.errors import ProviderRejected, Suspicious
from trailpay.domain.events import (
    Money,
    Provider,
    ProviderCommand,
    ProviderCommandKind,
    RawWebhook,
    RefundPayment,
    RetryPayment,
)
from trailpay.domain.payment import Payment, Verdict
from trailpay.domain.state_machine import apply
from trailpay.domain.status import PaymentStatus
from trailpay.retry import RetryPolicy

S = PaymentStatus
REF = "TPAIRTEL00000000000001"
KES = Money(amount=1000, currency="KES")
AIRTEL = Provider.AIRTEL


# ----------------------------------------------------------------------------- ids
@pytest.mark.parametrize(("number", "expected"), [
    (1, "TPAIRTEL00000000000001"), (2, "TPAIRTEL00000000000001-A2"), (20, "TPAIRTEL00000000000001-A20")])
def test_transaction_ids_per_attempt(number: int, expected: str) -> None:
    assert attempt_transaction_id(REF, number) == expected
    assert split_transaction_id(expected) == (REF, number)


@pytest.mark.parametrize(("txn_id", "expected"), [
    ("TPB-0a1b2c3d4e5f6a7b8c9d-A3", ("TPB-0a1b2c3d4e5f6a7b8c9d", 3)),
    ("TPB-0a1b2c3d4e5f6a7b8c9d", ("TPB-0a1b2c3d4e5f6a7b8c9d", 1)),
    ("TPX-A1", ("TPX-A1", 1)),      # attempt 1 is never suffixed: a reference
    ("TPX-A02", ("TPX-A02", 1)),    # nor zero-padded
    ("TPX-A", ("TPX-A", 1)), ("-A2", ("-A2", 1)), ("MP210603.1234", ("MP210603.1234", 1))])
def test_split_takes_only_ids_it_makes(txn_id: str, expected: tuple[str, int]) -> None:
    assert split_transaction_id(txn_id) == expected


def test_the_longest_ids_stay_short() -> None:
    # "TP" + 20 and "TPB-" + 20 references, 20 attempts at most (TRAILPAY_MAX_ATTEMPTS)
    assert len(attempt_transaction_id("TP" + "A" * 20, 20)) == 26
    assert len(attempt_transaction_id("TPB-" + "a" * 20, 20)) == 28


# ----------------------------------------------------------------------------- domain
def _created() -> tuple[Payment, ProviderCommand]:
    outcome = apply(None, create(REF, provider=AIRTEL))
    assert outcome.payment is not None
    (command,) = outcome.commands
    return outcome.payment, command


def _step(payment: Payment, record: Any) -> tuple[Payment, tuple[ProviderCommand, ...]]:
    outcome = apply(payment, record)
    assert outcome.payment is not None, outcome
    return outcome.payment, outcome.commands


def _pushed(payment: Payment, txn_id: str, seconds: float, command: ProviderCommand) -> Payment:
    answer = status_event(REF, S.PENDING, provider=AIRTEL, provider_reference=txn_id, source="dispatcher",
                          seconds=seconds, command_id=command.event_id)
    return _step(payment, answer)[0]


def _attempts(payment: Payment) -> list[tuple[int, str | None, str]]:
    return [(a.number, a.provider_reference, a.outcome) for a in payment.snapshot.attempts]


def _retried() -> tuple[Payment, ProviderCommand]:
    """Attempt 1 pushed and left open (no callback), then a retry: attempt 2 asked for."""
    payment, first = _created()
    payment = _pushed(payment, REF, 1, first)
    payment, commands = _step(payment, RetryPayment(event_id="retry-1", occurred_at=at(30), reference=REF))
    (second,) = commands
    return payment, second


def test_the_first_attempt_is_the_reference_and_a_retry_gets_its_own_id() -> None:
    payment, first = _created()
    assert (first.kind, first.provider_reference) == (ProviderCommandKind.INITIATE, "TPAIRTEL00000000000001")
    payment = _pushed(payment, REF, 1, first)
    assert _attempts(payment) == [(1, "TPAIRTEL00000000000001", "open")]
    assert query_command(payment).provider_reference == "TPAIRTEL00000000000001"

    payment, second = _retried()
    assert (second.kind, second.provider_reference) == (ProviderCommandKind.INITIATE,
                                                         "TPAIRTEL00000000000001-A2")
    assert query_command(payment).provider_reference == "TPAIRTEL00000000000001-A2"  # before the answer
    payment = _pushed(payment, "TPAIRTEL00000000000001-A2", 31, second)
    assert _attempts(payment) == [(1, "TPAIRTEL00000000000001", "superseded"),
                                  (2, "TPAIRTEL00000000000001-A2", "open")]
    assert payment.snapshot.provider_reference == "TPAIRTEL00000000000001-A2"
    assert query_command(payment).provider_reference == "TPAIRTEL00000000000001-A2"

    paid, _ = _step(payment, status_event(REF, S.SUCCEEDED, provider=AIRTEL, amount=None, seconds=40,
                                          provider_reference="TPAIRTEL00000000000001-A2"))
    assert paid.status is S.SUCCEEDED
    assert _attempts(paid) == [(1, "TPAIRTEL00000000000001", "superseded"),
                               (2, "TPAIRTEL00000000000001-A2", "succeeded")]
    _, (refund,) = _step(paid, RefundPayment(event_id="rf-req", occurred_at=at(50), reference=REF,
                                             refund_id="rf-1"))
    assert (refund.kind, refund.provider_reference) == (ProviderCommandKind.REFUND, "TPAIRTEL00000000000001-A2")


def test_a_callback_for_the_new_attempt_before_the_initiate_answer_names_it() -> None:
    payment, _ = _retried()
    paid, _ = _step(payment, status_event(REF, S.SUCCEEDED, provider=AIRTEL, amount=None, seconds=35,
                                          provider_reference="TPAIRTEL00000000000001-A2"))
    assert paid.status is S.SUCCEEDED and paid.snapshot.provider_reference == "TPAIRTEL00000000000001-A2"
    assert _attempts(paid) == [(1, "TPAIRTEL00000000000001", "superseded"),
                               (2, "TPAIRTEL00000000000001-A2", "succeeded")]


def test_the_older_attempt_paying_after_the_retry_still_counts_and_is_refunded_by_its_id() -> None:
    payment, second = _retried()
    payment = _pushed(payment, "TPAIRTEL00000000000001-A2", 31, second)
    paid, _ = _step(payment, status_event(REF, S.SUCCEEDED, provider=AIRTEL, amount=None, seconds=40,
                                          provider_reference="TPAIRTEL00000000000001"))
    assert paid.status is S.SUCCEEDED and paid.snapshot.provider_reference == "TPAIRTEL00000000000001"
    assert _attempts(paid) == [(1, "TPAIRTEL00000000000001", "succeeded"),
                               (2, "TPAIRTEL00000000000001-A2", "superseded")]
    _, (refund,) = _step(paid, RefundPayment(event_id="rf-req", occurred_at=at(50), reference=REF,
                                             refund_id="rf-1"))
    assert refund.provider_reference == "TPAIRTEL00000000000001"


def test_a_failure_of_the_superseded_attempt_does_not_fail_the_new_one() -> None:
    payment, second = _retried()
    payment = _pushed(payment, "TPAIRTEL00000000000001-A2", 31, second)
    late = apply(payment, status_event(REF, S.FAILED, provider=AIRTEL, seconds=40,
                                       provider_reference="TPAIRTEL00000000000001"))
    assert (late.verdict, late.reason) == (Verdict.STALE, "failed of an attempt already ended")
    assert late.payment is not None and late.payment.status is S.PENDING


@pytest.mark.parametrize("named", ["TPAIRTEL00000000000001-A3", "TPOTHER000000000000001-A2",
                                   "TPOTHER000000000000001"])
def test_an_id_that_is_not_one_of_the_attempts_is_refused(named: str) -> None:
    payment, second = _retried()
    with pytest.raises(Suspicious, match="reference_mismatch"):
        apply(payment, status_event(REF, S.SUCCEEDED, provider=AIRTEL, amount=None, seconds=35,
                                    provider_reference=named))
    payment = _pushed(payment, "TPAIRTEL00000000000001-A2", 31, second)
    with pytest.raises(Suspicious, match="reference_mismatch"):
        apply(payment, status_event(REF, S.SUCCEEDED, provider=AIRTEL, amount=None, seconds=40,
                                    provider_reference=named))


def test_other_providers_commands_keep_their_references() -> None:
    outcome = apply(None, create(REF, provider=Provider.MPESA))
    (command,) = outcome.commands
    assert command.provider_reference is None
    assert outcome.payment is not None
    query = make_command(outcome.payment.snapshot, ProviderCommandKind.QUERY, at(5))
    assert query.provider_reference is None


# ----------------------------------------------------------------------------- callbacks
def _callback(txn_id: str, status: str = "TS") -> RawWebhook:
    body = json.dumps({"transaction": {"id": txn_id, "message": "Paid", "status_code": status,
                                       "airtel_money_id": "MP251201.0001.A00001"}}).encode()
    return RawWebhook(event_id="raw-1", occurred_at=at(0), provider=AIRTEL, body=body, received_at=at(0),
                      query={"token": "tok"})


@pytest.mark.parametrize(("txn_id", "reference"), [
    ("TPAIRTEL00000000000001", "TPAIRTEL00000000000001"),
    ("TPAIRTEL00000000000001-A2", "TPAIRTEL00000000000001")])
def test_a_callback_maps_its_transaction_id_to_the_payment_and_the_attempt(txn_id: str, reference: str) -> None:
    handler = AirtelCallbackHandler("tok")
    raw = _callback(txn_id)
    assert handler.reference_of(raw.body, {}) == reference
    [event] = handler.normalize(raw)
    assert (event.reference, event.provider_reference, event.event_id, event.status) == (
        reference, txn_id, f"airtel:{txn_id}:TS", S.SUCCEEDED)


# ----------------------------------------------------------------------------- client
class FakeAirtel:
    """Airtel's collection, enquiry and refund, answering from ``statuses`` by transaction id."""

    def __init__(self, statuses: dict[str, str]) -> None:
        self.statuses = statuses
        self.seen: list[tuple[str, str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        path = request.url.path
        self.seen.append((request.method, path, body))
        ok = {"code": "200", "message": "SUCCESS", "response_code": "DP00800001001", "success": True}
        if path == "/auth/oauth2/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": "180", "token_type": "bearer"})
        if path == "/merchant/v1/payments/":
            return httpx.Response(200, json={"data": {"transaction": {"id": body["transaction"]["id"],
                                                                      "status": "Success."}}, "status": ok})
        if path == "/standard/v1/payments/refund":
            return httpx.Response(200, json={"data": {"transaction": {
                "airtel_money_id": body["transaction"]["airtel_money_id"], "status": "SUCCESS"}}, "status": ok})
        txn_id = path.rsplit("/", 1)[1]
        if txn_id not in self.statuses:
            return httpx.Response(404, json={"data": {}, "status": {
                "code": "404", "message": "Transaction not found", "response_code": "DP00800001010",
                "success": False}})
        state = self.statuses[txn_id]
        return httpx.Response(200, json={"data": {"transaction": {
            "id": txn_id, "status": state, "message": state,
            "airtel_money_id": f"MP-{txn_id[-2:]}" if state == "TS" else None}}, "status": ok})


def _gateway(fake: FakeAirtel) -> AirtelGateway:
    client = AirtelClient("http://airtel.test", "id", "secret", policy=RetryPolicy(attempts=1),
                          transport=httpx.MockTransport(fake))
    return AirtelGateway(client)


def _command(kind: ProviderCommandKind, provider_reference: str | None, **extra: Any) -> ProviderCommand:
    return ProviderCommand(event_id=f"cmd-{kind}", occurred_at=at(0), kind=kind, reference=REF,
                           provider=AIRTEL, amount=KES, user_id="u1", phone_number="0733000000",
                           provider_reference=provider_reference, **extra)


async def test_the_gateway_sends_and_asks_about_the_attempts_id() -> None:
    fake = FakeAirtel({"TPAIRTEL00000000000001-A2": "TS"})
    gateway = _gateway(fake)
    try:
        [pushed] = await gateway.execute(_command(ProviderCommandKind.INITIATE, "TPAIRTEL00000000000001-A2"))
        assert (pushed.status, pushed.provider_reference) == (S.PENDING, "TPAIRTEL00000000000001-A2")
        assert fake.seen[-1][2]["transaction"]["id"] == "TPAIRTEL00000000000001-A2"
        [asked] = await gateway.execute(_command(ProviderCommandKind.QUERY, "TPAIRTEL00000000000001-A2"))
        assert (asked.status, asked.provider_reference) == (S.SUCCEEDED, "TPAIRTEL00000000000001-A2")
        assert fake.seen[-1][:2] == ("GET", "/standard/v1/payments/TPAIRTEL00000000000001-A2")
        [refund] = await gateway.execute(_command(ProviderCommandKind.REFUND, "TPAIRTEL00000000000001-A2",
                                                  refund_id="rf-1"))
        assert refund.refund_succeeded is True
        assert fake.seen[-2][:2] == ("GET", "/standard/v1/payments/TPAIRTEL00000000000001-A2")
        assert fake.seen[-1][2] == {"transaction": {"airtel_money_id": "MP-A2"}}
    finally:
        await gateway.aclose()


async def test_without_an_id_of_this_payment_the_gateway_uses_the_reference() -> None:
    fake = FakeAirtel({"TPAIRTEL00000000000001": "TS"})
    gateway = _gateway(fake)
    try:
        [pushed] = await gateway.execute(_command(ProviderCommandKind.INITIATE, None))
        assert pushed.provider_reference == "TPAIRTEL00000000000001"
        assert fake.seen[-1][2]["transaction"]["id"] == "TPAIRTEL00000000000001"
        # another payment's id is not this payment's: the reference is asked about
        [asked] = await gateway.execute(_command(ProviderCommandKind.QUERY, "TPOTHER000000000000001-A2"))
        assert (asked.status, asked.provider_reference) == (S.SUCCEEDED, "TPAIRTEL00000000000001")
        # a payment paid before retries existed names Airtel's own id: refunded by it directly
        [refund] = await gateway.execute(_command(ProviderCommandKind.REFUND, "MP251201.0001.A00001",
                                                  refund_id="rf-1"))
        assert refund.refund_succeeded is True
        assert fake.seen[-1][:3] == ("POST", "/standard/v1/payments/refund",
                                     {"transaction": {"airtel_money_id": "MP251201.0001.A00001"}})
    finally:
        await gateway.aclose()


async def test_the_lookup_asks_every_attempt_newest_first_and_a_success_wins() -> None:
    fake = FakeAirtel({"TPAIRTEL00000000000001": "TS", "TPAIRTEL00000000000001-A2": "TF"})
    client = AirtelClient("http://airtel.test", "id", "secret", policy=RetryPolicy(attempts=1),
                          transport=httpx.MockTransport(fake))
    lookup = ProviderLookup(stripe=None, daraja=None, airtel=client)  # type: ignore[arg-type]
    try:
        answer = await lookup.ask(AIRTEL, REF, ("TPAIRTEL00000000000001", "TPAIRTEL00000000000001-A2"))
        assert (answer.status, answer.provider_reference) == (S.SUCCEEDED, "TPAIRTEL00000000000001")
        asked = [path for method, path, _ in fake.seen if method == "GET"]
        assert asked == ["/standard/v1/payments/TPAIRTEL00000000000001-A2",
                         "/standard/v1/payments/TPAIRTEL00000000000001"]
        fake.statuses = {"TPAIRTEL00000000000001-A2": "TIP"}
        newest = await lookup.ask(AIRTEL, REF, ("TPAIRTEL00000000000001", "TPAIRTEL00000000000001-A2"))
        assert (newest.known, newest.open, newest.provider_reference) == (
            True, True, "TPAIRTEL00000000000001-A2")
        legacy = await lookup.ask(AIRTEL, REF, ("MP251201.0001.A00001",))
        assert (legacy.known, legacy.provider_reference) == (False, "TPAIRTEL00000000000001")
    finally:
        await client.aclose()


# ----------------------------------------------------------------------------- sandbox
async def test_the_sandbox_fails_one_push_by_an_outcome_fault_and_refuses_an_id_twice() -> None:
    sender = CallbackSender(delay_s=60)
    sandbox = AirtelSandbox("id", "secret", "http://127.0.0.1:9/cb", None, sender)
    book = FaultBook()
    app = FastAPI()
    app.add_middleware(FaultMiddleware, book=book)
    app.include_router(sandbox.router(), prefix="/airtel")
    book.faults["airtel"] = Fault.from_request({"provider": "airtel", "mode": "outcome", "outcome": "1",
                                                "count": 1, "path": "/merchant/"})
    client = AirtelClient("http://sandbox.test/airtel", "id", "secret", policy=RetryPolicy(attempts=1),
                          transport=httpx.ASGITransport(app=app))
    try:
        for txn_id in ("TPAIRTEL00000000000001", "TPAIRTEL00000000000001-A2"):
            await client.collect("0733000000", 10, txn_id)
        with pytest.raises(ProviderRejected, match="DP00800001009"):
            await client.collect("0733000000", 10, "TPAIRTEL00000000000001-A2")
        assert {t: (c.outcome.airtel_status, c.outcome.airtel_message) for t, c in sandbox.collections.items()} == {
            "TPAIRTEL00000000000001": ("TF", "Insufficient funds"),
            "TPAIRTEL00000000000001-A2": ("TS", "Transaction Success")}
    finally:
        await client.aclose()
        await sender.aclose()
    with pytest.raises(ValueError, match="one last digit"):
        Fault.from_request({"provider": "airtel", "mode": "outcome", "outcome": "x"})
