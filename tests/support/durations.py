"""A pytest plugin: every test's duration into ``test-artifacts/durations.json``.

One entry per test (setup + call + teardown, in seconds, and the outcome of the call), slowest
first, so a slow or slowing test is found without rerunning with ``--durations``. Loaded from
tests/conftest.py (``pytest_plugins``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FILE_NAME = "durations.json"

_seen: dict[str, dict[str, Any]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    entry = _seen.setdefault(report.nodeid, {"test": report.nodeid, "seconds": 0.0, "phases": {}})
    entry["seconds"] = round(entry["seconds"] + report.duration, 3)
    entry["phases"][report.when] = round(report.duration, 3)
    if report.when == "call":
        entry["outcome"] = report.outcome
    elif report.when == "setup" and not report.passed:
        entry["outcome"] = "skipped" if report.skipped else "error"
    elif report.when == "teardown" and report.failed:
        entry["outcome"] = "error"

def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _seen or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    ARTIFACTS.mkdir(exist_ok=True)
    tests = sorted(_seen.values(), key=lambda e: -e["seconds"])
    body = {"exit_status": int(exitstatus), "tests": len(tests),
            "total_seconds": round(sum(e["seconds"] for e in tests), 3), "durations": tests}
    (ARTIFACTS / FILE_NAME).write_text(json.dumps(body, indent=2) + "\n")
