"""The stream worker on both real brokers (Apache Kafka and tansu) under load: shuffled,
duplicated inputs; SIGKILL and restart while payments flow.

Each test gets a broker of its own (not the session stack's: the stack runs its own
`trailpay worker` and provider dispatcher, which would act on these payments too).
Sizes are env-tunable: TRAILPAY_TEST_STREAM_N (default 10,000 payments) and
TRAILPAY_TEST_CRASH_N (default 5,000 payments, to keep CI short; 20,000 passed in 135 s here).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from tests.integration.streamutil import (
    T0,
    encoded,
    finals,
    new_worker,
    payment_stories,
    produce,
    read_until,
    state_changes,
    unique,
    wait_final,
)
from tests.stackutil import own_broker
from trailpay import topics
from trailpay.domain.events import RefundPayment
from trailpay.settings import Settings

pytestmark = pytest.mark.integration

STREAM_N = int(os.environ.get("TRAILPAY_TEST_STREAM_N", "10000"))
CRASH_N = int(os.environ.get("TRAILPAY_TEST_CRASH_N", "5000"))
LONG = {"pending_deadline_s": 3600, "processing_deadline_s": 3600, "park_timeout_s": 600}


@pytest.fixture
def fresh_broker(broker_kind: str) -> Iterator[Settings]:
    """A broker of our own for each load test: a new consumer group on a shared broker would
    first chew through every earlier test's records."""
    with own_broker(broker_kind, "streams") as settings:
        yield settings


def _assert_exact(changes: dict[str, list[dict[str, Any]]], expected: dict[str, str]) -> None:
    conflicting = {cid: c for cid, c in changes.items() if len(c) > 1}
    assert not conflicting, f"{len(conflicting)} state-change ids with two contents, e.g. {next(iter(conflicting))}"
    last = finals(changes)
    wrong = {r: last.get(r, {}).get("to_status") for r, s in expected.items() if last.get(r, {}).get("to_status") != s}
    assert not wrong, f"{len(wrong)} payments ended wrong, e.g. {list(wrong.items())[:5]}"
    versions: dict[str, set[int]] = {}
    for contents in changes.values():
        versions.setdefault(contents[0]["reference"], set()).add(contents[0]["version"])
    gaps = [r for r, vs in versions.items() if vs != set(range(1, max(vs) + 1))]
    assert not gaps, f"version gaps in {gaps[:5]}"


# ----------------------------------------------------------------------------- load


async def test_shuffled_duplicated_load_ends_exact(fresh_broker, tmp_path):
    broker = fresh_broker
    worker = new_worker(broker, tmp_path, **LONG)
    worker.start()
    try:
        worker.wait_ready()
        rng = random.Random(7)
        prefix = unique("TPL")
        expected, items = payment_stories(broker, prefix, STREAM_N, rng)
        rng.shuffle(items)  # provider events before their create get parked
        started = time.monotonic()
        await produce(broker.kafka_bootstrap or "", items)
        changes, _ = await wait_final(broker, prefix, expected)
        took = time.monotonic() - started
        print(f"\n{STREAM_N} payments, {len(items)} input records in {took:.1f}s "
              f"({len(items) / took:.0f} records/s incl. produce)")
        _assert_exact(changes, expected)
    finally:
        worker.stop()


# ----------------------------------------------------------------------------- crash


async def test_sigkill_three_times_while_payments_flow(fresh_broker, tmp_path):
    broker = fresh_broker
    worker = new_worker(broker, tmp_path, **LONG)
    worker.start()
    worker.wait_ready()
    rng = random.Random(11)
    prefix = unique("TPK")
    expected, items = payment_stories(broker, prefix, CRASH_N, rng)
    rng.shuffle(items)
    chunks = [items[n::10] for n in range(10)]
    bootstrap = broker.kafka_bootstrap or ""

    async def feed() -> None:
        for chunk in chunks:
            await produce(bootstrap, chunk)
            await asyncio.sleep(0.3)

    feeding = asyncio.create_task(feed())
    kills = []
    try:
        for _ in range(3):
            await asyncio.sleep(rng.uniform(1.0, 4.0))
            size = worker.kill_and_start()
            kills.append(size)
            await asyncio.to_thread(worker.wait_ready, 120, size)
        await feeding
        changes, _ = await wait_final(broker, prefix, expected, timeout=300)
        _assert_exact(changes, expected)

        # A restart after everything settled: the tables come back whole, so the next
        # input builds on the true last version (tansu's short end offset is corrected).
        size = worker.kill_and_start()
        await asyncio.to_thread(worker.wait_ready, 120, size)
        paid = [r for r, s in expected.items() if s == "succeeded"][:300]
        last = finals(changes)
        await produce(bootstrap, [encoded(topics.PAYMENT_REQUESTS, r, RefundPayment(
            event_id=f"refund-{r}", occurred_at=T0 + timedelta(hours=1), reference=r, refund_id=f"rf-{r}"))
            for r in paid])
        marker = f'"reference":"{prefix}'.encode()
        wanted = {f"{r}:{last[r]['version'] + 1}" for r in paid}

        def refunds_seen(got: list[Any]) -> bool:
            return wanted <= set(state_changes(got))

        records = await read_until(bootstrap, topics.PAYMENT_STATE, lambda k, v: marker in v,
                                   refunds_seen, timeout=120, quiet_s=2)
        after = state_changes(records)
        assert wanted <= set(after)
        assert not {cid for cid, c in after.items() if len(c) > 1}
        for r in paid:
            assert after[f"{r}:{last[r]['version'] + 1}"][0]["cause"] == "refund"
    finally:
        feeding.cancel()
        worker.stop()
