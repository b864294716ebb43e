"""The broker's share of a `trailpay bench` run: CPU time and RSS of its process(es).

The broker is whatever ``trailpay up`` runs (tansu, or the JVM(s) of Apache Kafka: one node,
or the three of ``TRAILPAY_KAFKA_NODES=3``); its processes are found by pid (stack.json's
``broker``) and, for a cluster, by the command line naming the stack's ``kafka/`` directory.
CPU is read from the kernel's counters at each step's start and end (user + system seconds,
so ``cores`` = CPU seconds / wall seconds: 1.0 is one core busy all along); RSS is sampled
every 0.5 s and its peak kept per step and for the whole run.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from tests.support.processes import StackProcess

MiB = 1024 ** 2


@dataclass
class StepUsage:
    wall_s: float
    cpu_s: float
    peak_rss_mib: float

    def as_dict(self) -> dict[str, float]:
        cores = self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0
        return {"wall_s": round(self.wall_s, 2), "cpu_s": round(self.cpu_s, 2), "cores": round(cores, 3),
                "peak_rss_mib": round(self.peak_rss_mib, 1)}


@dataclass
class _Open:
    started: float
    cpu: float
    peak: int = 0


@dataclass
class BrokerMeter:
    """CPU and RSS of the stack's broker, per step (:meth:`begin` / :meth:`end`) and overall."""

    stack: StackProcess
    steps: dict[str, StepUsage] = field(default_factory=dict)
    peak_rss: int = 0
    _open: dict[str, _Open] = field(default_factory=dict)
    _procs: dict[int, psutil.Process] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def processes(self) -> list[psutil.Process]:
        """The broker's live processes (the same psutil objects each time, so CPU counters of
        a process that dies are not read from a recycled pid)."""
        pids: set[int] = set()
        broker = self.stack.pids().get("broker")
        if broker:
            pids.add(broker)
        kafka_dir = str(self.stack.data_dir.resolve() / "kafka") + "/"
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if any(arg.startswith(kafka_dir) and arg.endswith("server.properties")
                   for arg in proc.info["cmdline"] or ()):
                pids.add(proc.info["pid"])
        for pid in pids - set(self._procs):
            try:
                self._procs[pid] = psutil.Process(pid)
            except psutil.Error:
                continue
        return [p for p in self._procs.values() if p.is_running()]

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.processes():
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                continue
        return total

    def rss(self) -> int:
        total = 0
        for proc in self.processes():
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total

    def begin(self, name: str) -> None:
        with self._lock:
            self._open[name] = _Open(time.monotonic(), self.cpu_seconds())

    def end(self, name: str) -> None:
        with self._lock:
            opened = self._open.pop(name)
            self.steps[name] = StepUsage(time.monotonic() - opened.started, self.cpu_seconds() - opened.cpu,
                                         max(opened.peak, self.rss()) / MiB)

    def sample(self) -> None:
        rss = self.rss()
        with self._lock:
            self.peak_rss = max(self.peak_rss, rss)
            for opened in self._open.values():
                opened.peak = max(opened.peak, rss)

    def __enter__(self) -> BrokerMeter:
        self.begin("run")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.end("run")

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.sample()

    def report(self) -> dict[str, Any]:
        return {name: usage.as_dict() for name, usage in self.steps.items()} | {
            "peak_rss_mib": round(self.peak_rss / MiB, 1)}
