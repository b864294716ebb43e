"""Helpers for stream-worker tests: a broker of their own, `trailpay worker` as a subprocess,
payment inputs, producing them, reading outputs to the end (by fetch high watermark: tansu's
ListOffsets answer lags) and checking the state changes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from tests.support.processes import clean_env
from tests.support.records import create_payment, mpesa_callback, status_event
from tests.support.waits import wait_for_sync
from trailpay import codec, topics
from trailpay.domain.events import CreatePayment, Money, Provider, ProviderEvent, RawWebhook
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
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            return "Worker ready" in self.log_text()[after:]

        try:
            wait_for_sync(ready, timeout, "Worker ready")
        except AssertionError:
            raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log_text()[-4000:]}") from None

    def kill(self) -> None:
        """SIGKILL, no goodbye: the crash we test against."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def kill_and_start(self) -> int:
        """SIGKILL this run and start the next; returns where the new run's log begins (for
        :meth:`wait_ready`)."""
        size = len(self.log_text())
        self.kill()
        self.proc = None
        self.start()
        return size

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
    env = clean_env(**{
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


def new_worker(broker: Settings, log_dir: Path, **overrides: Any) -> WorkerProcess:
    """A worker (not started) with an app id of its own, logging into ``log_dir``."""
    app_id = unique("tpw")
    return WorkerProcess(worker_env(broker, app_id, **overrides), log_dir / f"{app_id}.log")


# ----------------------------------------------------------------------------- inputs

#: Recent, so the deadlines of test payments lie in the future (the sweeper stays out of it).
T0 = datetime.now(UTC).replace(microsecond=0)


def create_record(reference: str, *, provider: Provider = Provider.MPESA, amount: int = 1500,
                  seconds: float = 0) -> CreatePayment:
    return create_payment(reference, T0 + timedelta(seconds=seconds), provider=provider, amount=amount,
                          user_id="user-load", phone_number="254700000000", email="load@example.com")


def provider_record(reference: str, status: PaymentStatus, *, event_id: str, seconds: float,
                    provider: Provider = Provider.MPESA, source: str = "webhook",
                    amount: Money | None = None) -> ProviderEvent:
    """A provider status report. A success states what :func:`create_record` asks for
    (KES 15.00) unless ``amount`` says otherwise, as a genuine M-Pesa callback does (the
    state machine refuses a success callback without its amount as suspicious)."""
    if status is PaymentStatus.SUCCEEDED and amount is None:
        amount = Money(amount=1500, currency="KES")
    return status_event(
        reference, status, T0 + timedelta(seconds=seconds), event_id=event_id, provider=provider,
        source=source, provider_status=status.value, provider_code=f"code-{status.value}",
        provider_message=f"{status.value} at provider", provider_reference=f"ws_CO_{reference}",
        amount=amount,
    )


def mpesa_record(settings: Settings, reference: str, code: int, copy: int, *,
                 shillings: int = 15, checkout: str | None = None) -> RawWebhook:
    """Daraja's callback for ``reference`` with ``code``; ``copy`` tells redeliveries apart.
    A success states ``shillings`` (``create_record`` asks for KES 15.00)."""
    return mpesa_callback(
        reference, code, f"result {code}", token=settings.mpesa_callback_token.get_secret_value(),
        event_id=f"raw-{reference}-{code}-{copy}", occurred_at=T0, received_at=T0 + timedelta(seconds=5),
        merchant_request_id=f"mr-{reference}", shillings=shillings, checkout=checkout,
    )


async def dead_letters(broker: Settings, marker: bytes, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    """The first ``count`` dead letters whose original bytes or reference contain ``marker``."""
    def mine(_key: bytes | None, value: bytes) -> bool:
        letter = json.loads(value)
        return marker in base64.b64decode(letter["value"]) or marker in (letter.get("reference") or "").encode()

    records = await read_until(broker.kafka_bootstrap or "", topics.DEAD_LETTERS, mine,
                               lambda got: len(got) >= count, timeout=timeout, quiet_s=1)
    return [json.loads(v) for _, v in records]


#: A payment's possible ends and the Daraja result code that brings each.
OUTCOMES = [(PaymentStatus.SUCCEEDED, 0), (PaymentStatus.FAILED, 1), (PaymentStatus.CANCELLED, 1032),
            (PaymentStatus.EXPIRED, 1037)]
Inputs = list[tuple[str, bytes | None, bytes]]


def payment_inputs(settings: Settings, reference: str, i: int, rng: random.Random) -> Inputs:
    """A payment's whole story, with the redeliveries providers and Kafka really produce."""
    status, code = OUTCOMES[i % len(OUTCOMES)]
    items = [
        encoded(topics.PAYMENT_REQUESTS, reference, create_record(reference)),
        encoded(topics.PROVIDER_EVENTS, reference, provider_record(
            reference, PaymentStatus.PENDING, event_id=f"cmd:{reference}:initiate", seconds=1,
            source="dispatcher")),
    ]
    if rng.random() < 0.5:
        items.append(encoded(topics.PROVIDER_EVENTS, reference, provider_record(
            reference, PaymentStatus.PROCESSING, event_id=f"webhook:{reference}:processing", seconds=2)))
    for copy in range(2):  # Daraja calls back twice: dedup drops the second
        items.append(encoded(topics.WEBHOOKS_RAW, reference, mpesa_record(settings, reference, code, copy)))
    if rng.random() < 0.33:  # the sweeper's query saw the same outcome
        items.append(encoded(topics.PROVIDER_EVENTS, reference, provider_record(
            reference, status, event_id=f"query:{reference}", seconds=30, source="sweep")))
    if rng.random() < 0.2:  # Kafka redelivered something
        items.append(rng.choice(items[1:]))
    return items


def payment_stories(settings: Settings, prefix: str, n: int, rng: random.Random) -> tuple[dict[str, str], Inputs]:
    """``n`` payments' inputs (see :func:`payment_inputs`), and reference -> expected end status."""
    expected: dict[str, str] = {}
    items: Inputs = []
    for i in range(n):
        reference = f"{prefix}{i:06d}"
        expected[reference] = OUTCOMES[i % len(OUTCOMES)][0].value
        items.extend(payment_inputs(settings, reference, i, rng))
    return expected, items


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


async def wait_final(broker: Settings, prefix: str, expected: dict[str, str], *,
                     timeout: float = 240) -> tuple[dict[str, list[dict[str, Any]]], list[Any]]:
    """Read payment.state until every payment in ``expected`` (references starting with
    ``prefix``) has ended in its expected status; the state changes and the records read."""
    marker = f'"reference":"{prefix}'.encode()

    status: dict[str, tuple[int, str]] = {}
    seen = [0]
    missing = set(expected)

    def done(got: list[Any]) -> bool:  # incremental: parses each record once
        for _key, value in got[seen[0]:]:
            data = json.loads(value)
            ref, version = data["reference"], data["version"]
            if ref in expected and version > status.get(ref, (0, ""))[0]:
                status[ref] = (version, data["to_status"])
                if data["to_status"] == expected[ref]:
                    missing.discard(ref)
                else:
                    missing.add(ref)
        seen[0] = len(got)
        return not missing

    records = await read_until(broker.kafka_bootstrap or "", topics.PAYMENT_STATE,
                               lambda k, v: marker in v, done, timeout=timeout, quiet_s=3)
    return state_changes(records), records
