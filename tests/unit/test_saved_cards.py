"""Saved cards (#17 item 6): the request field, the command that carries it, and the Stripe
sandbox's reading of ``setup_future_usage`` and SetupIntents (docs/sandboxes.md)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from connectors.ingress.models import SetupIntentBody, StripeIntentBody
from connectors.sandboxes.callbacks import CallbackSender, Delivery
from connectors.sandboxes.stripe_api import StripeSandbox
from connectors.sandboxes.stripe_rules import check_params, future_usage
from connectors.sandboxes.stripe_wire import StripeHTTPError
from tests.unit.payment_factory import REF, create
from trailpay.domain.events import Provider, ProviderCommandKind
from trailpay.domain.state_machine import apply

CARD = {"amount": "12.00", "currency": "USD"}


# --------------------------------------------------------------------------- the request


@pytest.mark.parametrize(("extra", "usage"), [
    ({}, None),
    ({"save_payment_method": False}, None),
    ({"save_payment_method": True}, "off_session"),
    ({"setup_future_usage": "on_session"}, "on_session"),
    ({"setup_future_usage": "off_session", "save_payment_method": True}, "off_session"),
    # Stripe's own field decides: no schema can say "not both", so a 422 for it would refuse
    # a request the OpenAPI document calls valid (schemathesis found it)
    ({"save_payment_method": False, "setup_future_usage": "on_session"}, "on_session"),
])
def test_what_a_card_create_asks_stripe_to_save(extra, usage):
    assert StripeIntentBody.model_validate({**CARD, **extra}).future_usage == usage


@pytest.mark.parametrize(("extra", "field"), [
    ({"setup_future_usage": "sometimes"}, "setup_future_usage"),
    ({"setup_future_usage": ""}, "setup_future_usage"),
    ({"save_payment_method": "true"}, "save_payment_method"),  # strict: no strings for bools
    ({"save_payment_method": 1}, "save_payment_method"),
])
def test_card_create_saving_fields_refused(extra, field):
    with pytest.raises(ValidationError) as info:
        StripeIntentBody.model_validate({**CARD, **extra})
    assert field in str(info.value)


def test_a_setup_intent_body_is_optional_and_its_usage_strict():
    assert SetupIntentBody.model_validate({}).usage == "off_session"
    assert SetupIntentBody.model_validate({"usage": "on_session"}).usage == "on_session"
    with pytest.raises(ValidationError):
        SetupIntentBody.model_validate({"usage": "always"})


def test_setup_future_usage_travels_in_the_initiate_command_only():
    record = create(REF, provider=Provider.STRIPE, currency="USD").model_copy(
        update={"setup_future_usage": "off_session", "customer_id": "cus_stored"})
    outcome = apply(None, record)
    [command] = outcome.commands
    assert (command.kind, command.setup_future_usage, command.customer_id) == (
        ProviderCommandKind.INITIATE, "off_session", "cus_stored")
    assert "setup_future_usage" not in outcome.payment.snapshot.model_dump()  # Stripe keeps it
    [plain] = apply(None, create(REF, provider=Provider.STRIPE, currency="USD")).commands
    assert plain.setup_future_usage is None


# --------------------------------------------------------------------------- the sandbox


class HeldSender(CallbackSender):
    """Keeps the sandbox's webhooks instead of POSTing them."""

    def schedule(self, url: str, body: bytes, headers: dict[str, str] | None = None,
                 delay_s: float | None = None, sign: Any = None) -> Delivery:
        delivery = Delivery(url, body)
        self.deliveries.append(delivery)
        return delivery


@pytest.fixture
def sandbox() -> StripeSandbox:
    return StripeSandbox("sk_test_x", "http://127.0.0.1:9/hooks", "whsec_x", HeldSender())


def call(sb: StripeSandbox, method: str, path: str, **params: Any) -> tuple[int, Any]:
    parts = path.split("/")
    check_params(method, parts, params)
    return sb.route(method, parts, params)


def saved(sb: StripeSandbox, customer: str) -> list[tuple[str, str]]:
    _, listed = call(sb, "GET", "payment_methods", customer=customer, type="card")
    return [(m["card"]["brand"], m["card"]["last4"]) for m in listed["data"]]


def test_future_usage_rule():
    assert future_usage({}, None) is None
    assert future_usage({}, "on_session") == "on_session"
    assert future_usage({"setup_future_usage": "off_session"}, "on_session") == "off_session"
    assert future_usage({"usage": "on_session"}, "off_session", "usage") == "on_session"
    for bad in ("", "sometimes", "OFF_SESSION"):
        with pytest.raises(StripeHTTPError) as info:
            future_usage({"setup_future_usage": bad}, None)
        assert (info.value.status, info.value.body["param"]) == (400, "setup_future_usage")


