"""Mobile-money inputs: Kenyan MSISDNs and whole-unit amounts.

Phone numbers: accept the forms people type, refuse the rest.

Accepted: ``07XXXXXXXX`` / ``01XXXXXXXX``, ``+2547...`` / ``+2541...``, ``2547...`` /
``2541...`` (spaces and dashes ignored). Result: ``2547XXXXXXXX`` / ``2541XXXXXXXX``.
"""

from __future__ import annotations

import re

from trailpay.domain.errors import PermanentError
from trailpay.domain.masking import mask_phone
from trailpay.domain.money import Money, exponent

_SEPARATORS = re.compile(r"[\s\-().]")
_KE = re.compile(r"^(?:\+?254|0)([17]\d{8})$")


class InvalidPhoneNumber(PermanentError):
    """Not a Kenyan mobile number we can send a payment prompt to."""

    code = "invalid_phone_number"


def normalize_ke_msisdn(phone: str | None) -> str:
    """``0712 345 678`` -> ``254712345678``; anything else raises :class:`InvalidPhoneNumber`."""
    if not phone:
        raise InvalidPhoneNumber("a phone number is required for mobile money")
    compact = _SEPARATORS.sub("", phone)
    match = _KE.match(compact)
    if not match:
        raise InvalidPhoneNumber(
            f"{mask_phone(phone) or '***'} is not a Kenyan mobile number; use 07XXXXXXXX, "
            "01XXXXXXXX, +2547XXXXXXXX or 2547XXXXXXXX"
        )
    return f"254{match.group(1)}"


def national_number(msisdn: str) -> str:
    """``254712345678`` -> ``712345678`` (Airtel wants the number without the country code)."""
    return msisdn[3:] if msisdn.startswith("254") else msisdn


class InvalidAmount(PermanentError):
    """An amount the mobile-money provider cannot take (wrong currency, fractions)."""

    code = "invalid_amount"


def whole_units(amount: Money, currency: str) -> int:
    """The amount in whole major units (M-Pesa takes whole shillings only)."""
    if amount.currency != currency:
        raise InvalidAmount(f"mobile money here takes {currency}, not {amount.currency}")
    factor = 10 ** exponent(currency)
    if amount.amount % factor:
        raise InvalidAmount(f"{amount} has a fraction; {currency} mobile money takes whole units")
    units = amount.amount // factor
    if units < 1:
        raise InvalidAmount(f"{amount} is below the minimum of 1 {currency}")
    return units
