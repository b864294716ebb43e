"""Kafka plumbing shared by every service: topic admin and a plain producer.

Works on tansu and Apache Kafka alike. We never use the idempotent or transactional
producer (tansu lacks InitProducerId v3); effects are made idempotent downstream instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from pydantic import BaseModel

from trailpay import codec, topics
from trailpay.domain.errors import ConfigurationError, RetriableError
from trailpay.settings import Settings

log = logging.getLogger(__name__)


def bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap:
        raise ConfigurationError(
            "TRAILPAY_KAFKA_BOOTSTRAP is not set and no embedded stack was found; "
            "run `trailpay up` or set it"
        )
    return settings.kafka_bootstrap


async def create_topics(
    settings: Settings, specs: Iterable[topics.TopicSpec] = topics.TOPICS
) -> list[str]:
    """Create missing topics; returns the names created now. Safe to run again."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                spec.name,
                num_partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                topic_configs=spec.config(),
            )
            for spec in specs
            if spec.name not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass
        return [t.name for t in wanted]
    finally:
        await admin.close()


async def describe_topics(settings: Settings) -> list[dict[str, Any]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(settings))
    await admin.start()
    try:
        names = sorted(await admin.list_topics())
        described = await admin.describe_topics(names) if names else []
        return [
            {"topic": d["topic"], "partitions": len(d["partitions"])}
            for d in described
        ]
    finally:
        await admin.close()


def make_producer(settings: Settings, **kwargs: Any) -> AIOKafkaProducer:
    """A producer that waits for the broker's acknowledgement of every record."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap(settings),
        "acks": "all",
        "linger_ms": 2,
        "max_batch_size": 256 * 1024,
        "request_timeout_ms": 15000,
        "enable_idempotence": False,
    }
    options.update(kwargs)
    return AIOKafkaProducer(**options)


class RecordProducer:
    """Encodes contract records with the one codec and sends them keyed."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self._producer = make_producer(settings, **kwargs)
        self._started = False

    async def start(self) -> None:
        if not self._started:
            await self._producer.start()
            self._started = True

    async def stop(self) -> None:
        if self._started:
            await self._producer.stop()
            self._started = False

    async def send(self, topic: str, key: str | None, record: BaseModel) -> None:
        """Send and wait for the broker's acknowledgement."""
        try:
            await self._producer.send_and_wait(
                topic, codec.encode(record), key=codec.encode_key(key)
            )
        except KafkaError as exc:
            raise RetriableError(f"Kafka did not take the record on {topic}: {exc}") from exc

    async def send_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        try:
            await self._producer.send_and_wait(topic, value, key=key)
        except KafkaError as exc:
            raise RetriableError(f"Kafka did not take the record on {topic}: {exc}") from exc

    async def send_many(self, topic: str, items: Iterable[tuple[str | None, BaseModel]]) -> int:
        futures = [
            await self._producer.send(topic, codec.encode(rec), key=codec.encode_key(key))
            for key, rec in items
        ]
        if futures:
            await asyncio.gather(*futures)
        return len(futures)

    async def flush(self) -> None:
        await self._producer.flush()
