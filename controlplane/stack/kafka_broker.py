"""One Apache Kafka node (KRaft: broker and controller in one JVM) for the embedded stack.

It runs from the jars of ``trailpay kafka install``. Its log directory is
``DATA_DIR/kafka/data``: formatted (``kafka.tools.StorageTool format``) only on the first
start, so topics, records and committed offsets survive a restart of ``trailpay up``. Each
start takes two free loopback ports (clients, controller) and writes a fresh
``server.properties``; a KRaft node identifies its voters by id, so new ports are fine.
Settings are those of a one-node development cluster: replication factors 1, small
offsets and transaction topics, no initial rebalance delay (a joining worker gets its
partitions at once), and no auto-created topics (``trailpay up`` creates them).

Measured here (2 cores): ready ~5 s after the JVM starts, SIGTERM stop ~2 s,
~350 MB RSS idle with a 512 MiB heap.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import subprocess
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.structs import TopicPartition

from controlplane.stack import kafka_install
from controlplane.stack.processes import ChildProcess, free_port, port_open
from trailpay.domain.errors import ConfigurationError

log = logging.getLogger(__name__)

READINESS_TOPIC = "_trailpay.readiness"
NODE_ID = 1

LOG4J = """\
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.logger.state.change.logger=WARN
"""


def server_properties(log_dir: Path, port: int, controller_port: int) -> str:
    lines = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "log.segment.bytes": str(64 * 1024 * 1024),
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def _cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64, as Kafka's own ``random-uuid``
    makes it. Like Kafka, never one that starts with ``-``: the storage tool's argument parser
    would read it as an option (seen in CI: 1 start in 64 failed to format)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaBroker:
    """The embedded Apache Kafka node of one data directory."""

    kind = "apache-kafka"
    persistent = True

    def __init__(self, data_dir: Path, home: Path, *, heap: str = "512m") -> None:
        if not kafka_install.installed(home):
            raise ConfigurationError(
                f"Apache Kafka is not installed in {home}; run `trailpay kafka install` "
                "(needs java and mvn) or use --broker tansu")
        self.java = kafka_install.require_java()
        self.version = (home / kafka_install.MARKER).read_text().strip()
        self.home = home
        self.dir = data_dir / "kafka"
        self.log_dir = self.dir / "data"
        self.port = free_port()
        self.controller_port = free_port()
        self.heap = heap
        self.process = ChildProcess(
            "broker", self._java_argv("kafka.Kafka", str(self.dir / "server.properties")),
            log_path=data_dir / "logs" / "broker.log",
        )

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java_argv(self, main: str, *args: str, heap: str | None = None) -> list[str]:
        size = heap or self.heap
        return [
            self.java.path, f"-Xms{size}", f"-Xmx{size}", "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.dir / 'log4j.properties'}",
            "-cp", str(self.home / "libs" / "*"), main, *args,
        ]

    def _configure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "log4j.properties").write_text(LOG4J)
        (self.dir / "server.properties").write_text(
            server_properties(self.log_dir, self.port, self.controller_port))

    def _format_once(self) -> bool:
        """Format the log directory on first use; True when it was formatted now."""
        if (self.log_dir / "meta.properties").exists():
            return False
        result = subprocess.run(
            self._java_argv("kafka.tools.StorageTool", "format", f"--cluster-id={_cluster_id()}",
                            "-c", str(self.dir / "server.properties"), heap="128m"),
            capture_output=True, text=True, timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"formatting Kafka storage in {self.log_dir} failed:\n"
                               f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
        return True

    def start(self) -> None:
        self._configure()
        formatted = self._format_once()
        log.info("Apache Kafka %s log dir %s (%s)", self.version, self.log_dir,
                 "new" if formatted else "kept")
        self.process.start()

    def wait_ready(self, timeout: float = 90) -> None:
        """Until a record produced to the broker can be consumed back."""
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port):
            if not self.process.running():
                raise RuntimeError(f"Apache Kafka exited at start; its log:\n{self.process.tail(30)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"Apache Kafka did not listen in {timeout:.0f}s")
            time.sleep(0.2)
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self.process.running():
                raise RuntimeError(f"Apache Kafka exited at start; its log:\n{self.process.tail(30)}")
            try:
                asyncio.run(asyncio.wait_for(round_trip(self.bootstrap), 20))
                return
            except (KafkaError, OSError, TimeoutError) as exc:
                last = exc
                time.sleep(0.5)
        raise TimeoutError(f"Apache Kafka did not answer a produce/consume round trip in "
                           f"{timeout:.0f}s ({last!r})")

    def stop(self) -> None:
        self.process.stop(timeout=30)


async def round_trip(bootstrap: str) -> None:
    """Produce one record to the readiness topic and fetch it back."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if READINESS_TOPIC not in await admin.list_topics():
            try:
                await admin.create_topics([NewTopic(READINESS_TOPIC, num_partitions=1, replication_factor=1,
                                                   topic_configs={"retention.ms": "3600000"})])
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()
    token = uuid.uuid4().bytes
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait(READINESS_TOPIC, token)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(READINESS_TOPIC, 0)
        consumer.assign([tp])
        consumer.seek(tp, sent.offset)
        record = await consumer.getone()
        if record.value != token:
            raise KafkaError(f"read back {record.value!r}, not the record just produced")
    finally:
        await consumer.stop()