def test_a_payment_with_setup_future_usage_saves_its_card_on_success(sandbox):
    cus = sandbox.create_customer({})["id"]
    status, pi = call(sandbox, "POST", "payment_intents", amount="1200", currency="usd",
                      customer=cus, payment_method="pm_card_visa", setup_future_usage="off_session")
    assert (status, pi["setup_future_usage"], saved(sandbox, cus)) == (200, "off_session", [])
    status, pi = call(sandbox, "POST", f"payment_intents/{pi['id']}/confirm")
    assert (status, pi["status"]) == (200, "succeeded")
    assert saved(sandbox, cus) == [("visa", "4242")]


def test_without_setup_future_usage_or_when_declined_nothing_is_saved(sandbox):
    cus = sandbox.create_customer({})["id"]
    call(sandbox, "POST", "payment_intents", amount="1200", currency="usd", customer=cus,
         payment_method="pm_card_visa", confirm="true")
    status, _ = call(sandbox, "POST", "payment_intents", amount="1200", currency="usd",
                     customer=cus, payment_method="pm_card_chargeDeclined", confirm="true",
                     setup_future_usage="off_session")
    assert status == 402
    assert saved(sandbox, cus) == []


def test_setup_future_usage_at_confirm_and_without_a_customer(sandbox):
    cus = sandbox.create_customer({})["id"]
    _, pi = call(sandbox, "POST", "payment_intents", amount="1200", currency="usd", customer=cus)
    _, pi = call(sandbox, "POST", f"payment_intents/{pi['id']}/confirm",
                 payment_method="pm_card_mastercard", setup_future_usage="on_session")
    assert (pi["status"], saved(sandbox, cus)) == ("succeeded", [("mastercard", "4444")])
    # Stripe takes it without a customer and attaches nothing.
    status, alone = call(sandbox, "POST", "payment_intents", amount="1200", currency="usd",
                         payment_method="pm_card_visa", confirm="true", setup_future_usage="off_session")
    assert (status, alone["status"]) == (200, "succeeded")
    assert sandbox.methods[alone["payment_method"]]["customer"] is None
    with pytest.raises(StripeHTTPError) as info:
        call(sandbox, "POST", "payment_intents", amount="1200", currency="usd", customer=cus,
             setup_future_usage="later")
    assert info.value.body["param"] == "setup_future_usage"


def test_a_setup_intent_saves_the_card_it_is_confirmed_with(sandbox):
    cus = sandbox.create_customer({})["id"]
    _, seti = call(sandbox, "POST", "setup_intents", customer=cus, usage="off_session",
                   payment_method_types=["card"])
    assert (seti["object"], seti["status"], seti["usage"]) == (
        "setup_intent", "requires_payment_method", "off_session")
    assert seti["client_secret"].startswith(f"{seti['id']}_secret_")
    _, declined = call(sandbox, "POST", f"setup_intents/{seti['id']}/confirm",
                       payment_method="pm_card_chargeDeclined")
    assert declined["error"]["code"] == "card_declined" and saved(sandbox, cus) == []
    status, done = call(sandbox, "POST", f"setup_intents/{seti['id']}/confirm",
                        payment_method="pm_card_visa")
    assert (status, done["status"]) == (200, "succeeded")
    assert call(sandbox, "GET", f"setup_intents/{seti['id']}")[1]["status"] == "succeeded"
    assert saved(sandbox, cus) == [("visa", "4242")]
    with pytest.raises(StripeHTTPError) as again:
        call(sandbox, "POST", f"setup_intents/{seti['id']}/confirm")
    assert again.value.body["code"] == "setup_intent_unexpected_state"


def test_setup_intent_parameters_as_strict_as_stripe(sandbox):
    with pytest.raises(StripeHTTPError) as unknown:
        call(sandbox, "POST", "setup_intents", customer="cus_x", setup_future_usage="off_session")
    assert unknown.value.body["code"] == "parameter_unknown"
    with pytest.raises(StripeHTTPError) as usage:
        call(sandbox, "POST", "setup_intents", usage="forever")
    assert usage.value.body["param"] == "usage"
    with pytest.raises(StripeHTTPError) as missing:
        call(sandbox, "POST", "setup_intents", customer="cus_nobody")
    assert missing.value.body["code"] == "resource_missing"
