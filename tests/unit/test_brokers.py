"""The embedded broker choice (auto / kafka / tansu), the one-node KRaft configuration and
the stream worker names of `trailpay up --workers N`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from controlplane.stack import kafka_install
from controlplane.stack.brokers import choose
from controlplane.stack.kafka_broker import server_properties
from controlplane.stack.supervisor import default_services, worker_names
from trailpay.domain.errors import ConfigurationError
from trailpay.settings import load_settings

HAS_JAVA = shutil.which("java") is not None


def _installed_home(tmp_path: Path) -> Path:
    home = tmp_path / "kafka-home"
    home.mkdir()
    (home / kafka_install.MARKER).write_text("3.9.2\n")
    return home


def test_pom_pins_kafka_3_9() -> None:
    assert kafka_install.pom_version() == "3.9.2"


def test_default_home_is_under_the_user_cache() -> None:
    assert kafka_install.default_home("3.9.2") == Path.home() / ".cache/trailpay/kafka/3.9.2"


def test_tansu_when_asked(tmp_path: Path) -> None:
    settings = load_settings(kafka_home=_installed_home(tmp_path))
    assert choose(settings, "tansu").kind == "tansu"


def test_auto_without_jars_is_tansu_and_says_why(tmp_path: Path) -> None:
    settings = load_settings(kafka_home=tmp_path / "nothing-here")
    choice = choose(settings, "auto")
    assert choice.kind == "tansu"
    assert "trailpay kafka install" in choice.reason


def test_several_workers_on_tansu_are_refused_with_the_reason(tmp_path: Path) -> None:
    settings = load_settings(kafka_home=tmp_path / "nothing-here", workers=3)
    with pytest.raises(ConfigurationError, match=r"3 stream workers on tansu .*--workers 1.*--broker kafka"):
        choose(settings, "tansu")
    with pytest.raises(ConfigurationError, match="lose records at a rebalance"):
        choose(settings, "auto")  # auto falls back to tansu here: refused the same
    assert choose(load_settings(kafka_home=tmp_path / "nothing-here", workers=1), "tansu").kind == "tansu"


def test_kafka_without_jars_refuses(tmp_path: Path) -> None:
    settings = load_settings(kafka_home=tmp_path / "nothing-here")
    with pytest.raises(ConfigurationError, match="trailpay kafka install"):
        choose(settings, "kafka")


@pytest.mark.skipif(not HAS_JAVA, reason="no java on PATH")
def test_auto_with_java_and_jars_is_apache_kafka(tmp_path: Path) -> None:
    home = _installed_home(tmp_path)
    choice = choose(load_settings(kafka_home=home, embedded_broker="auto"))
    assert choice.kind == "apache-kafka"
    assert choice.kafka_home == home


def test_one_node_kraft_properties(tmp_path: Path) -> None:
    text = server_properties(tmp_path / "data", 19092, 19093)
    lines = set(text.splitlines())
    assert {
        "process.roles=broker,controller",
        "controller.quorum.voters=1@127.0.0.1:19093",
        "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093",
        "advertised.listeners=PLAINTEXT://127.0.0.1:19092",
        f"log.dirs={tmp_path / 'data'}",
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
    } <= lines


def test_worker_names() -> None:
    assert worker_names(1) == ["worker"]
    assert worker_names(3) == ["worker", "worker-2", "worker-3"]
    names = [spec.name for spec in default_services(3)]
    assert [n for n in names if n.startswith("worker")] == ["worker", "worker-2", "worker-3"]


def test_workers_setting_bounds() -> None:
    assert load_settings(workers=4).workers == 4
    with pytest.raises(ConfigurationError, match="TRAILPAY_WORKERS"):
        load_settings(workers=0)
