"""Stripe webhook signatures: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]``.

The signed payload is ``f"{t}.".encode() + raw_body`` and each ``v1`` is the hex
HMAC-SHA256 of it under an endpoint secret. We verify over the raw bytes exactly as
received (never a re-serialised body), compare in constant time, refuse timestamps older
than the tolerance, and accept any of several configured secrets so a secret can be
rotated without dropping webhooks (old and new are both valid during the overlap).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

from connectors.providers.base import WebhookRejected


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secrets: Sequence[str], body: bytes, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` value with one ``v1`` per secret (what Stripe sends during a
    rotation); used by the sandbox and tests."""
    ts = int(time.time()) if timestamp is None else timestamp
    parts = [f"t={ts}"] + [f"v1={compute_signature(s, ts, body)}" for s in secrets]
    return ",".join(parts)


def parse_header(value: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for item in value.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(val)
            except ValueError:
                raise WebhookRejected("Stripe-Signature timestamp is not an integer") from None
        elif key == "v1":
            signatures.append(val)
    if timestamp is None:
        raise WebhookRejected("Stripe-Signature has no timestamp")
    if not signatures:
        raise WebhookRejected("Stripe-Signature has no v1 signature")
    return timestamp, signatures


def verify_signature(
    body: bytes,
    header_value: str | None,
    secrets: Sequence[str],
    tolerance_s: int,
    now: float | None = None,
) -> int:
    """Raise :class:`WebhookRejected` unless one ``v1`` matches one secret within the
    tolerance; returns the signed timestamp."""
    if not header_value:
        raise WebhookRejected("missing Stripe-Signature header")
    if not secrets:
        raise WebhookRejected("no Stripe webhook secret is configured")
    timestamp, given = parse_header(header_value)
    matched = False
    for secret in secrets:
        expected = compute_signature(secret, timestamp, body).encode()
        for candidate in given:
            # Check every pair (no early exit) so timing tells nothing about which matched.
            matched |= hmac.compare_digest(expected, candidate.encode())
    if not matched:
        raise WebhookRejected("no Stripe-Signature v1 matches a configured secret")
    current = time.time() if now is None else now
    if tolerance_s > 0 and timestamp < current - tolerance_s:
        raise WebhookRejected(
            f"Stripe-Signature timestamp is {int(current - timestamp)} s old "
            f"(tolerance {tolerance_s} s)"
        )
    return timestamp
