"""The provider is the source of truth, and nothing is trusted by the reference it names
(#15, ARCHITECTURE.md properties 9 and 10): the "Measured" scenarios of the issue on the
stream worker (webhook normaliser, state machine, sweeper) with a real tansu broker.

- an M-Pesa payment the sweeper expired, then Daraja's genuine success callback: applied,
  ``succeeded`` and marked late (the money moved), no dead letter;
- callbacks with the right URL token that do not match the payment they name (another
  payment's CheckoutRequestID, ``Amount: 1`` on a KES 100 payment, an M-Pesa callback naming
  a card payment, an Airtel ``TS`` naming an M-Pesa payment, a validly signed Stripe event
  for another PaymentIntent of USD 0.01 naming an M-Pesa payment): never applied, each a dead
  letter at stage ``suspicious``; the genuine callbacks after them still are.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.integration.ingressutil import stripe_signature
from tests.integration.streamutil import (
    T0,
    WorkerProcess,
    create_record,
    dead_letters,
    encoded,
    mpesa_record,
    produce,
    provider_record,
    read_until,
    state_changes,
    unique,
    wait_final,
    worker_env,
)
from tests.stackutil import default_broker, own_broker
from trailpay import topics
from trailpay.domain.events import Provider, RawWebhook
from trailpay.domain.status import PaymentStatus
from trailpay.settings import Settings

pytestmark = pytest.mark.integration
S = PaymentStatus


@pytest.fixture(scope="module")
def broker() -> Iterator[Settings]:
    """A broker of this module's own, of the suite's kind (Apache Kafka where it runs)."""
    with own_broker(default_broker(), "truth") as settings:
        yield settings


@pytest.fixture(scope="module")
def worker(broker: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """Mobile-money deadlines of 5 s (the expiry comes within seconds); card deadlines stay
    at their 24 h default."""
    app_id = unique("tpt")
    process = WorkerProcess(worker_env(broker, app_id, pending_deadline_s=5, processing_deadline_s=5,
                                       park_timeout_s=30),
                            tmp_path_factory.mktemp("truth-worker") / f"{app_id}.log")
    process.start()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def _since_t0() -> float:
    """Seconds from T0 (fixed at collection) to now: records dated now, so the 5 s
    deadlines run from when the test sends them."""
    return (datetime.now(UTC) - T0).total_seconds()


def _arriving_now(raw: RawWebhook, copy: int = 0) -> RawWebhook:
    now = datetime.now(UTC)
    return raw.model_copy(update={"received_at": now, "occurred_at": now,
                                  "event_id": f"{raw.event_id}-now-{copy}"})


def _pending(reference: str, lag: float, *, provider: Provider = Provider.MPESA,
             amount: int = 1500) -> list[tuple[str, bytes | None, bytes]]:
    """A created payment the dispatcher sent to the provider (provider reference
    ``ws_CO_<reference>``)."""
    return [
        encoded(topics.PAYMENT_REQUESTS, reference,
                create_record(reference, provider=provider, amount=amount, seconds=lag)),
        encoded(topics.PROVIDER_EVENTS, reference, provider_record(
            reference, S.PENDING, event_id=f"cmd:{reference}:initiate", seconds=lag + 1,
            provider=provider, source="dispatcher")),
    ]


async def _history(broker: Settings, reference: str, versions: int) -> list[dict[str, Any]]:
    """The state changes of ``reference`` in version order, read until there are
    ``versions`` of them and then 3 s more (so one too many would be seen)."""
    marker = f'"reference":"{reference}"'.encode()
    records = await read_until(broker.kafka_bootstrap or "", topics.PAYMENT_STATE,
                               lambda k, v: marker in v,
                               lambda got: len(state_changes(got)) >= versions, timeout=60, quiet_s=3)
    return sorted((c[0] for c in state_changes(records).values()), key=lambda c: c["version"])


async def test_a_success_after_the_expiry_is_applied_late(broker: Settings, worker: WorkerProcess) -> None:
    ref = unique("TPX")
    await produce(broker.kafka_bootstrap or "", _pending(ref, _since_t0()))
    await wait_final(broker, ref, {ref: "expired"}, timeout=90)

    # The customer approved the prompt after all; Daraja's callback comes late (twice).
    callback = mpesa_record(broker, ref, 0, 0)
    await produce(broker.kafka_bootstrap or "", [
        encoded(topics.WEBHOOKS_RAW, ref, _arriving_now(callback, copy)) for copy in range(2)])
    changes, _ = await wait_final(broker, ref, {ref: "succeeded"}, timeout=60)

    history = sorted((c[0] for c in changes.values()), key=lambda c: c["version"])
    assert [c["to_status"] for c in history] == ["created", "pending", "expired", "succeeded"]
    paid = history[-1]["payment"]
    assert paid["late_from"] == "expired"
    assert paid["late_decision"] == "keep"  # nobody asked to cancel: the customer paid
    assert paid["provider_reference"] == f"ws_CO_{ref}"
    assert await dead_letters(broker, ref.encode(), 1, timeout=5) == []


async def test_callbacks_that_do_not_match_their_payment_are_suspicious(broker: Settings,
                                                                       worker: WorkerProcess) -> None:
    lag = _since_t0() + 3600  # deadlines an hour away: only the callbacks move these payments
    victim, other, hundred = unique("TPV"), unique("TPO"), unique("TPH")
    items = [*_pending(victim, lag), *_pending(other, lag), *_pending(hundred, lag, amount=10_000)]
    # The right URL token and the victim's reference, but the other payment's CheckoutRequestID.
    forged = mpesa_record(broker, victim, 0, 0, checkout=f"ws_CO_{other}")
    # The right payment and CheckoutRequestID, but KES 1 paid on a KES 100 payment.
    short = mpesa_record(broker, hundred, 0, 0, shillings=1)
    items += [encoded(topics.WEBHOOKS_RAW, victim, forged), encoded(topics.WEBHOOKS_RAW, hundred, short)]
    await produce(broker.kafka_bootstrap or "", items)

    letters = {d["reference"]: d for ref in (victim, hundred)
               for d in await dead_letters(broker, ref.encode(), 1, timeout=60)}
    assert set(letters) == {victim, hundred}
    assert all(d["stage"] == "suspicious" and d["error_type"] == "Suspicious" for d in letters.values())
    assert "reference_mismatch" in letters[victim]["error_message"]
    assert "amount_mismatch" in letters[hundred]["error_message"]
    assert "success for 1.00 KES on a payment of 100.00 KES" in letters[hundred]["error_message"]

    # Neither moved; the genuine callbacks that follow are applied as usual, the other
    # payment's included (the forged callback did not use up its event id).
    await produce(broker.kafka_bootstrap or "", [
        encoded(topics.WEBHOOKS_RAW, victim, mpesa_record(broker, victim, 0, 1)),
        encoded(topics.WEBHOOKS_RAW, other, mpesa_record(broker, other, 0, 1)),
        encoded(topics.WEBHOOKS_RAW, hundred, mpesa_record(broker, hundred, 0, 1, shillings=100)),
    ])
    for ref in (victim, other, hundred):
        history = await _history(broker, ref, 3)
        assert [c["to_status"] for c in history] == ["created", "pending", "succeeded"], ref
        assert history[-1]["payment"]["provider_reference"] == f"ws_CO_{ref}"
        assert history[-1]["payment"]["late_from"] is None


async def test_an_mpesa_callback_naming_a_card_payment_is_suspicious(broker: Settings,
                                                                    worker: WorkerProcess) -> None:
    card = unique("TPC")
    await produce(broker.kafka_bootstrap or "", _pending(card, _since_t0(), provider=Provider.STRIPE))
    await wait_final(broker, card, {card: "pending"}, timeout=60)
    await produce(broker.kafka_bootstrap or "", [
        encoded(topics.WEBHOOKS_RAW, card, mpesa_record(broker, card, 0, 0))])

    (letter,) = await dead_letters(broker, card.encode(), 1, timeout=60)
    assert letter["stage"] == "suspicious" and letter["reference"] == card
    assert "provider_mismatch" in letter["error_message"]
    assert "mpesa event for a stripe payment" in letter["error_message"]
    history = await _history(broker, card, 2)
    assert [c["to_status"] for c in history] == ["created", "pending"]
    assert history[-1]["payment"]["provider"] == "stripe"


def _airtel_ts(settings: Settings, reference: str) -> RawWebhook:
    """Airtel's success callback (``TS``) naming ``reference`` as its transaction id."""
    body = {"transaction": {"id": reference, "message": "Paid", "status_code": "TS",
                            "airtel_money_id": f"MP{reference[-10:]}"}}
    now = datetime.now(UTC)
    return RawWebhook(event_id=f"raw-airtel-{reference}", occurred_at=now, provider=Provider.AIRTEL,
                      body=json.dumps(body).encode(), received_at=now, reference=reference,
                      query={"token": settings.airtel_callback_token.get_secret_value()}, verified=None)


