"""End-to-end benchmark of the whole embedded stack (`trailpay bench`).

Starts a stack of its own (`trailpay up` on a fresh data directory, every service a real
process) and measures, with a baseline from the same run on the same broker:

1. **sustained end to end**: N booking events (M-Pesa and Airtel, phones that pay) produced
   onto bookings.events.v1; the booking bridge, state machine, dispatcher, sandboxes (which
   call back over HTTP), ingress, dedup and both sinks move each to ``succeeded``. Input
   events = booking events + provider callbacks (2 per payment); the clock stops when every
   payment is ``succeeded`` in PostgreSQL and in ClickHouse. Baseline: the naive one-agent
   Faust pass-through of benchmarks/stream_bench.py, same number of events, same broker.
2. **webhook -> PostgreSQL latency at a fixed rate**: M-Pesa payments left waiting (phone
   ending in 3: the sandbox never calls back) get their success callback POSTed to the
   ingress at a fixed rate (open loop); latency = payment_events.recorded_at (the sink's
   write) - provider_callbacks.received_at (the ingress's receipt), both in PostgreSQL.
3. **replay into both sinks**: R synthetic state changes (R/2 payments) produced onto
   payments.state.v1 (the live sinks and the worker's restore agent take them), then
   `trailpay replay --into sinks` of exactly those offsets; afterwards the PostgreSQL rows
   and the ClickHouse FINAL rows must equal the inputs (no duplicates).
4. **webhook ingress**: benchmarks/ingress_bench.py's server and load generator against
   this stack's broker (acks=all), and its no-Kafka baseline.
5. **peak RSS** of every process of the stack (each service's process tree), sampled all along.

    trailpay bench --quick            # a small run (~3 minutes)
    trailpay bench                    # the full run
    trailpay bench --replay-events 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import ingress_bench, sink_bench, stream_bench  # noqa: E402
from controlplane.stack.state import STACK_FILE, StackInfo  # noqa: E402
from trailpay import topics  # noqa: E402
from trailpay.domain.events import BookingEvent, BookingEventKind, Money, Provider  # noqa: E402
from trailpay.kafka import RecordProducer, create_topics  # noqa: E402
from trailpay.settings import Settings, load_settings  # noqa: E402
from trailpay.topics import TopicSpec  # noqa: E402

console = Console(stderr=True)
GiB = 1024 ** 3


# ----------------------------------------------------------------------------- the stack


@dataclass
class BenchStack:
    data_dir: Path
    proc: subprocess.Popen[bytes]
    info: StackInfo
    settings: Settings

    def pids(self) -> dict[str, int]:
        with contextlib.suppress(Exception):
            self.info = StackInfo.read(self.data_dir)
        return {name: pid for name, pid in self.info.processes.items() if pid}


def start_stack(data_dir: Path, env: dict[str, str], timeout: float = 240) -> BenchStack:
    full = {k: v for k, v in os.environ.items() if not k.startswith("TRAILPAY_")}
    full.update(env)
    log = (data_dir / "up.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "controlplane.cli.main", "up", "--data-dir", str(data_dir),
                             "--port", "0"], stdout=log, stderr=subprocess.STDOUT, env=full,
                            start_new_session=True, cwd=ROOT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"trailpay up exited {proc.returncode}:\n"
                               f"{(data_dir / 'up.log').read_text()[-3000:]}")
        if (data_dir / STACK_FILE).exists():
            with contextlib.suppress(Exception):
                info = StackInfo.read(data_dir)
                if info.processes:
                    settings = load_settings(**info.settings_overrides(), data_dir=data_dir)
                    return BenchStack(data_dir, proc, info, settings)
        time.sleep(0.3)
    proc.kill()
    raise TimeoutError(f"stack not up after {timeout}s")


def stop_stack(stack: BenchStack) -> None:
    kids = psutil.Process(stack.proc.pid).children(recursive=True) if stack.proc.poll() is None else []
    stack.proc.send_signal(signal.SIGTERM)
    try:
        stack.proc.wait(90)
    except subprocess.TimeoutExpired:
        stack.proc.kill()
    _gone, alive = psutil.wait_procs(kids, timeout=15)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


class MemorySampler:
    """Peak RSS of each service's process tree (the process and its children), every 0.5 s."""

    def __init__(self, stack: BenchStack) -> None:
        self.stack = stack
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def sample(self) -> None:
        for name, pid in self.stack.pids().items():
            try:
                root = psutil.Process(pid)
                rss = root.memory_info().rss + sum(
                    p.memory_info().rss for p in root.children(recursive=True) if p.is_running())
            except psutil.Error:
                continue
            self.peak[name] = max(self.peak.get(name, 0), rss)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.sample()


