"""What the Stripe sandbox refuses, as Stripe does (docs/sandboxes.md, "Stripe").

Kept apart from :mod:`trailpay.domain.provider_money` on purpose: the sandbox judges the
wire amount it receives with its own reading of Stripe's documentation, so a client that
converts wrongly is refused here instead of agreeing with itself.

* Unknown parameters: Stripe refuses them (since API version 2011-06-21) with HTTP 400,
  ``invalid_request_error``, code ``parameter_unknown``, ``param`` the name and the message
  ``Received unknown parameter: <name>``. Checked on the top-level names of every route the
  sandbox serves (nested objects such as ``metadata`` take any keys).
* Amounts: the wire amount is in the currency's smallest unit *as Stripe counts it*:
  zero-decimal currencies (MGA among them although ISO gives it two decimals) in major
  units, three-decimal ones in thousandths whose last digit must be 0; at least the listed
  minimum (``amount_too_small``), at most eight digits (``amount_too_large``).
* ``cancellation_reason``: one of duplicate, fraudulent, requested_by_customer, abandoned;
  refund ``reason``: duplicate, fraudulent, requested_by_customer.
* ``setup_future_usage`` (PaymentIntent create and confirm) and a SetupIntent's ``usage``:
  ``on_session`` or ``off_session``, nothing else (Stripe's ``""``, which clears a value set
  earlier, is refused too: TrailPay never sends it). Saving needs the PaymentIntent's
  customer: without one Stripe accepts the parameter and attaches nothing.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from connectors.sandboxes.stripe_wire import StripeHTTPError

ZERO_DECIMAL = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf",
                          "ugx", "vnd", "vuv", "xaf", "xof", "xpf"})
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
#: Stripe's listed minimum charge per currency, in major units.
MINIMUM_MAJOR: dict[str, Decimal] = {
    "usd": Decimal("0.50"), "eur": Decimal("0.50"), "aud": Decimal("0.50"),
    "brl": Decimal("0.50"), "cad": Decimal("0.50"), "chf": Decimal("0.50"),
    "inr": Decimal("0.50"), "nzd": Decimal("0.50"), "sgd": Decimal("0.50"),
    "gbp": Decimal("0.30"), "aed": Decimal("2.00"), "pln": Decimal("2.00"),
    "dkk": Decimal("2.50"), "nok": Decimal("3.00"), "sek": Decimal("3.00"),
    "hkd": Decimal("4.00"), "mxn": Decimal("10"), "czk": Decimal("15"), "huf": Decimal("175"),
    "jpy": Decimal("50"),
}
#: At most eight digits in the smallest unit.
MAXIMUM_WIRE = 99_999_999
CANCELLATION_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
FUTURE_USAGES = ("on_session", "off_session")

_EXPAND = {"expand"}
_PAGE = {"limit", "starting_after", "ending_before", "created", "expand"}
_INTENT_CONFIRM = {"payment_method", "return_url", "receipt_email", "setup_future_usage",
                   "off_session", "payment_method_options", "payment_method_data",
                   "payment_method_types", "mandate", "mandate_data", "error_on_requires_action",
                   "use_stripe_sdk", "capture_method", "shipping", "expand"}
_SETUP_CONFIRM = {"payment_method", "return_url", "mandate_data", "payment_method_data",
                  "payment_method_options", "use_stripe_sdk", "confirmation_token", "expand"}
#: Top-level parameters Stripe documents for each (method, route) the sandbox serves.
PARAMS: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "customers"): frozenset({"email", "name", "metadata", "description", "phone",
                                      "address", "shipping", "payment_method",
                                      "invoice_settings", "preferred_locales", "expand"}),
    ("GET", "customers/search"): frozenset({"query", "limit", "page", "expand"}),
    ("GET", "customers"): frozenset(_PAGE | {"email"}),
    ("GET", "customers/{id}"): frozenset(_EXPAND),
    ("GET", "payment_methods"): frozenset(_PAGE | {"customer", "type"}),
    ("GET", "payment_methods/{id}"): frozenset(_EXPAND),
    ("POST", "payment_methods/{id}/attach"): frozenset({"customer", "expand"}),
    ("POST", "payment_methods/{id}/detach"): frozenset(_EXPAND),
    ("POST", "payment_intents"): frozenset(_INTENT_CONFIRM | {
        "amount", "currency", "customer", "description", "metadata", "confirm",
        "confirmation_method", "automatic_payment_methods", "statement_descriptor",
        "statement_descriptor_suffix", "on_behalf_of", "transfer_data", "transfer_group",
        "application_fee_amount"}),
    ("GET", "payment_intents"): frozenset(_PAGE | {"customer"}),
    ("GET", "payment_intents/{id}"): frozenset({"client_secret", "expand"}),
    ("POST", "payment_intents/{id}/confirm"): frozenset(_INTENT_CONFIRM),
    ("POST", "payment_intents/{id}/cancel"): frozenset({"cancellation_reason", "expand"}),
    ("POST", "refunds"): frozenset({"payment_intent", "charge", "amount", "reason", "metadata",
                                    "refund_application_fee", "reverse_transfer",
                                    "instructions_email", "expand"}),
    ("GET", "refunds/{id}"): frozenset(_EXPAND),
    ("POST", "setup_intents"): frozenset(_SETUP_CONFIRM | {
        "customer", "description", "metadata", "confirm", "usage", "payment_method_types",
        "automatic_payment_methods", "attach_to_self", "flow_directions", "on_behalf_of",
        "single_use", "payment_method_configuration"}),
    ("GET", "setup_intents/{id}"): frozenset({"client_secret", "expand"}),
    ("POST", "setup_intents/{id}/confirm"): frozenset(_SETUP_CONFIRM),
}


def route_key(method: str, parts: list[str]) -> tuple[str, str]:
    """``("POST", "payment_intents/{id}/confirm")`` for ``POST /v1/payment_intents/pi_1/confirm``."""
    shape = [parts[0]] + ["{id}" if i == 0 and part != "search" else part
                          for i, part in enumerate(parts[1:])]
    return method, "/".join(shape)


def check_params(method: str, parts: list[str], params: dict[str, Any]) -> None:
    """Stripe's ``parameter_unknown`` for the first name the route does not take."""
    allowed = PARAMS.get(route_key(method, parts))
    if allowed is None:  # an unknown route: the router answers its own 404
        return
    for name in params:
        if name not in allowed:
            raise StripeHTTPError(400, "invalid_request_error", f"Received unknown parameter: {name}",
                                  code="parameter_unknown", param=name,
                                  doc_url="https://stripe.com/docs/error-codes/parameter-unknown")


