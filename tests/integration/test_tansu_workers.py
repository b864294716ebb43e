"""`trailpay up --workers N` with N > 1 on tansu is refused, with the reason and the way out
(issue 14): the scale-out test lost records on tansu with the code that passed every run on
Apache Kafka. Nothing is started: the refusal comes before the broker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import clean_env

pytestmark = pytest.mark.integration


def test_two_workers_on_tansu_are_refused_before_anything_starts(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    done = subprocess.run(
        [sys.executable, "-m", "controlplane.cli.main", "up", "--broker", "tansu", "--workers", "2",
         "--data-dir", str(data_dir), "--port", "0"],
        env=clean_env(), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0
    message = done.stdout + done.stderr
    assert "2 stream workers on tansu" in message
    assert "lose records at a rebalance" in message
    assert "--workers 1" in message and "--broker kafka" in message
    assert not (data_dir / "stack.json").exists()
