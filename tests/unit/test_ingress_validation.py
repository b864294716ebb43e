"""Pure validation of the ingress: amounts, phones, providers, routing, references."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from connectors.ingress.bodies import parse_json, parse_model
from connectors.ingress.errors import ApiError
from connectors.ingress.idempotency import request_hash
from connectors.ingress.models import CreatePaymentBody, resolve_payment
from trailpay import routing
from trailpay.domain import references
from trailpay.domain.errors import ConfigurationError
from trailpay.domain.events import PaymentMethod, Provider
from trailpay.domain.money import MoneyError
from trailpay.settings import load_settings

S = load_settings()


def fields(exc: pytest.ExceptionInfo[ApiError]) -> dict[str, str]:
    assert exc.value.status == 422
    return exc.value.fields or {}


@pytest.mark.parametrize(("amount", "currency", "minor"), [
    ("100.50", "KES", 10050), (Decimal("99.99"), "USD", 9999), (100, "KES", 10000),
    ("1000", "UGX", 1000), ("1.234", "KWD", 1234), ("0.01", "EUR", 1),
])
def test_exact_minor_units(amount, currency, minor):
    assert routing.exact_minor_units(amount, currency) == minor


@pytest.mark.parametrize(("amount", "currency", "why"), [
    ("0", "KES", "greater than zero"), ("-5", "KES", "greater than zero"),
    ("1.001", "KES", "more decimals"), ("10.5", "UGX", "more decimals"),
    (1.5, "KES", "decimal string"), (True, "KES", "decimal string"),
    ("abc", "KES", "not a decimal"), ("NaN", "KES", "finite"), ("1e30", "KES", "too large"),
])
def test_bad_amounts(amount, currency, why):
    with pytest.raises(MoneyError, match=why):
        routing.exact_minor_units(amount, currency)


def test_whole_units_only():
    assert routing.exact_minor_units("100", "KES", whole_only=True) == 10000
    with pytest.raises(MoneyError, match="whole number"):
        routing.exact_minor_units("100.50", "KES", whole_only=True)


def test_json_numbers_stay_exact():
    data = parse_json(b'{"amount": 1.000000000000000000001, "b": 99.99}')
    assert data["amount"] == Decimal("1.000000000000000000001")
    with pytest.raises(ApiError) as exc:
        parse_json(b'{"amount": NaN}')
    assert exc.value.status == 400


@pytest.mark.parametrize(("raw", "country", "expected"), [
    ("+254700000000", "KE", "254700000000"), ("0712 345-678", "KE", "254712345678"),
    ("712345678", "KE", "254712345678"), ("254110000001", "KE", "254110000001"),
    ("+256 772 123456", "UG", "256772123456"),
])
def test_phone_normalisation(raw, country, expected):
    assert routing.normalize_phone(raw, country) == expected


@pytest.mark.parametrize(("raw", "country"), [
    ("+255712345678", "KE"), ("07123", "KE"), ("0812345678", "KE"), ("07abc45678", "KE"),
    ("2547123456789", "KE"), ("", "KE"), ("0712345678", "XX"),
])
def test_bad_phones(raw, country):
    with pytest.raises(ValueError):
        routing.normalize_phone(raw, country)


def test_routing_defaults():
    assert routing.route(S, "KES", "KE", PaymentMethod.MOBILE_MONEY) is Provider.MPESA
    assert routing.route(S, "USD", None, PaymentMethod.CARD) is Provider.STRIPE
    assert routing.route(S, "USD", None, PaymentMethod.MOBILE_MONEY) is None


def test_routing_is_configuration():
    s = load_settings(provider_routes=json.dumps([
        {"currency": "KES", "method": "mobile_money", "provider": "airtel"},
        {"provider": "stripe"},
    ]))
    assert routing.route(s, "KES", "KE", PaymentMethod.MOBILE_MONEY) is Provider.AIRTEL
    assert routing.route(s, "EUR", "FR", PaymentMethod.CARD) is Provider.STRIPE
    with pytest.raises(ConfigurationError):
        routing.routes(load_settings(provider_routes="[{\"provider\": \"paypal\"}]"))


def test_references():
    ref = references.new_reference()
    assert len(ref) == 22 and ref.startswith("TP") and ref[2:].isalnum() and ref[2:].upper() == ref[2:]
    a = references.booking_reference("B-1", 2)
    assert a == references.booking_reference("B-1", 2) != references.booking_reference("B-1", 3)
    assert a.startswith("TPB-") and len(a) == 24


def resolve(**kw):
    base = {"amount": "100", "currency": "KES", "method": None, "provider": None,
            "phone_number": None, "country": None}
    base.update(kw)
    return resolve_payment(S, **base)


def test_resolve_mpesa_by_id_and_code():
    for provider in (1, "mpesa", "1"):
        r = resolve(provider=provider, phone_number="+254700000000")
        assert (r.provider, r.method, r.phone_number, r.amount.amount) == (
            Provider.MPESA, PaymentMethod.MOBILE_MONEY, "254700000000", 10000)


def test_resolve_routes_when_no_provider():
    assert resolve(phone_number="0700000000").provider is Provider.MPESA
    assert resolve(currency="USD", amount="99.99").provider is Provider.STRIPE


@pytest.mark.parametrize(("kw", "field", "why"), [
    ({"amount": "0", "provider": "stripe", "currency": "USD"}, "amount", "greater than zero"),
    ({"amount": "-1", "provider": "stripe", "currency": "USD"}, "amount", "greater than zero"),
    ({"amount": "1.001", "provider": "stripe", "currency": "USD"}, "amount", "more decimals"),
    ({"amount": "100.50", "provider": "mpesa", "phone_number": "0700000000"}, "amount", "whole"),
    ({"currency": "XYZ", "provider": "stripe"}, "currency", "unknown"),
    ({"provider": "paypal"}, "provider", "unsupported"),
    ({"provider": 99}, "provider", "unsupported"),
    ({"provider": "mpesa", "phone_number": "12345"}, "phone_number", "not a valid"),
    ({"provider": "mpesa"}, "phone_number", "required"),
    ({"provider": "mpesa", "currency": "USD", "phone_number": "0700000000"}, "currency", "does not take"),
    ({"provider": "stripe", "method": "mobile_money"}, "payment_method", "does not take"),
])
def test_resolve_rejects_with_reason_per_field(kw, field, why):
    with pytest.raises(ApiError) as exc:
        resolve(**kw)
    assert why in fields(exc)[field]


def test_all_bad_fields_reported_at_once():
    with pytest.raises(ApiError) as exc:
        resolve(provider="mpesa", amount="100.5", phone_number="abc")
    assert {"amount", "phone_number"} <= set(fields(exc))


def test_body_model_reports_unknown_and_missing_fields():
    with pytest.raises(ApiError) as exc:
        parse_model(CreatePaymentBody, b'{"currency": "KES", "colour": "red"}')
    f = fields(exc)
    assert "amount" in f and "colour" in f
    body = parse_model(CreatePaymentBody, b'{"amount": 99.99, "currency": "USD", "booking_id": 123}')
    assert body.amount == Decimal("99.99") and body.booking_id == "123"


def test_request_hash_ignores_key_order_but_not_content():
    a = request_hash("POST", "/x", b'{"a": 1, "b": "2"}')
    assert a == request_hash("POST", "/x", b'{"b":"2","a":1}')
    assert a != request_hash("POST", "/x", b'{"a": 2, "b": "2"}')
    assert a != request_hash("POST", "/y", b'{"a": 1, "b": "2"}')
