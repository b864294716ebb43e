"""The embedded stack's Apache Kafka: one KRaft node (broker and controller in one JVM), or a
cluster of three such nodes (``TRAILPAY_KAFKA_NODES=3``) that outlives the death of one.

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

A cluster's nodes are ``DATA_DIR/kafka/node-<id>`` (ids 1-3), formatted with one cluster id,
all three in the controller quorum; replication factors 3 and ``min.insync.replicas=2`` for
the internal topics and as the topic default, so a write acknowledged by ``acks=all`` is on
two nodes. Its ``process`` stands for the three: running while a majority (the quorum) is.
Measured here: the three formatted in parallel and ready ~11 s after start, 310-345 MB RSS
each idle (512 MiB heap each), stopped in ~6 s (~15 s when one node is already dead).

The installed version (``TRAILPAY_KAFKA_VERSION``) decides the logging: 3.x reads a log4j 1
``log4j.properties`` (``-Dlog4j.configuration``), 4.x a log4j 2 ``log4j2.properties``
(``-Dlog4j2.configurationFile``); both log to stdout, which is the node's ``broker.log``.
The KRaft settings and the format step (a static quorum in ``controller.quorum.voters``,
``format --cluster-id``) are the same on both.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import signal
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
#: ``DATA_DIR/kafka/<this>``: the Kafka version that formatted the log directories.
FORMATTED_BY = "formatted-by"

LOG4J = """\
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.logger.state.change.logger=WARN
"""
#: The same for log4j 2 (Kafka 4), in its properties format (needs no YAML parser). Without
#: ``shutdownHook=disable`` a SIGTERM stop ends the log with "Unable to register Log4j shutdown
#: hook because JVM is shutting down. Using SimpleLogger" and the last lines lose the pattern.
LOG4J2 = """\
status=warn
shutdownHook=disable
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=WARN
rootLogger.appenderRef.stdout.ref=STDOUT
logger.raft.name=kafka.server.KafkaRaftServer
logger.raft.level=INFO
logger.state.name=state.change.logger
logger.state.level=WARN
"""


def log_config(version: str) -> tuple[str, str, str]:
    """(file name, its text, the JVM option naming it) of the logging of Kafka ``version``."""
    if kafka_install.logging_backend(version) == "log4j2":
        return "log4j2.properties", LOG4J2, "-Dlog4j2.configurationFile="
    return "log4j.properties", LOG4J, "-Dlog4j.configuration=file:"


def server_properties(log_dir: Path, port: int, controller_port: int, *, node_id: int = NODE_ID,
                      voters: str | None = None, replicas: int = 1) -> str:
    """One node's settings; ``voters`` is the quorum (default: this node alone), ``replicas``
    the cluster's replication factor (its min.insync.replicas is 2 from 3 replicas on)."""
    min_isr = "2" if replicas >= 3 else "1"
    lines = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": voters or f"{node_id}@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        "default.replication.factor": str(replicas),
        "min.insync.replicas": min_isr,
        "unclean.leader.election.enable": "false",
        "offsets.topic.replication.factor": str(replicas),
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": min_isr,
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


class KafkaNode:
    """One JVM of the embedded Apache Kafka: its directory, ports and process."""

    def __init__(self, node_id: int, directory: Path, log_path: Path, name: str) -> None:
        self.node_id = node_id
        self.dir = directory
        self.log_dir = directory / "data"
        self.port = free_port()
        self.controller_port = free_port()
        self.name = name
        self.log_path = log_path

    @property
    def properties(self) -> Path:
        return self.dir / "server.properties"

    def cluster_id(self) -> str | None:
        """The cluster id its log directory was formatted with, or None when not formatted."""
        meta = self.log_dir / "meta.properties"
        if not meta.exists():
            return None
        for line in meta.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "cluster.id":
                return value.strip()
        return None


