"""docker-compose.yml is checked here by parsing (no Docker engine on this machine)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from controlplane.cli.main import cli
from controlplane.stack.kafka_install import pom_version

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
#: Commands whose issue has not landed yet; each issue removes its own entry.
NOT_BUILT_YET: set[str] = set()
TRAILPAY = {name: svc for name, svc in SERVICES.items() if svc.get("image") == "trailpay:latest"}


def test_infrastructure_services_present():
    assert {"kafka", "postgres", "clickhouse", "grafana"} <= set(SERVICES)
    assert "KRaft" in (ROOT / "docker-compose.yml").read_text() or "controller" in str(SERVICES["kafka"])


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_ports_bound_to_loopback(name):
    for port in SERVICES[name].get("ports", []):
        assert str(port).startswith("127.0.0.1:"), f"{name} exposes {port} beyond loopback"


@pytest.mark.parametrize("name", ["kafka", "postgres", "clickhouse", "grafana", "ingress", "analytics"])
def test_health_checks(name):
    assert "healthcheck" in SERVICES[name]


@pytest.mark.parametrize("name", sorted(TRAILPAY))
def test_trailpay_services_run_real_commands(name):
    command = TRAILPAY[name]["command"][0]
    if command in NOT_BUILT_YET:
        pytest.skip(f"`trailpay {command}` lands with its issue")
    assert command in cli.commands, f"compose runs `trailpay {command}`, which does not exist"


def test_trailpay_services_configured_for_servers():
    env = COMPOSE["x-trailpay-env"]
    assert env["TRAILPAY_KAFKA_BOOTSTRAP"].endswith(":-kafka:9092}")
    assert env["TRAILPAY_DATABASE_URL"].startswith("postgresql")
    assert env["TRAILPAY_CLICKHOUSE_URL"].startswith("http://")


def test_kafka_image_matches_the_jars_we_test():
    assert pom_version() == "3.9.2"
    kafka_images = {svc["image"] for name, svc in SERVICES.items() if name.startswith("kafka")}
    assert kafka_images == {"apache/kafka:3.9.2"}


def test_trailpay_services_know_the_broker_is_apache_kafka():
    assert COMPOSE["x-trailpay-env"]["TRAILPAY_BROKER_KIND"] == "apache-kafka"


CLUSTER = ["kafka-1", "kafka-2", "kafka-3"]


def test_cluster_profile_is_three_kraft_nodes_with_rf3_min_isr2():
    voters = "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"
    cluster_ids = set()
    for node_id, name in enumerate(CLUSTER, start=1):
        svc = SERVICES[name]
        env = svc["environment"]
        assert svc["profiles"] == ["cluster"]
        assert env["KAFKA_NODE_ID"] == node_id
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == voters
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 2
        assert "healthcheck" in svc
        assert svc["volumes"] == [f"{name}-data:/var/lib/kafka/data"]
        cluster_ids.add(env["CLUSTER_ID"])
    (cluster_id,) = cluster_ids
    assert len(cluster_id) == 22  # a base64 UUID, as KRaft wants


def test_trailpay_waits_for_the_cluster_when_its_profile_runs():
    depends = COMPOSE["x-trailpay"]["depends_on"]
    assert depends["kafka"] == {"condition": "service_healthy"}
    for name in CLUSTER:
        assert depends[name] == {"condition": "service_healthy", "required": False}
    env = COMPOSE["x-trailpay-env"]
    assert env["TRAILPAY_KAFKA_BOOTSTRAP"] == "${TRAILPAY_KAFKA_BOOTSTRAP:-kafka:9092}"
    assert env["TRAILPAY_REPLICATION_FACTOR"] == "${TRAILPAY_REPLICATION_FACTOR:-1}"


def test_grafana_provisioning_files_exist():
    for volume in SERVICES["grafana"]["volumes"]:
        host = volume.split(":")[0]
        assert (ROOT / host).exists(), host


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client")
def test_docker_compose_config_when_available():
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("the docker client here has no compose plugin")
    compose = ["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"]
    bare = {k: v for k, v in os.environ.items() if k not in REQUIRED_SECRETS}
    refused = subprocess.run(compose, capture_output=True, text=True, env=bare)
    assert refused.returncode != 0 and "set TRAILPAY_" in refused.stderr, refused.stderr
    given = {**bare, **{var: f"test-{var.lower()}" for var in REQUIRED_SECRETS}}
    result = subprocess.run(compose, capture_output=True, text=True, env=given)
    assert result.returncode == 0, result.stderr


#: Secrets compose must never default: a published value lets anyone post a "paid" callback.
REQUIRED_SECRETS = ("TRAILPAY_STRIPE_WEBHOOK_SECRETS", "TRAILPAY_MPESA_CALLBACK_TOKEN",
                    "TRAILPAY_AIRTEL_CALLBACK_TOKEN", "TRAILPAY_STATE_PII_KEYS")


@pytest.mark.parametrize("var", REQUIRED_SECRETS)
def test_callback_tokens_and_webhook_secret_are_required(var):
    value = COMPOSE["x-trailpay-env"][var]
    assert value.startswith("${" + var + ":?set " + var), value
    assert ":-" not in value


def test_no_published_secret_is_a_compose_default():
    env = COMPOSE["x-trailpay-env"]
    text = " ".join(str(v) for v in env.values())
    for published in ("whsec_trailpay_sandbox", "stk-callback-token-change-me",
                      "airtel-callback-token-change-me"):
        assert published not in text


def test_provider_secrets_reach_the_services():
    env = COMPOSE["x-trailpay-env"]
    for var in ("TRAILPAY_STRIPE_API_KEY", "TRAILPAY_MPESA_CONSUMER_KEY", "TRAILPAY_MPESA_CONSUMER_SECRET",
                "TRAILPAY_MPESA_PASSKEY", "TRAILPAY_AIRTEL_CLIENT_ID", "TRAILPAY_AIRTEL_CLIENT_SECRET",
                "TRAILPAY_AIRTEL_CALLBACK_SECRET"):
        assert env[var].startswith("${" + var + ":-"), var


# --------------------------------------------------------------------------- alerts (issue 18)
PROMETHEUS = SERVICES["prometheus"]


def _mounts(service: dict) -> dict[str, str]:
    """container path -> host path of each bind mount."""
    out = {}
    for volume in service["volumes"]:
        host, container, *_ = str(volume).split(":")
        if host.startswith("./"):
            out[container] = host
    return out


def test_prometheus_service_loads_the_shipped_rules():
    assert "healthcheck" in PROMETHEUS
    assert PROMETHEUS["ports"] == ["127.0.0.1:9090:9090"]
    mounts = _mounts(PROMETHEUS)
    for host in mounts.values():
        assert (ROOT / host).exists(), host
    config = yaml.safe_load((ROOT / mounts["/etc/prometheus/prometheus.yml"]).read_text())
    assert "--config.file=/etc/prometheus/prometheus.yml" in PROMETHEUS["command"]
    (pattern,) = config["rule_files"]
    rules_dir, glob = pattern.rsplit("/", 1)
    assert rules_dir == "/etc/prometheus/rules"
    assert [p.name for p in sorted((ROOT / mounts[rules_dir]).glob(glob))] == ["trailpay.rules.yml"]


def test_prometheus_scrapes_every_trailpay_metrics_port():
    config = yaml.safe_load((ROOT / "dashboards/alerts/prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "trailpay"  # the TrailPayTargetDown rule selects up{job="trailpay"}
    (static,) = job["static_configs"]
    assert static["targets"] == ["ingress:8000", "analytics:8050"]
    assert "127.0.0.1:8000:8000" in SERVICES["ingress"]["ports"]
    assert "127.0.0.1:8050:8050" in SERVICES["analytics"]["ports"]
    (workers,) = job["dns_sd_configs"]
    assert workers["names"] == ["worker"] and workers["port"] == 9100
    command = SERVICES["worker"]["command"]
    assert command[command.index("--metrics-port") + 1] == "9100"
    assert command[command.index("--metrics-host") + 1] == "0.0.0.0"


def test_grafana_gets_prometheus_as_a_data_source():
    mounts = _mounts(SERVICES["grafana"])
    provisioning = ROOT / mounts["/etc/grafana/provisioning"]
    data = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = data["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["jsonData"]["manageAlerts"] is True
    assert "prometheus-data" in COMPOSE["volumes"]
