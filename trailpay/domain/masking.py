"""Masking of personal data and secrets before anything reaches a log line."""

from __future__ import annotations

import re

_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_PHONE = re.compile(r"(?<![\w])(?:\+?(?:254|255|256|250|260|265|234|233)|0)(7|1)\d{8}(?!\d)")
_SECRETS = re.compile(
    r"\b(sk|rk|pk)_(test|live)_[A-Za-z0-9]+|\bwhsec_[A-Za-z0-9]+|\bpi_[A-Za-z0-9]+_secret_[A-Za-z0-9]+"
)
_AUTH = re.compile(r"(?i)\b(Bearer|Token|Basic)\s+[A-Za-z0-9._~+/=-]{6,}")
_KEYVAL = re.compile(
    r'(?i)("?(?:password|passkey|secret|api_key|token|access_token|client_secret|Password)"?\s*[:=]\s*"?)([^"\s,}&]+)'
)


def mask_phone(phone: str | None) -> str:
    """``254712345678`` -> ``2547******78``: enough to tell numbers apart in support."""
    if not phone:
        return ""
    digits = re.sub(r"\D", "", phone)
    if len(digits) < 6:
        return "***"
    return f"{digits[:4]}{'*' * (len(digits) - 6)}{digits[-2:]}"


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return f"****{digits[-4:]}"


def scrub(text: str) -> str:
    """Remove secrets, tokens, card numbers and full phone numbers from free text."""
    text = _SECRETS.sub("[secret]", text)
    text = _AUTH.sub(lambda m: f"{m.group(1)} [redacted]", text)
    text = _KEYVAL.sub(lambda m: f"{m.group(1)}[redacted]", text)
    text = _PHONE.sub(lambda m: mask_phone(m.group(0)), text)
    return _CARD.sub(_mask_card, text)
