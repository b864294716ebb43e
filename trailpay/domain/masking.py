"""Masking of personal data before anything reaches a log line.

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