# ----------------------------------------------------------------------------- results


@dataclass
class Figure:
    name: str
    value: float | None
    unit: str
    goal: str
    baseline: str = ""
    met: bool | None = None
    note: str = ""

    def shown(self) -> str:
        if self.value is None:
            return "n/a"
        return f"{self.value:,.0f} {self.unit}" if self.value >= 100 else f"{self.value:,.2f} {self.unit}"


@dataclass
class Report:
    started: str
    machine: str
    args: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    memory_mib: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def table(self) -> Table:
        table = Table(title=f"trailpay bench — {self.machine}")
        for col in ("figure", "measured", "baseline (same run)", "goal", "met", "note"):
            table.add_column(col)
        for f in self.figures:
            met = "—" if f.met is None else ("yes" if f.met else "NO")
            table.add_row(f.name, f.shown(), f.baseline, f.goal, met, f.note)
        return table

    def markdown(self) -> str:
        lines = ["| figure | measured | baseline (same run) | goal | met | note |",
                 "| --- | --- | --- | --- | --- | --- |"]
        for f in self.figures:
            met = "—" if f.met is None else ("yes" if f.met else "**no**")
            lines.append(f"| {f.name} | {f.shown()} | {f.baseline} | {f.goal} | {met} | {f.note} |")
        return "\n".join(lines)


def machine() -> str:
    mem = psutil.virtual_memory().total / GiB
    return f"{os.cpu_count()} CPUs, {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


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


