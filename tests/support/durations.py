"""A pytest plugin: every test's duration into ``test-artifacts/durations.json``.

One entry per test (setup + call + teardown, in seconds, each phase, and the outcome),
slowest first, so a slow or slowing test is found without rerunning with ``--durations``.
Loaded from tests/conftest.py (``pytest_plugins``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FILE_NAME = "durations.json"


class DurationRecorder:
    """Collects the reports of a session and writes them out at its end."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.tests: dict[str, dict[str, Any]] = {}

    def add(self, report: pytest.TestReport) -> None:
        entry = self.tests.setdefault(report.nodeid, {"test": report.nodeid, "seconds": 0.0, "phases": {}})
        entry["seconds"] = round(entry["seconds"] + report.duration, 3)
        entry["phases"][report.when] = round(report.duration, 3)
        if report.when == "call":
            entry["outcome"] = report.outcome
        elif report.when == "setup" and not report.passed:
            entry["outcome"] = "skipped" if report.skipped else "error"
        elif report.when == "teardown" and report.failed:
            entry["outcome"] = "error"

    def write(self, exit_status: int) -> None:
        if not self.tests:
            return
        tests = sorted(self.tests.values(), key=lambda e: (-e["seconds"], e["test"]))
        body = {"exit_status": exit_status, "tests": len(tests),
                "total_seconds": round(sum(e["seconds"] for e in tests), 3), "durations": tests}
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.target.write_text(json.dumps(body, indent=2) + "\n")


_recorder = DurationRecorder(ARTIFACTS / FILE_NAME)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _recorder.add(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # under xdist, the controller writes
        _recorder.write(int(exitstatus))
