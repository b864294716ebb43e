"""Request bodies as in the seed's examples, and their resolution into payment requests.

Amounts travel in major units (``"100.50"`` or ``100.50``) and are converted exactly to minor
units; every problem is reported per field, all at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from connectors.ingress.errors import refused
from connectors.ingress.fields import (
    Amount,
    BookingId,
    Country,
    Currency,
    Email,
    EventId,
    Phone,
    ProviderRef,
    Reason,
    ReturnUrl,
    StripeId,
    Text500,
    UserId,
)
from trailpay import routing
from trailpay.domain.card_saving import FutureUsage
from trailpay.domain.events import PaymentMethod, Provider
from trailpay.domain.money import Money, MoneyError, validate_currency
from trailpay.domain.provider_money import amount_problem
from trailpay.settings import Settings


class Body(BaseModel):
    """Unknown fields refused; strict types (no ``"1"`` for ``1``, no ``true`` for an amount)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class CreatePaymentBody(Body):
    """``POST /api/payments/create/``."""

    amount: Amount
    currency: Currency
    payment_method: Literal["mobile_money", "card"] | None = Field(
        default=None, description="Default: mobile_money when a phone number is given")
    provider: ProviderRef | None = None
    phone_number: Phone | None = None
    description: Text500 = ""
    booking_id: BookingId | None = None
    email: Email | None = Field(default=None, description="Receipt e-mail")
    country: Country | None = None
    payment_method_id: StripeId | None = Field(default=None,
                                               description="Stripe: a saved payment method")
    confirm: bool = Field(default=False, description="Stripe: confirm at creation")


class StripeIntentBody(Body):
    """``POST /api/stripe/payment-intents/create/``."""

    amount: Amount
    currency: Currency
    booking_id: BookingId | None = None
    description: Text500 = ""
    payment_method: StripeId | None = Field(default=None, description="pm_...")
    confirm: bool = False
    return_url: ReturnUrl | None = None
    email: Email | None = None
    save_payment_method: bool = Field(default=False, description="Save the card for later "
                                      "payments (Stripe setup_future_usage=off_session)")
    setup_future_usage: FutureUsage | None = Field(default=None, description="Stripe's own "
                                                   "name for it; when given, it decides (whatever "
                                                   "save_payment_method says)")

    @property
    def future_usage(self) -> FutureUsage | None:
        """What to send Stripe as ``setup_future_usage`` (None: do not save the card)."""
        return self.setup_future_usage or ("off_session" if self.save_payment_method else None)


class SetupIntentBody(Body):
    """``POST /api/stripe/setup-intents/create/``: save a card without paying."""

    usage: FutureUsage = "off_session"


class ConfirmBody(Body):
    payment_method: StripeId | None = None
    return_url: ReturnUrl | None = None


class CancelBody(Body):
    reason: Reason = "requested_by_customer"


class RefundBody(Body):
    amount: Amount | None = Field(default=None, description="Major units; absent = all that is left")
    reason: Reason = "requested_by_customer"


class BookingEventBody(Body):
    """``POST /api/bookings/events/``: a booking event for platforms without Kafka."""

    event_id: EventId | None = Field(default=None,
                                     description="Default: derived from booking, revision and kind")
    kind: Literal["created", "confirmed", "cancelled", "amended"]
    booking_id: BookingId
    user_id: UserId
    amount: Amount
    currency: Currency
    country: Country
    preferred_method: Literal["mobile_money", "card"] | None = None
    provider: Literal["stripe", "mpesa", "airtel"] | None = None
    phone_number: Phone | None = None
    email: Email | None = None
    description: Text500 = ""
    revision: int = Field(default=1, ge=1, le=1_000_000)


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
        raise refused(fields or {"body": "invalid"})
    return ResolvedPayment(amount=money, provider=info.code, method=chosen_method,
                           country=ctry, phone_number=phone)
