"""Request bodies as in the seed's examples, and their resolution into payment requests.

Amounts travel in major units (``"100.50"`` or ``100.50``) and are converted exactly to minor
units; every problem is reported per field, all at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.ingress.errors import invalid
from trailpay import routing
from trailpay.domain.events import PaymentMethod, Provider
from trailpay.domain.money import Money, MoneyError, validate_currency
from trailpay.domain.provider_money import amount_problem
from trailpay.settings import Settings

#: An amount in major units: a decimal string or an exact JSON number.
Amount = Decimal | int | str


#: A Stripe payment method id (``pm_...``; older ``card_``/``src_``), never a card number: a
#: number sent here would travel to every topic and log as the payment method (issue 16).
STRIPE_PAYMENT_METHOD = r"^(?:pm|card|src)_[A-Za-z0-9_]+$"

class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _id_text(value: object) -> object:
    """The seed sends ``booking_id: 123``: accept integers, keep them as text."""
    if isinstance(value, bool):
        raise ValueError("must be a string or an integer")
    if isinstance(value, int):
        return str(value)
    return value


class CreatePaymentBody(Body):
    """``POST /api/payments/create/``."""

    amount: Amount = Field(description="Major units, e.g. \"100.50\"; exact, never rounded")
    currency: str = Field(min_length=3, max_length=3, description="ISO-4217")
    payment_method: Literal["mobile_money", "card"] | None = Field(
        default=None, description="Default: mobile_money when a phone number is given")
    provider: int | str | None = Field(
        default=None, description="Provider code (mpesa, airtel, stripe) or id from providers/; "
        "default: the routing table")
    phone_number: str | None = Field(default=None, max_length=32)
    description: str = Field(default="", max_length=500)
    booking_id: str | int | None = Field(default=None)
    email: str | None = Field(default=None, max_length=320, description="Receipt e-mail")
    country: str | None = Field(default=None, min_length=2, max_length=2)
    payment_method_id: str | None = Field(default=None, max_length=100, pattern=STRIPE_PAYMENT_METHOD,
                                          description="Stripe: a saved payment method")
    confirm: bool = Field(default=False, description="Stripe: confirm at creation")

    _booking = field_validator("booking_id", mode="before")(_id_text)


class StripeIntentBody(Body):
    """``POST /api/stripe/payment-intents/create/``."""

    amount: Amount
    currency: str = Field(min_length=3, max_length=3)
    booking_id: str | int | None = None
    description: str = Field(default="", max_length=500)
    payment_method: str | None = Field(default=None, max_length=100, pattern=STRIPE_PAYMENT_METHOD,
                                       description="pm_...")
    confirm: bool = False
    return_url: str | None = Field(default=None, max_length=2000)
    email: str | None = Field(default=None, max_length=320)

    _booking = field_validator("booking_id", mode="before")(_id_text)


class ConfirmBody(Body):
    payment_method: str | None = Field(default=None, max_length=100, pattern=STRIPE_PAYMENT_METHOD)
    return_url: str | None = Field(default=None, max_length=2000)


class CancelBody(Body):
    reason: str = Field(default="requested_by_customer", min_length=1, max_length=200)


class RefundBody(Body):
    amount: Amount | None = Field(default=None, description="Major units; absent = all that is left")
    reason: str = Field(default="requested_by_customer", min_length=1, max_length=200)


class BookingEventBody(Body):
    """``POST /api/bookings/events/``: a booking event for platforms without Kafka."""

    event_id: str | None = Field(default=None, min_length=1, max_length=200,
                                 description="Default: derived from booking, revision and kind")
    kind: Literal["created", "confirmed", "cancelled", "amended"]
    booking_id: str | int
    user_id: str = Field(min_length=1, max_length=100)
    amount: Amount
    currency: str = Field(min_length=3, max_length=3)
    country: str = Field(min_length=2, max_length=2)
    preferred_method: Literal["mobile_money", "card"] | None = None
    provider: Literal["stripe", "mpesa", "airtel"] | None = None
    phone_number: str | None = Field(default=None, max_length=32)
    email: str | None = Field(default=None, max_length=320)
    description: str = Field(default="", max_length=500)
    revision: int = Field(default=1, ge=1, le=1_000_000)

    _booking = field_validator("booking_id", mode="before")(_id_text)


# --------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class ResolvedPayment:
    amount: Money
    provider: Provider
    method: PaymentMethod
    country: str | None
    phone_number: str | None


def resolve_money(amount: Amount, currency: str, fields: dict[str, str], *,
                  whole_only: bool = False, field: str = "amount") -> Money | None:
    try:
        code = validate_currency(currency)
    except MoneyError as exc:
        fields["currency"] = str(exc)
        return None
    try:
        return Money(amount=routing.exact_minor_units(amount, code, whole_only=whole_only),
                     currency=code)
    except MoneyError as exc:
        fields[field] = str(exc)
        return None


def resolve_payment(settings: Settings, *, amount: Amount, currency: str,
                    method: str | None, provider: int | str | None,
                    phone_number: str | None, country: str | None) -> ResolvedPayment:
    """Validate everything about a new payment; raise one 422 naming every bad field."""
    fields: dict[str, str] = {}
    cur = currency.upper()
    try:
        validate_currency(cur)
    except MoneyError as exc:
        fields["currency"] = str(exc)
    info: routing.ProviderInfo | None = None
    if provider is not None:
        info = routing.find_provider(settings, provider)
        if info is None:
            known = ", ".join(p.value for p in Provider)
            fields["provider"] = f"unsupported provider {provider!r} (known: {known})"
    chosen_method = PaymentMethod(method) if method else None
    if chosen_method is None and info is not None and len(info.methods) == 1:
        chosen_method = next(iter(info.methods))
    chosen_method = routing.choose_method(cur, phone_number, chosen_method)
    ctry = (country or routing.CURRENCY_COUNTRY.get(cur) or "").upper() or None
    if info is None and "provider" not in fields and "currency" not in fields:
        routed = routing.route(settings, cur, ctry, chosen_method)
        if routed is None:
            fields["provider"] = (f"no provider takes {chosen_method.value} payments in {cur}"
                                  + (f" from {ctry}" if ctry else ""))
        else:
            info = routing.providers(settings)[routed]
    if info is not None and "currency" not in fields:
        if chosen_method not in info.methods:
            fields["payment_method"] = f"{info.code.value} does not take {chosen_method.value}"
        if cur not in info.currencies:
            fields["currency"] = (f"{info.code.value} does not take {cur} "
                                  f"(takes {', '.join(sorted(info.currencies)[:10])})")
        if info.countries is not None and ctry and ctry not in info.countries:
            fields["country"] = f"{info.code.value} does not serve {ctry}"
    phone: str | None = None
    if info is not None and info.needs_phone:
        if not phone_number:
            fields["phone_number"] = f"required for {info.code.value}"
        else:
            try:
                phone = routing.normalize_phone(phone_number, ctry or "KE")
            except ValueError as exc:
                fields["phone_number"] = str(exc)
    money = None
    if "currency" not in fields:
        money = resolve_money(amount, cur, fields,
                              whole_only=bool(info and info.whole_units_only))
    if money is not None and info is not None and "amount" not in fields:
        problem = amount_problem(info.code, money)  # the provider's own minimum, maximum, units
        if problem is not None:
            fields["amount"] = problem
    if fields or money is None or info is None:
        raise invalid(fields or {"body": "invalid"})
    return ResolvedPayment(amount=money, provider=info.code, method=chosen_method,
                           country=ctry, phone_number=phone)
