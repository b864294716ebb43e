"""Logging set-up: plain or JSON lines, with every message scrubbed of personal data.

Every log line TrailPay writes passes :class:`ScrubFilter` (``setup_logging`` puts it on the
root handler; the worker puts it on Faust's handlers too).

:func:`scrub` is also what provider errors, notification texts and sandbox callbacks pass
through before they are logged or stored. Phone numbers are found with the patterns the
routing module's :data:`~trailpay.routing.PHONE_RULES` give, so a country added there is
masked here too.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from trailpay import codec
from trailpay.domain.masking import mask_email, mask_phone
from trailpay.routing import PHONE_RULES


def _phone_pattern() -> re.Pattern[str]:
    """``+254 712 345 678``, ``254712345678``, ``0712-345-678`` for every country we serve."""
    sep = "[ -]?"  # people and providers group the digits with spaces or dashes
    international = "|".join(
        dict.fromkeys(f"{r.dialling_code}{sep}{r.national_pattern(sep)}" for r in PHONE_RULES.values())
    )
    national = "|".join(dict.fromkeys(r.national_pattern(sep) for r in PHONE_RULES.values()))
    # Not part of a longer number: no digit or + right before, no digit right after, nor a
    # digit one separator away on either side. Glued to a word in front (``ws_CO_2547...``,
    # ``msisdn254...``) it is still a number; followed by a letter it is part of an id
    # (``TP0712345678ABCD``: a payment reference) and stays.
    return re.compile(
        rf"(?<![\d+])(?<!\d[ -])(?:\+?(?:{international})|0(?:{national}))(?![^\W_]|[ -]\d)"
    )


_PHONE = _phone_pattern()
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_SECRETS = re.compile(
    r"\b(sk|rk|pk)_(test|live)_[A-Za-z0-9]+|\bwhsec_[A-Za-z0-9]+|\bpi_[A-Za-z0-9]+_secret_[A-Za-z0-9]+"
)
_EMAIL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
#: ``scheme://user:password@host``: a database or ClickHouse URL in an error message.
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s/]+@")
_AUTH = re.compile(r"(?i)\b(Bearer|Token|Basic)\s+[A-Za-z0-9._~+/=-]{6,}")
_KEYVAL = re.compile(
    r'(?i)("?(?:password|passkey|secret|api_key|token|access_token|client_secret|Password)"?\s*[:=]\s*"?)([^"\s,}&]+)'
)


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return f"****{digits[-4:]}"


#: Daraja's prompt ids in Daraja's shape (``ws_CO_`` + the request's day, month, year, hour,
#: minute and second + a counter): a log line names the prompt by it, so support can search for
#: it. Its digits are a time, not a phone or card number, but the masks below took 13 to 19 of
#: them for a card, or a phone-shaped run after the time for a phone, so the same kind of id
#: came out whole in one line and masked in the next. One that does not start with a time
#: (``ws_CO_254712345678``) is scrubbed like any text.
_PROMPT_ID = re.compile(
    r"\bws_CO_(?:0[1-9]|[12]\d|3[01])(?:0[1-9]|1[0-2])\d{4}(?:[01]\d|2[0-3])[0-5]\d[0-5]\d[A-Za-z0-9]*")


def scrub(text: str) -> str:
    """Remove secrets, tokens, passwords in URLs, card numbers, e-mail addresses and full
    phone numbers (every country of :data:`~trailpay.routing.PHONE_RULES`) from free text.
    Daraja's prompt ids are kept as they are (:data:`_PROMPT_ID`): the text between them is
    scrubbed."""
    pieces: list[str] = []
    start = 0
    for prompt in _PROMPT_ID.finditer(text):
        pieces += [_scrub(text[start:prompt.start()]), prompt.group(0)]
        start = prompt.end()
    pieces.append(_scrub(text[start:]))
    return "".join(pieces)


def _scrub(text: str) -> str:
    text = _SECRETS.sub("[secret]", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}[redacted]@", text)
    text = _EMAIL.sub(lambda m: mask_email(m.group(0)), text)
    text = _AUTH.sub(lambda m: f"{m.group(1)} [redacted]", text)
    text = _KEYVAL.sub(lambda m: f"{m.group(1)}[redacted]", text)
    text = _PHONE.sub(lambda m: mask_phone(m.group(0)), text)
    return _CARD.sub(_mask_card, text)


def mask_phone_numbers(text: str) -> str:
    """Only the phone numbers of ``text`` masked (ids, amounts and times left as they are)."""
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


#: Keys whose values are identifiers (Daraja's ``CheckoutRequestID``, ``MerchantRequestID``,
#: ``ConversationID``; Airtel's ``id``, ``airtel_money_id``): kept verbatim in a stored
#: callback. A digit run inside one can look like a phone number (the sandbox's
#: ``ws_CO_011220261802154c0664904857`` ends in ``0664904857``), and an id changed by the
#: mask no longer matches its payment: its success was dead-lettered as suspicious.
_ID_KEY = re.compile(r"(?:^id|ID|Id|_id)$")
#: Daraja's name-value items that hold identifiers (``{"Name": "MpesaReceiptNumber",
#: "Value": ...}`` in an STK callback, ``{"Key": "TransactionReceipt", ...}`` in a B2C result).
_ID_ITEMS = frozenset({"MpesaReceiptNumber", "TransactionReceipt", "TransactionID"})


def _mask_json(value: Any) -> Any:
    if isinstance(value, str):
        return mask_phone_numbers(value)
    if isinstance(value, int) and not isinstance(value, bool) and _PHONE.fullmatch(str(value)):
        return mask_phone(str(value))  # M-Pesa sends ``"Value": 254712345678``
    if isinstance(value, list):
        return [_mask_json(item) for item in value]
    if isinstance(value, dict):
        names_an_id = value.get("Name") in _ID_ITEMS or value.get("Key") in _ID_ITEMS
        return {key: item if _ID_KEY.search(key) or (names_an_id and key == "Value") else _mask_json(item)
                for key, item in value.items()}
    return value


def mask_phones_in_body(body: bytes) -> bytes:
    """A provider callback's bytes with its phone numbers masked, for keeping (Kafka, the
    callback archive). JSON stays JSON (a number that is a phone number becomes its masked
    string) and its identifiers stay as they are (:data:`_ID_KEY`, :data:`_ID_ITEMS`);
    bytes without a phone number are returned unchanged, byte for byte."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return body
    if _PHONE.search(text) is None:
        return body
    try:
        masked = _mask_json(json.loads(text))
        return json.dumps(masked, ensure_ascii=False, separators=(",", ":")).encode()
    except (ValueError, RecursionError):  # not JSON, or too deep to walk: mask the text
        return mask_phone_numbers(text).encode()


class ScrubFilter(logging.Filter):
    """Renders the message once, masks it, and freezes it on the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken log call must not break the caller
            message = str(record.msg)
        record.msg = scrub(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        if record.exc_text:
            payload["exc"] = record.exc_text
        return codec.dumps(payload, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "plain", service: str = "trailpay") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ScrubFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s [{service}] %(name)s: %(message)s")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("aiokafka", "kafka", "httpx", "httpcore", "uvicorn.access", "stripe"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
