"""The embedded stack starts, serves broker / PostgreSQL / chDB, and stops leaving nothing,
on each broker (`trailpay up --broker kafka|tansu`); on Apache Kafka the records survive a
restart."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
import uuid

import psutil
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.stackutil import KAFKA, start_stack, stop_stack
from tests.support.processes import clean_env, descendants
from trailpay import topics

pytestmark = pytest.mark.integration


async def _read_hellos(bootstrap: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(topics.NOTIFICATIONS, bootstrap_servers=bootstrap,
                                group_id=f"t-{uuid.uuid4()}", auto_offset_reset="earliest")
    await consumer.start()
    got: list[bytes] = []
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while len(got) < 5 and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                got.extend(r.value for r in records if r.value.startswith(b"hello-"))
    finally:
        await consumer.stop()
    return got


async def _produce_consume(bootstrap: str) -> list[bytes]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    payloads = [f"hello-{i}".encode() for i in range(5)]
    try:
        for p in payloads:
            await producer.send_and_wait(topics.NOTIFICATIONS, p, key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topics.NOTIFICATIONS, bootstrap_servers=bootstrap,
                                group_id=f"t-{uuid.uuid4()}", auto_offset_reset="earliest")
    await consumer.start()
    got: list[bytes] = []
    try:
        while len(got) < len(payloads):
            batch = await consumer.getmany(timeout_ms=2000)
            for records in batch.values():
                got.extend(r.value for r in records if r.value in payloads)
    finally:
        await consumer.stop()
    return got


def test_stack_up_status_and_clean_stop(own_stack_dir, broker_kind):
    data_dir = own_stack_dir
    running = start_stack(data_dir, broker=broker_kind)
    kind = "apache-kafka" if broker_kind == KAFKA else "tansu"
    try:
        info = running.info
        assert info is not None
        # broker: produce and consume
        got = asyncio.run(_produce_consume(info.kafka_bootstrap))
        assert sorted(got) == sorted(f"hello-{i}".encode() for i in range(5))
        # PostgreSQL: a real query, and data that must survive a restart
        url = info.database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url, autocommit=True) as conn:
            version = conn.execute("show server_version").fetchone()[0]
            assert version.startswith("18")
            conn.execute("create table if not exists keepme (v int)")
            conn.execute("insert into keepme values (42)")
        # chDB behind the analytics service
        with urllib.request.urlopen(f"{info.dashboard_url}/healthz", timeout=10) as resp:
            assert json.loads(resp.read()) == {"clickhouse": True}
        # trailpay status: all healthy, exit 0
        status = subprocess.run([sys.executable, "-m", "controlplane.cli.main", "status",
                                 "--data-dir", str(data_dir), "--json"],
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        report = json.loads(status.stdout)
        assert {"broker", "postgres", "clickhouse"} <= set(report)
        assert all(part["healthy"] for part in report.values())
        assert report["broker"]["kind"] == kind
        assert report["broker"]["persistent"] is (broker_kind == KAFKA)
        stack_json = json.loads((data_dir / "stack.json").read_text())
        assert stack_json["broker"]["kind"] == kind
        assert stack_json["broker"]["version"] == ("3.9.2" if broker_kind == KAFKA else "0.6.0")
        text = subprocess.run([sys.executable, "-m", "controlplane.cli.main", "status",
                               "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=60)
        assert kind in text.stdout.splitlines()[0], text.stdout
        children = descendants(running.proc.pid)
        assert len(children) >= 3
    finally:
        stop_stack(running)
    # nothing left behind
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, child
    assert not (data_dir / "stack.json").exists()

    # a second `up` on the same directory keeps PostgreSQL data; Apache Kafka keeps its
    # records too (tansu starts empty)
    again = start_stack(data_dir, broker=broker_kind)
    try:
        assert again.info is not None
        url = again.info.database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url) as conn:
            assert conn.execute("select v from keepme").fetchall() == [(42,)]
        if broker_kind == KAFKA:
            kept = asyncio.run(_read_hellos(again.info.kafka_bootstrap))
            assert sorted(kept) == [f"hello-{i}".encode() for i in range(5)]
    finally:
        stop_stack(again)


def test_status_without_stack_says_what_to_do(tmp_path):
    result = subprocess.run([sys.executable, "-m", "controlplane.cli.main", "status", "--data-dir",
                             str(tmp_path / "none")], capture_output=True, text=True, timeout=60,
                            env=clean_env())
    assert result.returncode == 2
    assert "trailpay up" in result.stderr
