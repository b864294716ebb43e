"""Shared fixtures.

``stack``: one embedded stack per test session (``trailpay up`` in a subprocess), or the
external services named by ``TRAILPAY_KAFKA_BOOTSTRAP`` / ``TRAILPAY_DATABASE_URL`` /
``TRAILPAY_CLICKHOUSE_URL`` when those are set.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stackutil import (
    RunningStack,
    external_settings,
    keep_logs,
    stack_dir,
    start_stack,
    stop_stack,
)

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

#: Each test's duration into test-artifacts/durations.json.
pytest_plugins = ["tests.support.durations"]


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def stack() -> Iterator[RunningStack]:
    external = external_settings()
    if external is not None:
        yield RunningStack(settings=external, info=None, data_dir=external.data_path)
        return
    data_dir = stack_dir("session")
    running = start_stack(data_dir, env={"TRAILPAY_LOG_LEVEL": os.environ.get("TRAILPAY_LOG_LEVEL", "INFO")})
    try:
        yield running
    finally:
        stop_stack(running)
        keep_logs(data_dir, "session")
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def own_stack_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A data directory for a test's own stack, outside pytest's temp tree (see stack_dir)."""
    data_dir = stack_dir(request.node.name[:40])
    try:
        yield data_dir
    finally:
        keep_logs(data_dir, request.node.name[:40])
        shutil.rmtree(data_dir, ignore_errors=True)
