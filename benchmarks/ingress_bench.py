"""Webhook ingress benchmark: accepted requests/s and latency, Kafka vs. a no-Kafka baseline.

Starts its own tansu broker (loopback, in memory) and runs the real ingress app under uvicorn
in a child process twice: once producing every webhook to ``webhooks.raw.v1`` and waiting
for the broker's ack (the real path), once answering without producing (baseline: the same
app with a publisher that does nothing). For each it measures a fixed rate (latency from the
*scheduled* send time, so a stalled server cannot hide queueing) and the maximum rate.

The load generator is a small keep-alive HTTP/1.1 client on asyncio (uvloop when present):
httpx would cost more CPU than the server on this 2-core machine.

    python benchmarks/ingress_bench.py --rate 1000 --duration 10 --max-duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil
import uvicorn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.ingress.app import create_app  # noqa: E402
from connectors.ingress.context import IngressContext  # noqa: E402
from connectors.ingress.publisher import Publisher  # noqa: E402
from controlplane.stack.embedded import broker_process, wait_for_broker  # noqa: E402
from controlplane.stack.processes import free_port  # noqa: E402
from tests.support.processes import clean_env  # noqa: E402
from trailpay.kafka import create_topics  # noqa: E402
from trailpay.settings import load_settings  # noqa: E402

TOKEN = "bench-callback-token"


# --------------------------------------------------------------------------- server


def serve(port: int, bootstrap: str, baseline: bool) -> None:
    settings = load_settings(kafka_bootstrap=bootstrap, api_port=port, database_url=None,
                             mpesa_callback_token=TOKEN)

    class NullPublisher(Publisher):
        async def start(self) -> None:
            self.ready.set()

        async def publish(self, topic: str, key: str | None, record: object) -> None:  # type: ignore[override]
            return None

        async def check(self, wait_s: float = 2.0) -> bool:
            return True

    ctx = IngressContext.build(settings, with_database=False)
    if baseline:
        ctx.publisher = NullPublisher(settings)
    uvicorn.run(create_app(settings, ctx=ctx), host="127.0.0.1", port=port, log_level="warning",
                access_log=False)


# --------------------------------------------------------------------------- client


def request_bytes(port: int, n: int) -> bytes:
    body = json.dumps({"Body": {"stkCallback": {
        "MerchantRequestID": f"m-{n}", "CheckoutRequestID": f"ws_CO_bench_{n}", "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully."}}}).encode()
    head = (f"POST /api/payments/callback/mpesa/?token={TOKEN}&reference=TPBENCH{n % 1000:04d} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


class Connection:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def call(self, payload: bytes) -> int:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()


@dataclass
class Result:
    label: str
    target: float | None
    sent: int
    ok: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    server_cpu_s: float = 0.0

    def pct(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def row(self) -> str:
        target = f"{self.target:,.0f}" if self.target else "max"
        rate = self.ok / self.seconds
        cpu_us = self.server_cpu_s / max(self.sent, 1) * 1e6
        return (f"| {self.label:<34} | {target:>6} | {rate:>10,.0f} | {self.pct(50):>7.2f} | "
                f"{self.pct(99):>7.2f} | {self.pct(100):>8.2f} | {self.errors:>6} | {cpu_us:>13,.0f} |")


async def fixed_rate(port: int, rate: float, duration: float, connections: int, label: str) -> Result:
    """Open loop: request i is due at start + i/rate; latency counts from when it was due."""
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    latencies: list[float] = []
    counts = {"ok": 0, "err": 0}
    total = int(rate * duration)

    async def worker() -> None:
        conn = Connection(port)
        while (item := await queue.get()) is not None:
            n, due = item
            try:
                status = await conn.call(request_bytes(port, n))
            except (OSError, asyncio.IncompleteReadError, ValueError):
                status = 0
                await conn.close()
                conn = Connection(port)
            latencies.append((time.perf_counter() - due) * 1000)
            counts["ok" if status == 200 else "err"] += 1
        await conn.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    start = time.perf_counter()
    for n in range(total):
        due = start + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((n, due))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = max(time.perf_counter() - start, duration)
    return Result(label, rate, total, counts["ok"], counts["err"], elapsed, latencies)


async def max_rate(port: int, duration: float, connections: int, label: str) -> Result:
    latencies: list[float] = []
    counts = {"ok": 0, "err": 0, "n": 0}
    stop_at = time.perf_counter() + duration

    async def worker() -> None:
        conn = Connection(port)
        while time.perf_counter() < stop_at:
            counts["n"] += 1
            began = time.perf_counter()
            try:
                status = await conn.call(request_bytes(port, counts["n"]))
            except (OSError, asyncio.IncompleteReadError, ValueError):
                status = 0
                await conn.close()
                conn = Connection(port)
            latencies.append((time.perf_counter() - began) * 1000)
            counts["ok" if status == 200 else "err"] += 1
        await conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    return Result(label, None, counts["n"], counts["ok"], counts["err"], elapsed, latencies)


# --------------------------------------------------------------------------- orchestration


def wait_http(url: str, timeout: float = 30, *, kafka: bool = False) -> None:
    """Until ``url`` answers 200 (or, with ``kafka``, says its Kafka producer is connected;
    the benchmark server has no database, so /readyz itself stays 503)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            if kafka and json.loads(exc.read() or b"{}").get("kafka"):
                return
            time.sleep(0.1)
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(url)