def wire_decimals(currency: str) -> int:
    """Decimals of ``currency``'s amounts on Stripe's wire."""
    if currency in ZERO_DECIMAL:
        return 0
    return 3 if currency in THREE_DECIMAL else 2


def shown(amount: int, currency: str) -> str:
    decimals = wire_decimals(currency)
    return f"{Decimal(amount).scaleb(-decimals):.{decimals}f} {currency}"


def check_charge_amount(amount: int, currency: str) -> None:
    """Refuse a PaymentIntent amount (wire units of ``currency``, lower case) as Stripe does."""
    decimals = wire_decimals(currency)
    minimum_major = MINIMUM_MAJOR.get(currency)
    minimum = int(minimum_major.scaleb(decimals)) if minimum_major is not None else 1
    if amount < minimum:
        raise StripeHTTPError(400, "invalid_request_error",
                              f"Amount must be at least {shown(minimum, currency)}",
                              code="amount_too_small", param="amount")
    if amount > MAXIMUM_WIRE:
        raise StripeHTTPError(400, "invalid_request_error",
                              f"Amount must be no more than {shown(MAXIMUM_WIRE, currency)}",
                              code="amount_too_large", param="amount")
    if currency in THREE_DECIMAL and amount % 10:
        raise StripeHTTPError(400, "invalid_request_error",
                              f"Amounts in {currency} must end in 0 (the smallest unit Stripe "
                              f"charges is 0.010 {currency}); got {amount}",
                              code="invalid_charge_amount", param="amount")


def check_choice(params: dict[str, Any], name: str, allowed: tuple[str, ...]) -> None:
    value = params.get(name)
    if value is not None and value not in allowed:
        raise StripeHTTPError(400, "invalid_request_error",
                              f"Invalid {name}: must be one of {', '.join(allowed)}",
                              param=name)


def future_usage(p: dict[str, Any], current: str | None, name: str = "setup_future_usage") -> str | None:
    """The ``setup_future_usage`` (or ``usage``) a request sets: ``current`` when it names
    none; Stripe's 400 for a value outside :data:`FUTURE_USAGES`."""
    if name not in p:
        return current
    check_choice(p, name, FUTURE_USAGES)  # form values are strings: "" is refused here too
    return str(p[name])
