"""The ingress's Kafka producer: started in the background, bounded waits, 503 when absent.

The ingress must come up (and answer 503 to webhooks, so providers retry) while the broker is
unreachable; the producer keeps trying to connect in the background. Every publish waits for
the broker's acknowledgement (acks=all) for at most ``webhook_ack_timeout_s``. A publish that
timed out may still reach the broker later: that is a duplicate, which every consumer
tolerates (at-least-once with idempotent effects), never a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import BaseModel

from trailpay import codec
from trailpay.domain.errors import RetriableError
from trailpay.kafka import make_producer
from trailpay.settings import Settings

log = logging.getLogger(__name__)


class KafkaUnavailable(RetriableError):
    """The broker did not acknowledge the record in time; the caller answers 503."""


class Publisher:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._timeout = settings.webhook_ack_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._connector: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def start(self) -> None:
        """Begin connecting; returns at once (see :attr:`ready`)."""
        self._connector = asyncio.create_task(self._connect(), name="kafka-connect")

    async def _connect(self) -> None:
        delay = 0.2
        while True:
            producer = make_producer(self._settings,
                                     request_timeout_ms=int(self._timeout * 1000) + 1000, linger_ms=0)
            try:
                await producer.start()
            except (KafkaError, OSError) as exc:
                log.warning("Kafka not reachable yet (%s); retrying in %.1fs", type(exc).__name__, delay)
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self._producer = producer
            self.ready.set()
            log.info("Kafka producer connected")
            return

    async def stop(self) -> None:
        if self._connector is not None and not self._connector.done():
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.stop(), 10)
        self.ready.clear()

    async def publish(self, topic: str, key: str | None, record: BaseModel) -> None:
        """Send and wait for the ack; :class:`KafkaUnavailable` if it does not come in time."""
        producer = self._producer
        if producer is None:
            raise KafkaUnavailable("Kafka is not reachable")
        value, raw_key = codec.encode(record), codec.encode_key(key)
        try:
            async with asyncio.timeout(self._timeout):  # no extra task per call (unlike wait_for)
                await producer.send_and_wait(topic, value, key=raw_key)
        except TimeoutError as exc:
            raise KafkaUnavailable(f"Kafka did not acknowledge within {self._timeout}s") from exc
        except KafkaError as exc:
            raise KafkaUnavailable(f"Kafka did not take the record: {exc}") from exc

    async def check(self, wait_s: float = 2.0) -> bool:
        """Whether the broker answers a metadata request now (for /readyz)."""
        producer = self._producer
        if producer is None:
            return False
        try:
            return bool(await asyncio.wait_for(producer.client.fetch_all_metadata(), wait_s))
        except (TimeoutError, KafkaError, OSError):
            return False