def _stripe_succeeded(reference: str) -> RawWebhook:
    """A correctly signed ``payment_intent.succeeded`` for some PaymentIntent of USD 0.01
    whose metadata names ``reference`` (anyone with a Stripe account can make one)."""
    body = json.dumps({"id": f"evt_{reference}", "type": "payment_intent.succeeded", "created": 1,
                       "data": {"object": {"id": f"pi_{reference}", "object": "payment_intent",
                                           "amount": 1, "amount_received": 1, "currency": "usd",
                                           "status": "succeeded",
                                           "metadata": {"trailpay_reference": reference}}}}).encode()
    now = datetime.now(UTC)
    return RawWebhook(event_id=f"raw-stripe-{reference}", occurred_at=now, provider=Provider.STRIPE,
                      body=body, received_at=now, reference=reference, verified=None,
                      headers={"Stripe-Signature": stripe_signature(body)})


async def test_another_providers_success_for_an_mpesa_payment_is_suspicious(broker: Settings,
                                                                            worker: WorkerProcess) -> None:
    by_airtel, by_stripe = unique("TPA"), unique("TPS")
    lag = _since_t0() + 3600
    await produce(broker.kafka_bootstrap or "", [
        *_pending(by_airtel, lag), *_pending(by_stripe, lag),
        encoded(topics.WEBHOOKS_RAW, by_airtel, _airtel_ts(broker, by_airtel)),
        encoded(topics.WEBHOOKS_RAW, by_stripe, _stripe_succeeded(by_stripe)),
    ])
    for ref, provider in ((by_airtel, "airtel"), (by_stripe, "stripe")):
        (letter,) = await dead_letters(broker, ref.encode(), 1, timeout=60)
        assert letter["stage"] == "suspicious" and letter["reference"] == ref
        assert f"{provider} event for a mpesa payment" in letter["error_message"]
        history = await _history(broker, ref, 2)
        assert [c["to_status"] for c in history] == ["created", "pending"], ref

