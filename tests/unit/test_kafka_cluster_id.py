"""The embedded Kafka's cluster id never starts with '-' (the storage tool read one as an option)."""

from __future__ import annotations

import uuid

import pytest

from controlplane.stack import kafka_broker


def test_a_cluster_id_starting_with_a_dash_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xF8 encodes to '-' as the first URL-safe base64 character; the second draw is all zeros.
    draws = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=bytes(16))])
    monkeypatch.setattr(kafka_broker.uuid, "uuid4", lambda: next(draws))
    assert kafka_broker._cluster_id() == "AAAAAAAAAAAAAAAAAAAAAA"
