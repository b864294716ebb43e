"""A callback body nested past the JSON parser's limit is an unparseable webhook (its own
dead-letter stage), not a ``RecursionError`` filed as a bug of ours (issue 16)."""

from __future__ import annotations

import pytest

from connectors.providers._common import json_object
from connectors.providers.base import WebhookUnparseable


def test_deeply_nested_body_is_unparseable_not_a_recursion_error():
    body = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    with pytest.raises(WebhookUnparseable, match="airtel body is nested too deeply to parse"):
        json_object(body, "airtel")


def test_nested_array_body_is_unparseable():
    with pytest.raises(WebhookUnparseable):
        json_object(b"[" * 100_000 + b"]" * 100_000, "mpesa")
