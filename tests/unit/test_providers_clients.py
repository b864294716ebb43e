"""Pure parts of the provider clients: phones, amounts, Daraja password, token cache, retries."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from connectors.providers.http import ProviderUnavailable, RetryPolicy, with_retries
from connectors.providers.mobile import InvalidAmount, InvalidPhoneNumber, normalize_ke_msisdn, whole_units
from connectors.providers.mpesa_client import daraja_timestamp, stk_password
from connectors.providers.tokens import CachedToken
from connectors.sandboxes.stripe_wire import parse_form
from trailpay.domain.errors import ProviderRejected
from trailpay.domain.money import Money


@pytest.mark.parametrize(("raw", "expected"), [
    ("0712345678", "254712345678"), ("+254712345678", "254712345678"), ("254712345678", "254712345678"),
    ("0112345678", "254112345678"), ("254112345678", "254112345678"), ("0712 345-678", "254712345678")])
def test_phone_forms_accepted(raw, expected):
    assert normalize_ke_msisdn(raw) == expected


@pytest.mark.parametrize("raw", ["", None, "0812345678", "071234567", "07123456789", "+255712345678", "abc"])
def test_phone_forms_refused_with_a_clear_error(raw):
    with pytest.raises(InvalidPhoneNumber) as info:
        normalize_ke_msisdn(raw)
    assert "345678" not in str(info.value)  # never the full number


def test_whole_shillings_only():
    assert whole_units(Money(amount=10_000, currency="KES"), "KES") == 100
    with pytest.raises(InvalidAmount, match="fraction"):
        whole_units(Money(amount=10_050, currency="KES"), "KES")
    with pytest.raises(InvalidAmount, match="KES"):
        whole_units(Money(amount=100, currency="USD"), "KES")
    with pytest.raises(InvalidAmount):
        whole_units(Money(amount=0, currency="KES"), "KES")


def test_daraja_password_and_nairobi_timestamp():
    ts = daraja_timestamp(datetime(2025, 1, 31, 22, 30, 5, tzinfo=UTC))
    assert ts == "20250201013005"  # UTC+3
    assert base64.b64decode(stk_password("174379", "pk", ts)).decode() == f"174379pk{ts}"


async def test_token_cached_and_refreshed_before_expiry():
    now = [0.0]
    calls = []

    async def fetch():
        calls.append(now[0])
        return f"t{len(calls)}", 3600.0

    token = CachedToken(fetch, refresh_margin_s=60, clock=lambda: now[0])
    assert await token.get() == "t1"
    now[0] = 3500
    assert await token.get() == "t1"
    now[0] = 3541  # inside the 60 s margin: refreshed before it expires
    assert await token.get() == "t2"
    token.invalidate()
    assert await token.get() == "t3"


async def test_retry_policy_retries_retriable_only():
    fast = RetryPolicy(attempts=3, base_delay_s=0.0, max_delay_s=0.0)
    attempts = []

    async def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise ProviderUnavailable("x", "500", "boom")
        return "ok"

    assert await with_retries("x", flaky, fast, what="t") == "ok" and len(attempts) == 3

    refused = []

    async def no():
        refused.append(1)
        raise ProviderRejected("x", "400", "bad")

    with pytest.raises(ProviderRejected):
        await with_retries("x", no, fast, what="t")
    assert len(refused) == 1


def test_retry_delay_is_jittered_and_bounded():
    policy = RetryPolicy(attempts=5, base_delay_s=0.2, max_delay_s=1.0)
    delays = [policy.delay(4) for _ in range(200)]
    assert all(0 <= d <= 1.0 for d in delays) and len(set(delays)) > 100
    assert policy.delay(0, retry_after=0.8) >= 0.8


def test_stripe_form_parsing():
    body = b"amount=1500&metadata[trailpay_reference]=TP1&payment_method_types[0]=card&expand[]=x&confirm=true"
    assert parse_form(body) == {"amount": "1500", "metadata": {"trailpay_reference": "TP1"},
                                "payment_method_types": ["card"], "expand": ["x"], "confirm": "true"}
