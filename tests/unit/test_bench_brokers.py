"""`trailpay bench` on two brokers: the broker's CPU and RSS as figures, and the side-by-side table."""

from __future__ import annotations

from pathlib import Path

from benchmarks.e2e_report import Report, compare, figures


def _report(broker: str, p99: float, cores: float) -> Report:
    report = Report(started="2026-12-01T08:00:00+00:00", machine="2 CPUs", args={}, broker=broker)
    report.details = {"latency": {"rate": 1000.0, "p50_ms": 100.0, "p99_ms": p99, "max_ms": 900.0,
                                  "rows": 3000, "errors": 0}}
    report.broker_usage = {
        "latency": {"wall_s": 10.0, "cpu_s": 10.0 * cores, "cores": cores, "peak_rss_mib": 400.0},
        "run": {"wall_s": 100.0, "cpu_s": 30.0, "cores": 0.3, "peak_rss_mib": 420.0},
        "peak_rss_mib": 420.0,
    }
    figures(report)
    return report


def test_broker_usage_figures() -> None:
    report = _report("apache-kafka 3.9.2", 800.0, 0.5)
    assert [(f.name, f.value) for f in report.figures] == [
        ("webhook received -> PostgreSQL row, p50 (at 1,000/s)", 100.0),
        ("webhook received -> PostgreSQL row, p99 (at 1,000/s)", 800.0),
        ("broker CPU during latency", 0.5),
        ("broker CPU, whole run", 0.3),
        ("broker peak RSS", 420.0),
    ]
    assert report.figures[2].note == "5.0 CPU-s in 10.0 s; peak RSS 400 MiB"


def test_side_by_side(tmp_path: Path) -> None:
    kafka = _report("apache-kafka 3.9.2", 800.0, 0.5)
    tansu = _report("tansu 0.6.0", 1500.0, 0.25)
    compare([kafka, tansu], tmp_path / "both.md", tmp_path / "both.json")
    lines = (tmp_path / "both.md").read_text().splitlines()
    assert lines[0] == "| figure | apache-kafka 3.9.2 | tansu 0.6.0 | goal |"
    assert "| webhook received -> PostgreSQL row, p99 (at 1,000/s) | 800 ms (met) | 1,500 ms (not met) " \
           "| p99 < 1,000 ms |" in lines
    assert "| broker CPU during latency | 0.50 cores | 0.25 cores | — |" in lines
