"""The late-payment notification has its own e-mail (not the refund one)."""

from __future__ import annotations

from datetime import UTC, datetime

from connectors.email.templates import render
from trailpay.domain.events import Money, Notification, NotificationTemplate, Provider
from trailpay.settings import load_settings


def test_late_payment_email():
    note = Notification(event_id="n-late", occurred_at=datetime(2025, 3, 1, tzinfo=UTC),
                        template=NotificationTemplate.PAYMENT_SUCCEEDED_LATE, reference="TPB-1",
                        user_id="u", email="a@example.com", amount=Money(amount=125000, currency="KES"),
                        provider=Provider.MPESA,
                        detail="it arrived after the payment was expired; it is kept as your payment")
    message = render(note, load_settings())
    assert message["Subject"].endswith("Payment received after all: KES 1,250.00 (TPB-1)")
    body = message.get_content()
    assert "reached us after we had told you it did not go through" in body
    assert "It arrived after the payment was expired; it is kept as your payment." in body
    assert "Refund issued" not in message["Subject"]
