"""Helpers for ingress, booking-bridge and e-mail tests: users and tokens, topic readers,
a worker subprocess, a Stripe signature."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from sqlalchemy.ext.asyncio import create_async_engine

from connectors.ingress.auth import create_token, create_user
from trailpay import codec
from trailpay.settings import Settings


@dataclass
class ApiUser:
    id: str
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}


async def make_user(settings: Settings, role: str = "user", user_id: str | None = None) -> ApiUser:
    engine = create_async_engine(settings.sqlalchemy_async_url())
    try:
        email = f"{uuid.uuid4().hex[:10]}@test.example"
        user = await create_user(engine, email, role, user_id)  # type: ignore[arg-type]
        token, _ = await create_token(engine, email, "test")
    finally:
        await engine.dispose()
    return ApiUser(user.id, email, token)


async def read_topic(bootstrap: str, topic: str, match: Any = None, *, want: int = 1,
                     timeout: float = 30.0, settle: float = 0.0) -> list[Any]:
    """Decode records of ``topic`` (from the start) for which ``match(record)`` holds, until
    ``want`` are found (then ``settle`` more seconds to catch extras) or ``timeout``."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        settle_until: float | None = None
        while time.monotonic() < deadline:
            if settle_until is not None and time.monotonic() >= settle_until:
                break
            batches = await consumer.getmany(timeout_ms=300, max_records=5000)
            for records in batches.values():
                for rec in records:
                    try:
                        value = codec.decode(topic, rec.value)
                    except Exception:
                        continue
                    if match is None or match(value):
                        found.append(value)
            if len(found) >= want and settle_until is None:
                settle_until = time.monotonic() + settle
    finally:
        await consumer.stop()
    return found


def stripe_signature(body: bytes, secret: str = "whsec_trailpay_sandbox", at: int | None = None) -> str:
    ts = int(time.time()) if at is None else at
    sig = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={sig}"


@dataclass
class Subprocess:
    """A `trailpay ...` child in its own process group, logging to a file."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> Subprocess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "controlplane.cli.main", *self.args],
                                         stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True)
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.args} exited {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            if text in self.log_text():
                return
            time.sleep(0.2)
        raise TimeoutError(f"{text!r} not seen after {timeout}s:\n{self.log_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAILPAY_")}
    env.update({
        "TRAILPAY_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
        "TRAILPAY_DATABASE_URL": settings.database_url or "",
        "TRAILPAY_PARTITIONS": str(settings.partitions),
        "TRAILPAY_DATA_DIR": str(settings.data_path),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def worker(settings: Settings, log_path: Path, modules: list[str], **extra: str) -> Subprocess:
    """`trailpay worker --only ...` with its own consumer group (a unique worker id)."""
    args = ["worker"]
    for module in modules:
        args += ["--only", module]
    env = child_env(settings, TRAILPAY_WORKER_ID=f"test-{uuid.uuid4().hex[:8]}", **extra)
    return Subprocess(args, env, log_path)


async def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            return result
        await asyncio.sleep(interval)
