"""Fakes of the Faust pieces the agents' batch code touches, for unit tests without a broker."""

from __future__ import annotations

from typing import Any

from trailpay import codec, topics


class FakeTable:
    """A Faust table's storage and its changelog sends (recorded, as (partition, key, value))."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.changelog: list[tuple[int, bytes, bytes | None]] = []

    def send_changelog(self, partition: int, key: bytes, value: bytes | None, **_: Any) -> None:
        self.changelog.append((partition, key, value))


class FaustProducer:
    """The app's producer as an outbox flushes through it: what was sent, as (topic, key, value)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes, *_: Any) -> None:
        self.sent.append((topic, key, value))

    async def flush(self) -> None:
        return None

    def dead_letters(self) -> list[Any]:
        """The dead letters among the records sent, decoded."""
        return [codec.decode(topics.DEAD_LETTERS, v) for t, _, v in self.sent if t == topics.DEAD_LETTERS]
