"""Stream benchmark: dedup + payment state machine vs. two baselines on the same broker.

    python benchmarks/stream_bench.py            # 100,000 input events, own embedded broker
    python benchmarks/stream_bench.py -n 20000 --bootstrap 127.0.0.1:9092

Three runs, one after the other, each measured the same way: the consumer side is started
and ready first, then every input record is produced as fast as the client can, stamped with
its send time; a run's rate is inputs / (last output - first input) and its latency is the
output record's timestamp minus the timestamp of the input that caused it.

* raw aiokafka consume: a consumer group reading the records (output = consumption);
* Faust pass-through: a one-agent worker forwarding each record to another topic;
* pipeline: `trailpay worker` with the dedup, state machine and sweeper agents. Per payment
  four inputs: the create request, the dispatcher's "pending", and the M-Pesa callback twice
  (the second is dropped by dedup); outputs are the three state changes.

Run it from the repository root (the pass-through agent is registered from this file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trailpay import codec, topics  # noqa: E402
from trailpay.domain.events import (  # noqa: E402
    CreatePayment,
    Money,
    PaymentMethod,
    Provider,
    ProviderEvent,
    ProviderEventKind,
    RawWebhook,
)
from trailpay.domain.status import PaymentStatus  # noqa: E402
from trailpay.kafka import create_topics  # noqa: E402
from trailpay.settings import Settings, load_settings  # noqa: E402
from trailpay.topics import TopicSpec  # noqa: E402

PASS_IN = "bench.passthrough.in"
PASS_OUT = "bench.passthrough.out"
RAW_TOPIC = "bench.raw"


@dataclass
class Result:
    name: str
    inputs: int
    outputs: int
    seconds: float
    latencies_ms: list[float]

    def row(self) -> str:
        lat = sorted(self.latencies_ms) or [float("nan")]
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        rate = self.inputs / self.seconds if self.seconds else float("nan")
        return (f"{self.name:<34} {self.inputs:>9,} {self.outputs:>9,} {self.seconds:>8.1f} "
                f"{rate:>10,.0f} {p50:>9.0f} {p99:>9.0f}")


def now_ms() -> int:
    return int(time.time() * 1000)


async def produce(bootstrap: str, items: list[tuple[str, bytes | None, bytes]]) -> dict[int, int]:
    """Send everything as fast as possible; returns index -> send timestamp (ms)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=512 * 1024,
                                acks="all")
    await producer.start()
    stamps: dict[int, int] = {}
    try:
        pending = []
        for i, (topic, key, value) in enumerate(items):
            stamps[i] = now_ms()
            pending.append(await producer.send(topic, value, key=key, timestamp_ms=stamps[i]))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return stamps


