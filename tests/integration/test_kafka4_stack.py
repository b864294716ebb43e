"""The embedded stack on Apache Kafka 4 (TRAILPAY_KAFKA_VERSION=4.1.1, issue 14): `trailpay up`
runs the 4.x broker (log4j 2), `trailpay status` shows it healthy with its version and node
count, and one M-Pesa payment goes through Faust and aiokafka to ``succeeded``.

The jars are installed here (a no-op once they are in ~/.cache/trailpay/kafka/4.1.1; ~3 s when
Maven has them, ~10 s from an empty ~/.m2); without java or mvn, or when Maven cannot fetch
them, the test skips saying why. Measured here: ~30 s in all.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from controlplane.stack import kafka_install
from tests.integration.ingressutil import make_user
from tests.stackutil import KAFKA, keep_logs, stack_dir, start_stack, stop_stack
from tests.support.waits import wait_for_sync
from trailpay.domain.errors import ConfigurationError

pytestmark = pytest.mark.integration

VERSION = "4.1.1"
TERMINAL = {"succeeded", "failed", "cancelled", "expired", "refunded", "partially_refunded"}


@pytest.fixture(scope="module")
def kafka4_home() -> Path:
    if not (shutil.which("java") and shutil.which("mvn")):
        pytest.skip(f"Apache Kafka {VERSION} cannot be installed here: needs java and mvn")
    home = kafka_install.default_home(VERSION)
    try:
        kafka_install.install(home, version=VERSION, echo=lambda _: None)
    except ConfigurationError as exc:
        pytest.skip(f"Apache Kafka {VERSION} cannot be installed here: {exc}")
    return home


def test_stack_runs_a_payment_on_kafka_4(kafka4_home: Path) -> None:
    data_dir = stack_dir("kafka4")
    running = start_stack(data_dir, broker=KAFKA, env={
        "TRAILPAY_KAFKA_VERSION": VERSION, "TRAILPAY_KAFKA_HOME": str(kafka4_home)})
    try:
        broker = json.loads((data_dir / "stack.json").read_text())["broker"]
        assert broker == {"kind": "apache-kafka", "version": "4.1.1", "persistent": True, "nodes": 1}
        config = (data_dir / "kafka" / "log4j2.properties").read_text()
        assert "rootLogger.level=WARN" in config.splitlines()
        assert not (data_dir / "kafka" / "log4j.properties").exists()

        status = subprocess.run([sys.executable, "-m", "controlplane.cli.main", "status",
                                 "--data-dir", str(data_dir)], capture_output=True, text=True,
                                timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        line = status.stdout.splitlines()[0]
        assert line.startswith("broker"), status.stdout
        assert "apache-kafka 4.1.1, 1 node, persistent, " in line, line

        user = asyncio.run(make_user(running.settings))
        with httpx.Client(base_url=running.api_url, timeout=30, headers=user.headers) as api:
            resp = api.post("/api/payments/create/", json={
                "amount": "150", "currency": "KES", "payment_method": "mobile_money",
                "provider": "mpesa", "phone_number": "+254700000000", "description": "Kafka 4"})
            assert resp.status_code == 201, resp.text
            ref = resp.json()["reference"]

            def settled() -> str | None:
                got = api.get(f"/api/payments/{ref}/status/")
                status = got.json()["status"] if got.status_code == 200 else None
                return status if status in TERMINAL else None

            assert wait_for_sync(settled, 90, f"{ref} settled", interval=0.5) == "succeeded"
        log = (data_dir / "logs" / "broker.log").read_text()
        assert "Kafka Server started" in log
        assert "metadata.version 4.1-IV1" in log
    finally:
        stop_stack(running)
        keep_logs(data_dir, "kafka4")
        shutil.rmtree(data_dir, ignore_errors=True)
