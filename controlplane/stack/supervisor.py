"""``trailpay up``: start, supervise and stop the whole embedded stack together.

Order: broker and PostgreSQL, then topics and migrations, then the TrailPay services
(each a ``trailpay <service>`` child process). A service that dies is restarted with
backoff; if the broker or PostgreSQL dies the stack stops (their state is the point).
Ctrl-C or SIGTERM stops everything in reverse order and leaves no process behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import create_async_engine

from controlplane.ops import restore
from controlplane.ops.reconcile_schedule import ReconcileSchedule, start_schedule
from controlplane.stack.brokers import BrokerChoice, EmbeddedBroker, choose, make_broker
from controlplane.stack.embedded import EmbeddedPostgres
from controlplane.stack.processes import ChildProcess, free_port, port_open, wait_started
from controlplane.stack.state import STACK_FILE, BrokerInfo, StackInfo
from trailpay.kafka import create_topics
from trailpay.lag import RESTARTS_FILE, record_restart
from trailpay.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class ServiceSpec:
    """A TrailPay service run as ``trailpay <args>`` with a health URL to wait for."""

    name: str
    args: list[str]
    health_path: str | None = "/healthz"
    port_setting: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: Give the service ``--metrics-port <free port>`` (services without an HTTP server).
    metrics: bool = False


def pick_port(requested: int) -> int:
    if requested == 0:
        return free_port()
    if port_open("127.0.0.1", requested):
        raise RuntimeError(
            f"port {requested} is already in use; stop what holds it or pass --port 0 "
            "(or set the TRAILPAY_*_PORT variable) to pick a free one"
        )
    return requested


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


class Stack:
    """The embedded stack of one data directory."""

    def __init__(self, settings: Settings, *, services: list[ServiceSpec] | None = None,
                 broker: BrokerChoice | None = None) -> None:
        self.settings = settings
        self.data_dir = settings.data_path
        self.choice = broker or choose(settings)
        self.broker: EmbeddedBroker | None = None
        self.postgres: EmbeddedPostgres | None = None
        self.services: dict[str, ChildProcess] = {}
        self.specs = services if services is not None else default_services(settings.workers)
        self.ports: dict[str, int] = {}
        self.metrics_ports: dict[str, int] = {}
        self.info: StackInfo | None = None
        #: What the start re-published from the archive (None: the broker had the history).
        self.restored: restore.RestoreReport | None = None
        self._stopping = threading.Event()
        self.reconciler: ReconcileSchedule | None = None

    # ------------------------------------------------------------------ start
    def start(self) -> StackInfo:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / STACK_FILE).unlink(missing_ok=True)
        (self.data_dir / RESTARTS_FILE).unlink(missing_ok=True)  # a new stack starts clean
        pg_port = free_port()
        self.broker = make_broker(self.choice, self.settings)
        self.broker.start()
        self.postgres = EmbeddedPostgres(self.data_dir, pg_port)
        created = self.postgres.init()
        log.info("PostgreSQL data %s (%s)", self.postgres.pgdata, "new" if created else "kept")
        self.postgres.start()
        self.broker.wait_ready()

        self.ports = {
            "api": pick_port(self.settings.api_port),
            "dashboard": pick_port(self.settings.dashboard_port),
            "sandbox": pick_port(self.settings.sandbox_port),
        }
        bootstrap = self.broker.bootstrap
        child_settings = self.settings.model_copy(
            update={
                "kafka_bootstrap": bootstrap,
                "database_url": self.postgres.url,
                "api_port": self.ports["api"],
                "dashboard_port": self.ports["dashboard"],
                "sandbox_port": self.ports["sandbox"],
                "broker_kind": self.broker.kind,
            }
        )
        asyncio.run(create_topics(child_settings))
        self._migrate(child_settings)
        if self.settings.restore_on_start:
            self.restored = asyncio.run(self._restore_if_needed(child_settings))

        self.info = StackInfo(
            data_dir=str(self.data_dir),
            started_at=datetime.now(UTC),
            supervisor_pid=os.getpid(),
            kafka_bootstrap=bootstrap,
            database_url=self.postgres.url,
            clickhouse_dsn=child_settings.clickhouse_dsn,
            api_url=f"http://127.0.0.1:{self.ports['api']}",
            dashboard_url=f"http://127.0.0.1:{self.ports['dashboard']}",
            sandbox_url=f"http://127.0.0.1:{self.ports['sandbox']}",
            partitions=child_settings.partitions,
            broker=BrokerInfo(kind=self.broker.kind, version=self.broker.version,
                              persistent=self.broker.persistent,
                              nodes=getattr(self.broker, "node_count", 1)),
            broker_persistent=self.broker.persistent,
        )
        self.metrics_ports = {spec.name: free_port() for spec in self.specs if spec.metrics}
        self.info.metrics_urls = self._metrics_urls()
        env = self._child_env(child_settings)
        for spec in self.specs:
            self._start_service(spec, env)
        for spec in self.specs:
            self._wait_service(spec)
        if self.restored is not None and not asyncio.run(restore.wait_absorbed(child_settings)):
            log.warning("The stream worker has not read every restored state change within 120 s; "
                        "`trailpay lag` shows how far it is")
        self.reconciler = start_schedule(child_settings)  # TRAILPAY_RECONCILE_INTERVAL_S
        if self.reconciler is not None and self.reconciler.metrics_url:
            self.info.metrics_urls["reconcile"] = self.reconciler.metrics_url
        self._record_pids()
        return self.info

    async def _restore_if_needed(self, settings: Settings) -> restore.RestoreReport | None:
        """Re-publish the archive when the broker lost the payments' history (module
        :mod:`controlplane.ops.restore`); before the services start, so the worker reads it
        first thing."""
        engine = create_async_engine(settings.sqlalchemy_async_url(), pool_size=2)
        try:
            checked = await restore.check(settings, engine)
            if not checked.needed:
                log.info("Nothing to restore: %s", checked.reason())
                return None
            log.warning("Restoring the pipeline from the PostgreSQL archive: %s", checked.reason())
            tenth: dict[str, int] = {}

            def advance(topic: str, done: int, total: int) -> None:
                step = 10 * done // max(total, 1)
                if step > tenth.get(topic, -1):
                    tenth[topic] = step
                    log.info("restore %s: %d of %d", topic, done, total)

            report = await restore.restore(settings, engine, advance=advance)
            log.warning("%s", report.line())
            return report
        finally:
            await engine.dispose()

    def _migrate(self, settings: Settings) -> None:
        try:
            from sinks.postgres.migrations import upgrade
        except ImportError:
            log.info("no PostgreSQL migrations installed yet")
            return
        upgrade(settings)

    def _child_env(self, settings: Settings) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRAILPAY_")}
        env.update({k: v for k, v in os.environ.items() if k.startswith("TRAILPAY_")})
        env.update(
            {
                "TRAILPAY_DATA_DIR": str(self.data_dir),
                "TRAILPAY_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
                "TRAILPAY_DATABASE_URL": settings.database_url or "",
                "TRAILPAY_API_PORT": str(settings.api_port),
                "TRAILPAY_DASHBOARD_PORT": str(settings.dashboard_port),
                "TRAILPAY_SANDBOX_PORT": str(settings.sandbox_port),
                "TRAILPAY_PARTITIONS": str(settings.partitions),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if settings.broker_kind:
            env["TRAILPAY_BROKER_KIND"] = settings.broker_kind
        sandbox = f"http://127.0.0.1:{settings.sandbox_port}"
        env.setdefault("TRAILPAY_STRIPE_API_BASE", f"{sandbox}/stripe")
        env.setdefault("TRAILPAY_MPESA_BASE_URL", f"{sandbox}/mpesa")
        env.setdefault("TRAILPAY_AIRTEL_BASE_URL", f"{sandbox}/airtel")
        return env

    def _metrics_urls(self) -> dict[str, str]:
        """Where each service's Prometheus metrics are (HTTP services serve their own)."""
        urls = {name: f"http://127.0.0.1:{port}/metrics" for name, port in self.metrics_ports.items()}
        for spec in self.specs:
            if spec.name in ("ingress", "analytics") and spec.port_setting in self.ports:
                urls[spec.name] = f"http://127.0.0.1:{self.ports[spec.port_setting]}/metrics"
        return urls

    def _service_url(self, spec: ServiceSpec) -> str | None:
        if spec.health_path is None or spec.port_setting is None:
            return None
        return f"http://127.0.0.1:{self.ports[spec.port_setting]}{spec.health_path}"

    def _start_service(self, spec: ServiceSpec, env: dict[str, str]) -> None:
        extra = ["--metrics-port", str(self.metrics_ports[spec.name])] if spec.metrics else []
        child = ChildProcess(
            spec.name,
            [sys.executable, "-m", "controlplane.cli.main", *spec.args, *extra],
            log_path=self.data_dir / "logs" / f"{spec.name}.log",
            env={**env, **spec.env},
        )
        child.start()
        self.services[spec.name] = child

    def _wait_service(self, spec: ServiceSpec, timeout: float = 90) -> None:
        url = self._service_url(spec)
        wait_started(self.services[spec.name], lambda: url is None or _http_ok(url), timeout)

    def _record_pids(self) -> None:
        assert self.info is not None
        pids: dict[str, int | None] = {
            "broker": self.broker.process.pid if self.broker else None,
            "postgres": self.postgres.process.pid if self.postgres else None,
        }
        pids.update({name: child.pid for name, child in self.services.items()})
        self.info.processes = pids
        self.info.write(self.data_dir)

    # ------------------------------------------------------------------ supervise
    def supervise(self, poll: float = 1.0) -> None:
        """Block until asked to stop; restart crashed services with backoff."""
        backoff: dict[str, float] = {}
        while not self._stopping.wait(poll):
            if self.broker and not self.broker.process.running():
                log.error("the broker exited; stopping the stack. Its log:\n%s",
                          self.broker.process.tail())
                return
            if self.postgres and not self.postgres.process.running():
                log.error("PostgreSQL exited; stopping the stack. Its log:\n%s",
                          self.postgres.process.tail())
                return
            for spec in self.specs:
                child = self.services[spec.name]
                if child.running():
                    continue
                now = time.monotonic()
                if now < backoff.get(spec.name, 0):
                    continue
                child.restarts += 1
                record_restart(self.data_dir, spec.name)  # /readyz and `trailpay status` read it
                delay = min(30.0, 2.0 ** min(child.restarts, 5))
                backoff[spec.name] = now + delay
                log.warning("%s exited with %s; restarting (restart %d). Last lines:\n%s",
                            spec.name, child.exit_code(), child.restarts, child.tail(10))
                child.start()
                self._record_pids()

    def request_stop(self) -> None:
        self._stopping.set()

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        self._stopping.set()
        if self.reconciler is not None:
            self.reconciler.stop()
        for name in reversed(list(self.services)):
            self.services[name].stop()
        if self.postgres:
            self.postgres.stop()
        if self.broker:
            self.broker.stop()
        (self.data_dir / STACK_FILE).unlink(missing_ok=True)


def worker_names(count: int) -> list[str]:
    """``worker``, then ``worker-2`` ... ``worker-N``: one consumer group, N members."""
    return ["worker", *(f"worker-{i}" for i in range(2, count + 1))]


def default_services(workers: int = 1) -> list[ServiceSpec]:
    """The TrailPay services ``trailpay up`` runs; each issue plugs its own in here."""
    return [
        ServiceSpec("sandbox", ["sandbox"], port_setting="sandbox"),
        ServiceSpec("analytics", ["analytics"], port_setting="dashboard"),
        ServiceSpec("sink-postgres", ["sink-postgres"], health_path=None, metrics=True),
        ServiceSpec("ingress", ["ingress"], port_setting="api"),
        *(ServiceSpec(name, ["worker"], health_path=None, metrics=True)
          for name in worker_names(workers)),
        # Outgoing webhooks (issue 17): a process of its own, so a slow endpoint never holds
        # up the worker.
        ServiceSpec("webhooks", ["webhooks", "deliver"], health_path=None, metrics=True),
    ]


def install_signal_handlers(stack: Stack) -> None:
    def handler(signum: int, _frame: object) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stack.request_stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def data_dir_of(path: Path) -> Path:
    return path.resolve()
