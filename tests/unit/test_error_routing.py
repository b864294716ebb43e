"""Consumers route failures by the error's type (trailpay/retry.py ``dead_letter_stage``):

- a retriable error is retried by the policy, then dead-lettered under ``<stage>.exhausted``;
- a permanent error is dead-lettered at once under the consumer's stage;
- an exception that is no TrailPay error is a bug: ``<stage>.bug``, counted and logged.

Exercised on the dispatcher, the notifier and the sink runner with fakes (no broker).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx
from prometheus_client import REGISTRY

from connectors.email.senders import MailRejected, MailRetriable
from connectors.providers.http import ProviderUnavailable, with_retries
from sinks.contract import Sink, SinkBackpressure, SinkRecord
from sinks.runner import SinkRunner
from streams.agents.dispatcher import Dispatcher
from streams.agents.notifications import MailNotDelivered, Notifier, deliver
from streams.agents.retention import ExpiringTable
from tests.unit.stream_fakes import FakeTable, FaustProducer
from trailpay import codec, topics
from trailpay.domain.errors import InvalidRecord, PermanentError, ProviderRejected
from trailpay.domain.events import (
    Money,
    Notification,
    NotificationTemplate,
    Provider,
    ProviderCommand,
    ProviderCommandKind,
    ProviderEvent,
)
from trailpay.retry import RetryPolicies, RetryPolicy, dead_letter_stage
from trailpay.settings import Settings

#: Three attempts, no waiting (asyncio.sleep(0) only yields).
NO_WAIT = RetryPolicy(attempts=3, base_delay_s=0.0, max_delay_s=0.0)


def bugs(stage: str, error_type: str) -> float:
    labels = {"stage": stage, "error_type": error_type}
    return REGISTRY.get_sample_value("trailpay_unexpected_errors_total", labels) or 0.0


def event(topic: str, value: bytes, key: bytes = b"TP1", offset: int = 7) -> Any:
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=1, offset=offset, key=key,
                                                   value=value))


# ----------------------------------------------------------------------------- the rule


def test_the_stage_says_how_the_consumer_gave_up(caplog):
    before = bugs("payments", "KeyError")
    assert dead_letter_stage("payments", InvalidRecord("bad")) == "payments"
    assert dead_letter_stage("payments", ProviderUnavailable("mpesa", "503", "down")) == "payments.exhausted"
    with caplog.at_level(logging.ERROR, logger="trailpay.retry"):
        assert dead_letter_stage("payments", KeyError("snapshot"), where="x[0]@1") == "payments.bug"
    assert bugs("payments", "KeyError") == before + 1
    [record] = [r for r in caplog.records if r.name == "trailpay.retry"]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "BUG in payments (x[0]@1)" in record.getMessage()


# ----------------------------------------------------------------------------- dispatcher


class FakeGateway:
    provider = Provider.MPESA

    def __init__(self, exc: BaseException | None) -> None:
        self.exc, self.calls = exc, 0

    async def execute(self, command: ProviderCommand) -> list[ProviderEvent]:
        self.calls += 1
        if self.exc is not None:
            raise self.exc
        return []

    async def aclose(self) -> None:
        return None


def command() -> ProviderCommand:
    return ProviderCommand(event_id="c-1", occurred_at=datetime(2026, 1, 5, tzinfo=UTC),
                           kind=ProviderCommandKind.INITIATE, reference="TP1", provider=Provider.MPESA,
                           amount=Money(amount=10_000, currency="KES"), user_id="u-1",
                           phone_number="254712345678")


async def dispatch(gateway: FakeGateway, value: bytes) -> FaustProducer:
    table = ExpiringTable(FakeTable(), 3600.0, "provider-commands-done")
    dispatcher = Dispatcher(table, {Provider.MPESA: gateway}, 4, NO_WAIT)
    producer = FaustProducer()
    await dispatcher.process([event(topics.PROVIDER_COMMANDS, value)], producer)
    return producer


async def test_dispatcher_retries_a_retriable_error_then_dead_letters_it_as_exhausted():
    gateway = FakeGateway(ProviderUnavailable("mpesa", "503", "down"))
    producer = await dispatch(gateway, codec.encode(command()))
    assert gateway.calls == 3
    [letter] = producer.dead_letters()
    assert (letter.stage, letter.error_type) == ("dispatcher.exhausted", "ProviderUnavailable")
    assert letter.offset == 7 and letter.reference == "TP1"


async def test_dispatcher_dead_letters_a_permanent_error_at_once():
    gateway = FakeGateway(None)
    producer = await dispatch(gateway, b'{"not": "a command"}')
    assert gateway.calls == 0
    [letter] = producer.dead_letters()
    assert (letter.stage, letter.error_type) == ("dispatcher", "InvalidRecord")


async def test_dispatcher_turns_a_refusal_into_command_failed_without_retrying():
    gateway = FakeGateway(ProviderRejected("mpesa", "2001", "wrong pin"))
    producer = await dispatch(gateway, codec.encode(command()))
    assert gateway.calls == 1 and producer.dead_letters() == []
    [(topic, _, value)] = producer.sent
    failed = codec.decode(topics.PROVIDER_EVENTS, value)
    assert topic == topics.PROVIDER_EVENTS and failed.kind.value == "command_failed"
    assert failed.provider_code == "2001"


async def test_dispatcher_dead_letters_a_bug_under_its_own_stage_and_counts_it():
    before = bugs("dispatcher", "ZeroDivisionError")
    gateway = FakeGateway(ZeroDivisionError("division by zero"))
    producer = await dispatch(gateway, codec.encode(command()))
    assert gateway.calls == 1  # a bug is not retried
    [letter] = producer.dead_letters()
    assert (letter.stage, letter.error_type) == ("dispatcher.bug", "ZeroDivisionError")
    assert bugs("dispatcher", "ZeroDivisionError") == before + 1


# ----------------------------------------------------------------------------- notifier


class FakeSender:
    def __init__(self, exc: BaseException | None) -> None:
        self.exc, self.calls = exc, 0

    async def send(self, event_id: str, message: Any) -> None:
        self.calls += 1
        if self.exc is not None:
            raise self.exc


def notification() -> bytes:
    note = Notification(event_id="TP1:payment_succeeded", occurred_at=datetime(2026, 1, 5, tzinfo=UTC),
                        template=NotificationTemplate.PAYMENT_SUCCEEDED, reference="TP1", user_id="u-1",
                        email="traveller@example.com", amount=Money(amount=125_000, currency="KES"),
                        provider=Provider.MPESA)
    return codec.encode(note)


async def notify(sender: FakeSender) -> FaustProducer:
    producer = FaustProducer()
    ctx = SimpleNamespace(app=SimpleNamespace(producer=producer), settings=Settings())
    sent = ExpiringTable(FakeTable(), 3600.0, "notifications-sent")
    notifier = Notifier(ctx, sent, sender, NO_WAIT)  # type: ignore[arg-type]
    await notifier.process([event(topics.NOTIFICATIONS, notification())])
    return producer


async def test_notifier_retries_then_dead_letters_as_exhausted_with_the_cause_chained():
    sender = FakeSender(MailRetriable("connection refused"))
    producer = await notify(sender)
    assert sender.calls == 3
    [letter] = producer.dead_letters()
    assert (letter.stage, letter.error_type) == ("notifications.exhausted", "MailNotDelivered")
    assert "connection refused" in letter.error_message


async def test_notifier_dead_letters_a_refusal_at_once():
    sender = FakeSender(MailRejected("recipient refused"))
    producer = await notify(sender)
    assert sender.calls == 1
    [letter] = producer.dead_letters()
    assert (letter.stage, letter.error_type) == ("notifications", "MailRejected")


async def test_notifier_dead_letters_a_bug_under_its_own_stage():
    before = bugs("notifications", "AttributeError")
    sender = FakeSender(AttributeError("'NoneType' object has no attribute 'send_message'"))
    producer = await notify(sender)
    assert sender.calls == 1
    [letter] = producer.dead_letters()
    assert (letter.stage, letter.error_type) == ("notifications.bug", "AttributeError")
    assert bugs("notifications", "AttributeError") == before + 1


# ----------------------------------------------------------------------------- sink runner


class FakeSink(Sink):
    """Buffers record offsets; ``refuse`` maps an offset to what ``add``/``flush`` raise."""

    name = "fake"
    topics = (topics.PAYMENT_STATE,)

    def __init__(self, on_add: dict[int, BaseException], on_flush: list[BaseException]) -> None:
        self.on_add, self.on_flush = on_add, on_flush
        self.buffer: list[int] = []
        self.written: list[int] = []
        self.flushes = 0

    def add(self, record: SinkRecord) -> None:
        if record.offset in self.on_add:
            raise self.on_add[record.offset]
        self.buffer.append(record.offset)

    async def flush(self) -> None:
        self.flushes += 1
        if self.on_flush:
            raise self.on_flush.pop(0)
        self.written += self.buffer
        self.buffer = []

    def discard(self) -> None:
        self.buffer = []

    @property
    def pending(self) -> int:
        return len(self.buffer)


class FakeRecordProducer:
    def __init__(self) -> None:
        self.letters: list[Any] = []

    async def send(self, topic: str, key: str | None, record: Any) -> None:
        self.letters.append(record)


def runner(sink: FakeSink, write: RetryPolicy) -> tuple[SinkRunner, FakeRecordProducer]:
    policies = RetryPolicies(sink_write=write, sink_dead_letter=NO_WAIT)
    run = SinkRunner(Settings(), sink, policies=policies)
    producer = FakeRecordProducer()
    run._letters._producer = producer  # type: ignore[assignment]
    return run, producer


def record(offset: int) -> SinkRecord:
    return SinkRecord(topics.PAYMENT_STATE, 0, offset, b"TP1", b"{}")


async def test_sink_runner_retries_an_outage_and_writes_the_same_batch():
    sink = FakeSink({}, [SinkBackpressure("PostgreSQL unavailable"), SinkBackpressure("still")])
    run, producer = runner(sink, RetryPolicy(attempts=None, base_delay_s=0.0, max_delay_s=0.0))
    for offset in (1, 2, 3):
        await run._take(record(offset))
    assert await run._write_batch() is True
    assert sink.flushes == 3 and sink.written == [1, 2, 3] and producer.letters == []


async def test_sink_runner_dead_letters_an_exhausted_batch_under_a_bounded_policy():
    sink = FakeSink({}, [SinkBackpressure("down")] * 3)
    run, producer = runner(sink, NO_WAIT)
    for offset in (1, 2):
        await run._take(record(offset))
    assert await run._write_batch() is True
    assert sink.written == []
    assert [(d.offset, d.stage) for d in producer.letters] == [(1, "fake.exhausted"), (2, "fake.exhausted")]


async def test_sink_runner_routes_bad_records_permanent_at_once_and_bugs_apart():
    before = bugs("fake", "KeyError")
    sink = FakeSink({2: InvalidRecord("not a valid record"), 3: KeyError("payment")}, [])
    run, producer = runner(sink, NO_WAIT)
    for offset in (1, 2, 3, 4):
        await run._take(record(offset))
    assert await run._write_batch() is True
    assert sink.written == [1, 4]
    assert [(d.offset, d.stage, d.error_type) for d in producer.letters] == [
        (2, "fake", "InvalidRecord"), (3, "fake.bug", "KeyError")]
    assert bugs("fake", "KeyError") == before + 1


async def test_sink_runner_finds_the_row_a_permanent_flush_error_is_about():
    sink = FakeSink({}, [PermanentError("a row refused"), PermanentError("row 2 refused")])
    run, producer = runner(sink, NO_WAIT)
    for offset in (1, 2, 3):
        await run._take(record(offset))
    # batch refused -> one by one: record 1's flush is refused, 2 and 3 are written
    assert await run._write_batch() is True
    assert sink.written == [2, 3]
    assert [(d.offset, d.stage) for d in producer.letters] == [(1, "fake")]


# ----------------------------------------------------------------------------- causes


async def test_provider_transport_errors_keep_their_cause():
    calls = []

    async def refused() -> None:
        calls.append(1)
        raise httpx.ConnectError("connection refused")

    try:
        await with_retries("mpesa", refused, NO_WAIT, what="stk push")
    except ProviderUnavailable as exc:
        assert isinstance(exc.__cause__, httpx.ConnectError) and exc.code == "connection"
    else:  # pragma: no cover
        raise AssertionError("no ProviderUnavailable")
    assert len(calls) == 3


async def test_undelivered_mail_keeps_the_last_failure_as_its_cause():
    async def no_sleep(_seconds: float) -> None:
        return None

    note = codec.decode(topics.NOTIFICATIONS, notification())
    try:
        await deliver(FakeSender(MailRetriable("421 try later")), note, None, NO_WAIT, sleep=no_sleep)
    except MailNotDelivered as exc:
        assert isinstance(exc.__cause__, MailRetriable) and "421 try later" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("no MailNotDelivered")
