"""The report of `trailpay bench` (benchmarks/e2e.py): figures against their goals, printed as
a table and written as JSON and Markdown.

:func:`figures` turns the measured details of each step into the figures of the README
(each with its goal, the same-run baseline and whether it was met); :func:`emit` prints the
report and writes the files asked for.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

GiB = 1024 ** 3


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
    #: ``kind version`` of the stack's broker, and its CPU and RSS per step (broker_usage.py).
    broker: str = ""
    broker_usage: dict[str, Any] = field(default_factory=dict)

    def table(self) -> Table:
        table = Table(title=f"trailpay bench — {self.broker or 'broker ?'} — {self.machine}")
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

    def errors(self) -> dict[str, str]:
        """The steps that failed, with why."""
        return {k: v for k, v in self.details.items() if k.endswith("_error")}


def machine() -> str:
    mem = psutil.virtual_memory().total / GiB
    return f"{os.cpu_count()} CPUs, {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def figures(report: Report) -> None:
    """Add the figures of every step that ran to ``report.figures``."""
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
    usage = report.broker_usage
    for step, u in usage.items():
        if isinstance(u, dict) and step != "run":
            add(Figure(f"broker CPU during {step}", u["cores"], "cores", "—", "", None,
                       f"{u['cpu_s']:,.1f} CPU-s in {u['wall_s']:,.1f} s; "
                       f"peak RSS {u['peak_rss_mib']:,.0f} MiB"))
    if "run" in usage:
        u = usage["run"]
        add(Figure("broker CPU, whole run", u["cores"], "cores", "—", "", None,
                   f"{u['cpu_s']:,.1f} CPU-s in {u['wall_s']:,.0f} s"))
        add(Figure("broker peak RSS", usage["peak_rss_mib"], "MiB", "—", "", None, report.broker))
    mem = report.memory_mib
    if "worker" in mem:
        held = d.get("replay", {}).get("events", 0) // 2 + d.get("sustained", {}).get("payments", 0)
        add(Figure("stream worker peak RSS", mem["worker"], "MiB", "< 1 GiB with 1,000,000 payments in state",
                   "", mem["worker"] < 1024 if held >= 1_000_000 else None,
                   f"~{held:,} payments in state"))


def emit(report: Report, json_out: Path | None = None, markdown: Path | None = None) -> None:
    """Print the table, peak memory and errors; write the JSON and Markdown files asked for."""
    Console().print(report.table())
    print()
    for name, mib in report.memory_mib.items():
        print(f"peak RSS {name:<14} {mib:>9,.1f} MiB")
    for k, v in report.errors().items():
        print(f"{k}: {v}")
    if json_out:
        json_out.write_text(json.dumps(asdict(report), indent=2, default=str))
    if markdown:
        markdown.write_text(report.markdown() + "\n")


def compare(reports: list[Report], markdown: Path | None = None, json_out: Path | None = None) -> None:
    """The figures of runs on different brokers side by side (a column per broker): printed,
    and written as Markdown / JSON when asked."""
    names: list[str] = []
    for r in reports:
        names += [f.name for f in r.figures if f.name not in names]
    by_run = [{f.name: f for f in r.figures} for r in reports]
    heads = [r.broker or str(r.args.get("broker")) for r in reports]
    table = Table(title="trailpay bench — brokers side by side")
    for col in ("figure", *heads, "goal"):
        table.add_column(col)
    lines = ["| figure | " + " | ".join(heads) + " | goal |", "| --- |" + " --- |" * (len(heads) + 1)]
    for name in names:
        cells = []
        goal = ""
        for figs in by_run:
            f = figs.get(name)
            met = "" if f is None or f.met is None else (" (met)" if f.met else " (not met)")
            cells.append("—" if f is None else f"{f.shown()}{met}")
            goal = goal or (f.goal if f else "")
        table.add_row(name, *cells, goal)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {goal} |")
    Console().print(table)
    if markdown:
        markdown.write_text("\n".join(lines) + "\n")
    if json_out:
        json_out.write_text(json.dumps([asdict(r) for r in reports], indent=2, default=str))
