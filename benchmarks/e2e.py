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
5. **peak RSS** of every process of the stack (each service's process tree), sampled all along,
   and the **broker's CPU and RSS** in each step (benchmarks/broker_usage.py).

``--broker kafka|tansu|auto`` picks the stack's broker (`trailpay up --broker`); given twice
(``--broker kafka --broker tansu``) the whole table runs on each in turn, each on a stack of
its own, and a last table puts the brokers side by side.

    trailpay bench --quick            # a small run (~3 minutes)
    trailpay bench                    # the full run
    trailpay bench --quick --broker kafka --broker tansu
    trailpay bench --replay-events 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.broker_usage import BrokerMeter  # noqa: E402
from benchmarks.e2e_report import Report, compare, emit, figures, machine  # noqa: E402
from benchmarks.e2e_steps import ingress, latency, passthrough, replay, settle, sustained  # noqa: E402
from tests.support.processes import StackProcess, start_stack_process, stop_tree  # noqa: E402

console = Console(stderr=True)


class MemorySampler:
    """Peak RSS of each service's process tree (the process and its children), every 0.5 s."""

    def __init__(self, stack: StackProcess) -> None:
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


async def run(args: argparse.Namespace, broker: str = "auto") -> Report:
    report = Report(started=datetime.now(UTC).isoformat(timespec="seconds"), machine=machine(),
                    args={**vars(args), "broker": broker})
    workdir = Path(tempfile.mkdtemp(prefix="trailpay-bench-", dir="/tmp"))
    env = {"TRAILPAY_LOG_LEVEL": "WARNING", "TRAILPAY_PENDING_DEADLINE_S": "1800",
           "TRAILPAY_PROCESSING_DEADLINE_S": "1800", "TRAILPAY_PARK_TIMEOUT_S": "600",
           "TRAILPAY_PROVIDER_CONCURRENCY": str(args.provider_concurrency)}
    console.print(f"[bold]trailpay bench[/] — {report.machine}; broker {broker}; stack data in {workdir}")
    stack = start_stack_process(workdir, env, timeout=240, args=("--broker", broker))
    if stack.info.broker is not None:
        report.broker = f"{stack.info.broker.kind} {stack.info.broker.version}"
    engine = create_async_engine(stack.settings.sqlalchemy_async_url())
    meter = BrokerMeter(stack)
    try:
        with MemorySampler(stack) as sampler, meter, Progress(
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
                    meter.begin(name)
                    try:
                        report.details[name] = await step()
                    finally:
                        meter.end(name)
                except Exception as exc:  # noqa: BLE001 - one failed step still reports the others
                    console.print(f"[red]{name} failed: {type(exc).__name__}: {exc}[/]")
                    report.details[f"{name}_error"] = f"{type(exc).__name__}: {exc}"
            sampler.sample()
        report.memory_mib = {k: round(v / 1024 ** 2, 1) for k, v in sorted(sampler.peak.items())}
        report.broker_usage = meter.report()
    finally:
        await engine.dispose()
        stop_tree(stack.proc, 90)
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
    parser.add_argument("--broker", action="append", choices=["auto", "kafka", "tansu"], default=None,
                        help="the stack's broker (`trailpay up --broker`, default auto); twice = the "
                             "whole table on each, side by side at the end")


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
    brokers = args.broker or ["auto"]
    reports = []
    for broker in brokers:
        report = asyncio.run(run(args, broker))
        one = len(brokers) == 1
        emit(report, args.json_out if one else _suffixed(args.json_out, broker),
             args.markdown if one else _suffixed(args.markdown, broker))
        reports.append(report)
    if len(reports) > 1:
        compare(reports, args.markdown, args.json_out)
    return 1 if any(r.errors() for r in reports) else 0


def _suffixed(path: Path | None, broker: str) -> Path | None:
    """``e2e.md`` -> ``e2e-kafka.md``: each broker's own report next to the side-by-side one."""
    return None if path is None else path.with_name(f"{path.stem}-{broker}{path.suffix}")


if __name__ == "__main__":
    raise SystemExit(main())
