"""What the stream benchmarks share: the result of a run, a process's CPU time and memory,
producing and collecting records, and a `trailpay worker` of the benchmark's own."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.support.processes import ChildProcess, clean_env, stop_group, trailpay_argv
from trailpay.settings import Settings


@dataclass
class Result:
    name: str
    inputs: int
    outputs: int
    seconds: float
    latencies_ms: list[float]
    #: CPU seconds the worker process used during the run (None: not a worker run).
    cpu_s: float | None = None
    rss_mib: float | None = None

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds else float("nan")

    @property
    def per_cpu_s(self) -> float:
        """Input events per CPU second of the worker: its capacity on one free core, and a
        figure that holds still when other processes share the machine."""
        return self.inputs / self.cpu_s if self.cpu_s else float("nan")

    def row(self) -> str:
        lat = sorted(self.latencies_ms) or [float("nan")]
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        cpu = f"{self.cpu_s:>8.1f} {self.per_cpu_s:>10,.0f}" if self.cpu_s else f"{'-':>8} {'-':>10}"
        return (f"{self.name:<34} {self.inputs:>9,} {self.outputs:>9,} {self.seconds:>8.1f} "
                f"{self.rate:>10,.0f} {p50:>9.0f} {p99:>9.0f} {cpu}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process (``VmRSS`` now, ``VmHWM`` peak) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def now_ms() -> int:
    return int(time.time() * 1000)


async def produce(bootstrap: str, items: Sequence[tuple[str, bytes | None, bytes]]) -> dict[int, int]:
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


def start_worker(settings: Settings, modules: list[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
    """`trailpay worker --only <modules>` with a group of its own, once it says "Worker ready"."""
    env = {"TRAILPAY_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
           "TRAILPAY_WORKER_ID": f"bench-{uuid.uuid4().hex[:8]}",
           "TRAILPAY_PARTITIONS": str(settings.partitions), "TRAILPAY_LOG_LEVEL": "INFO",
           "PYTHONUNBUFFERED": "1", **env}
    child = ChildProcess(trailpay_argv("worker", *(arg for m in modules for arg in ("--only", m))),
                         clean_env(**env), log).start()
    try:
        child.wait_for_log("Worker ready", 120)
    except (RuntimeError, TimeoutError):
        child.kill()
        raise
    assert child.proc is not None
    return child.proc


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    stop_group(proc, 30)