async def collect(bootstrap: str, topic: str, want: int, on_record: Callable[[Any], bool], *,
                  limit_s: float, group: str | None = None, ready: asyncio.Event | None = None) -> float:
    """Consume ``topic`` until ``on_record`` accepted ``want`` records; returns the wall time
    (epoch s) of the last accepted one."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                group_id=group or f"bench-{uuid.uuid4().hex}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    got, last = 0, 0.0
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        if ready is not None:
            ready.set()
        deadline = time.monotonic() + limit_s
        while got < want and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=20000)
            for records in batch.values():
                for record in records:
                    if on_record(record):
                        got += 1
                        last = time.time()
    finally:
        await consumer.stop()
    if got < want:
        raise TimeoutError(f"{topic}: {got} of {want} records after {limit_s}s")
    return last


# ----------------------------------------------------------------------------- baselines


async def bench_raw(bootstrap: str, n: int, limit_s: float) -> Result:
    run = uuid.uuid4().hex[:8].encode()
    items = [(RAW_TOPIC, str(i).encode(), run + b":" + str(i).encode() + b":" + b"x" * 600) for i in range(n)]
    latencies: list[float] = []

    def on_record(record: Any) -> bool:
        if not record.value.startswith(run):
            return False
        latencies.append(now_ms() - record.timestamp)
        return True

    ready = asyncio.Event()
    task = asyncio.create_task(collect(bootstrap, RAW_TOPIC, n, on_record, limit_s=limit_s, ready=ready))
    await ready.wait()
    first = time.time()
    await produce(bootstrap, items)
    last = await task
    return Result("raw aiokafka consume", n, len(latencies), last - first, latencies)


def start_worker(settings: Settings, modules: list[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
    app_id = f"bench-{uuid.uuid4().hex[:8]}"
    full = {k: v for k, v in os.environ.items() if not k.startswith("TRAILPAY_")}
    full.update({"TRAILPAY_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "", "TRAILPAY_WORKER_ID": app_id,
                 "TRAILPAY_PARTITIONS": str(settings.partitions), "TRAILPAY_LOG_LEVEL": "INFO",
                 "PYTHONUNBUFFERED": "1", **env})
    args = [sys.executable, "-m", "trailpay.cli.main", "worker"]
    for module in modules:
        args += ["--only", module]
    out = log.open("ab")
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=full, cwd=ROOT,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited: {log.read_text()[-3000:]}")
        if "Worker ready" in log.read_text(errors="replace"):
            return proc
        time.sleep(0.2)
    proc.kill()
    raise TimeoutError(f"worker not ready: {log.read_text()[-3000:]}")


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


async def bench_passthrough(settings: Settings, n: int, limit_s: float, workdir: Path) -> Result:
    bootstrap = settings.kafka_bootstrap or ""
    run = uuid.uuid4().hex[:8].encode()
    items = [(PASS_IN, str(i).encode(), run + b":" + str(i).encode() + b":" + b"x" * 600) for i in range(n)]
    proc = start_worker(settings, ["benchmarks.stream_bench"], workdir / "passthrough.log")
    latencies: list[float] = []
    sent: dict[int, int] = {}

    def on_record(record: Any) -> bool:
        if not record.value.startswith(run):
            return False
        index = int(record.value.split(b":")[1])
        latencies.append(record.timestamp - sent.get(index, record.timestamp))
        return True

    try:
        ready = asyncio.Event()
        task = asyncio.create_task(collect(bootstrap, PASS_OUT, n, on_record, limit_s=limit_s, ready=ready))
        await ready.wait()
        first = time.time()
        sent.update(await produce(bootstrap, items))
        last = await task
    finally:
        stop_worker(proc)
    return Result("Faust pass-through (one agent)", n, len(latencies), last - first, latencies)


# ----------------------------------------------------------------------------- the pipeline


Inputs = list[tuple[str, bytes | None, bytes]]


def pipeline_inputs(settings: Settings, payments: int) -> tuple[Inputs, dict[str, int]]:
    """Inputs, and for each cause event id the index of the input that carries it."""
    t0 = datetime.now(UTC)
    token = settings.mpesa_callback_token.get_secret_value()
    prefix = f"TPB{uuid.uuid4().hex[:8].upper()}"
    items: list[tuple[str, bytes | None, bytes]] = []
    causes: dict[str, int] = {}
    for i in range(payments):
        ref = f"{prefix}{i:07d}"
        key = ref.encode()
        create = CreatePayment(event_id=f"create-{ref}", occurred_at=t0, reference=ref, user_id="bench",
                               amount=Money(amount=150000, currency="KES"), provider=Provider.MPESA,
                               method=PaymentMethod.MOBILE_MONEY, phone_number="254700000000")
        pending = ProviderEvent(event_id=f"cmd:{ref}", occurred_at=t0 + timedelta(seconds=1),
                                kind=ProviderEventKind.STATUS, reference=ref, provider=Provider.MPESA,
                                status=PaymentStatus.PENDING, provider_reference=f"ws_CO_{ref}",
                                source="dispatcher")
        body = json.dumps({"Body": {"stkCallback": {
            "MerchantRequestID": f"m-{ref}", "CheckoutRequestID": f"ws_CO_{ref}", "ResultCode": 0,
            "ResultDesc": "The service request is processed successfully."}}}).encode()
        causes[create.event_id] = len(items)
        items.append((topics.PAYMENT_REQUESTS, key, codec.encode(create)))
        causes[pending.event_id] = len(items)
        items.append((topics.PROVIDER_EVENTS, key, codec.encode(pending)))
        causes[f"mpesa:ws_CO_{ref}:0"] = len(items)
        for copy in range(2):
            raw = RawWebhook(event_id=f"raw-{ref}-{copy}", occurred_at=t0, provider=Provider.MPESA, body=body,
                             received_at=t0 + timedelta(seconds=2), reference=ref,
                             query={"token": token, "reference": ref})
            items.append((topics.WEBHOOKS_RAW, key, codec.encode(raw)))
    return items, causes


async def bench_pipeline(settings: Settings, n: int, limit_s: float, workdir: Path) -> Result:
    bootstrap = settings.kafka_bootstrap or ""
    payments = max(1, n // 4)
    items, causes = pipeline_inputs(settings, payments)
    agents = ["streams.agents.dedup", "streams.agents.payments", "streams.agents.sweeper"]
    proc = start_worker(settings, agents, workdir / "pipeline.log", TRAILPAY_PARK_TIMEOUT_S="3600")
    latencies: list[float] = []
    sent: dict[int, int] = {}
    marker = items[0][1] or b""
    marker = b'"reference":"' + marker[:11]
    seen: set[str] = set()

    def on_record(record: Any) -> bool:
        if marker not in record.value:
            return False
        data = json.loads(record.value)
        if data["event_id"] in seen:
            return False
        seen.add(data["event_id"])
        index = causes.get(data["cause_event_id"])
        if index is not None and index in sent:
            latencies.append(record.timestamp - sent[index])
        return True

    try:
        ready = asyncio.Event()
        task = asyncio.create_task(collect(bootstrap, topics.PAYMENT_STATE, payments * 3, on_record,
                                           limit_s=limit_s, ready=ready))
        await ready.wait()
        first = time.time()
        sent.update(await produce(bootstrap, items))
        last = await task
    finally:
        stop_worker(proc)
    return Result("dedup + state machine (pipeline)", len(items), len(seen), last - first, latencies)


# ----------------------------------------------------------------------------- the pass-through agent


def register(ctx: Any) -> None:
    """Registrar for the Faust pass-through baseline (`trailpay worker --only benchmarks.stream_bench`)."""
    app = ctx.app
    source = app.topic(PASS_IN, key_type=bytes, value_type=bytes)
    sink = app.topic(PASS_OUT, key_type=bytes, value_type=bytes)

    @app.agent(source, name="bench_passthrough")
    async def passthrough(stream: Any) -> None:
        async for event in stream.events():
            await sink.send(key=event.key, value=event.value)


# ----------------------------------------------------------------------------- main


async def main(args: argparse.Namespace) -> None:
    from trailpay.stack.embedded import broker_process, wait_for_broker
    from trailpay.stack.processes import free_port

    workdir = Path(tempfile.mkdtemp(prefix="stream-bench-"))
    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        port = free_port()
        broker = broker_process(workdir, port)
        broker.start()
        wait_for_broker(port)
        bootstrap = f"127.0.0.1:{port}"
    settings = load_settings(kafka_bootstrap=bootstrap, partitions=args.partitions, data_dir=workdir)
    extra = [TopicSpec(name, "bench", "bytes", "benchmark") for name in (PASS_IN, PASS_OUT, RAW_TOPIC)]
    await create_topics(settings, (*topics.TOPICS, *extra))
    print(f"broker {bootstrap}, {args.partitions} partitions, {args.events:,} input events; "
          f"logs in {workdir}")
    results: list[Result] = []
    try:
        if not args.skip_baselines:
            results.append(await bench_raw(bootstrap, args.events, args.timeout))
            results.append(await bench_passthrough(settings, args.events, args.timeout, workdir))
        results.append(await bench_pipeline(settings, args.events, args.timeout, workdir))
    finally:
        if broker is not None:
            broker.stop()
    print()
    print(f"{'run':<34} {'inputs':>9} {'outputs':>9} {'seconds':>8} {'events/s':>10} "
          f"{'p50 ms':>9} {'p99 ms':>9}")
    for result in results:
        print(result.row())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--events", type=int, default=100_000,
                        help="input events per run (default 100,000)")
    parser.add_argument("--bootstrap", default=None,
                        help="an existing broker (default: start an embedded tansu)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic (default 4)")
    parser.add_argument("--timeout", type=float, default=900, help="give up on a run after this many seconds")
    parser.add_argument("--skip-baselines", action="store_true", help="only the pipeline run")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
