"""Stream benchmark: dedup + payment state machine vs. two baselines on the same broker.

    python benchmarks/stream_bench.py            # 100,000 input events, own embedded broker
    python benchmarks/stream_bench.py -n 20000 --bootstrap 127.0.0.1:9092
    python benchmarks/stream_bench.py --measure-memory --payments 1000000   # worker RSS

Three runs, one after the other, each measured the same way: the consumer side is started
and ready first, then every input record is produced as fast as the client can, stamped with
its send time; a run's rate is inputs / (last output - first input) and its latency is the
output record's timestamp minus the timestamp of the input that caused it.

* raw aiokafka consume: a consumer group reading the records (output = consumption);
* Faust pass-through: a one-agent worker forwarding each record to another topic;
* pipeline: `trailpay worker` with the dedup, state machine and sweeper agents. Per payment
  four inputs: the create request, the dispatcher's "pending", and the M-Pesa callback twice
  (the second is dropped by dedup); outputs are the three state changes.

Besides wall-clock events/s, each worker run reports the worker's CPU seconds and input
events per worker CPU second: on a machine shared with other processes the wall-clock rate
moves with their load, the CPU cost per event much less, so compare runs on that column.
The last lines compare the pipeline with the same-run baselines on both measures.

``--measure-memory`` writes ``--payments`` open payments into the state machine table's
changelog (the broker could not hold a million payments' worth of pipeline traffic), starts
a worker that restores them, and prints its resident memory once it stops growing.

Run it from the repository root (the pass-through agent is registered from this file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.stream_common import (  # noqa: E402
    Result,
    collect,
    cpu_seconds,
    now_ms,
    produce,
    rss_mib,
    start_worker,
    stop_worker,
)
from controlplane.stack.embedded import broker_process, wait_for_broker  # noqa: E402
from controlplane.stack.processes import free_port  # noqa: E402
from tests.support.records import create_payment, mpesa_callback, status_event  # noqa: E402
from trailpay import codec, topics  # noqa: E402
from trailpay.domain.deadlines import DeadlinePolicy  # noqa: E402
from trailpay.domain.events import CreatePayment, ProviderEvent  # noqa: E402
from trailpay.domain.state_machine import apply  # noqa: E402
from trailpay.domain.status import PaymentStatus  # noqa: E402
from trailpay.kafka import create_topics  # noqa: E402
from trailpay.settings import Settings, load_settings  # noqa: E402
from trailpay.topics import TopicSpec  # noqa: E402

PASS_IN = "bench.passthrough.in"
PASS_OUT = "bench.passthrough.out"
RAW_TOPIC = "bench.raw"
Inputs = list[tuple[str, bytes | None, bytes]]


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


async def worker_run(bootstrap: str, topic: str, want: int, on_record: Any, limit_s: float,
                     items: Inputs, pid: int, sent: dict[int, int]) -> tuple[float, float]:
    """One measured worker run: the consumer of ``topic`` is ready first, then every input is
    produced (send times into ``sent``); the run's seconds (first input to last output) and
    the worker's CPU seconds meanwhile."""
    ready = asyncio.Event()
    task = asyncio.create_task(collect(bootstrap, topic, want, on_record, limit_s=limit_s, ready=ready))
    await ready.wait()
    cpu0 = cpu_seconds(pid)
    first = time.time()
    sent.update(await produce(bootstrap, items))
    last = await task
    return last - first, cpu_seconds(pid) - cpu0


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
        took, cpu = await worker_run(bootstrap, PASS_OUT, n, on_record, limit_s, items, proc.pid, sent)
    finally:
        stop_worker(proc)
    return Result("Faust pass-through (one agent)", n, len(latencies), took, latencies, cpu)


# ----------------------------------------------------------------------------- the pipeline


def bench_create(ref: str, at: datetime) -> CreatePayment:
    """The create request of every benchmark payment (M-Pesa, 1,500 shillings)."""
    return create_payment(ref, at, amount=150000, user_id="bench", phone_number="254700000000")


def bench_pending(ref: str, at: datetime) -> ProviderEvent:
    """The dispatcher's "pending" for a benchmark payment (STK push sent)."""
    return status_event(ref, PaymentStatus.PENDING, at, event_id=f"cmd:{ref}",
                        provider_reference=f"ws_CO_{ref}", source="dispatcher")


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
        create, pending = bench_create(ref, t0), bench_pending(ref, t0 + timedelta(seconds=1))
        causes[create.event_id] = len(items)
        items.append((topics.PAYMENT_REQUESTS, key, codec.encode(create)))
        causes[pending.event_id] = len(items)
        items.append((topics.PROVIDER_EVENTS, key, codec.encode(pending)))
        causes[f"mpesa:ws_CO_{ref}:0"] = len(items)
        for copy in range(2):
            raw = mpesa_callback(ref, 0, "The service request is processed successfully.", token=token,
                                 event_id=f"raw-{ref}-{copy}", occurred_at=t0,
                                 received_at=t0 + timedelta(seconds=2), merchant_request_id=f"m-{ref}",
                                 shillings=1500)
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
        took, cpu = await worker_run(bootstrap, topics.PAYMENT_STATE, payments * 3, on_record, limit_s,
                                     items, proc.pid, sent)
        rss = rss_mib(proc.pid, "VmHWM")
    finally:
        stop_worker(proc)
    return Result("dedup + state machine (pipeline)", len(items), len(seen), took, latencies, cpu, rss)


