from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trailpay.domain.money import Money, MoneyError, to_major_units, to_minor_units


@pytest.mark.parametrize(("major", "currency", "minor"), [
    ("100", "KES", 10000), ("100.5", "KES", 10050), ("0.01", "USD", 1),
    ("1500", "UGX", 1500), ("1.234", "KWD", 1234), (7, "JPY", 7),
])
def test_exact_conversion(major, currency, minor):
    assert to_minor_units(major, currency) == minor
    assert to_major_units(minor, currency) == Decimal(str(major))


@pytest.mark.parametrize(("major", "currency"), [("0.001", "USD"), ("1.5", "UGX"), ("10.1", "JPY")])
def test_too_many_decimals(major, currency):
    with pytest.raises(MoneyError, match="more decimals"):
        to_minor_units(major, currency)


@pytest.mark.parametrize("bad", ["abc", "NaN", "Infinity", ""])
def test_not_a_number(bad):
    with pytest.raises(MoneyError):
        to_minor_units(bad, "USD")


def test_unknown_currency():
    with pytest.raises(MoneyError, match="unknown"):
        to_minor_units("1", "XYZ")


def test_currency_mismatch():
    with pytest.raises(MoneyError, match="combine"):
        Money.of("1", "USD") + Money.of("1", "KES")


@given(st.integers(0, 10**15), st.sampled_from(["USD", "KES", "UGX", "KWD"]))
def test_round_trip(minor, currency):
    assert to_minor_units(to_major_units(minor, currency), currency) == minor


def test_str():
    assert str(Money.of("12.5", "USD")) == "12.50 USD"
