"""Provider money rules: wire units and limits, written out from the providers' documents
(Stripe: docs.stripe.com/currencies; M-Pesa: Daraja whole shillings, CBK KES 250,000)."""

from __future__ import annotations

import pytest

from trailpay.domain.errors import AmountNotAccepted
from trailpay.domain.events import Money, Provider
from trailpay.domain.provider_money import amount_problem, check_amount, from_wire, to_wire

STRIPE, MPESA, AIRTEL = Provider.STRIPE, Provider.MPESA, Provider.AIRTEL

#: (provider, ISO minor units, currency) -> the integer on the provider's wire.
WIRE = {
    (STRIPE, 1000, "USD"): 1000,  # USD 10.00: cents
    (STRIPE, 500_000, "MGA"): 5000,  # MGA 5,000.00: Stripe takes MGA zero-decimal
    (STRIPE, 500, "JPY"): 500,  # JPY 500: zero-decimal everywhere
    (STRIPE, 20_000, "UGX"): 20_000,
    (STRIPE, 12_340, "KWD"): 12_340,  # KWD 12.340: three decimals, last digit 0
    (STRIPE, 10_000, "KES"): 10_000,  # KES 100.00
    (MPESA, 10_000, "KES"): 100,  # KES 100.00: Daraja's Amount 100
    (AIRTEL, 10_000, "KES"): 100,
    (AIRTEL, 5_000, "UGX"): 5_000,
}


@pytest.mark.parametrize(("case", "wire"), WIRE.items(), ids=[f"{p.value}-{a}-{c}" for p, a, c in WIRE])
def test_to_and_from_the_wire(case, wire):
    provider, minor, currency = case
    money = Money(amount=minor, currency=currency)
    assert to_wire(provider, money) == wire
    assert from_wire(provider, wire, currency.lower()) == money


#: (provider, ISO minor units, currency) -> the reason the API answers 422 with (None: fine).
PROBLEMS = {
    (STRIPE, 1, "USD"): "below Stripe's minimum of 0.50 USD",
    (STRIPE, 49, "USD"): "below Stripe's minimum of 0.50 USD",
    (STRIPE, 50, "USD"): None,
    (STRIPE, 29, "GBP"): "below Stripe's minimum of 0.30 GBP",
    (STRIPE, 30, "GBP"): None,
    (STRIPE, 49, "EUR"): "below Stripe's minimum of 0.50 EUR",
    (STRIPE, 49, "JPY"): "below Stripe's minimum of 50 JPY",
    (STRIPE, 99_999_999, "USD"): None,  # USD 999,999.99: eight digits
    (STRIPE, 100_000_000, "USD"): "above Stripe's maximum of 999999.99 USD",
    (STRIPE, 1234, "MGA"): "Stripe takes whole MGA amounts only (no fractions)",
    (STRIPE, 1200, "MGA"): None,
    (STRIPE, 12_345, "KWD"): "Stripe takes KWD amounts in multiples of 0.010 KWD",
    (STRIPE, 1, "KES"): None,  # no listed minimum: converted to the settlement currency at Stripe
    (STRIPE, 0, "KES"): "must be greater than zero",
    (MPESA, 10_050, "KES"): "M-Pesa takes whole KES amounts only (no fractions)",
    (MPESA, 99, "KES"): "M-Pesa takes whole KES amounts only (no fractions)",
    (MPESA, 100, "KES"): None,  # KES 1
    (MPESA, 25_000_000, "KES"): None,  # KES 250,000
    (MPESA, 25_000_100, "KES"): "above M-Pesa's maximum of 250000.00 KES",
    (MPESA, 1000, "UGX"): "M-Pesa takes KES, not UGX",
    (AIRTEL, 25_000_100, "KES"): "above Airtel Money's maximum of 250000.00 KES",
    (AIRTEL, 10_000_000, "UGX"): None,  # no published maximum outside Kenya
}


@pytest.mark.parametrize(("case", "problem"), PROBLEMS.items(), ids=[f"{p.value}-{a}-{c}" for p, a, c in PROBLEMS])
def test_amount_problems(case, problem):
    provider, minor, currency = case
    money = Money(amount=minor, currency=currency)
    assert amount_problem(provider, money) == problem
    if problem is None:
        check_amount(provider, money)
        return
    with pytest.raises(AmountNotAccepted) as err:
        check_amount(provider, money)
    assert (err.value.provider, err.value.reason) == (provider.value, problem)
    with pytest.raises(AmountNotAccepted):
        to_wire(provider, money)
