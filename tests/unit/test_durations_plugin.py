"""tests/support/durations.py: what lands in test-artifacts/durations.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.durations import DurationRecorder


def _report(nodeid: str, when: str, outcome: str, duration: float) -> pytest.TestReport:
    return pytest.TestReport(nodeid=nodeid, location=("f.py", 1, nodeid), keywords={}, outcome=outcome,
                             longrepr=None if outcome == "passed" else ("f.py", 1, "x"), when=when,
                             duration=duration)


def test_one_entry_per_test_slowest_first(tmp_path: Path) -> None:
    recorder = DurationRecorder(tmp_path / "artifacts" / "durations.json")
    for nodeid, phases in {
        "t.py::fast": [("setup", "passed", 0.001), ("call", "passed", 0.01), ("teardown", "passed", 0.002)],
        "t.py::slow": [("setup", "passed", 1.5), ("call", "failed", 2.25), ("teardown", "passed", 0.25)],
        "t.py::skipped": [("setup", "skipped", 0.0), ("teardown", "passed", 0.0)],
    }.items():
        for when, outcome, seconds in phases:
            recorder.add(_report(nodeid, when, outcome, seconds))
    recorder.write(1)
    body = json.loads((tmp_path / "artifacts" / "durations.json").read_text())
    assert body["exit_status"] == 1 and body["tests"] == 3 and body["total_seconds"] == 4.013
    assert [(e["test"], e["seconds"], e["outcome"]) for e in body["durations"]] == [
        ("t.py::slow", 4.0, "failed"), ("t.py::fast", 0.013, "passed"), ("t.py::skipped", 0.0, "skipped")]
    assert body["durations"][0]["phases"] == {"setup": 1.5, "call": 2.25, "teardown": 0.25}
