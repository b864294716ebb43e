"""Helpers for ingress, booking-bridge and e-mail tests: users and tokens, topic readers,
a worker subprocess, a Stripe signature."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from sqlalchemy.ext.asyncio import create_async_engine

from connectors.ingress.auth import create_token, create_user
from tests.support.processes import ChildProcess, service_env, trailpay_argv
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


class Subprocess(ChildProcess):
    """A `trailpay ...` child in its own process group, logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        super().__init__(trailpay_argv(*args), env, log_path)
        self.args = args


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    return service_env(settings, **extra)


def worker(settings: Settings, log_path: Path, modules: list[str], **extra: str) -> Subprocess:
    """`trailpay worker --only ...` with its own consumer group (a unique worker id)."""
    args = ["worker"]
    for module in modules:
        args += ["--only", module]
    env = child_env(settings, TRAILPAY_WORKER_ID=f"test-{uuid.uuid4().hex[:8]}", **extra)
    return Subprocess(args, env, log_path)
