"""The API answers 422 with the provider's own reason for an amount it cannot take."""

from __future__ import annotations

import pytest

from connectors.ingress.errors import ApiError
from connectors.ingress.models import resolve_payment
from trailpay.settings import load_settings

S = load_settings()


def _resolve(amount: str, currency: str, provider: str, phone: str | None = None):
    return resolve_payment(S, amount=amount, currency=currency, method=None, provider=provider,
                           phone_number=phone, country=None)


@pytest.mark.parametrize(("amount", "currency", "provider", "phone", "reason"), [
    ("0.01", "USD", "stripe", None, "below Stripe's minimum of 0.50 USD"),
    ("1000000", "USD", "stripe", None, "above Stripe's maximum of 999999.99 USD"),
    ("12.34", "MGA", "stripe", None, "Stripe takes whole MGA amounts only (no fractions)"),
    ("1.005", "KWD", "stripe", None, "Stripe takes KWD amounts in multiples of 0.010 KWD"),
    ("250001", "KES", "mpesa", "0700000000", "above M-Pesa's maximum of 250000.00 KES"),
])
def test_an_amount_the_provider_cannot_take_is_422_with_its_reason(amount, currency, provider, phone, reason):
    with pytest.raises(ApiError) as exc:
        _resolve(amount, currency, provider, phone)
    assert exc.value.status == 422
    assert (exc.value.fields or {}) == {"amount": reason}


@pytest.mark.parametrize(("amount", "currency", "provider", "phone", "minor"), [
    ("0.50", "USD", "stripe", None, 50),
    ("5000", "MGA", "stripe", None, 500_000),
    ("1.010", "KWD", "stripe", None, 1010),
    ("250000", "KES", "mpesa", "0700000000", 25_000_000),
])
def test_amounts_the_provider_takes_pass(amount, currency, provider, phone, minor):
    assert _resolve(amount, currency, provider, phone).amount.amount == minor
