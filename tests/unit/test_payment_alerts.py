"""The payments agent's alerts: suspicious provider events and late payments (#15).

Run through :class:`PaymentProcessor` itself (fake tables and producer), so what is checked
is what the worker does with the domain's verdict: the dead letter's stage and reason, the
counters, the masked warning, the rules the processor was given.
"""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY

from streams.agents.payments import PaymentProcessor
from tests.unit.payment_factory import create, status_event
from tests.unit.test_ops_units import FakeTable, FaustProducer
from trailpay import codec, topics
from trailpay.domain.commands import expire_request
from trailpay.domain.deadlines import DeadlinePolicy
from trailpay.domain.events import Money, Provider
from trailpay.domain.rules import PaymentRules
from trailpay.domain.status import PaymentStatus
from trailpay.settings import Settings

S = PaymentStatus
REF = "TPALERT000000000000001"


class Feed:
    """A processor and the records it was given, one offset each."""

    def __init__(self, rules: PaymentRules | None = None) -> None:
        self.producer = FaustProducer()
        ctx = SimpleNamespace(app=SimpleNamespace(producer=self.producer), settings=Settings())
        self.processor = PaymentProcessor(ctx, FakeTable(), FakeTable(), DeadlinePolicy(),  # type: ignore[arg-type]
                                          rules or PaymentRules())
        self.offset = 0

    async def send(self, record: Any) -> None:
        topic = topics.PROVIDER_EVENTS if record.__class__.__name__ == "ProviderEvent" else topics.PAYMENT_REQUESTS
        message = SimpleNamespace(topic=topic, partition=0, offset=self.offset,
                                  key=record.reference.encode(), value=codec.encode(record))
        self.offset += 1
        await self.processor.process([SimpleNamespace(message=message)])

    def status(self) -> str:
        held = self.processor.load(REF.encode())
        assert held is not None
        return held.status.value

    def dead_letters(self) -> list[dict[str, Any]]:
        return [json.loads(v) for t, _, v in self.producer.sent if t == topics.DEAD_LETTERS]


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _pending(feed: Feed) -> None:
    await feed.send(create(REF))
    await feed.send(status_event(REF, S.PENDING, provider_reference="ws_CO_0001"))


async def test_a_callback_naming_another_checkout_is_a_masked_suspicious_dead_letter(
        caplog: pytest.LogCaptureFixture) -> None:
    feed = Feed()
    await _pending(feed)
    before = _metric("trailpay_suspicious_events_total", provider="mpesa", reason="reference_mismatch")
    with caplog.at_level(logging.WARNING, logger="streams.agents"):
        await feed.send(status_event(REF, S.SUCCEEDED, provider_reference="+254 712 345 678"))

    assert feed.status() == "pending"
    [dead] = feed.dead_letters()
    assert dead["stage"] == "suspicious"
    assert dead["error_type"] == "Suspicious"
    assert dead["reference"] == REF
    assert "reference_mismatch" in dead["error_message"]
    assert "712 345 678" not in dead["error_message"]
    assert _metric("trailpay_suspicious_events_total", provider="mpesa",
                   reason="reference_mismatch") == before + 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("suspicious mpesa event" in w and REF in w for w in warnings), warnings
    assert all("712 345 678" not in w for w in warnings), warnings


async def test_a_success_for_another_amount_is_suspicious() -> None:
    feed = Feed()
    await _pending(feed)
    before = _metric("trailpay_suspicious_events_total", provider="mpesa", reason="amount_mismatch")
    await feed.send(status_event(REF, S.SUCCEEDED, provider_reference="ws_CO_0001",
                                 amount=Money(amount=100, currency="KES")))
    assert feed.status() == "pending"
    assert [d["stage"] for d in feed.dead_letters()] == ["suspicious"]
    assert _metric("trailpay_suspicious_events_total", provider="mpesa",
                   reason="amount_mismatch") == before + 1


async def test_an_airtel_event_for_an_mpesa_payment_is_suspicious() -> None:
    feed = Feed()
    await _pending(feed)
    await feed.send(status_event(REF, S.SUCCEEDED, provider=Provider.AIRTEL, provider_reference="ws_CO_0001"))
    assert feed.status() == "pending"
    [dead] = feed.dead_letters()
    assert dead["stage"] == "suspicious" and "provider_mismatch" in dead["error_message"]


async def test_a_late_success_is_applied_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    feed = Feed()
    await _pending(feed)
    held = feed.processor.load(REF.encode())
    assert held is not None
    await feed.send(expire_request(held))
    assert feed.status() == "expired"
    before = _metric("trailpay_late_payments_total", provider="mpesa", decision="keep")
    with caplog.at_level(logging.WARNING, logger="streams.agents"):
        await feed.send(status_event(REF, S.SUCCEEDED, seconds=400, provider_reference="ws_CO_0001"))

    assert feed.status() == "succeeded"
    assert feed.dead_letters() == []
    late = feed.processor.load(REF.encode())
    assert late is not None and late.snapshot.late_from is S.EXPIRED
    assert _metric("trailpay_late_payments_total", provider="mpesa", decision="keep") == before + 1
    assert any("late payment" in r.getMessage() and REF in r.getMessage() for r in caplog.records)
    # The same success again changes and counts nothing.
    await feed.send(status_event(REF, S.SUCCEEDED, seconds=401, provider_reference="ws_CO_0001"))
    assert _metric("trailpay_late_payments_total", provider="mpesa", decision="keep") == before + 1


async def test_the_rules_given_to_the_processor_decide_the_late_payment() -> None:
    feed = Feed(PaymentRules(late_payment="refund"))
    await _pending(feed)
    held = feed.processor.load(REF.encode())
    assert held is not None
    await feed.send(expire_request(held))
    before = _metric("trailpay_late_payments_total", provider="mpesa", decision="refund")
    await feed.send(status_event(REF, S.SUCCEEDED, seconds=400, provider_reference="ws_CO_0001"))
    assert _metric("trailpay_late_payments_total", provider="mpesa", decision="refund") == before + 1
    commands = [json.loads(v) for t, _, v in feed.producer.sent if t == topics.PROVIDER_COMMANDS]
    assert commands[-1]["kind"] == "refund"


def test_settings_build_the_rules_and_card_deadlines() -> None:
    settings = Settings(late_payment_policy="keep", max_attempts=1, card_pending_deadline_s=900,
                        card_processing_deadline_s=300)
    assert settings.payment_rules() == PaymentRules(max_attempts=1, late_payment="keep")
    policy = DeadlinePolicy.from_settings(settings)
    assert (policy.card_pending_s, policy.card_processing_s) == (900, 300)
    assert Settings().payment_rules() == PaymentRules(max_attempts=3, late_payment="auto")
    assert (Settings().card_pending_deadline_s, Settings().card_processing_deadline_s) == (86_400, 3_600)
