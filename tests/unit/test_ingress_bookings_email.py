"""The booking bridge's mapping and the e-mail templates/senders (pure, no broker)."""

from __future__ import annotations

import asyncio
import email
from datetime import UTC, datetime

import pytest

from connectors.email.senders import MailRejected, OutboxSender
from connectors.email.templates import format_amount, render
from streams.agents.bookings import UnpayableBooking, requests_for
from streams.agents.notifications import MailNotDelivered, deliver
from trailpay.domain.errors import RetriableError
from trailpay.domain.events import (
    BookingEvent,
    CancelPayment,
    CreatePayment,
    Money,
    Notification,
    NotificationTemplate,
    Provider,
)
from trailpay.domain.references import booking_reference
from trailpay.settings import load_settings

S = load_settings()
T = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def booking(kind="created", revision=1, **kw):
    base = dict(event_id=f"b-{kind}-{revision}", occurred_at=T, kind=kind, booking_id="BK-7",
                user_id="usr_1", amount=Money(amount=250000, currency="KES"), country="KE",
                phone_number="0712345670", email="a@example.com", revision=revision)
    base.update(kw)
    return BookingEvent(**base)


def test_created_and_confirmed_make_the_same_request():
    a = requests_for(booking("created"), S)
    b = requests_for(booking("confirmed"), S)
    assert a == b and len(a) == 1
    ref, create = a[0]
    assert isinstance(create, CreatePayment)
    assert ref == create.reference == booking_reference("BK-7", 1)
    assert (create.provider, create.phone_number, create.source) == (Provider.MPESA, "254712345670", "booking")


def test_routing_by_currency_and_method():
    _, card = requests_for(booking(amount=Money(amount=9999, currency="USD"), country="US",
                                   phone_number=None), S)[0]
    assert card.provider is Provider.STRIPE
    _, chosen = requests_for(booking(provider="airtel"), S)[0]
    assert chosen.provider is Provider.AIRTEL


def test_cancel_and_amend():
    [(ref, cancel)] = requests_for(booking("cancelled"), S)
    assert isinstance(cancel, CancelPayment) and cancel.refund_if_paid and ref == booking_reference("BK-7", 1)
    amended = requests_for(booking("amended", revision=2), S)
    assert [type(r) for _, r in amended] == [CancelPayment, CreatePayment]
    assert amended[0][0] == booking_reference("BK-7", 1) and amended[1][0] == booking_reference("BK-7", 2)


@pytest.mark.parametrize("kw", [
    {"phone_number": None, "preferred_method": "mobile_money"},  # mobile money needs a phone
    {"phone_number": "12"},                                      # bad phone
    {"amount": Money(amount=250050, currency="KES")},            # fractional KES for M-Pesa
    {"amount": Money(amount=100, currency="EUR"), "preferred_method": "mobile_money"},
])
def test_unpayable_bookings_are_refused(kw):
    with pytest.raises(UnpayableBooking):
        requests_for(booking(**kw), S)


def note(template=NotificationTemplate.PAYMENT_SUCCEEDED, detail=""):
    return Notification(event_id="n-1", occurred_at=T, template=template, reference="TPB-1",
                        user_id="usr_1", email="a@example.com", booking_id="BK-7",
                        amount=Money(amount=125000, currency="KES"), provider=Provider.MPESA,
                        detail=detail)


def test_templates():
    assert format_amount(Money(amount=125000, currency="KES")) == "KES 1,250.00"
    assert format_amount(Money(amount=5000, currency="UGX")) == "UGX 5,000"
    ok = render(note(), S)
    assert "Payment received: KES 1,250.00" in ok["Subject"] and ok["To"] == "a@example.com"
    failed = render(note(NotificationTemplate.PAYMENT_FAILED, "wrong PIN for 254712345678"), S)
    body = failed.get_content()
    assert "did not go through" in body and "254712345678" not in body and "2547" in body
    refund = render(note(NotificationTemplate.REFUND_SUCCEEDED), S)
    assert refund["Subject"].endswith("Refund issued: KES 1,250.00 (TPB-1)")
    assert render(note(), S)["Message-ID"] == render(note(), S)["Message-ID"] == "<n-1@trailpay>"


def test_outbox_writes_once(tmp_path):
    sender = OutboxSender(tmp_path / "outbox")
    asyncio.run(sender.send("n-1", render(note(), S)))
    path = tmp_path / "outbox" / "n-1.eml"
    first = path.read_bytes()
    asyncio.run(sender.send("n-1", render(note(NotificationTemplate.PAYMENT_FAILED), S)))
    assert path.read_bytes() == first
    assert email.message_from_bytes(first)["X-TrailPay-Notification"] == "n-1"


class Flaky:
    def __init__(self, failures, exc=RetriableError):
        self.failures, self.exc, self.calls = failures, exc, 0

    async def send(self, event_id, message):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc("down")


async def no_sleep(_seconds):
    return None


def test_deliver_retries_then_gives_up():
    ok = Flaky(2)
    asyncio.run(deliver(ok, note(), None, sleep=no_sleep))
    assert ok.calls == 3
    bad = Flaky(99)
    with pytest.raises(MailNotDelivered):
        asyncio.run(deliver(bad, note(), None, sleep=no_sleep))
    rejected = Flaky(99, MailRejected)
    with pytest.raises(MailRejected):
        asyncio.run(deliver(rejected, note(), None, sleep=no_sleep))
    assert rejected.calls == 1