class NodeProcesses:
    """A cluster's node processes as the supervisor sees its broker: ``running`` while a
    majority of them (the KRaft quorum, and so the cluster) runs; ``pid`` a running one's."""

    def __init__(self, processes: list[ChildProcess]) -> None:
        self.nodes = processes

    @property
    def pid(self) -> int | None:
        running = [p.pid for p in self.nodes if p.running()]
        return running[0] if running else self.nodes[0].pid

    def running(self) -> bool:
        return 2 * sum(p.running() for p in self.nodes) > len(self.nodes)

    def tail(self, lines: int = 20) -> str:
        return "\n".join(f"--- {p.name}\n{p.tail(lines)}" for p in self.nodes)

    def start(self) -> None:
        for p in self.nodes:
            p.start()

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to every node at once (they shut down together), then SIGKILL to those
        still running ``timeout`` seconds later. With a node already dead the last one
        standing waits out its Raft shutdown without a quorum: ~15 s measured here."""
        for p in self.nodes:
            if p.proc is not None and p.running():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.nodes:
            p.stop(timeout=max(0.1, deadline - time.monotonic()))


class KafkaBroker:
    """The embedded Apache Kafka of one data directory: one node, or a cluster of three."""

    kind = "apache-kafka"
    persistent = True

    def __init__(self, data_dir: Path, home: Path, *, heap: str = "512m", nodes: int = 1) -> None:
        if not kafka_install.installed(home):
            raise ConfigurationError(
                f"Apache Kafka is not installed in {home}; run `trailpay kafka install` "
                "(needs java and mvn) or use --broker tansu")
        if nodes not in (1, 3):
            raise ConfigurationError(f"an embedded Kafka has 1 or 3 nodes, not {nodes}")
        self.java = kafka_install.require_java()
        self.version = (home / kafka_install.MARKER).read_text().strip()
        self.home = home
        self.dir = data_dir / "kafka"
        self.heap = heap
        self.log_file, self.log_text, log_option = log_config(self.version)
        self.log_option = log_option + str(self.dir / self.log_file)
        logs = data_dir / "logs"
        if nodes == 1:  # the layout of the one-node stack since it was first released
            self.nodes = [KafkaNode(NODE_ID, self.dir, logs / "broker.log", "broker")]
        else:
            self.nodes = [KafkaNode(i, self.dir / f"node-{i}", logs / f"broker-{i}.log", f"broker-{i}")
                          for i in range(1, nodes + 1)]
        self.voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        processes = [ChildProcess(n.name, self._java_argv("kafka.Kafka", str(n.properties)),
                                  log_path=n.log_path) for n in self.nodes]
        self.process: ChildProcess | NodeProcesses = (
            processes[0] if nodes == 1 else NodeProcesses(processes))
        self.node_processes = processes

    @property
    def node_count(self) -> int:
        return len(self.nodes)

    @property
    def log_dir(self) -> Path:
        return self.nodes[0].log_dir

    @property
    def port(self) -> int:
        return self.nodes[0].port

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def _java_argv(self, main: str, *args: str, heap: str | None = None) -> list[str]:
        size = heap or self.heap
        return [
            self.java.path, f"-Xms{size}", f"-Xmx{size}", "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true", self.log_option,
            "-cp", str(self.home / "libs" / "*"), main, *args,
        ]

    def _configure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / self.log_file).write_text(self.log_text)
        voters = self.voters if len(self.nodes) > 1 else None
        for n in self.nodes:
            n.dir.mkdir(parents=True, exist_ok=True)
            n.properties.write_text(server_properties(
                n.log_dir, n.port, n.controller_port, node_id=n.node_id, voters=voters,
                replicas=len(self.nodes)))

    def _format_once(self) -> bool:
        """Format the log directories not formatted yet, with the cluster's id (a new one
        when none is); True when any was formatted now."""
        known = {n.cluster_id() for n in self.nodes} - {None}
        if len(known) > 1:
            raise RuntimeError(f"the Kafka nodes in {self.dir} belong to different clusters: {known}")
        cluster_id = known.pop() if known else _cluster_id()
        fresh = [n for n in self.nodes if n.cluster_id() is None]
        formats = [subprocess.Popen(
            self._java_argv("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                            "-c", str(n.properties), heap="128m"),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for n in fresh]
        for n, proc in zip(fresh, formats, strict=True):
            try:
                out, _ = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"formatting Kafka storage in {n.log_dir} failed:\n{out[-4000:]}")
        if fresh:
            (self.dir / FORMATTED_BY).write_text(f"{self.version}\n")
        return bool(fresh)

    def _refuse_downgrade(self) -> None:
        """Kafka 3.9 cannot read log directories that 4.x formatted (seen: 3.9.2 on a 4.1.1
        directory exits with "No MetadataVersion with feature level 27"); say so first. 3.9
        directories run on 4.x (kept at metadata.version 3.9-IV0), so those may go back."""
        path = self.dir / FORMATTED_BY
        formatted = path.read_text().strip() if path.exists() else None
        if formatted and kafka_install.major(formatted) > kafka_install.major(self.version):
            raise ConfigurationError(
                f"{self.dir} was formatted by Apache Kafka {formatted}, which {self.version} "
                f"cannot read: set TRAILPAY_KAFKA_VERSION={formatted}, or remove {self.dir} "
                "(its topics and records go with it)")

    def start(self) -> None:
        self._refuse_downgrade()
        self._configure()
        formatted = self._format_once()
        log.info("Apache Kafka %s, %d node(s), log dirs under %s (%s)", self.version, len(self.nodes),
                 self.dir, "new" if formatted else "kept")
        for p in self.node_processes:
            p.start()

    def _exited(self) -> ChildProcess | None:
        return next((p for p in self.node_processes if not p.running()), None)

    def wait_ready(self, timeout: float = 90) -> None:
        """Until every node listens and a record produced to the cluster can be consumed back."""
        deadline = time.monotonic() + timeout
        while not all(port_open("127.0.0.1", n.port) for n in self.nodes):
            if (dead := self._exited()) is not None:
                raise RuntimeError(f"Apache Kafka ({dead.name}) exited at start; its log:\n{dead.tail(30)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"Apache Kafka did not listen in {timeout:.0f}s")
            time.sleep(0.2)
        last: Exception | None = None
        while time.monotonic() < deadline:
            if (dead := self._exited()) is not None:
                raise RuntimeError(f"Apache Kafka ({dead.name}) exited at start; its log:\n{dead.tail(30)}")
            try:
                asyncio.run(asyncio.wait_for(round_trip(self.bootstrap, len(self.nodes)), 20))
                return
            except (KafkaError, OSError, TimeoutError) as exc:
                last = exc
                time.sleep(0.5)
        raise TimeoutError(f"Apache Kafka did not answer a produce/consume round trip in "
                           f"{timeout:.0f}s ({last!r})")

    def stop(self) -> None:
        self.process.stop(timeout=30)


async def round_trip(bootstrap: str, replicas: int = 1) -> None:
    """Produce one record to the readiness topic (on every node of a cluster) and fetch it back."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if READINESS_TOPIC not in await admin.list_topics():
            try:
                await admin.create_topics([NewTopic(
                    READINESS_TOPIC, num_partitions=1, replication_factor=replicas,
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