async def settle(stack: BenchStack, progress: Progress, limit_s: float = 600) -> None:
    """Wait until the stack's consumer groups have caught up (``trailpay lag``), so one step's
    backlog does not load the next step's measurement. Groups of finished benchmark
    workers (``bench-*``) are left out."""
    argv = [sys.executable, "-m", "controlplane.cli.main", "lag", "--json", "--data-dir", str(stack.data_dir)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAILPAY_")}

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


async def ch_counts(stack: BenchStack, prefix: str | None = None) -> dict[str, Any]:
    params = {"reference_prefix": prefix} if prefix else {}
    async with httpx.AsyncClient(timeout=60) as client:
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


async def sustained(stack: BenchStack, engine: AsyncEngine, progress: Progress, payments: int,
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


async def passthrough(stack: BenchStack, n: int, limit_s: float, workdir: Path) -> dict[str, Any]:
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


async def latency(stack: BenchStack, engine: AsyncEngine, progress: Progress, rate: float, seconds: float,
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
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
        ends = await consumer.end_offsets(parts)
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def replay(stack: BenchStack, engine: AsyncEngine, progress: Progress, n: int,
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
    argv = [sys.executable, "-m", "controlplane.cli.main", "replay", "--data-dir", str(stack.data_dir),
            "--topic", topics.PAYMENT_STATE, "--into", "sinks", "--batch-size", "5000"]
    for partition, offset in start_at.items():
        argv += ["--offset", f"{partition}:{offset}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAILPAY_")}
    env["COLUMNS"] = "200"
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


async def ingress(stack: BenchStack, progress: Progress, args: argparse.Namespace,
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


# ----------------------------------------------------------------------------- main


def figures(report: Report) -> None:
    d = report.details
    add = report.figures.append
    if "sustained" in d:
        s, naive = d["sustained"], d.get("passthrough")
        ratio = s["events_per_s"] / naive["events_per_s"] if naive else None
        add(Figure("end to end, sustained (booking events + callbacks in, PG + CH out)", s["events_per_s"],
                   "events/s", ">= 10,000 events/s and >= 3x naive",
                   f"naive one-agent Faust: {naive['events_per_s']:,.0f} events/s" if naive else "",
                   s["events_per_s"] >= 10_000 and (ratio or 0) >= 3,
                   f"{s['payments']:,} payments, {s['payments_per_s']:,.0f} payments/s, "
                   f"x{ratio or 0:.2f} naive; "
                   f"{s['not_succeeded']} not succeeded; provider concurrency "
                   f"{report.args.get('provider_concurrency', 32)}"))
    if "latency" in d:
        lt = d["latency"]
        add(Figure(f"webhook received -> PostgreSQL row, p50 (at {lt['rate']:,.0f}/s)", lt["p50_ms"], "ms",
                   "—", "", None, f"{lt['rows']:,} payments"))
        add(Figure(f"webhook received -> PostgreSQL row, p99 (at {lt['rate']:,.0f}/s)", lt["p99_ms"], "ms",
                   "p99 < 1,000 ms", "", lt["p99_ms"] < 1000,
                   f"max {lt['max_ms']:,.0f} ms; {lt['errors']} HTTP errors"))
    if "latency_low" in d:
        lt = d["latency_low"]
        add(Figure(f"webhook received -> PostgreSQL row, p99 (at {lt['rate']:,.0f}/s)", lt["p99_ms"], "ms",
                   "(reference: a rate the stack sustains)", "", None,
                   f"p50 {lt['p50_ms']:,.0f} ms, max {lt['max_ms']:,.0f} ms; {lt['errors']} HTTP errors"))
    if "ingress" in d:
        k, b = d["ingress"]["kafka"], d["ingress"]["baseline"]
        add(Figure("webhook ingress, accepted at max rate", k["max_accepted_per_s"], "req/s",
                   ">= 3,000 req/s",
                   f"no Kafka: {b['max_accepted_per_s']:,.0f} req/s", k["max_accepted_per_s"] >= 3000,
                   f"{k['max_errors']} errors"))
        add(Figure("webhook ingress p99 at 1,000 req/s", k["fixed_p99_ms"], "ms", "p99 < 50 ms",
                   f"no Kafka: {b['fixed_p99_ms']:,.2f} ms", k["fixed_p99_ms"] < 50,
                   f"p50 {k['fixed_p50_ms']:.2f} ms; {k['fixed_errors']} errors"))
    if "replay" in d:
        r = d["replay"]
        add(Figure(f"replay of {r['events']:,} state changes into PG + CH", r["events_per_s"], "events/s",
                   ">= 50,000 events/s, 0 duplicates", "",
                   r["events_per_s"] >= 50_000 and r["duplicates"] == 0,
                   f"{r['duplicates']} duplicates; {r['seconds']:.1f} s incl. process start"))
    mem = report.memory_mib
    if "worker" in mem:
        held = d.get("replay", {}).get("events", 0) // 2 + d.get("sustained", {}).get("payments", 0)
        add(Figure("stream worker peak RSS", mem["worker"], "MiB", "< 1 GiB with 1,000,000 payments in state",
                   "", mem["worker"] < 1024 if held >= 1_000_000 else None,
                   f"~{held:,} payments in state"))


async def run(args: argparse.Namespace) -> Report:
    report = Report(started=datetime.now(UTC).isoformat(timespec="seconds"), machine=machine(),
                    args=vars(args))
    workdir = Path(tempfile.mkdtemp(prefix="trailpay-bench-", dir="/tmp"))
    env = {"TRAILPAY_LOG_LEVEL": "WARNING", "TRAILPAY_PENDING_DEADLINE_S": "1800",
           "TRAILPAY_PROCESSING_DEADLINE_S": "1800", "TRAILPAY_PARK_TIMEOUT_S": "600",
           "TRAILPAY_PROVIDER_CONCURRENCY": str(args.provider_concurrency)}
    console.print(f"[bold]trailpay bench[/] — {report.machine}; stack data in {workdir}")
    stack = start_stack(workdir, env)
    engine = create_async_engine(stack.settings.sqlalchemy_async_url())
    try:
        with MemorySampler(stack) as sampler, Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=console) as progress:
            steps: list[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]] = [
                ("sustained", lambda: sustained(stack, engine, progress, args.payments, args.timeout)),
                ("passthrough", lambda: passthrough(stack, 2 * args.payments, args.timeout, workdir)),
                ("latency", lambda: latency(stack, engine, progress, args.rate, args.latency_seconds,
                                            args.timeout)),
                ("latency_low", lambda: latency(stack, engine, progress, args.low_rate, args.latency_seconds,
                                                args.timeout)),
                ("replay", lambda: replay(stack, engine, progress, args.replay_events, args.timeout)),
                ("ingress", lambda: ingress(stack, progress, args, workdir)),
            ]
            for name, step in steps:
                if name in args.skip or (name == "latency_low" and args.low_rate <= 0):
                    continue
                try:
                    await settle(stack, progress)
                    report.details[name] = await step()
                except Exception as exc:  # noqa: BLE001 - one failed step still reports the others
                    console.print(f"[red]{name} failed: {type(exc).__name__}: {exc}[/]")
                    report.details[f"{name}_error"] = f"{type(exc).__name__}: {exc}"
            sampler.sample()
        report.memory_mib = {k: round(v / 1024 ** 2, 1) for k, v in sorted(sampler.peak.items())}
    finally:
        await engine.dispose()
        stop_stack(stack)
        if args.keep:
            console.print(f"stack data kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    figures(report)
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(parser)
    return parser.parse_args(argv)


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a small run (~3 minutes)")
    parser.add_argument("--payments", type=int, default=None, help="payments for the sustained run "
                        "(2 input events each; default 20,000, --quick 2,000)")
    parser.add_argument("--rate", type=float, default=1000.0, help="callbacks/s for the latency run (1,000)")
    parser.add_argument("--low-rate", type=float, default=500.0,
                        help="a second latency run at a rate the stack sustains (500/s)")
    parser.add_argument("--provider-concurrency", type=int, default=128,
                        help="TRAILPAY_PROVIDER_CONCURRENCY of the bench's stack (128; the default "
                             "of a deployment is 32)")
    parser.add_argument("--latency-seconds", type=float, default=None,
                        help="seconds at that rate (default 10, --quick 3)")
    parser.add_argument("--replay-events", type=int, default=None,
                        help="state changes to replay into both sinks (default 200,000, --quick 20,000)")
    parser.add_argument("--ingress-seconds", type=float, default=None,
                        help="seconds per ingress run (default 10, --quick 3)")
    parser.add_argument("--timeout", type=float, default=1800, help="give up on a step after this long")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["sustained", "passthrough", "latency", "latency_low", "replay", "ingress"])
    parser.add_argument("--json", dest="json_out", type=Path, default=None, help="also write the report here")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table as Markdown here")
    parser.add_argument("--keep", action="store_true", help="keep the stack's data directory and logs")


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    quick = args.quick
    for name, full, small in (("payments", 20_000, 2_000), ("latency_seconds", 10.0, 3.0),
                              ("replay_events", 200_000, 20_000), ("ingress_seconds", 10.0, 3.0)):
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    args.replay_events -= args.replay_events % 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = resolve(parse_args(argv))
    report = asyncio.run(run(args))
    Console().print(report.table())
    print()
    for name, mib in report.memory_mib.items():
        print(f"peak RSS {name:<14} {mib:>9,.1f} MiB")
    errors = {k: v for k, v in report.details.items() if k.endswith("_error")}
    for k, v in errors.items():
        print(f"{k}: {v}")
    if args.json_out:
        args.json_out.write_text(json.dumps(asdict(report), indent=2, default=str))
    if args.markdown:
        args.markdown.write_text(report.markdown() + "\n")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
