"""Shared fixtures.

``stack``: one embedded stack per test session (``trailpay up`` in a subprocess, on Apache
Kafka when it can run here, see :func:`tests.stackutil.default_broker`), or the external
services named by ``TRAILPAY_KAFKA_BOOTSTRAP`` / ``TRAILPAY_DATABASE_URL`` /
``TRAILPAY_CLICKHOUSE_URL`` when those are set.

``broker_kind`` is a session-scoped parameter (``kafka``, ``tansu``) for tests that must
hold on both brokers; ``shared_broker`` is one bare broker of that kind per session (tests
sharing it use unique topics, keys and group ids). pytest runs every test of one kind
before the other's and stops the first broker before it starts the second.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.stackutil import (
    KAFKA,
    TANSU,
    RunningStack,
    external_settings,
    kafka_missing,
    keep_logs,
    own_broker,
    stack_dir,
    start_stack,
    stop_stack,
)
from tests.support.scheduling import FileOrSerialFolderScheduling
from trailpay.settings import Settings

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

#: Each test's duration into test-artifacts/durations.json.
pytest_plugins = ["tests.support.durations"]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> FileOrSerialFolderScheduling:
    """Under ``-n N``: a file at a time, the fault suite as one unit (tests/support/scheduling.py)."""
    return FileOrSerialFolderScheduling(config, log)


def _worker_suffix() -> str:
    """``-gw0`` under an xdist worker (two session stacks must not share a log folder), else ''."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return f"-{worker}" if worker else ""


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
        keep_logs(data_dir, f"session{_worker_suffix()}")
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


@pytest.fixture(scope="session", params=[KAFKA, TANSU])
def broker_kind(request: pytest.FixtureRequest) -> str:
    """``kafka`` or ``tansu``; the Apache Kafka runs skip, saying why, where it cannot run."""
    kind = str(request.param)
    if kind == KAFKA:
        missing = kafka_missing()
        if missing is not None:
            pytest.skip(f"Apache Kafka cannot run here: {missing}")
    return kind


@pytest.fixture(scope="session")
def shared_broker(broker_kind: str) -> Iterator[Settings]:
    """One bare broker of ``broker_kind`` for the session, with TrailPay's topics."""
    with own_broker(broker_kind, "broker") as settings:
        yield settings
