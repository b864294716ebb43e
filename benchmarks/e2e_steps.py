"""The steps of `trailpay bench` (benchmarks/e2e.py), each against the bench's own stack.

1. :func:`sustained`: booking events through the whole pipeline, and :func:`passthrough`,
   the naive one-agent Faust baseline on the same broker;
2. :func:`latency`: webhook received -> PostgreSQL row at a fixed rate (open loop);
3. :func:`replay`: `trailpay replay --into sinks` of state changes, checked for duplicates;
4. :func:`ingress`: benchmarks/ingress_bench.py against this stack's broker, and its
   no-Kafka baseline.

Each returns the details :func:`benchmarks.e2e_report.figures` turns into figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.progress import Progress
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import ingress_bench, sink_bench, stream_bench  # noqa: E402
from tests.support.analytics import service_headers  # noqa: E402
from tests.support.processes import StackProcess, clean_env, trailpay_argv  # noqa: E402
from trailpay import topics  # noqa: E402
from trailpay.domain.events import BookingEvent, BookingEventKind, Money, Provider  # noqa: E402
from trailpay.kafka import RecordProducer, create_topics  # noqa: E402
from trailpay.settings import Settings  # noqa: E402
from trailpay.topics import TopicSpec  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


async def until(progress: Progress, label: str, total: int, poll: Callable[[], Awaitable[int]],
                limit_s: float, interval: float = 0.5) -> float:
    """Poll until ``poll()`` reaches ``total``; shows a bar; returns the time.time() it did."""
    task = progress.add_task(label, total=total)
    deadline = time.monotonic() + limit_s
    done = 0
    while time.monotonic() < deadline:
        done = await poll()
        progress.update(task, completed=min(done, total))
        if done >= total:
            return time.time()
        await asyncio.sleep(interval)
    raise TimeoutError(f"{label}: {done} of {total} after {limit_s:.0f}s")


async def settle(stack: StackProcess, progress: Progress, limit_s: float = 600) -> None:
    """Wait until the stack's consumer groups have caught up (``trailpay lag``), so one step's
    backlog does not load the next step's measurement. Groups of finished benchmark
    workers (``bench-*``) are left out."""
    argv = trailpay_argv("lag", "--json", "--data-dir", str(stack.data_dir))
    env = clean_env()

    async def backlog() -> int:
        done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, env=env,
                                       timeout=120, cwd=ROOT)
        if done.returncode != 0:
            return 0
        rows = json.loads(done.stdout or "[]")
        return sum(int(r.get("lag") or 0) for r in rows if not str(r.get("group", "")).startswith("bench-"))

    first = await backlog()
    if first <= 100:
        return
    async def caught_up() -> int:
        return max(0, first - await backlog())

    with contextlib.suppress(TimeoutError):
        await until(progress, "settling: consumer lag", first - 100, caught_up, limit_s, 2.0)


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


async def ch_counts(stack: StackProcess, prefix: str | None = None) -> dict[str, Any]:
    params = {"reference_prefix": prefix} if prefix else {}
    async with httpx.AsyncClient(timeout=60, headers=service_headers(stack.settings)) as client:
        resp = await client.get(f"{stack.info.dashboard_url}/api/sink/clickhouse/counts", params=params)
        resp.raise_for_status()
        body: dict[str, Any] = resp.json()
        return body


# ----------------------------------------------------------------------------- 1. sustained


def booking(run: str, i: int, phone_digit: str, provider: Provider) -> BookingEvent:
    phone = f"{'07123' if provider is Provider.MPESA else '07330'}{i % 10000:04d}{phone_digit}"
    return BookingEvent(event_id=f"bk-{run}-{i}", occurred_at=datetime.now(UTC),
                        kind=BookingEventKind.CREATED, booking_id=f"bk-{run}-{i}", user_id=f"bench-{i % 500}",
                        amount=Money(amount=100 * (100 + i % 50), currency="KES"), country="KE",
                        provider=provider, phone_number=phone, description="bench")


async def produce_bookings(settings: Settings, events: list[BookingEvent]) -> None:
    producer = RecordProducer(settings, linger_ms=5)
    await producer.start()
    try:
        for i in range(0, len(events), 2000):
            await producer.send_many(topics.BOOKING_EVENTS, [(e.booking_id, e) for e in events[i:i + 2000]])
    finally:
        await producer.stop()


async def sustained(stack: StackProcess, engine: AsyncEngine, progress: Progress, payments: int,
                    limit_s: float) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    events = [booking(run, i, "0", Provider.MPESA if i % 2 else Provider.AIRTEL) for i in range(payments)]
    ch_before = (await ch_counts(stack))["tables"]["payments"]["final"]
    like = f"bk-{run}-%"

    async def pg_done() -> int:
        return int(await scalar(engine, "SELECT count(*) FROM payments WHERE booking_id LIKE :p "
                                        "AND status = 'succeeded'", p=like))

    async def ch_done() -> int:
        return int((await ch_counts(stack))["tables"]["payments"]["final"]) - ch_before

    first = time.time()
    await produce_bookings(stack.settings, events)
    produced = time.time()
    pg_at = await until(progress, "end to end: payments succeeded in PostgreSQL", payments, pg_done, limit_s)
    ch_at = await until(progress, "end to end: payments in ClickHouse", payments, ch_done, limit_s, 1.0)
    seconds = max(pg_at, ch_at) - first
    failed = int(await scalar(engine, "SELECT count(*) FROM payments WHERE booking_id LIKE :p "
                                      "AND status <> 'succeeded'", p=like))
    return {"payments": payments, "input_events": 2 * payments, "seconds": seconds,
            "produce_seconds": produced - first, "events_per_s": 2 * payments / seconds,
            "payments_per_s": payments / seconds, "not_succeeded": failed}


async def passthrough(stack: StackProcess, n: int, limit_s: float, workdir: Path) -> dict[str, Any]:
    extra = [TopicSpec(name, "bench", "bytes", "benchmark")
             for name in (stream_bench.PASS_IN, stream_bench.PASS_OUT)]
    await create_topics(stack.settings, extra)
    result = await stream_bench.bench_passthrough(stack.settings, n, limit_s, workdir)
    return {"events": n, "seconds": result.seconds, "events_per_s": n / result.seconds,
            "p50_ms": statistics.median(result.latencies_ms), "p99_ms": pct(result.latencies_ms, 99)}


# ----------------------------------------------------------------------------- 2. latency


def mpesa_success(checkout_request_id: str, amount: int) -> bytes:
    return json.dumps({"Body": {"stkCallback": {
        "MerchantRequestID": "29115-34620561-1", "CheckoutRequestID": checkout_request_id,
        "ResultCode": 0, "ResultDesc": "The service request is processed successfully.",
        "CallbackMetadata": {"Item": [
            {"Name": "Amount", "Value": amount}, {"Name": "MpesaReceiptNumber", "Value": "NLJ7RT61SV"},
            {"Name": "TransactionDate", "Value": 20261126102115},
            {"Name": "PhoneNumber", "Value": 254712345673}]}}}}).encode()


async def fire(port: int, requests: list[bytes], rate: float,
               connections: int) -> tuple[int, int, list[float]]:
    """Open loop at ``rate``/s over keep-alive connections; (ok, errors, client latencies ms)."""
    queue: asyncio.Queue[tuple[bytes, float] | None] = asyncio.Queue()
    counts = {"ok": 0, "err": 0}
    latencies: list[float] = []

    async def worker() -> None:
        conn = ingress_bench.Connection(port)
        while (item := await queue.get()) is not None:
            payload, due = item
            try:
                status = await conn.call(payload)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                status = 0
                await conn.close()
                conn = ingress_bench.Connection(port)
            latencies.append((time.perf_counter() - due) * 1000)
            counts["ok" if status == 200 else "err"] += 1
        await conn.close()

    tasks = [asyncio.create_task(worker()) for _ in range(connections)]
    start = time.perf_counter()
    for i, payload in enumerate(requests):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((payload, due))
    for _ in tasks:
        queue.put_nowait(None)
    await asyncio.gather(*tasks)
    return counts["ok"], counts["err"], latencies


async def latency(stack: StackProcess, engine: AsyncEngine, progress: Progress, rate: float, seconds: float,
                  limit_s: float) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    n = int(rate * seconds)
    like = f"bk-{run}-%"
    await produce_bookings(stack.settings, [booking(run, i, "3", Provider.MPESA) for i in range(n)])

    async def waiting() -> int:
        return int(await scalar(engine, "SELECT count(*) FROM payments WHERE booking_id LIKE :p AND "
                                        "status = 'pending' AND provider_reference IS NOT NULL", p=like))

    await until(progress, "latency: payments waiting for their callback", n, waiting, limit_s)
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT reference, provider_reference, amount_minor FROM payments "
                                        "WHERE booking_id LIKE :p ORDER BY reference"), {"p": like})).all()
    port = stack.settings.api_port
    token = stack.settings.mpesa_callback_token.get_secret_value()
    requests = []
    for ref, checkout, amount in rows:
        body = mpesa_success(checkout, amount // 100)
        requests.append((f"POST /api/payments/callback/mpesa/?token={token}&reference={ref} HTTP/1.1\r\n"
                         f"Host: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    task = progress.add_task(f"latency: {n:,} callbacks at {rate:,.0f}/s", total=None)
    ok, errors, client_ms = await fire(port, requests, rate, 32)
    progress.update(task, total=1, completed=1)

    async def settled() -> int:
        return int(await scalar(engine, "SELECT count(*) FROM payments WHERE booking_id LIKE :p "
                                        "AND status = 'succeeded'", p=like))

    await until(progress, "latency: payments succeeded in PostgreSQL", n, settled, limit_s)
    async with engine.connect() as conn:
        lat = (await conn.execute(text(
            "SELECT extract(epoch FROM e.recorded_at - c.first_received) * 1000 FROM payment_events e "
            "JOIN payments p ON p.reference = e.reference "
            "JOIN (SELECT reference, min(received_at) AS first_received FROM provider_callbacks "
            "      GROUP BY reference) c ON c.reference = e.reference "
            "WHERE p.booking_id LIKE :p AND e.to_status = 'succeeded'"), {"p": like})).scalars().all()
    ms = [float(x) for x in lat]
    return {"callbacks": n, "rate": rate, "accepted": ok, "errors": errors, "rows": len(ms),
            "p50_ms": statistics.median(ms) if ms else None, "p99_ms": pct(ms, 99),
            "max_ms": max(ms, default=None),
            "http_p99_ms": pct(client_ms, 99)}


# ----------------------------------------------------------------------------- 3. replay


async def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
        ends = await consumer.end_offsets(parts)
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def replay(stack: StackProcess, engine: AsyncEngine, progress: Progress, n: int,
                 limit_s: float) -> dict[str, Any]:
    run = "R" + uuid.uuid4().hex[:6].upper()
    prefix = f"TPB{run}"
    changes = sink_bench.make_changes(n, run)
    start_at = await end_offsets(stack.settings, topics.PAYMENT_STATE)
    task = progress.add_task(f"replay: producing {n:,} state changes", total=None)
    await sink_bench.produce(stack.settings, topics.PAYMENT_STATE, changes)
    progress.update(task, total=1, completed=1)
    del changes

    async def pg_events() -> int:
        return int(await scalar(engine, "SELECT count(*) FROM payment_events WHERE reference LIKE :p",
                                p=prefix + "%"))

    async def ch_payments() -> int:
        return int((await ch_counts(stack, prefix))["tables"]["payments"]["final"])

    await until(progress, "replay: the live sinks take them (PostgreSQL)", n, pg_events, limit_s, 1.0)
    await until(progress, "replay: the live sinks take them (ClickHouse)", n // 2, ch_payments, limit_s, 1.0)
    await settle(stack, progress)  # the worker's restore agent reads them too; not during the timing
    ch_before = (await ch_counts(stack, prefix))["tables"]
    argv = trailpay_argv("replay", "--data-dir", str(stack.data_dir), "--topic", topics.PAYMENT_STATE,
                         "--into", "sinks", "--batch-size", "5000")
    for partition, offset in start_at.items():
        argv += ["--offset", f"{partition}:{offset}"]
    env = clean_env(COLUMNS="200")
    task = progress.add_task(f"replay: trailpay replay --into sinks ({n:,} records)", total=None)
    began = time.time()
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, env=env,
                                   timeout=limit_s, cwd=ROOT)
    seconds = time.time() - began
    progress.update(task, total=1, completed=1)
    if done.returncode != 0:
        raise RuntimeError(f"trailpay replay exited {done.returncode}: "
                           f"{done.stdout[-2000:]} {done.stderr[-2000:]}")
    await asyncio.sleep(2)
    ch_after = (await ch_counts(stack, prefix))["tables"]
    async with engine.connect() as conn:
        pg = (await conn.execute(text(
            "SELECT (SELECT count(*) FROM payments WHERE reference LIKE :p),"
            " (SELECT count(*) FROM payment_events WHERE reference LIKE :p),"
            " (SELECT count(*) FROM (SELECT reference, version FROM payment_events WHERE reference LIKE :p"
            "   GROUP BY reference, version HAVING count(DISTINCT event_id) > 1) d)"),
            {"p": prefix + "%"})).one()
    replayed = _replayed_count(done.stdout)
    return {"events": n, "replayed": replayed, "seconds": seconds, "events_per_s": (replayed or n) / seconds,
            "pg_payments": pg[0], "pg_events": pg[1], "pg_versions_doubled": pg[2],
            "ch_final_before": {t: v["final"] for t, v in ch_before.items()},
            "ch_final_after": {t: v["final"] for t, v in ch_after.items()},
            "duplicates": (pg[0] - n // 2) + (pg[1] - n) + pg[2]
            + sum(abs(ch_after[t]["final"] - ch_before[t]["final"]) for t in ch_after)
            + abs(ch_after["payments"]["final"] - n // 2),
            "replay_output": done.stdout[-1500:]}


def _replayed_count(out: str) -> int | None:
    found = re.findall(r"payments\.state\.v1\D+(\d[\d,]*)\D+(\d[\d,]*)", out)
    if not found:
        return None
    return int(found[-1][1].replace(",", ""))


# ----------------------------------------------------------------------------- 4. ingress


async def ingress(stack: StackProcess, progress: Progress, args: argparse.Namespace,
                  workdir: Path) -> dict[str, Any]:
    opts = argparse.Namespace(rate=1000.0, duration=args.ingress_seconds, max_duration=args.ingress_seconds,
                              connections=32)
    out: dict[str, Any] = {}
    for baseline in (False, True):
        label = "baseline (no Kafka)" if baseline else "Kafka ack (acks=all)"
        task = progress.add_task(f"ingress: {label}", total=None)
        port = ingress_bench.free_port()
        server = ingress_bench.start_server(port, stack.settings.kafka_bootstrap or "", baseline, workdir)
        try:
            fixed, top = await ingress_bench.measure(port, server.pid, label, opts)
        finally:
            server.terminate()
            server.wait(20)
        progress.update(task, total=1, completed=1)
        out["baseline" if baseline else "kafka"] = {
            "fixed_rate": 1000, "fixed_p50_ms": fixed.pct(50), "fixed_p99_ms": fixed.pct(99),
            "fixed_errors": fixed.errors, "max_accepted_per_s": top.ok / top.seconds,
            "max_p99_ms": top.pct(99),
            "max_errors": top.errors}
    return out
