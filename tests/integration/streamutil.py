"""Helpers for stream-worker tests: run `trailpay worker` as a subprocess, produce inputs,
read outputs to the end (by fetch high watermark: tansu's ListOffsets answer lags)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from trailpay import codec
from trailpay.domain.events import (
    CreatePayment,
    Money,
    PaymentMethod,
    Provider,
    ProviderEvent,
    ProviderEventKind,
)
from trailpay.domain.status import PaymentStatus
from trailpay.settings import Settings

MY_AGENTS = ["streams.agents.dedup", "streams.agents.payments", "streams.agents.sweeper"]


@dataclass
class WorkerProcess:
    """`trailpay worker` in its own process group, logging to a file."""

    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    only: tuple[str, ...] = tuple(MY_AGENTS)

    def start(self) -> None:
        args = [sys.executable, "-m", "controlplane.cli.main", "worker"]
        for module in self.only:
            args += ["--only", module]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = 90, after: int = 0) -> None:
        """Until Faust says "Worker ready" (after byte ``after`` of the log)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            if "Worker ready" in self.log_text()[after:]:
                return
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log_text()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL, no goodbye: the crash we test against."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()


def worker_env(settings: Settings, app_id: str, **overrides: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAILPAY_")}
    env.update({
        "TRAILPAY_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
        "TRAILPAY_PARTITIONS": str(settings.partitions),
        "TRAILPAY_WORKER_ID": app_id,
        "TRAILPAY_LOG_LEVEL": "INFO",
        "TRAILPAY_DATA_DIR": str(settings.data_path),
        "PYTHONUNBUFFERED": "1",
    })
    if settings.broker_kind:  # picks the broker workarounds (streams.worker)
        env["TRAILPAY_BROKER_KIND"] = settings.broker_kind
    env.update({f"TRAILPAY_{k.upper()}": str(v) for k, v in overrides.items()})
    return env


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


# ----------------------------------------------------------------------------- inputs

#: Recent, so the deadlines of test payments lie in the future (the sweeper stays out of it).
T0 = datetime.now(UTC).replace(microsecond=0)


def create_record(reference: str, *, provider: Provider = Provider.MPESA, amount: int = 1500,
                  seconds: float = 0) -> CreatePayment:
    mobile = provider is not Provider.STRIPE
    return CreatePayment(
        event_id=f"create-{reference}", occurred_at=T0 + timedelta(seconds=seconds),
        reference=reference, user_id="user-load", amount=Money(amount=amount, currency="KES"),
        provider=provider, method=PaymentMethod.MOBILE_MONEY if mobile else PaymentMethod.CARD,
        phone_number="254700000000" if mobile else None, email="load@example.com",
    )


def provider_record(reference: str, status: PaymentStatus, *, event_id: str, seconds: float,
                    provider: Provider = Provider.MPESA, source: str = "webhook") -> ProviderEvent:
    return ProviderEvent(
        event_id=event_id, occurred_at=T0 + timedelta(seconds=seconds), kind=ProviderEventKind.STATUS,
        reference=reference, provider=provider, status=status, provider_status=status.value,
        provider_code=f"code-{status.value}", provider_message=f"{status.value} at provider",
        provider_reference=f"ws_CO_{reference}", source=source,  # type: ignore[arg-type]
    )


async def produce(bootstrap: str, items: Iterable[tuple[str, bytes | None, bytes]]) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=512 * 1024,
                                acks="all")
    await producer.start()
    n = 0
    try:
        futures = []
        for topic, key, value in items:
            futures.append(await producer.send(topic, value, key=key))
            n += 1
            if len(futures) >= 5000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return n


def encoded(topic: str, key: str | None, record: Any) -> tuple[str, bytes | None, bytes]:
    return topic, codec.encode_key(key), codec.encode(record)


# ----------------------------------------------------------------------------- outputs


async def read_until(bootstrap: str, topic: str, keep: Callable[[bytes | None, bytes], bool],
                     done: Callable[[list[tuple[bytes | None, bytes]]], bool], *,
                     timeout: float = 120, quiet_s: float = 0.0) -> list[tuple[bytes | None, bytes]]:
    """Read ``topic`` from the start, keeping records ``keep`` accepts, until ``done`` says so
    (then go on ``quiet_s`` more seconds to catch any extra records) or ``timeout``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    got: list[tuple[bytes | None, bytes]] = []
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        quiet_until: float | None = None
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=20000)
            for records in batch.values():
                got.extend((r.key, r.value) for r in records if r.value is not None and keep(r.key, r.value))
            if quiet_until is None and done(got):
                quiet_until = loop.time() + quiet_s
            if quiet_until is not None and loop.time() >= quiet_until:
                break
    finally:
        await consumer.stop()
    return got


def state_changes(records: list[tuple[bytes | None, bytes]]) -> dict[str, list[dict[str, Any]]]:
    """event id -> every distinct content it was emitted with."""
    contents: dict[str, list[dict[str, Any]]] = {}
    for _key, value in records:
        data = json.loads(value)
        seen = contents.setdefault(data["event_id"], [])
        if data not in seen:
            seen.append(data)
    return contents


def finals(changes: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """reference -> the state change with the highest version."""
    best: dict[str, dict[str, Any]] = {}
    for contents in changes.values():
        for data in contents:
            ref = data["reference"]
            if ref not in best or data["version"] > best[ref]["version"]:
                best[ref] = data
    return best
