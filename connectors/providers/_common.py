"""Small helpers shared by the provider modules (pure: no network)."""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from typing import Any

from connectors.providers.base import WebhookRejected, WebhookUnparseable


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by case-insensitive name (the ingress may or may not lower-case them)."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def json_object(body: bytes, provider: str) -> dict[str, Any]:
    """The body as a JSON object, or :class:`WebhookUnparseable` saying why not."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookUnparseable(f"{provider} body is not JSON: {exc}") from exc
    except RecursionError as exc:  # nested past the parser's limit: hostile, not a bug of ours
        raise WebhookUnparseable(f"{provider} body is nested too deeply to parse") from exc
    if not isinstance(data, dict):
        raise WebhookUnparseable(f"{provider} body is not a JSON object")
    return data


def check_token(query: Mapping[str, str], expected: str, provider: str) -> None:
    """The per-deployment callback token in the query string, compared in constant time."""
    given = query.get("token")
    if not given:
        raise WebhookRejected(f"{provider} callback without a token")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise WebhookRejected(f"{provider} callback with a wrong token")
