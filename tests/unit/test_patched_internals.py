"""The private Faust and aiokafka parts we patch are still there, with the shape we rely on.

``trailpay/highwater.py`` wraps ``AIOKafkaConsumerThread._highwaters`` and reads
``_ensure_consumer()._client._bootstrap_servers`` and the Faust consumer's
``in_transaction``; ``streams/fetchwait.py`` wraps ``_create_worker_consumer`` and sets
``AIOKafkaConsumer._fetch_max_wait_ms`` before ``start()`` reads it. pyproject.toml caps both
libraries below the next minor release; when raising a cap, this test says what broke.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import aiokafka
from aiokafka.client import AIOKafkaClient
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread


def _parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_faust_consumer_thread_highwaters_is_a_coroutine_taking_partitions() -> None:
    method = inspect.unwrap(AIOKafkaConsumerThread._highwaters)  # the original, patched or not
    assert inspect.iscoroutinefunction(method)
    assert _parameters(method) == ["self", "partitions"]


def test_faust_consumer_thread_ensure_consumer_takes_no_arguments() -> None:
    method = AIOKafkaConsumerThread._ensure_consumer
    assert not inspect.iscoroutinefunction(method)
    assert _parameters(method) == ["self"]


def test_faust_consumer_thread_creates_worker_consumers_from_a_transport() -> None:
    method = inspect.unwrap(AIOKafkaConsumerThread._create_worker_consumer)  # the original, patched or not
    assert not inspect.iscoroutinefunction(method)
    assert _parameters(method) == ["self", "transport"]
    assert "AIOKafkaConsumer(" in inspect.getsource(method)


def test_faust_consumer_has_in_transaction() -> None:
    assert "self.in_transaction =" in inspect.getsource(Consumer.__init__)


def test_aiokafka_client_keeps_its_bootstrap_servers() -> None:
    assert "self._bootstrap_servers = bootstrap_servers" in inspect.getsource(AIOKafkaClient.__init__)


async def test_aiokafka_consumer_fetch_wait_is_read_at_start() -> None:
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9", fetch_max_wait_ms=321)
    try:
        assert consumer._fetch_max_wait_ms == 321
        assert isinstance(consumer._client, AIOKafkaClient)
        assert consumer._client._bootstrap_servers == "127.0.0.1:9"
    finally:
        await consumer.stop()
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(aiokafka.AIOKafkaConsumer.start)


def test_aiokafka_consumer_highwater_takes_a_partition() -> None:
    assert _parameters(aiokafka.AIOKafkaConsumer.highwater) == ["self", "partition"]
