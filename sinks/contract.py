"""The sink contract: what a sink is, and the record it is given.

A :class:`Sink` turns topic records into rows and writes them in batches::

    await sink.setup()          # connect, create what is missing
    sink.add(record)            # decode and buffer; raise InvalidRecord for a bad record
    await sink.flush()          # write everything buffered, durably, all or nothing
    sink.discard()              # forget the buffer (its records will be read again)

``flush`` keeps the buffer until a write succeeds. It raises :class:`SinkBackpressure`
(a :class:`RetriableError` with ``retry_after``) when the database is away: the runner
(:mod:`sinks.runner`) then waits and calls ``flush`` again with the *same* batch, so
nothing is lost and no key's records are reordered. Whether the database is away is
what ``reachable()`` answers: a batch that keeps failing while it answers is the
records' fault, and the runner isolates them. A :class:`PermanentError` from
``flush`` means some row can never be written: the runner writes the batch one record at
a time to find it and dead-letters that record alone. Any other exception is a bug in the
sink: the runner finds the records it hits the same way and dead-letters them under
``<sink>.bug``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from trailpay import codec
from trailpay.domain.errors import RetriableError
from trailpay.domain.events import DeadLetter


class SinkBackpressure(RetriableError):
    """The destination cannot take the batch now; try the same batch after ``retry_after``."""


@dataclass(frozen=True, slots=True)
class SinkRecord:
    """One Kafka record as a sink sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    #: The value already decoded against its topic's contract, when the caller has it
    #: (a replay decodes each record once for all sinks); ``None`` = decode :attr:`value`.
    decoded: Any = field(default=None, compare=False, repr=False)

    def contract_value(self, logical_topic: str) -> Any:
        """The decoded value (:func:`trailpay.codec.decode` of :attr:`value` on ``logical_topic``)."""
        if self.decoded is not None and logical_topic == self.topic:
            return self.decoded
        return codec.decode(logical_topic, self.value)

    @property
    def key_text(self) -> str | None:
        if self.key is None:
            return None
        return self.key.decode("utf-8", errors="replace")


class Sink(abc.ABC):
    """A batching, idempotent writer of topic records (see the module docstring)."""

    #: Short name, used for the consumer group, metrics labels and dead-letter ``stage``.
    name: str
    #: Topics this sink consumes.
    topics: tuple[str, ...]

    async def setup(self) -> None:  # noqa: B027 - optional hook
        """Connect and create what is missing; called once before the first record."""

    @abc.abstractmethod
    def add(self, record: SinkRecord) -> None:
        """Decode and buffer one record; raise :class:`InvalidRecord` when it cannot be."""

    @abc.abstractmethod
    async def flush(self) -> None:
        """Write the buffer durably, all or nothing, then clear it.

        Raise :class:`SinkBackpressure` (or another :class:`RetriableError`) to have the
        same batch tried again; :class:`PermanentError` when a row can never be written.
        """

    @abc.abstractmethod
    def discard(self) -> None:
        """Forget every buffered row without writing it."""

    @property
    @abc.abstractmethod
    def pending(self) -> int:
        """How many records are buffered."""

    async def reachable(self) -> bool | None:
        """Whether the destination answers a trivial query now (None: cannot tell, so a
        retriable failure is always taken for an outage)."""
        return None

    def logical_topic(self, topic: str) -> str:
        """The TrailPay topic a consumed topic stands for (they differ in tests and replays)."""
        return topic

    def add_dead_letter(self, letter: DeadLetter) -> bool:
        """Store a dead letter about a record of ``deadletters.v1`` itself.

        A bad record on the dead-letter topic cannot go back to that topic (it would loop),
        so a sink that keeps dead letters stores it directly and returns True.
        """
        return False

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
