"""Money as integer minor units plus an ISO-4217 currency; never a float."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# ISO-4217 minor-unit exponents for the currencies we accept. Anything absent is refused,
# so an unknown currency never gets a guessed exponent.
CURRENCY_EXPONENTS: dict[str, int] = {
    "KES": 2, "UGX": 0, "TZS": 2, "RWF": 0, "ZMW": 2, "MWK": 2, "NGN": 2, "GHS": 2,
    "ZAR": 2, "XOF": 0, "XAF": 0, "CDF": 2, "MGA": 2, "SCR": 2, "ETB": 2,
    "USD": 2, "EUR": 2, "GBP": 2, "CHF": 2, "CAD": 2, "AUD": 2, "NZD": 2, "SEK": 2,
    "NOK": 2, "DKK": 2, "PLN": 2, "CZK": 2, "HUF": 2, "AED": 2, "SAR": 2, "INR": 2,
    "CNY": 2, "HKD": 2, "SGD": 2, "JPY": 0, "KRW": 0, "BRL": 2, "MXN": 2, "EGP": 2,
    "MAD": 2, "TND": 3, "KWD": 3, "BHD": 3, "JOD": 3, "OMR": 3,
}


class MoneyError(ValueError):
    """An amount or currency that cannot be represented exactly."""


def validate_currency(code: str) -> str:
    """Upper-case an ISO-4217 code and refuse ones we do not know."""
    upper = code.upper()
    if upper not in CURRENCY_EXPONENTS:
        raise MoneyError(f"unknown or unsupported currency {code!r} (ISO-4217 code expected)")
    return upper


Currency = Annotated[str, AfterValidator(validate_currency)]


def exponent(currency: str) -> int:
    return CURRENCY_EXPONENTS[validate_currency(currency)]


def to_minor_units(amount: Decimal | str | int, currency: str) -> int:
    """Convert a major-unit amount exactly; more decimals than the currency has is an error.

    >>> to_minor_units("100.50", "KES")
    10050
    """
    if isinstance(amount, float):  # pragma: no cover - guarded by type, kept for callers at the edge
        raise MoneyError("amounts must not be floats; send a decimal string")
    try:
        value = Decimal(str(amount))
    except InvalidOperation as exc:
        raise MoneyError(f"{amount!r} is not a decimal amount") from exc
    if not value.is_finite():
        raise MoneyError(f"{amount!r} is not a finite amount")
    exp = exponent(currency)
    scaled = value.scaleb(exp)
    if scaled != scaled.to_integral_value():
        raise MoneyError(
            f"{amount} has more decimals than {currency.upper()} allows ({exp})"
        )
    return int(scaled)


def to_major_units(minor: int, currency: str) -> Decimal:
    """Minor units back to an exact Decimal for display and provider APIs."""
    return Decimal(minor).scaleb(-exponent(currency))


class Money(BaseModel):
    """An exact amount: ``amount`` minor units of ``currency``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: int = Field(ge=0, description="Minor units (cents); never a float")
    currency: Currency

    @classmethod
    def of(cls, major: Decimal | str | int, currency: str) -> Money:
        return cls(amount=to_minor_units(major, currency), currency=currency)

    @property
    def major(self) -> Decimal:
        return to_major_units(self.amount, self.currency)

    def __str__(self) -> str:
        return f"{self.major:.{exponent(self.currency)}f} {self.currency}"

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise MoneyError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(amount=self.amount + other.amount, currency=self.currency)
