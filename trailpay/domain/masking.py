"""Masking of personal data before anything reaches a log line, a stored copy or a report.

The free-text scrubber that uses it, with the phone patterns of every country we serve, is
:func:`trailpay.logs.scrub` (the phone rules live in :mod:`trailpay.routing`, above the domain).
"""

from __future__ import annotations

import re


def mask_phone(phone: str | None) -> str:
    """``254712345678`` -> ``2547******78``: enough to tell numbers apart in support."""
    if not phone:
        return ""
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
