"""Test data and plumbing for the sink tests: records on private, prefixed topics."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import secrets
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from sinks.postgres.migrations import upgrade
from sinks.postgres.sink import CONSUMED, PostgresSink
from sinks.runner import RunnerConfig, SinkRunner, stop_when_idle
from tests.support.processes import ROOT, clean_env
from tests.support.rows import pg_rows, plain_url
from trailpay import codec, kafka, topics
from trailpay.domain.events import (
    BookingEvent,
    BookingEventKind,
    Money,
    PaymentMethod,
    PaymentSnapshot,
    PaymentStateChanged,
    Provider,
    RawWebhook,
    RefundState,
)
from trailpay.domain.status import PaymentStatus as S
from trailpay.settings import Settings

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def new_prefix() -> str:
    return f"t{secrets.token_hex(4)}."


def new_reference(tag: str = "") -> str:
    return ("TP" + tag + secrets.token_hex(10).upper())[:22]


async def create_prefixed_topics(settings: Settings, prefix: str, partitions: int = 4) -> None:
    specs = [dataclasses.replace(spec, name=prefix + spec.name) for spec in topics.TOPICS]
    await kafka.create_topics(settings.model_copy(update={"partitions": partitions}), specs)


#: One step of a payment's history: (from, to, when, snapshot fields that change).
Step = tuple[S | None, S, datetime, dict[str, Any]]


def method_for(provider: Provider) -> PaymentMethod:
    return PaymentMethod.CARD if provider == Provider.STRIPE else PaymentMethod.MOBILE_MONEY


def refund_done(reference: str, amount: int, currency: str, when: datetime) -> RefundState:
    """A customer's refund of ``amount`` that succeeded at ``when`` (id ``rf-<reference>``)."""
    return RefundState(refund_id=f"rf-{reference}", amount=Money(amount=amount, currency=currency),
                       reason="requested_by_customer", status="succeeded", requested_at=when,
                       updated_at=when)


def state_changes(reference: str, base: dict[str, Any], steps: list[Step], *, cause: str,
                  cause_prefix: str) -> list[PaymentStateChanged]:
    """The state changes of one payment, version 1 upwards: each step's fields over ``base``
    (the snapshot fields that never change); cause ids ``<cause_prefix>-<reference>-<version>``."""
    changes = []
    for version, (src, dst, at, extra) in enumerate(steps, start=1):
        snap = PaymentSnapshot(**base, version=version, status=dst, updated_at=at, **extra)
        changes.append(PaymentStateChanged(
            event_id=PaymentStateChanged.id_for(reference, version), occurred_at=at,
            reference=reference, version=version, from_status=src, to_status=dst,
            cause_event_id=f"{cause_prefix}-{reference}-{version}", cause=cause, payment=snap,
        ))
    return changes


def payment_history(
    reference: str,
    *,
    amount: int = 150_000,
    currency: str = "KES",
    provider: Provider = Provider.MPESA,
    outcome: S = S.SUCCEEDED,
    refund: int | None = None,
    user_id: str = "user-1",
    booking_id: str | None = None,
    start: datetime = T0,
) -> list[PaymentStateChanged]:
    """The state changes of one payment: created -> pending -> outcome [-> refund], 5 s apart."""
    provider_ref = f"pi_{reference.lower()}" if provider == Provider.STRIPE else f"ws_CO_{reference}"
    base: dict[str, Any] = {
        "reference": reference,
        "user_id": user_id,
        "amount": Money(amount=amount, currency=currency),
        "provider": provider,
        "method": method_for(provider),
        "booking_id": booking_id,
        "country": "KE",
        "phone_number": None if provider == Provider.STRIPE else "254712345678",
        "email": "a@example.com",
        "created_at": start,
        "customer_id": "cus_" + user_id if provider == Provider.STRIPE else None,
    }

    def at(version: int) -> datetime:
        return start + timedelta(seconds=version * 5)

    steps: list[Step] = [
        (None, S.PENDING, at(1), {"provider_reference": provider_ref, "provider_status": "pending"}),
        (S.PENDING, outcome, at(2), {"provider_reference": provider_ref, "provider_status": outcome.value,
                                     "provider_code": "0" if outcome == S.SUCCEEDED else "1032",
                                     "settled_by": "callback"}),
    ]
    if refund is not None:
        final = S.REFUNDED if refund == amount else S.PARTIALLY_REFUNDED
        steps.append((outcome, final, at(3), {
            "provider_reference": provider_ref, "provider_status": outcome.value,
            "refunded_amount": refund, "settled_by": "callback",
            "refunds": (refund_done(reference, refund, currency, start + timedelta(minutes=10)),),
        }))
    return state_changes(reference, base, steps, cause="dispatcher", cause_prefix="cause")