# ----------------------------------------------------------------------------- memory


def state_template() -> Any:
    """One payment as the state machine holds it: created, then pending (an open payment,
    the heaviest kind: it is also in the sweeper's index)."""

    t0 = datetime.now(UTC)
    ref = "TPBTEMPLATE0000000000"
    create, pending = bench_create(ref, t0), bench_pending(ref, t0)
    day = DeadlinePolicy(pending_s=86400, processing_s=86400)  # nothing falls due during the run
    created = apply(None, create, policy=day)
    assert created.payment is not None
    outcome = apply(created.payment, pending, policy=day)
    assert outcome.payment is not None
    return outcome.payment


async def bench_memory(settings: Settings, payments: int, limit_s: float, workdir: Path) -> Result:
    """Peak RSS of the stream worker holding ``payments`` open payments in its table.

    Pushing a million payments through the pipeline would take the embedded broker past
    the machine's memory (tansu keeps every record in RAM, inputs and outputs alike), so
    the state is written where a worker restores it from: the ``payments`` table's
    changelog, one record per payment, in the state machine's own format. The worker then
    starts, recovers the table (as after a restart), indexes the open payments for the
    sweeper, and its memory is read once it stops growing."""
    bootstrap = settings.kafka_bootstrap or ""
    app_id = f"bench-{uuid.uuid4().hex[:8]}"
    from streams.agents.packing import pack

    template = state_template()
    old = "TPBTEMPLATE0000000000"
    prefix = uuid.uuid4().hex[:8].upper()
    sample = pack(template)
    changelog = f"{app_id}-payments-changelog"
    await create_topics(settings, (TopicSpec(changelog, "bench", "bytes", "payments table changelog"),))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1024 * 1024,
                                acks="all")
    await producer.start()
    started = time.monotonic()
    try:
        pending = []
        plain = template.to_json().decode()
        for i in range(payments):
            ref = f"TPB{prefix}{i:010d}"
            value = pack(type(template).model_validate_json(plain.replace(old, ref)))
            pending.append(await producer.send(changelog, value, key=ref.encode()))
            if len(pending) >= 20000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    print(f"wrote {payments:,} payments to {changelog} in {time.monotonic() - started:.0f}s "
          f"(about {len(sample)} bytes each)", flush=True)
    agents = ["streams.agents.dedup", "streams.agents.payments", "streams.agents.sweeper"]
    log = workdir / "memory.log"
    started = time.monotonic()
    proc = start_worker(settings, agents, log, TRAILPAY_WORKER_ID=app_id,
                        TRAILPAY_PENDING_DEADLINE_S="86400", TRAILPAY_PROCESSING_DEADLINE_S="86400")
    try:
        deadline = time.monotonic() + limit_s
        last, steady_since = 0.0, time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            rss = rss_mib(proc.pid)
            if rss > last + 1:
                last, steady_since = rss, time.monotonic()
            elif time.monotonic() - steady_since > 15:
                break
        seconds = time.monotonic() - started
        cpu = cpu_seconds(proc.pid)
        peak = rss_mib(proc.pid, "VmHWM")
        now = rss_mib(proc.pid)
    finally:
        stop_worker(proc)
    print(f"worker RSS with {payments:,} payments: {now:,.0f} MiB now, {peak:,.0f} MiB peak "
          f"(goal < 1,024 MiB); recovered and settled in {seconds:.0f}s", flush=True)
    return Result(f"worker memory, {payments:,} payments", payments, 0, seconds, [], cpu, peak)


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
        if args.measure_memory:
            results.append(await bench_memory(settings, args.payments, args.timeout, workdir))
            return
        if not args.skip_baselines:
            results.append(await bench_raw(bootstrap, args.events, args.timeout))
            results.append(await bench_passthrough(settings, args.events, args.timeout, workdir))
        results.append(await bench_pipeline(settings, args.events, args.timeout, workdir))
    finally:
        if broker is not None:
            broker.stop()
    if args.measure_memory:
        return
    print()
    print(f"{'run':<34} {'inputs':>9} {'outputs':>9} {'seconds':>8} {'events/s':>10} "
          f"{'p50 ms':>9} {'p99 ms':>9} {'cpu s':>8} {'ev/cpu-s':>10}")
    for result in results:
        print(result.row())
    compare(results)


def compare(results: list[Result]) -> None:
    """The pipeline against the same-run baselines, by wall clock and by worker CPU."""
    by_name = {r.name: r for r in results}
    pipeline = by_name.get("dedup + state machine (pipeline)")
    if pipeline is None:
        return
    print()
    if pipeline.rss_mib:
        print(f"pipeline worker peak RSS: {pipeline.rss_mib:,.0f} MiB")
    for name in ("raw aiokafka consume", "Faust pass-through (one agent)"):
        base = by_name.get(name)
        if base is None:
            continue
        line = f"pipeline vs {name}: {pipeline.rate / base.rate:.2f}x events/s"
        if base.cpu_s and pipeline.cpu_s:
            line += f", {pipeline.per_cpu_s / base.per_cpu_s:.2f}x events per worker CPU second"
        print(line)


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
    parser.add_argument("--measure-memory", action="store_true",
                        help="instead: the worker's RSS with --payments open payments in its table")
    parser.add_argument("--payments", type=int, default=1_000_000,
                        help="payments in state for --measure-memory (default 1,000,000)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
