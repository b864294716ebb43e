"""The sweeper and the retry window: a mobile-money payment waiting for the customer's
retry gets its ExpirePayment at the deadline, with no provider query and no grace; a
payment waiting for a provider answer still gets the query first."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any, cast

from streams.agents.open_index import OpenEntry, OpenPayments
from streams.agents.sweeper import sweep
from tests.unit.payment_factory import created, status_event
from trailpay import topics
from trailpay.domain.deadlines import DeadlinePolicy
from trailpay.domain.payment import Payment
from trailpay.domain.state_machine import apply
from trailpay.domain.status import PaymentStatus

S = PaymentStatus
REF = "TPTEST0000000000000001"
POLICY = DeadlinePolicy(retry_window_s=4)


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def send(self, topic: str, key: Any, value: bytes, *_: Any) -> None:
        self.sent.append((topic, json.loads(value)))

    async def flush(self) -> None:
        return None


class FakeProcessor:
    policy = POLICY

    def __init__(self, payment: Payment) -> None:
        assert payment.snapshot.deadline_at is not None
        self.view = OpenPayments(entries={REF.encode(): OpenEntry(payment.snapshot.deadline_at, 0)},
                                 load=lambda _key: payment)

    @contextlib.asynccontextmanager
    async def open_payments(self) -> AsyncIterator[OpenPayments]:
        yield self.view


async def _sweep(payment: Payment) -> list[tuple[str, dict[str, Any]]]:
    producer = FakeProducer()
    processor = FakeProcessor(payment)
    await sweep(cast(Any, processor), producer)
    await sweep(cast(Any, processor), producer)  # a second tick sends nothing more
    return producer.sent


async def test_a_payment_waiting_for_a_retry_is_ended_at_its_deadline_without_a_query() -> None:
    waiting = apply(created(REF), status_event(REF, S.FAILED, provider_reference="ws_CO_1", seconds=10,
                                               provider_code="2001", provider_message="wrong PIN"),
                    policy=POLICY).payment
    assert waiting is not None and waiting.status is S.PENDING
    sent = await _sweep(waiting)
    assert [(topic, record["kind"], record["occurred_at"], record["reason"]) for topic, record in sent] == [
        (topics.PAYMENT_REQUESTS, "expire", "2025-03-01T08:00:14Z", "no retry within 4s of the failed attempt")]


async def test_a_payment_waiting_for_the_provider_is_queried_first() -> None:
    pushed = apply(created(REF), status_event(REF, S.PENDING, provider_reference="ws_CO_1", seconds=1,
                                              source="dispatcher"), policy=POLICY).payment
    assert pushed is not None
    sent = await _sweep(pushed)
    assert [(topic, record["kind"]) for topic, record in sent] == [
        (topics.PROVIDER_COMMANDS, "query"), (topics.PAYMENT_REQUESTS, "expire")]
    assert sent[1][1]["occurred_at"] == "2025-03-01T08:03:01Z"  # 1 s + 120 s deadline + 60 s grace
