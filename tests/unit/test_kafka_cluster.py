"""The three-node embedded Apache Kafka: its node settings and the settings that choose it."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.stack.brokers import BrokerChoice, make_broker
from controlplane.stack.kafka_broker import KafkaNode, NodeProcesses, server_properties
from controlplane.stack.processes import ChildProcess
from trailpay.domain.errors import ConfigurationError
from trailpay.settings import load_settings


def test_cluster_node_properties(tmp_path: Path) -> None:
    voters = "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    text = server_properties(tmp_path / "data", 19094, 19095, node_id=2, voters=voters, replicas=3)
    lines = set(text.splitlines())
    assert {
        "node.id=2",
        "controller.quorum.voters=1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097",
        "listeners=PLAINTEXT://127.0.0.1:19094,CONTROLLER://127.0.0.1:19095",
        "default.replication.factor=3",
        "min.insync.replicas=2",
        "offsets.topic.replication.factor=3",
        "transaction.state.log.replication.factor=3",
        "transaction.state.log.min.isr=2",
        "unclean.leader.election.enable=false",
    } <= lines


def test_one_node_keeps_replication_one(tmp_path: Path) -> None:
    lines = set(server_properties(tmp_path / "data", 19092, 19093).splitlines())
    assert {"node.id=1", "min.insync.replicas=1", "default.replication.factor=1"} <= lines


def test_three_nodes_replicate_three_times_unless_told() -> None:
    assert load_settings().replication_factor == 1
    assert load_settings(kafka_nodes=3).replication_factor == 3
    assert load_settings(kafka_nodes=3, replication_factor=2).replication_factor == 2


def test_two_nodes_refused() -> None:
    with pytest.raises(ConfigurationError, match="TRAILPAY_KAFKA_NODES"):
        load_settings(kafka_nodes=2)


class _Fake(ChildProcess):
    def __init__(self, name: str, alive: bool) -> None:
        super().__init__(name, ["true"], log_path=Path("/nonexistent") / name)
        self.alive = alive

    def running(self) -> bool:
        return self.alive


def test_cluster_runs_while_a_majority_runs() -> None:
    nodes = [_Fake("broker-1", True), _Fake("broker-2", True), _Fake("broker-3", True)]
    group = NodeProcesses(list(nodes))
    assert group.running()
    nodes[0].alive = False
    assert group.running()
    nodes[2].alive = False
    assert not group.running()


def test_node_reads_its_cluster_id(tmp_path: Path) -> None:
    node = KafkaNode(2, tmp_path / "node-2", tmp_path / "broker-2.log", "broker-2")
    assert node.cluster_id() is None
    node.log_dir.mkdir(parents=True)
    (node.log_dir / "meta.properties").write_text(
        "#\n#Tue Dec 01 11:50:20 UTC 2026\nnode.id=2\ndirectory.id=x\nversion=1\ncluster.id=ez5PClwdTiuajwxtLh86Sw\n")
    assert node.cluster_id() == "ez5PClwdTiuajwxtLh86Sw"


def test_tansu_refuses_three_nodes(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, kafka_nodes=3)
    with pytest.raises(ConfigurationError, match="needs Apache Kafka"):
        make_broker(BrokerChoice("tansu", "test"), settings)
