"""Mobile-money inputs: MSISDNs and whole-unit amounts.

Phone numbers follow :data:`trailpay.routing.PHONE_RULES` (the one set of rules the ingress
validates with): ``07XXXXXXXX`` / ``01XXXXXXXX``, ``+2547...`` / ``+2541...``, ``2547...``
(spaces and dashes ignored) -> ``2547XXXXXXXX`` for Kenya, and likewise for every country
there.
"""

from __future__ import annotations

from trailpay import routing
from trailpay.domain.errors import PermanentError
from trailpay.domain.masking import mask_phone
from trailpay.domain.money import Money


class InvalidPhoneNumber(PermanentError):
    """Not a mobile number of the provider's country we can send a payment prompt to."""

    code = "invalid_phone_number"


def normalize_msisdn(phone: str | None, country: str) -> str:
    """``0712 345 678`` -> ``254712345678``; anything else raises :class:`InvalidPhoneNumber`."""
    if not phone:
        raise InvalidPhoneNumber("a phone number is required for mobile money")
    try:
        return routing.normalize_phone(phone, country)
    except ValueError as exc:
        rule = routing.PHONE_RULES.get(country.upper())
        what = f"a {rule.adjective} mobile number; use {rule.forms()}" if rule else f"a {country} number"
        raise InvalidPhoneNumber(f"{mask_phone(phone) or '***'} is not {what}") from exc


def normalize_ke_msisdn(phone: str | None) -> str:
    """A Kenyan MSISDN (Daraja serves Kenya only)."""
    return normalize_msisdn(phone, "KE")


def national_number(msisdn: str, country: str) -> str:
    """``254712345678`` -> ``712345678`` (Airtel wants the number without the country code)."""
    return routing.national_number(msisdn, country)


class InvalidAmount(PermanentError):
    """An amount the mobile-money provider cannot take (wrong currency, fractions)."""

    code = "invalid_amount"


def whole_units(amount: Money, currency: str) -> int:
    """The amount in whole major units (M-Pesa takes whole shillings only)."""
    if amount.currency != currency:
        raise InvalidAmount(f"mobile money here takes {currency}, not {amount.currency}")
    units = routing.whole_major_units(amount.amount, currency)
    if units is None:
        raise InvalidAmount(f"{amount} has a fraction; {currency} mobile money takes whole units")
    if units < 1:
        raise InvalidAmount(f"{amount} is below the minimum of 1 {currency}")
    return units
