"""The field types of request bodies: each bounded like the column it lands in, refusing what
PostgreSQL, Kafka consumers or an SMTP server could not take, and documented as enforced.

Every check here is mirrored in the JSON Schema of the field (``pattern``, ``enum``,
``maxLength``), so a body the OpenAPI document calls valid is never refused for its shape, and
one it calls invalid never accepted: the schemathesis run holds both directions. Business
rules (which provider takes which currency, provider minimums) stay in the resolution of
:mod:`connectors.ingress.models`.

Bounds come from ``sinks/postgres/schema.py``: ``booking_id`` String(100), ``user_id``
String(100), ``email`` String(320), ``payment_method_id`` String(100), ``reason``
String(200), ``event_id`` String(200); ``description`` is Text, bounded at 500 here.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from trailpay.domain.money import CURRENCY_EXPONENTS
from trailpay.routing import MAX_MINOR_UNITS

#: C0 controls (NUL, CR, LF, TAB...), DEL and C1 controls.
CONTROL_CLASS = r"\x00-\x1f\x7f-\x9f"
#: ... and lone UTF-16 surrogates, which JSON's ``\\ud800`` escapes can produce and no UTF-8
#: encoder takes. They are no JSON Schema string at all (nor expressible in its ``pattern``).
_CONTROL = re.compile(f"[{CONTROL_CLASS}\ud800-\udfff]")
#: The rule as a JSON Schema ``pattern`` (Python ``re`` and ECMA 262 read it alike).
PLAIN_TEXT_PATTERN = f"^[^{CONTROL_CLASS}]*$"

ID_CHARS = "A-Za-z0-9._:-"
BOOKING_ID_PATTERN = f"^[{ID_CHARS}]{{1,100}}$"
#: Exact as a double too (JSON tools read integers as floats): 2**53 - 1.
MAX_BOOKING_NUMBER = 2**53 - 1
#: ASCII digits only: ``Decimal()`` reads full-width digits (U+FF10..U+FF19), this does not.
AMOUNT_PATTERN = r"^[0-9]{1,16}(\.[0-9]{1,3})?$"
PHONE_PATTERN = r"^\+?[0-9][0-9 ().-]*$"
#: A Stripe payment method id (``pm_...``; older ``card_``/``src_``), never a card number: a
#: number sent here would travel to every topic and log as the payment method (issue 16).
STRIPE_ID_PATTERN = r"^(?:pm|card|src)_[A-Za-z0-9_]+$"
#: An http(s) URL with a host name or IPv4 address, an optional port and any printable path:
#: no user info and no bracketed IPv6 host ("http://[" is no URL, and the webhook deliverer
#: and the clients that read it back could not parse it).
URL_PATTERN = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?([/?#][!-~]*)?$"
COUNTRY_PATTERN = r"^[A-Za-z]{2}$"
#: ISO-4217 alpha codes we can represent, as sent (upper case, or lower case as Stripe writes).
CURRENCY_CODES = sorted(CURRENCY_EXPONENTS) + sorted(code.lower() for code in CURRENCY_EXPONENTS)
#: Provider codes and the ids of ``GET /api/payments/providers/``.
PROVIDER_CODES = ["mpesa", "airtel", "stripe", "MPESA", "AIRTEL", "STRIPE", "1", "2", "3"]


def control_free(value: str) -> str:
    """Refuse any control character; ``ValueError`` names the first one."""
    found = _CONTROL.search(value)
    if found is not None:
        raise ValueError(f"must not contain control characters (found U+{ord(found.group()):04X} "
                         f"at position {found.start()})")
    return value


#: RFC 3339 date-time, what OpenAPI's ``format: date-time`` means: date, time and offset.
DATE_TIME_PATTERN = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
                     r"([Zz]|[+-][0-9]{2}:[0-9]{2})$")


def _date_time(value: Any) -> Any:
    """pydantic also reads a number ("0.5") as Unix seconds and a date alone as midnight,
    neither of which the documented ``date-time`` allows: refuse them."""
    if isinstance(value, str) and not re.fullmatch(DATE_TIME_PATTERN, value):
        raise ValueError("must be an RFC 3339 date-time with its offset, e.g. 2026-12-01T09:30:00Z")
    return value


#: A date-time query value (admin searches, the audit log).
DateTimeQuery = Annotated[datetime, BeforeValidator(_date_time)]


def _matching(pattern: str, why: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(why)
        return value

    return AfterValidator(check)


def _schema_pattern(pattern: str, max_length: int, min_length: int = 0) -> Any:
    return Field(min_length=min_length, max_length=max_length,
                 json_schema_extra={"pattern": pattern})


def _booking_text(value: object) -> object:
    """The seed sends ``booking_id: 123``: integers are kept as their decimal text."""
    if isinstance(value, bool):
        raise ValueError("must be a string or an integer")  # bool is an int to Python
    if isinstance(value, int):
        if not 0 <= value <= MAX_BOOKING_NUMBER:
            raise ValueError(f"as a number must be 0 to {MAX_BOOKING_NUMBER}")
        return str(value)
    return value


_BOOKING_SCHEMA: dict[str, Any] = {"anyOf": [
    {"type": "string", "pattern": BOOKING_ID_PATTERN, "maxLength": 100},
    {"type": "integer", "minimum": 0, "maximum": MAX_BOOKING_NUMBER},
], "description": f"1 to 100 of [{ID_CHARS}], or a non-negative integer"}

#: A booking id: 1 to 100 of ``[A-Za-z0-9._:-]`` (the column is String(100)), or an integer.
BookingId = Annotated[str, BeforeValidator(_booking_text),
                      _matching(BOOKING_ID_PATTERN, f"must be 1 to 100 of [{ID_CHARS}]"),
                      WithJsonSchema(_BOOKING_SCHEMA)]


def _amount(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
        raise ValueError("send the amount as a decimal string (\"100.50\") or a JSON number")
    if isinstance(value, str) and not re.fullmatch(AMOUNT_PATTERN, value):
        raise ValueError("must be a decimal of ASCII digits with at most 3 decimals (\"100.50\")")
    if isinstance(value, Decimal) and not value.is_finite():
        raise ValueError("must be a finite amount")
    if isinstance(value, (int, Decimal)) and value <= 0:
        raise ValueError("must be greater than zero")
    if isinstance(value, (int, Decimal)) and value > MAX_MINOR_UNITS:
        raise ValueError(f"must be at most {MAX_MINOR_UNITS}")
    return value


_AMOUNT_SCHEMA: dict[str, Any] = {"anyOf": [
    {"type": "string", "pattern": AMOUNT_PATTERN},
    {"type": "integer", "minimum": 1, "maximum": MAX_MINOR_UNITS},
    {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_MINOR_UNITS},
], "description": 'Major units, e.g. "100.50"; exact, never rounded'}

#: An amount in major units: a decimal string of ASCII digits or an exact JSON number; never
#: a boolean (``true`` is 1 to Python).
Amount = Annotated[Decimal | int | str, BeforeValidator(_amount), WithJsonSchema(_AMOUNT_SCHEMA)]


def _currency(value: object) -> object:
    if not isinstance(value, str) or value not in CURRENCY_CODES:
        raise ValueError(f"unknown or unsupported currency {value!r} (ISO-4217 code expected)")
    return value.upper()


#: An ISO-4217 alpha code we know the exponent of; documented as the same ``enum``.
Currency = Annotated[str, BeforeValidator(_currency),
                     WithJsonSchema({"type": "string", "enum": CURRENCY_CODES,
                                     "description": "ISO-4217 alpha code"})]


def _provider(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("must be a provider code or id")
    if isinstance(value, int) and value not in (1, 2, 3):
        raise ValueError(f"unsupported provider {value!r} (known ids: 1, 2, 3)")
    if isinstance(value, str) and value not in PROVIDER_CODES:
        raise ValueError(f"unsupported provider {value!r} (known: mpesa, airtel, stripe)")
    return value


ProviderRef = Annotated[int | str, BeforeValidator(_provider), WithJsonSchema({
    "enum": [1, 2, 3, *PROVIDER_CODES],
    "description": "Provider code (mpesa, airtel, stripe) or id from providers/; "
                   "default: the routing table"})]


def _email(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError("must be an e-mail address")
    control_free(value)
    try:
        # test_environment: also take RFC 6761's ``.test`` names, as JSON Schema's ``email``
        # format does (other special-use names, ``.local``, ``localhost``, stay refused)
        checked = validate_email(value, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise ValueError(f"is not a valid e-mail address: {exc}") from exc
    return checked.normalized


#: A receipt address: RFC 5321 syntax checked by email-validator, no control characters
#: (CR/LF would reach SMTP headers), at most 320 characters (the column).
Email = Annotated[str, BeforeValidator(_email), Field(max_length=320),
                  WithJsonSchema({"type": "string", "format": "email", "maxLength": 320,
                                  "pattern": PLAIN_TEXT_PATTERN})]

_PLAIN = AfterValidator(control_free)
_ID_WHY = f"must be 1 to {{}} of [{ID_CHARS}]"
Text500 = Annotated[str, _schema_pattern(PLAIN_TEXT_PATTERN, 500), _PLAIN]
Reason = Annotated[str, _schema_pattern(PLAIN_TEXT_PATTERN, 200, 1), _PLAIN]
EventId = Annotated[str, _schema_pattern(f"^[{ID_CHARS}]{{1,200}}$", 200),
                    _matching(f"^[{ID_CHARS}]{{1,200}}$", _ID_WHY.format(200))]
UserId = Annotated[str, _schema_pattern(f"^[{ID_CHARS}]{{1,100}}$", 100),
                   _matching(f"^[{ID_CHARS}]{{1,100}}$", _ID_WHY.format(100))]
Phone = Annotated[str, _schema_pattern(PHONE_PATTERN, 32), _matching(
    PHONE_PATTERN, "must contain digits only (and an optional leading + and separators)")]
StripeId = Annotated[str, _schema_pattern(STRIPE_ID_PATTERN, 100), _matching(
    STRIPE_ID_PATTERN, "must be a Stripe payment method id such as pm_123 (never a card number)")]
ReturnUrl = Annotated[str, _schema_pattern(URL_PATTERN, 2000),
                      _matching(URL_PATTERN, "must be an http(s) URL of printable ASCII")]
Country = Annotated[str, _schema_pattern(COUNTRY_PATTERN, 2),
                    _matching(COUNTRY_PATTERN, "must be an ISO-3166 alpha-2 code such as \"KE\"")]
