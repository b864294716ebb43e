"""Which broker the embedded stack runs, and one face for both kinds.

``--broker`` / ``TRAILPAY_EMBEDDED_BROKER``: ``kafka`` (Apache Kafka, persistent, needs
Java 17+ and ``trailpay kafka install``), ``tansu`` (in memory, from a pip wheel, starts
empty), or ``auto``: Apache Kafka when both are there, tansu otherwise. The choice comes
with the reason, which ``trailpay up`` prints.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from controlplane.stack import kafka_install
from controlplane.stack.embedded import broker_process, tansu_binary, wait_for_broker
from controlplane.stack.kafka_broker import KafkaBroker
from controlplane.stack.processes import free_port
from trailpay.domain.errors import ConfigurationError
from trailpay.settings import Settings

APACHE_KAFKA = "apache-kafka"
TANSU = "tansu"


class BrokerProcess(Protocol):
    """What the supervisor watches of a broker: one process, or a cluster's nodes as one."""

    @property
    def pid(self) -> int | None: ...

    def running(self) -> bool: ...

    def tail(self, lines: int = 20) -> str: ...


class EmbeddedBroker(Protocol):
    kind: str
    version: str
    persistent: bool

    @property
    def process(self) -> BrokerProcess: ...

    @property
    def bootstrap(self) -> str: ...

    def start(self) -> None: ...

    def wait_ready(self, timeout: float = 90) -> None: ...

    def stop(self) -> None: ...


class TansuBroker:
    """tansu 0.6 with its memory storage engine: every start is an empty broker."""

    kind = TANSU
    persistent = False

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.process = broker_process(data_dir, self.port)
        self.version = tansu_version()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process.start()

    def wait_ready(self, timeout: float = 30) -> None:
        wait_for_broker(self.port, timeout)

    def stop(self) -> None:
        self.process.stop()


def tansu_version() -> str:
    try:
        out = subprocess.run([str(tansu_binary()), "--version"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.split()[-1] if out.split() else "unknown"


@dataclass(frozen=True)
class BrokerChoice:
    kind: str
    reason: str
    kafka_home: Path | None = None


#: Why several stream workers are refused on tansu (README, Scaling): the same code passed
#: every scale-out run on Apache Kafka and lost records on tansu.
TANSU_WORKERS = (
    "several stream workers on tansu lose records at a rebalance: the scale-out test "
    "(tests/fault/test_scale_out.py, 3 workers, one killed) passed 12 of 12 quiet runs on "
    "Apache Kafka and 1 of 2 on tansu with the same code (71 bookings never bridged), so the loss is "
    "tansu's. Run one worker on tansu (--workers 1), or Apache Kafka (--broker kafka; needs "
    "Java 17+ and `trailpay kafka install`)")


def choose(settings: Settings, requested: str | None = None) -> BrokerChoice:
    """The broker to run for ``requested`` (default: the setting), and why; refuses tansu
    with more than one stream worker (:data:`TANSU_WORKERS`)."""
    choice = _choose(settings, requested)
    if choice.kind == TANSU and settings.workers > 1:
        raise ConfigurationError(f"{settings.workers} stream workers on tansu ({choice.reason}): "
                                 f"{TANSU_WORKERS}")
    return choice


def _choose(settings: Settings, requested: str | None) -> BrokerChoice:
    wanted = requested or settings.embedded_broker
    if wanted == "tansu":
        return BrokerChoice(TANSU, "asked for tansu")
    home = kafka_install.kafka_home(settings)
    java = kafka_install.find_java()
    missing: list[str] = []
    if java is None:
        missing.append("no `java` on PATH")
    elif java.major < kafka_install.MIN_JAVA:
        missing.append(f"java is {java.major}, Apache Kafka needs {kafka_install.MIN_JAVA}+")
    if not kafka_install.installed(home):
        missing.append(f"the jars are not installed in {home} (`trailpay kafka install`)")
    if wanted == "kafka":
        if missing:
            raise ConfigurationError("cannot run Apache Kafka: " + "; ".join(missing))
        return BrokerChoice(APACHE_KAFKA, "asked for Apache Kafka", home)
    if missing:
        return BrokerChoice(TANSU, "auto: " + "; ".join(missing))
    return BrokerChoice(APACHE_KAFKA, f"auto: Java {java.major if java else '?'} and the jars "
                        f"in {home} are there", home)


def make_broker(choice: BrokerChoice, settings: Settings) -> EmbeddedBroker:
    if choice.kind == APACHE_KAFKA:
        assert choice.kafka_home is not None
        return KafkaBroker(settings.data_path, choice.kafka_home, heap=settings.kafka_heap,
                           nodes=settings.kafka_nodes)
    if settings.kafka_nodes > 1:
        raise ConfigurationError(f"TRAILPAY_KAFKA_NODES={settings.kafka_nodes} needs Apache Kafka; "
                                 "tansu runs one node")
    return TansuBroker(settings.data_path)
