"""TRAILPAY_KAFKA_VERSION (the Kafka version installed and run, 3.x or 4.x) and the broker
line of `trailpay status` / `stack.json` (kind, version, node count, persistence)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from controlplane.stack import kafka_install
from controlplane.stack.kafka_broker import KafkaBroker, log_config
from controlplane.stack.state import BrokerInfo, StackInfo
from trailpay.domain.errors import ConfigurationError
from trailpay.settings import load_settings

HAS_JAVA = shutil.which("java") is not None


def _home(tmp_path: Path, version: str) -> Path:
    home = tmp_path / f"kafka-{version}"
    home.mkdir()
    (home / kafka_install.MARKER).write_text(f"{version}\n")
    return home


def test_unset_version_is_the_pom_pin() -> None:
    settings = load_settings(kafka_version=None)
    assert kafka_install.selected_version(settings) == "3.9.2"
    assert kafka_install.kafka_home(settings) == Path.home() / ".cache/trailpay/kafka/3.9.2"


def test_version_setting_picks_its_own_cache_dir() -> None:
    settings = load_settings(kafka_version="4.1.1")
    assert kafka_install.selected_version(settings) == "4.1.1"
    assert kafka_install.kafka_home(settings) == Path.home() / ".cache/trailpay/kafka/4.1.1"


def test_kafka_home_still_wins(tmp_path: Path) -> None:
    settings = load_settings(kafka_version="4.1.1", kafka_home=tmp_path / "mine")
    assert kafka_install.kafka_home(settings) == tmp_path / "mine"


@pytest.mark.parametrize("bad", ["5.0.0", "4.1", "latest", "4.1.1-rc1"])
def test_version_setting_refuses_what_is_not_a_kafka_3_or_4_release(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="TRAILPAY_KAFKA_VERSION"):
        load_settings(kafka_version=bad)


def test_pinned_version_runs_maven_exactly_as_before(tmp_path: Path) -> None:
    argv = kafka_install.maven_argv("mvn", "3.9.2", tmp_path / "libs")
    assert argv[1:] == ["-B", "-f", str(kafka_install.POM), "dependency:copy-dependencies",
                        "-DincludeScope=runtime", f"-DoutputDirectory={tmp_path / 'libs'}"]


def test_kafka_4_gets_its_version_and_log4j2() -> None:
    argv = kafka_install.maven_argv("mvn", "4.1.1", Path("/x/libs"))
    assert argv[-2:] == ["-Dkafka.version=4.1.1", "-Dkafka.logging=log4j2"]
    argv = kafka_install.maven_argv("mvn", "3.9.1", Path("/x/libs"))
    assert argv[-2:] == ["-DoutputDirectory=/x/libs", "-Dkafka.version=3.9.1"]


def test_installed_compares_the_version(tmp_path: Path) -> None:
    home = _home(tmp_path, "3.9.2")
    assert kafka_install.installed(home)
    assert kafka_install.installed(home, "3.9.2")
    assert not kafka_install.installed(home, "4.1.1")
    assert kafka_install.installed_version(home) == "3.9.2"
    assert kafka_install.installed_version(tmp_path / "nothing") is None


def test_log_config_by_version() -> None:
    name, text, option = log_config("3.9.2")
    assert (name, option) == ("log4j.properties", "-Dlog4j.configuration=file:")
    assert "log4j.appender.stdout=org.apache.log4j.ConsoleAppender" in text
    name, text, option = log_config("4.1.1")
    assert (name, option) == ("log4j2.properties", "-Dlog4j2.configurationFile=")
    assert "appender.stdout.type=Console" in text.splitlines()
    assert "logger.raft.name=kafka.server.KafkaRaftServer" in text.splitlines()


@pytest.mark.skipif(not HAS_JAVA, reason="KafkaBroker checks for java 17+")
@pytest.mark.parametrize(("version", "option", "file"), [
    ("3.9.2", "-Dlog4j.configuration=file:", "log4j.properties"),
    ("4.1.1", "-Dlog4j2.configurationFile=", "log4j2.properties"),
])
def test_broker_jvm_names_the_log_config_of_its_version(tmp_path: Path, version: str, option: str,
                                                        file: str) -> None:
    broker = KafkaBroker(tmp_path / "data", _home(tmp_path, version))
    argv = broker._java_argv("kafka.Kafka", "server.properties")
    expected = f"{option}{tmp_path / 'data' / 'kafka' / file}"
    assert expected in argv
    assert not any(a.startswith("-Dlog4j") and a != expected for a in argv)
    assert broker.node_count == 1
    broker._configure()
    assert (tmp_path / "data" / "kafka" / file).exists()
    assert broker.node_processes[0].log_path == tmp_path / "data" / "logs" / "broker.log"


@pytest.mark.skipif(not HAS_JAVA, reason="KafkaBroker checks for java 17+")
def test_a_three_node_cluster_counts_three(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path / "data", _home(tmp_path, "4.1.1"), nodes=3)
    assert broker.node_count == 3
    assert [p.log_path.name for p in broker.node_processes] == [
        "broker-1.log", "broker-2.log", "broker-3.log"]


@pytest.mark.parametrize(("info", "line"), [
    (BrokerInfo(kind="apache-kafka", version="3.9.2", persistent=True),
     "apache-kafka 3.9.2, 1 node, persistent"),
    (BrokerInfo(kind="apache-kafka", version="4.1.1", persistent=True, nodes=3),
     "apache-kafka 4.1.1, 3 nodes, persistent"),
    (BrokerInfo(kind="tansu", version="0.6.0", persistent=False),
     "tansu 0.6.0, 1 node, in memory"),
])
def test_broker_summary(info: BrokerInfo, line: str) -> None:
    assert info.summary() == line


def test_older_stack_json_without_nodes_reads_as_one_node(tmp_path: Path) -> None:
    (tmp_path / "stack.json").write_text(
        '{"data_dir": "/d", "started_at": "2026-12-01T10:00:00Z", "supervisor_pid": 1, '
        '"kafka_bootstrap": "127.0.0.1:9092", "database_url": "postgresql://x", '
        '"clickhouse_dsn": "chdb:///d/clickhouse", "partitions": 4, '
        '"broker": {"kind": "apache-kafka", "version": "3.9.2", "persistent": true}}')
    info = StackInfo.read(tmp_path)
    assert info.broker is not None
    assert info.broker.nodes == 1
    assert info.broker.summary() == "apache-kafka 3.9.2, 1 node, persistent"


@pytest.mark.skipif(not HAS_JAVA, reason="KafkaBroker checks for java 17+")
def test_kafka_3_refuses_a_log_dir_that_kafka_4_formatted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "kafka").mkdir(parents=True)
    (data / "kafka" / "formatted-by").write_text("4.1.1\n")
    broker = KafkaBroker(data, _home(tmp_path, "3.9.2"))
    with pytest.raises(ConfigurationError, match=r"formatted by Apache Kafka 4\.1\.1, which 3\.9\.2 "
                       r"cannot read: set TRAILPAY_KAFKA_VERSION=4\.1\.1"):
        broker.start()
    assert broker.node_processes[0].proc is None
