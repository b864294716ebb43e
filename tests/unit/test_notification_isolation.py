"""One notification that cannot be rendered or sent is a dead letter; the rest of its batch
goes out (issue 16: an e-mail with CR/LF stopped the agent and lost the others' e-mails)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from types import SimpleNamespace
from typing import Any

import pytest

from connectors.email.addresses import UnsendableAddress, checked_address
from connectors.email.templates import render
from streams.agents.notifications import Notifier
from streams.agents.retention import ExpiringTable
from tests.unit.stream_fakes import FakeTable, FaustProducer
from trailpay import codec, topics
from trailpay.domain.events import Notification, NotificationTemplate, Provider
from trailpay.domain.money import Money
from trailpay.retry import RetryPolicy
from trailpay.settings import Settings

NO_WAIT = RetryPolicy(attempts=2, base_delay_s=0.0, max_delay_s=0.0)


class Outbox:
    def __init__(self) -> None:
        self.messages: dict[str, EmailMessage] = {}

    async def send(self, event_id: str, message: EmailMessage) -> None:
        self.messages[event_id] = message


def note(n: int, email: str) -> bytes:
    return codec.encode(Notification(
        event_id=f"TP{n}:payment_succeeded", occurred_at=datetime(2026, 1, 5, tzinfo=UTC),
        template=NotificationTemplate.PAYMENT_SUCCEEDED, reference=f"TP{n}", user_id="u-1",
        email=email, amount=Money(amount=125_000, currency="KES"), provider=Provider.MPESA))


def event(value: bytes, key: bytes, offset: int) -> Any:
    message = SimpleNamespace(topic=topics.NOTIFICATIONS, partition=0, offset=offset, key=key,
                              value=value)
    return SimpleNamespace(message=message)


async def test_a_crlf_address_is_a_dead_letter_and_the_other_two_e_mails_go_out():
    values = [note(1, "first@example.com"), note(2, "victim@example.com\r\nBcc: all@evil.example"),
              note(3, "third@example.com")]
    producer, outbox = FaustProducer(), Outbox()
    ctx = SimpleNamespace(app=SimpleNamespace(producer=producer), settings=Settings())
    sent = ExpiringTable(FakeTable(), 3600.0, "notifications-sent")
    notifier = Notifier(ctx, sent, outbox, NO_WAIT)  # type: ignore[arg-type]
    await notifier.process([event(v, f"TP{i}".encode(), 10 + i) for i, v in enumerate(values, 1)])
    assert sorted(outbox.messages) == ["TP1:payment_succeeded", "TP3:payment_succeeded"]
    assert outbox.messages["TP3:payment_succeeded"]["To"] == "third@example.com"
    [letter] = producer.dead_letters()
    assert (letter.offset, letter.stage, letter.error_type) == (12, "notifications", "UnsendableAddress")
    assert letter.value == values[1] and letter.reference == "TP2"
    assert "Bcc" not in letter.error_message


async def test_garbage_between_notifications_is_a_dead_letter_too():
    producer, outbox = FaustProducer(), Outbox()
    ctx = SimpleNamespace(app=SimpleNamespace(producer=producer), settings=Settings())
    sent = ExpiringTable(FakeTable(), 3600.0, "notifications-sent")
    notifier = Notifier(ctx, sent, outbox, NO_WAIT)  # type: ignore[arg-type]
    nested = b"[" * 5000 + b"]" * 5000
    batch = [note(1, "a@example.com"), b"\xff\xfe", nested, b'{"event_id":"x"}', note(2, "b@example.com")]
    await notifier.process([event(v, b"k", i) for i, v in enumerate(batch)])
    assert sorted(outbox.messages) == ["TP1:payment_succeeded", "TP2:payment_succeeded"]
    assert [(d.offset, d.value) for d in producer.dead_letters()] == [
        (1, b"\xff\xfe"), (2, nested), (3, b'{"event_id":"x"}')]


@pytest.mark.parametrize("address", [
    "a@example.com\r\nBcc: x@y.z", "a@example.com\n", "two@example.com, three@example.com",
    "no-at-sign", "a@b", "<a@example.com>", "a\x00@example.com", "x" * 320 + "@example.com",
])
def test_addresses_that_cannot_be_one_recipient_are_refused(address):
    with pytest.raises(UnsendableAddress):
        checked_address(address)


def test_a_plain_address_is_kept_and_header_text_from_clients_stays_one_line():
    assert checked_address(" first.last+tag@mail.example.co.ke ") == "first.last+tag@mail.example.co.ke"
    n = Notification.model_validate_json(note(1, "a@example.com"))
    n = n.model_copy(update={"reference": "TP1\r\nBcc: x@y.z"})
    msg = render(n, Settings())
    assert msg["X-TrailPay-Reference"] == "TP1  Bcc: x@y.z" and msg["Bcc"] is None
