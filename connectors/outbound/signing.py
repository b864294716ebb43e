"""The ``TrailPay-Signature`` header: ``t=<unix seconds>,v1=<hex HMAC-SHA256>[,v1=...]``.

Each ``v1`` is the HMAC-SHA256, under one endpoint secret, of ``"<t>."`` followed by the
raw request body. While a secret is being rotated the header carries one ``v1`` per valid
secret (the new one first), so a receiver holding either secret verifies the request.
:func:`verify` is what a receiver does (the README shows the same in a few lines).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

SIGNATURE_HEADER = "TrailPay-Signature"
EVENT_ID_HEADER = "TrailPay-Event-Id"
#: How old a signature a receiver should still take (replays of older requests are refused).
DEFAULT_TOLERANCE_S = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>." + body`` under ``secret``."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(body: bytes, secrets: Sequence[str], timestamp: int) -> str:
    """The header value signing ``body`` at ``timestamp`` with every secret of ``secrets``."""
    if not secrets:
        raise ValueError("no secret to sign with")
    return ",".join([f"t={timestamp}", *(f"v1={signature(s, timestamp, body)}" for s in secrets)])


def verify(body: bytes, header: str, secret: str, *, tolerance_s: int = DEFAULT_TOLERANCE_S,
           now: float | None = None) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` within ``tolerance_s`` of ``now``."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, c) for c in candidates)