def start_server(port: int, bootstrap: str, baseline: bool, log_dir: Path) -> subprocess.Popen[bytes]:
    args = [sys.executable, __file__, "serve", "--port", str(port), "--bootstrap", bootstrap]
    if baseline:
        args.append("--baseline")
    log = (log_dir / f"server-{'baseline' if baseline else 'kafka'}.log").open("ab")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=clean_env())
    wait_http(f"http://127.0.0.1:{port}/healthz")
    if not baseline:
        wait_http(f"http://127.0.0.1:{port}/readyz", kafka=True)
    return proc


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def measure(port: int, pid: int, label: str, args: argparse.Namespace) -> list[Result]:
    """Each run also reports the server process's CPU time per request (client excluded)."""
    await fixed_rate(port, min(args.rate, 500), 1.0, args.connections, "warm-up")
    results = []
    before = cpu_seconds(pid)
    fixed = await fixed_rate(port, args.rate, args.duration, args.connections, f"{label} @ fixed rate")
    fixed.server_cpu_s, before = cpu_seconds(pid) - before, cpu_seconds(pid)
    results.append(fixed)
    if args.max_duration > 0:
        top = await max_rate(port, args.max_duration, args.connections, f"{label} @ max rate")
        top.server_cpu_s = cpu_seconds(pid) - before
        results.append(top)
    return results


def run(args: argparse.Namespace) -> None:
    try:  # optional: the faster event loop when it is installed
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with tempfile.TemporaryDirectory(prefix="ingress-bench-") as tmp:
        log_dir = Path(tmp)
        broker_port = free_port()
        bootstrap = f"127.0.0.1:{broker_port}"
        broker = broker_process(log_dir, broker_port)
        broker.start()
        results: list[Result] = []
        try:
            wait_for_broker(broker_port)
            asyncio.run(create_topics(load_settings(kafka_bootstrap=bootstrap, partitions=args.partitions)))
            for baseline in (False, True):
                port = free_port()
                server = start_server(port, bootstrap, baseline, log_dir)
                try:
                    label = "baseline (no Kafka)" if baseline else "Kafka ack (acks=all)"
                    results += asyncio.run(measure(port, server.pid, label, args))
                finally:
                    server.terminate()
                    server.wait(20)
        finally:
            broker.stop()
    print(f"\nWebhook ingress (POST /api/payments/callback/mpesa/), {args.connections} connections, "
          f"fixed rate {args.rate:,.0f}/s for {args.duration:.0f}s, max rate for {args.max_duration:.0f}s, "
          f"{os.cpu_count()} CPUs, client and server on this machine\n")
    print("| run" + " " * 32 + "| target | accepted/s |  p50 ms |  p99 ms |   max ms | errors | "
          "server µs/req |")
    print("|" + "-" * 36 + "|--------|------------|---------|---------|----------|--------|"
          "---------------|")
    for result in results:
        print(result.row())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    srv = sub.add_parser("serve", help="(internal) run the ingress app for the benchmark")
    srv.add_argument("--port", type=int, required=True)
    srv.add_argument("--bootstrap", required=True)
    srv.add_argument("--baseline", action="store_true")
    parser.add_argument("--rate", type=float, default=1000,
                        help="fixed request rate per second (default 1000)")
    parser.add_argument("--duration", type=float, default=10, help="seconds at the fixed rate (default 10)")
    parser.add_argument("--max-duration", type=float, default=5,
                        help="seconds at maximum rate (default 5; 0 = skip)")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections (default 32)")
    parser.add_argument("--partitions", type=int, default=4, help="topic partitions (default 4)")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.port, args.bootstrap, args.baseline)
    else:
        run(args)


if __name__ == "__main__":
    main()
