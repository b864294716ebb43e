"""API tokens as issued and as stored: ``tp_`` + 32 random bytes, kept as sha256 hex only.

Apart from :mod:`connectors.ingress.auth` so that the analytics service, which checks admin
tokens against the same table, need not load the ingress (measured: 70 ms of imports,
the Stripe SDK among them) to hash one.
"""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "tp_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)