def webhook(reference: str, provider: Provider = Provider.MPESA, code: int = 0) -> RawWebhook:
    body = (b'{"Body":{"stkCallback":{"CheckoutRequestID":"ws_CO_%s","ResultCode":%d,'
            b'"ResultDesc":"The service request is processed successfully."}}}'
            % (reference.encode(), code))
    return RawWebhook(
        event_id=f"mpesa:ws_CO_{reference}:{code}", occurred_at=T0, provider=provider, body=body,
        headers={"content-type": "application/json", "authorization": "Bearer abcdef123456"},
        query={"token": "mpesa-callback-token", "reference": reference},
        received_at=T0 + timedelta(seconds=7), reference=reference, verified=True,
    )


def booking(booking_id: str, kind: BookingEventKind = BookingEventKind.CREATED, revision: int = 1,
            amount: int = 150_000, at: datetime = T0) -> BookingEvent:
    return BookingEvent(
        event_id=f"bk-{booking_id}-{kind.value}-{revision}", occurred_at=at, kind=kind,
        booking_id=booking_id, user_id="user-1", amount=Money(amount=amount, currency="KES"),
        country="KE", revision=revision,
    )


async def produce(settings: Settings, topic: str, items: list[tuple[str | None, BaseModel | bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                linger_ms=5, enable_idempotence=False)
    await producer.start()
    try:
        futures = []
        for key, item in items:
            value = item if isinstance(item, bytes) else codec.encode(item)
            futures.append(await producer.send(topic, value, key=codec.encode_key(key)))
        for fut in futures:
            await fut
    finally:
        await producer.stop()


@contextlib.contextmanager
def fresh_database(settings: Settings):
    """A new, migrated database on the same server; dropped afterwards."""
    name = f"sinktest_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(plain_url(settings), autocommit=True) as conn:
        conn.execute(f"create database {name}")
    base, _, _db = settings.database_url.rpartition("/")
    fresh = settings.model_copy(update={"database_url": f"{base}/{name}"})
    upgrade(fresh)
    try:
        yield fresh
    finally:
        with psycopg.connect(plain_url(settings), autocommit=True) as conn:
            conn.execute(f"drop database if exists {name} with (force)")


async def drain_postgres(settings: Settings, prefix: str, group: str, idle_s: float = 2.5) -> int:
    """Run the PostgreSQL sink on the prefixed topics until they are drained."""
    sink = PostgresSink(settings, topic_map={prefix + t: t for t in CONSUMED})
    runner = SinkRunner(settings, sink, group_id=group, config=RunnerConfig(batch_size=300),
                        dead_letter_topic=prefix + topics.DEAD_LETTERS)
    watcher = asyncio.create_task(stop_when_idle(runner, idle_s))
    await asyncio.wait_for(runner.run(), 120)
    watcher.cancel()
    return runner.records_written


def ch_env(settings: Settings) -> dict[str, str]:
    env = clean_env(TRAILPAY_KAFKA_BOOTSTRAP=settings.kafka_bootstrap or "")
    if settings.clickhouse_url:
        env["TRAILPAY_CLICKHOUSE_URL"] = settings.clickhouse_url
    return env


async def drain_clickhouse(settings: Settings, data_dir: Path, prefix: str, group: str) -> None:
    """Run the ClickHouse sink (own process: it owns its chDB dir) until drained."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sinks.clickhouse", "run", "--data-dir", str(data_dir),
        "--topic-prefix", prefix, "--group", group, "--until-idle", "2.5", "--max-wait", "0.3",
        env=ch_env(settings), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]


def ch_query(settings: Settings, data_dir: Path, *sql: str) -> Any:
    """Rows of one query, or a list of the rows of each of several (one process start)."""
    out = subprocess.run(
        [sys.executable, "-m", "sinks.clickhouse", "query", "--data-dir", str(data_dir), *sql],
        check=True, env=ch_env(settings), cwd=ROOT, timeout=60, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def dataset(refs: list[str]) -> tuple[list[tuple[str, Any]], dict[str, int]]:
    """Varied payments (providers, outcomes, refunds, currencies) and their expected revenue."""
    items: list[tuple[str, Any]] = []
    expected: dict[str, int] = {}
    for i, ref in enumerate(refs):
        provider = [Provider.MPESA, Provider.AIRTEL, Provider.STRIPE][i % 3]
        currency = "USD" if provider == Provider.STRIPE else "KES"
        outcome = S.FAILED if i % 5 == 4 else S.SUCCEEDED
        amount = 1000 + 37 * i
        refund = amount // 4 if outcome == S.SUCCEEDED and i % 4 == 0 else None
        for change in payment_history(ref, amount=amount, currency=currency, provider=provider,
                                         outcome=outcome, refund=refund, user_id=f"u{i % 7}"):
            items.append((ref, change))
        if outcome == S.SUCCEEDED:
            expected[currency] = expected.get(currency, 0) + amount - (refund or 0)
    return items, expected


def pg_revenue(settings: Settings, prefix: str) -> dict[str, int]:
    rows = pg_rows(settings, "select currency, sum(amount_minor - refunded_minor) from payments "
                             "where reference like %s and status in "
                             "('succeeded', 'partially_refunded', 'refunded') group by currency",
                   prefix + "%")
    return {cur: int(total) for cur, total in rows}


