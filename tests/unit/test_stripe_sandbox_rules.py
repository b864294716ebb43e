"""The Stripe sandbox's own reading of Stripe's rules (docs/sandboxes.md, "Stripe") and the
customer-creation idempotency key."""

from __future__ import annotations

import pytest

from connectors.providers.stripe_client import customer_key
from connectors.sandboxes.stripe_rules import check_charge_amount, check_params, route_key
from connectors.sandboxes.stripe_wire import StripeHTTPError
from tests.unit.payment_factory import REF, create, status_event
from trailpay.domain.events import ConfirmPayment, Provider, ProviderCommandKind
from trailpay.domain.state_machine import apply
from trailpay.domain.status import PaymentStatus


@pytest.mark.parametrize(("method", "parts", "key"), [
    ("POST", ["payment_intents"], ("POST", "payment_intents")),
    ("POST", ["payment_intents", "pi_1", "confirm"], ("POST", "payment_intents/{id}/confirm")),
    ("GET", ["customers", "search"], ("GET", "customers/search")),
    ("GET", ["customers", "cus_1"], ("GET", "customers/{id}")),
])
def test_route_keys(method, parts, key):
    assert route_key(method, parts) == key


def test_unknown_parameters_are_named():
    check_params("POST", ["payment_intents", "pi_1", "cancel"], {"cancellation_reason": "abandoned"})
    with pytest.raises(StripeHTTPError) as info:
        check_params("POST", ["payment_intents", "pi_1", "cancel"], {"reason": "abandoned"})
    assert info.value.body["code"] == "parameter_unknown" and info.value.body["param"] == "reason"
    check_params("POST", ["nonsense"], {"anything": "1"})  # the router answers unknown routes


@pytest.mark.parametrize(("amount", "currency"), [
    (50, "usd"), (30, "gbp"), (50, "jpy"), (1, "mga"), (99_999_999, "usd"), (12_340, "kwd"), (10, "bhd"),
])
def test_amounts_stripe_charges(amount, currency):
    check_charge_amount(amount, currency)


@pytest.mark.parametrize(("amount", "currency", "code"), [
    (49, "usd", "amount_too_small"), (29, "gbp", "amount_too_small"), (49, "jpy", "amount_too_small"),
    (0, "mga", "amount_too_small"), (100_000_000, "usd", "amount_too_large"),
    (12_345, "kwd", "invalid_charge_amount"), (1_001, "omr", "invalid_charge_amount"),
])
def test_amounts_stripe_refuses(amount, currency, code):
    with pytest.raises(StripeHTTPError) as info:
        check_charge_amount(amount, currency)
    assert info.value.body["code"] == code


def test_customer_keys_differ_with_the_parameters_sent():
    old = customer_key("u-1", {"metadata": {"trailpay_user_id": "u-1"}, "email": "old@example.com"})
    new = customer_key("u-1", {"metadata": {"trailpay_user_id": "u-1"}, "email": "new@example.com"})
    again = customer_key("u-1", {"email": "old@example.com", "metadata": {"trailpay_user_id": "u-1"}})
    assert old != new and old == again
    assert old.startswith("trailpay-customer-u-1-") and len(old) == len("trailpay-customer-u-1-") + 32


def test_return_url_and_stored_customer_travel_in_the_initiate_command():
    record = create(REF, provider=Provider.STRIPE, currency="USD", confirm=True).model_copy(
        update={"return_url": "https://shop.example/back", "customer_id": "cus_stored"})
    [command] = apply(None, record).commands
    assert command.kind is ProviderCommandKind.INITIATE
    assert (command.return_url, command.customer_id, command.confirm) == (
        "https://shop.example/back", "cus_stored", True)


def test_the_creates_return_url_goes_with_a_later_confirm():
    record = create(REF, provider=Provider.STRIPE, currency="USD").model_copy(
        update={"return_url": "https://shop.example/back"})
    payment = apply(None, record).payment
    payment = apply(payment, status_event(REF, PaymentStatus.PENDING, provider=Provider.STRIPE,
                                          provider_reference="pi_1")).payment
    confirm = ConfirmPayment(event_id="confirm-1", occurred_at=record.occurred_at, reference=REF,
                             payment_method_id="pm_card_visa")
    [command] = apply(payment, confirm).commands
    assert (command.kind, command.return_url) == (ProviderCommandKind.CONFIRM, "https://shop.example/back")
    own = confirm.model_copy(update={"event_id": "confirm-2", "return_url": "https://shop.example/own"})
    [command] = apply(payment, own).commands
    assert command.return_url == "https://shop.example/own"
