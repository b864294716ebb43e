"""The benchmark report (benchmarks/e2e_report.py): figures from a run's details, met or not."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.e2e_report import Figure, Report, emit, figures


def _report() -> Report:
    report = Report(started="2026-12-01T08:00:00+00:00", machine="2 CPUs", args={"provider_concurrency": 128})
    report.details = {
        "sustained": {"payments": 2000, "events_per_s": 12000.0, "payments_per_s": 6000.0, "not_succeeded": 0},
        "passthrough": {"events_per_s": 3000.0},
        "replay": {"events": 20000, "events_per_s": 40000.0, "duplicates": 0, "seconds": 0.5},
        "ingress_error": "TimeoutError: no answer",
    }
    report.memory_mib = {"worker": 300.0}
    return report


def test_figures_say_what_was_met() -> None:
    report = _report()
    figures(report)
    assert [(f.name, f.value, f.met) for f in report.figures] == [
        ("end to end, sustained (booking events + callbacks in, PG + CH out)", 12000.0, True),
        ("replay of 20,000 state changes into PG + CH", 40000.0, False),
        ("stream worker peak RSS", 300.0, None),  # 12,000 payments held: not the 1,000,000 of the goal
    ]
    assert report.figures[0].baseline == "naive one-agent Faust: 3,000 events/s"
    assert report.errors() == {"ingress_error": "TimeoutError: no answer"}


def test_markdown_and_json(tmp_path: Path) -> None:
    report = _report()
    report.figures = [Figure("replay", 40000.0, "events/s", ">= 50,000 events/s", "", False, "n"),
                      Figure("p99", 0.5, "ms", "p99 < 50 ms", "", True)]
    assert report.markdown().splitlines() == [
        "| figure | measured | baseline (same run) | goal | met | note |",
        "| --- | --- | --- | --- | --- | --- |",
        "| replay | 40,000 events/s |  | >= 50,000 events/s | **no** | n |",
        "| p99 | 0.50 ms |  | p99 < 50 ms | yes |  |",
    ]
    emit(report, tmp_path / "r.json", tmp_path / "r.md")
    written = json.loads((tmp_path / "r.json").read_text())
    assert written["figures"][0]["value"] == 40000.0 and written["memory_mib"] == {"worker": 300.0}
    assert (tmp_path / "r.md").read_text().startswith("| figure |")
