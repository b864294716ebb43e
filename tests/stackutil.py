"""Test helpers for a running embedded stack (or external services named by TRAILPAY_*)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controlplane.stack import kafka_install
from controlplane.stack.brokers import BrokerChoice, EmbeddedBroker, choose, make_broker
from controlplane.stack.state import StackInfo
from tests.support.processes import start_stack_process, stop_tree
from tests.support.waits import wait_for_sync
from trailpay.settings import Settings, load_settings

#: The broker kinds tests run on, as `trailpay up --broker` names them.
KAFKA, TANSU = "kafka", "tansu"
KIND = {KAFKA: "apache-kafka", TANSU: "tansu"}


def kafka_missing() -> str | None:
    """Why Apache Kafka cannot run here (no Java 17+, jars not installed), or None."""
    try:
        choose(load_settings(kafka_home=os.environ.get("TRAILPAY_KAFKA_HOME") or None), KAFKA)
    except Exception as exc:
        return str(exc)
    return None


def default_broker() -> str:
    """The broker of the session stack and the integration and fault suites: Apache Kafka
    when it can run here, else tansu; ``TRAILPAY_TEST_BROKER=kafka|tansu`` forces one."""
    forced = os.environ.get("TRAILPAY_TEST_BROKER")
    if forced:
        return forced
    return KAFKA if kafka_missing() is None else TANSU


def start_broker(kind: str, data_dir: Path, *, start: bool = True) -> EmbeddedBroker:
    """An embedded broker of ``kind`` of a test's own (its ``bootstrap`` is known before
    ``start``); started and ready unless ``start`` is off."""
    home = os.environ.get("TRAILPAY_KAFKA_HOME") or None
    settings = load_settings(data_dir=data_dir, kafka_home=home)
    if kind == KAFKA:
        choice = BrokerChoice("apache-kafka", "test", kafka_install.kafka_home(settings))
    else:
        choice = BrokerChoice("tansu", "test")
    broker = make_broker(choice, settings)
    if start:
        broker.start()
        try:
            broker.wait_ready()
        except BaseException:
            broker.stop()
            raise
    return broker


def broker_settings(broker: EmbeddedBroker, data_dir: Path, **overrides: Any) -> Settings:
    return load_settings(kafka_bootstrap=broker.bootstrap, broker_kind=broker.kind,
                         data_dir=data_dir, **overrides)


@contextlib.contextmanager
def own_broker(kind: str, name: str) -> Iterator[Settings]:
    """A bare broker of ``kind`` with TrailPay's topics; its logs are kept in test-artifacts."""
    import asyncio

    from trailpay.kafka import create_topics

    data_dir = stack_dir(f"{name}-{kind}")
    broker = start_broker(kind, data_dir)
    try:
        settings = broker_settings(broker, data_dir)
        asyncio.run(create_topics(settings))
        yield settings
    finally:
        broker.stop()
        keep_logs(data_dir, f"{name}-{kind}")
        shutil.rmtree(data_dir, ignore_errors=True)


@dataclass
class RunningStack:
    """A stack started by `trailpay up` in a subprocess (or external services)."""

    settings: Settings
    info: StackInfo | None
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        assert self.info and self.info.api_url
        return self.info.api_url

    @property
    def dashboard_url(self) -> str:
        assert self.info and self.info.dashboard_url
        return self.info.dashboard_url

    @property
    def sandbox_url(self) -> str:
        assert self.info and self.info.sandbox_url
        return self.info.sandbox_url

    def pid(self, service: str) -> int | None:
        info = StackInfo.read(self.data_dir)
        return info.processes.get(service)

    def refresh(self) -> StackInfo:
        self.info = StackInfo.read(self.data_dir)
        return self.info

    def kill_service(self, service: str) -> int:
        """SIGKILL a service's process group; the supervisor restarts it."""
        pid = self.pid(service)
        assert pid, f"no pid for {service}"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        return pid

    def wait_restarted(self, service: str, old_pid: int, timeout: float = 60) -> int:
        def restarted() -> int | None:
            pid = self.pid(service)
            return pid if pid and pid != old_pid else None

        return wait_for_sync(restarted, timeout, f"{service} restarted")


ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def stack_dir(name: str) -> Path:
    """A fresh stack data directory outside pytest's basetemp.

    The embedded PostgreSQL runs as another user when we are root and needs to traverse
    the path to its data; pytest resets ``/tmp/pytest-of-<user>`` to mode 0700 whenever a
    session starts, which would pull the data directory from under a running server.
    """
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    return Path(tempfile.mkdtemp(prefix=f"trailpay-{safe}-", dir="/tmp"))


def keep_logs(data_dir: Path, name: str) -> None:
    """Copy a stack's service logs into test-artifacts/ (read by the log-masking checks
    and by people after a failure)."""
    logs = data_dir / "logs"
    if logs.is_dir():
        target = ARTIFACTS / "logs" / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(logs, target, dirs_exist_ok=True)


def start_stack(data_dir: Path, env: dict[str, str] | None = None, timeout: float = 180, *,
                broker: str | None = None) -> RunningStack:
    """`trailpay up --broker <broker>` (default: :func:`default_broker`) in a subprocess."""
    started = start_stack_process(data_dir, env, timeout, args=("--broker", broker or default_broker()))
    return RunningStack(settings=started.settings, info=started.info, data_dir=data_dir, proc=started.proc)


def stop_stack(stack: RunningStack, timeout: float = 60) -> None:
    if stack.proc is not None:
        stop_tree(stack.proc, timeout)


def external_settings() -> Settings | None:
    """Settings for external services when TRAILPAY_KAFKA_BOOTSTRAP and _DATABASE_URL are set."""
    if os.environ.get("TRAILPAY_KAFKA_BOOTSTRAP") and os.environ.get("TRAILPAY_DATABASE_URL"):
        return load_settings()
    return None


def docker_available() -> tuple[bool, str]:
    # Without DOCKER_HOST the client dials /var/run/docker.sock; when that file is missing it
    # leaves the socket it made unclosed (a ResourceWarning, an error under our pytest config).
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False, "no Docker engine here (no DOCKER_HOST, no /var/run/docker.sock); testcontainers tests skipped"
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env()
        try:
            client.ping()
        finally:
            client.close()
        return True, ""
    except Exception as exc:
        return False, f"no Docker engine answers here ({type(exc).__name__}); testcontainers tests skipped"


@contextlib.contextmanager
def stack_on(kind: str, session: RunningStack, name: str) -> Iterator[RunningStack]:
    """The session stack when it runs on ``kind``; else a stack of its own on ``kind`` (for
    the modules that must hold on both brokers). External services count as Apache Kafka."""
    import pytest

    session_kind = KAFKA if session.proc is None else default_broker()
    if kind == session_kind:
        yield session
        return
    if kind == KAFKA and kafka_missing() is not None:
        pytest.skip(f"Apache Kafka cannot run here: {kafka_missing()}")
    data_dir = stack_dir(f"{name}-{kind}")
    running = start_stack(data_dir, env={"TRAILPAY_LOG_LEVEL": "INFO"}, broker=kind)
    try:
        yield running
    finally:
        stop_stack(running)
        keep_logs(data_dir, f"{name}-{kind}")
        shutil.rmtree(data_dir, ignore_errors=True)
