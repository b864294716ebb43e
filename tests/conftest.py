"""Shared fixtures.

``stack``: one embedded stack per test session (``trailpay up`` in a subprocess), or the
external services named by ``TRAILPAY_KAFKA_BOOTSTRAP`` / ``TRAILPAY_DATABASE_URL`` /
``TRAILPAY_CLICKHOUSE_URL`` when those are set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stackutil import RunningStack, external_settings, start_stack, stop_stack

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    external = external_settings()
    if external is not None:
        yield RunningStack(settings=external, info=None, data_dir=external.data_path)
        return
    data_dir = tmp_path_factory.mktemp("stack")
    running = start_stack(data_dir, env={"TRAILPAY_LOG_LEVEL": os.environ.get("TRAILPAY_LOG_LEVEL", "INFO")})
    try:
        yield running
    finally:
        stop_stack(running)
