"""Stripe amounts cross the boundary in Stripe's units (MGA is zero-decimal at Stripe)."""

from __future__ import annotations

from connectors.providers.stripe_client import intent_event_fields
from connectors.providers.stripe_webhooks import _money
from trailpay.domain.events import Money


def test_payment_intent_amount_back_in_iso_minor_units():
    pi = {"id": "pi_1", "status": "succeeded", "amount": 5000, "currency": "mga"}
    assert intent_event_fields(pi, after_attempt=False)["amount"] == Money(amount=500_000, currency="MGA")
    usd = {"id": "pi_2", "status": "succeeded", "amount": 1999, "currency": "usd"}
    assert intent_event_fields(usd, after_attempt=False)["amount"] == Money(amount=1999, currency="USD")
    bare = {"id": "pi_3", "status": "requires_payment_method"}
    assert intent_event_fields(bare, after_attempt=False)["amount"] is None


def test_webhook_amount_back_in_iso_minor_units():
    assert _money({"amount": 5000, "currency": "mga"}) == Money(amount=500_000, currency="MGA")
    assert _money({"amount": 12_340, "currency": "kwd"}) == Money(amount=12_340, currency="KWD")
    assert _money({"amount": 100, "currency": "zzz"}) is None
