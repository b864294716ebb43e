"""What each provider accepts, phone-number rules, and the provider routing table.

Pure (no FastAPI, no Kafka): used by the HTTP ingress to validate requests and by the
booking bridge to pick a provider for a booking. The routing table is configuration: the
built-in :data:`DEFAULT_ROUTES` unless ``TRAILPAY_PROVIDER_ROUTES`` gives a JSON list of
rules (first match wins)::

    [{"currency": "KES", "method": "mobile_money", "provider": "mpesa"},
     {"method": "card", "provider": "stripe"}]
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal

from trailpay.domain.errors import ConfigurationError
from trailpay.domain.events import PaymentMethod, Provider
from trailpay.domain.money import CURRENCY_EXPONENTS, MoneyError, exponent, to_minor_units
from trailpay.settings import Settings

#: Largest amount we accept, in minor units (fits PostgreSQL bigint with room to spare).
MAX_MINOR_UNITS = 10**15


@dataclass(frozen=True)
class ProviderInfo:
    id: int
    code: Provider
    name: str
    methods: frozenset[PaymentMethod]
    currencies: frozenset[str]
    countries: frozenset[str] | None  # None = any
    needs_phone: bool
    whole_units_only: bool  # Daraja takes whole shillings

    def public(self) -> dict[str, object]:
        return {
            "id": self.id,
            "code": self.code.value,
            "name": self.name,
            "methods": sorted(m.value for m in self.methods),
            "currencies": sorted(self.currencies),
            "countries": sorted(self.countries) if self.countries is not None else None,
            "requires_phone_number": self.needs_phone,
            "active": True,
        }


def providers(settings: Settings) -> dict[Provider, ProviderInfo]:
    """The providers this deployment offers. Airtel serves one market per deployment."""
    return {
        Provider.MPESA: ProviderInfo(
            1, Provider.MPESA, "M-Pesa (Safaricom Daraja STK Push)",
            frozenset({PaymentMethod.MOBILE_MONEY}), frozenset({"KES"}), frozenset({"KE"}),
            needs_phone=True, whole_units_only=True,
        ),
        Provider.AIRTEL: ProviderInfo(
            2, Provider.AIRTEL, "Airtel Money",
            frozenset({PaymentMethod.MOBILE_MONEY}), frozenset({settings.airtel_currency.upper()}),
            frozenset({settings.airtel_country.upper()}),
            needs_phone=True, whole_units_only=False,
        ),
        Provider.STRIPE: ProviderInfo(
            3, Provider.STRIPE, "Stripe (cards)",
            frozenset({PaymentMethod.CARD}), frozenset(CURRENCY_EXPONENTS), None,
            needs_phone=False, whole_units_only=False,
        ),
    }


def find_provider(settings: Settings, given: str | int) -> ProviderInfo | None:
    """A provider by code (``"mpesa"``) or by the numeric id of ``GET providers/``."""
    catalog = providers(settings)
    for info in catalog.values():
        if (isinstance(given, int) and info.id == given) or (
            isinstance(given, str) and given.strip().lower() in (info.code.value, str(info.id))
        ):
            return info
    return None


# --------------------------------------------------------------------------- money


def exact_minor_units(amount: Decimal | str | int, currency: str, *, whole_only: bool = False) -> int:
    """Major units on the wire to minor units, exactly; :class:`MoneyError` says why not."""
    if isinstance(amount, (bool, float)):
        raise MoneyError("send the amount as a decimal string or an exact JSON number")
    minor = to_minor_units(amount, currency)
    if minor <= 0:
        raise MoneyError("must be greater than zero")
    if minor > MAX_MINOR_UNITS:
        raise MoneyError("is too large")
    if whole_only and whole_major_units(minor, currency) is None:
        raise MoneyError(f"must be a whole number of {currency} (the provider takes no fractions)")
    return minor


def whole_major_units(minor: int, currency: str) -> int | None:
    """``10_000`` KES cents -> ``100`` shillings; None when there is a fraction.

    The one whole-unit check: the ingress, the booking bridge and the mobile-money clients
    (Daraja takes whole shillings only) all ask it.
    """
    whole, fraction = divmod(minor, 10 ** exponent(currency))
    return None if fraction else whole


# --------------------------------------------------------------------------- phones

@dataclass(frozen=True)
class PhoneRule:
    """A country's mobile numbers: ``+<dialling code><national number>``.

    The national (significant) number has ``length`` digits and starts with one of
    ``prefixes``; people also write it with a trunk ``0`` in front (``0712345678``).
    """

    dialling_code: str
    prefixes: str
    length: int
    adjective: str  # "a Kenyan mobile number"

    def forms(self) -> str:
        """How to write one, for error messages: ``07XXXXXXXX, +2547XXXXXXXX or 2547XXXXXXXX``."""
        rest = "X" * (self.length - 1)
        local = [f"0{p}{rest}" for p in self.prefixes]
        first = self.prefixes[0]
        return ", ".join([*local, f"+{self.dialling_code}{first}{rest}"]) + (
            f" or {self.dialling_code}{first}{rest}")

    def national_pattern(self, separator: str = "") -> str:
        """A regex for the national number, ``separator`` allowed between its digits."""
        return rf"[{self.prefixes}](?:{separator}\d){{{self.length - 1}}}"


#: Mobile-money countries. The one set of phone rules: the ingress validates with them, the
#: provider clients normalise with them and the log scrubber (trailpay.logs) masks with them.
PHONE_RULES: dict[str, PhoneRule] = {
    "KE": PhoneRule("254", "71", 9, "Kenyan"),
    "UG": PhoneRule("256", "7", 9, "Ugandan"),
    "TZ": PhoneRule("255", "67", 9, "Tanzanian"),
    "RW": PhoneRule("250", "7", 9, "Rwandan"),
    "ZM": PhoneRule("260", "79", 9, "Zambian"),
    "MW": PhoneRule("265", "89", 9, "Malawian"),
    "CD": PhoneRule("243", "89", 9, "Congolese"),
    "NG": PhoneRule("234", "789", 10, "Nigerian"),
    "GH": PhoneRule("233", "25", 9, "Ghanaian"),
    "MG": PhoneRule("261", "3", 9, "Malagasy"),
    "SC": PhoneRule("248", "2", 7, "Seychellois"),
}

_SEPARATORS = re.compile(r"[\s().-]")


def normalize_phone(raw: str, country: str) -> str:
    """``+254 712-345-678`` / ``0712345678`` / ``712345678`` -> ``254712345678``.

    Raises ValueError with a reason the caller can show.
    """
    rule = PHONE_RULES.get(country.upper())
    if rule is None:
        raise ValueError(f"mobile money is not offered in {country!r}")
    code = rule.dialling_code
    text = _SEPARATORS.sub("", raw.strip())
    if text.startswith("+"):
        text = text[1:]
        if not text.startswith(code):
            raise ValueError(f"must be a {country.upper()} number (+{code}...)")
    if not text.isdigit():
        raise ValueError("must contain digits only (and an optional leading +)")
    if text.startswith(code):
        national = text[len(code):]
    elif text.startswith("0"):
        national = text[1:]
    else:
        national = text
    if not re.fullmatch(rule.national_pattern(), national):
        raise ValueError(f"is not a valid {country.upper()} mobile number")
    return code + national


def national_number(msisdn: str, country: str) -> str:
    """``254712345678`` -> ``712345678``: the number without the country's dialling code."""
    code = PHONE_RULES[country.upper()].dialling_code
    return msisdn[len(code):] if msisdn.startswith(code) else msisdn


