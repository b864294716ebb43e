"""Masking of personal data before anything reaches a log line, a stored copy or a report.

The free-text scrubber that uses it, with the phone patterns of every country we serve, is
:func:`trailpay.logs.scrub` (the phone rules live in :mod:`trailpay.routing`, above the domain).

Masking is idempotent: a masked value masked again is the same value, so a reader that
cannot tell (a sink fed by payments.state.v1, whose snapshots are masked since the phone
number and e-mail travel sealed: :mod:`trailpay.domain.contact`) may always mask.
"""

from __future__ import annotations

import re

#: What every masked value holds and no phone number or real address we take does.
MASK = "*"


def mask_phone(phone: str | None) -> str:
    """``254712345678`` -> ``2547******78``: enough to tell numbers apart in support."""
    if not phone:
        return ""
    if is_masked(phone):
        return phone
    digits = re.sub(r"\D", "", phone)
    if len(digits) < 6:
        return "***"
    return f"{digits[:4]}{'*' * (len(digits) - 6)}{digits[-2:]}"


def mask_email(address: str | None) -> str:
    """``jane.doe@example.org`` -> ``j***@example.org``: the domain tells support enough."""
    if not address:
        return ""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def is_masked(value: str | None) -> bool:
    """Whether ``value`` is the masked form of a phone number or e-mail (what
    :func:`mask_phone` and :func:`mask_email` give), not the value itself."""
    return bool(value) and MASK in (value or "")


def phone_prefix(phone: str | None) -> str | None:
    """``254712345678`` -> ``25471``: country code and operator digits, never the number.
    None for a national number (``0712...``: the country is not in it) or a masked one."""
    if not phone or is_masked(phone):
        return None
    digits = re.sub(r"\D", "", phone)
    if digits.startswith("0") and len(digits) == 10:
        return None  # national format: the country is not in the number
    return digits[:5] if len(digits) >= 9 else None