#: The country a currency implies when a request does not say.
CURRENCY_COUNTRY: dict[str, str] = {
    "KES": "KE", "UGX": "UG", "TZS": "TZ", "RWF": "RW", "ZMW": "ZM", "MWK": "MW",
    "CDF": "CD", "NGN": "NG", "GHS": "GH", "MGA": "MG", "SCR": "SC",
}


# --------------------------------------------------------------------------- routing


@dataclass(frozen=True)
class Route:
    provider: Provider
    currency: str = "*"
    country: str = "*"
    method: str = "*"

    def matches(self, currency: str, country: str | None, method: PaymentMethod) -> bool:
        return (
            self.currency in ("*", currency.upper())
            and self.country in ("*", (country or "").upper())
            and self.method in ("*", method.value)
        )


DEFAULT_ROUTES: tuple[Route, ...] = (
    Route(Provider.MPESA, currency="KES", method="mobile_money"),
    Route(Provider.AIRTEL, method="mobile_money"),
    Route(Provider.STRIPE, method="card"),
)


def routes(settings: Settings) -> tuple[Route, ...]:
    if not settings.provider_routes:
        return DEFAULT_ROUTES
    try:
        rules = json.loads(settings.provider_routes)
        parsed = tuple(
            Route(
                provider=Provider(rule["provider"]),
                currency=str(rule.get("currency", "*")).upper(),
                country=str(rule.get("country", "*")).upper(),
                method=str(rule.get("method", "*")),
            )
            for rule in rules
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigurationError(
            f"TRAILPAY_PROVIDER_ROUTES: not a JSON list of routing rules ({exc})"
        ) from exc
    return parsed


def choose_method(currency: str, phone_number: str | None,
                  preferred: PaymentMethod | None) -> PaymentMethod:
    if preferred is not None:
        return preferred
    if phone_number and currency.upper() in CURRENCY_COUNTRY:
        return PaymentMethod.MOBILE_MONEY
    return PaymentMethod.CARD


def route(settings: Settings, currency: str, country: str | None,
          method: PaymentMethod) -> Provider | None:
    """The first rule matching (currency, country, method) whose provider can take it."""
    catalog = providers(settings)
    for rule in routes(settings):
        info = catalog[rule.provider]
        if (
            rule.matches(currency, country, method)
            and method in info.methods
            and currency.upper() in info.currencies
            and (info.countries is None or not country or country.upper() in info.countries)
        ):
            return rule.provider
    return None
