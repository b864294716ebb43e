"""The shipped alert rules: structure (a promtool-like check), and each rule evaluated on
synthetic scrapes written out here, once where it fires and once where it does not."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from controlplane.cli.main import cli
from controlplane.ops import alerts
from controlplane.ops.alerts_promql import PromQLError, Scrape, evaluate, parse
from controlplane.ops.alerts_report import alerts_report
from controlplane.ops.alerts_scrape import samples_of, scrape
from streams.agents.open_index import OpenEntry, OpenPayments
from streams.agents.sweeper import sweep
from trailpay.domain.deadlines import DEFAULT_POLICY
from trailpay.domain.events import utcnow
from trailpay.metrics import serve_metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = {rule.alert: rule for rule in alerts.load()}
T0 = 1_800_000_000.0  # the first scrape; the second is 60 s later


def scrapes(before: list[tuple[str, dict[str, str], float]],
            after: list[tuple[str, dict[str, str], float]]) -> list[Scrape]:
    return [Scrape.of(T0, before), Scrape.of(T0 + 60, after)]


def fired(name: str, data: list[Scrape]) -> list[tuple[dict[str, str], float]]:
    return [(a.labels, a.value) for a in alerts.evaluate_rule(RULES[name], data)]


def transitions(provider: str, to_status: str, value: float) -> tuple[str, dict[str, str], float]:
    return ("trailpay_payment_transitions_total",
            {"from_status": "pending", "to_status": to_status, "provider": provider, "instance": "worker"},
            value)


# ----------------------------------------------------------------------------- the file
def test_the_shipped_rules_pass_the_check():
    assert sorted(RULES) == [
        "TrailPayConsumerLagHigh", "TrailPayDeadLetters", "TrailPayDoubleCharges",
        "TrailPayLatePayments", "TrailPayPaymentsStuckPastDeadline", "TrailPayProviderEventsRejected",
        "TrailPayProviderFailureRateHigh", "TrailPayReconcileMismatches", "TrailPaySinkBehind",
        "TrailPayTargetDown", "TrailPayUnexpectedErrors", "TrailPayWebhooksRejected",
    ]
    for rule in RULES.values():
        assert rule.severity in ("critical", "warning")
        assert set(rule.annotations) == {"summary", "description", "runbook_url"}


def test_every_runbook_is_a_section_of_the_operations_guide():
    headings = {re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
                for line in (ROOT / "docs" / "operations.md").read_text().splitlines()
                if line.startswith("#")}
    for rule in RULES.values():
        page, anchor = rule.annotations["runbook_url"].split("#")
        assert page == "docs/operations.md"
        assert anchor in headings, f"{rule.alert}: no section #{anchor} in docs/operations.md"


def test_every_series_a_rule_reads_is_one_trailpay_exports():
    sources = "".join(path.read_text() for package in ("trailpay", "streams", "sinks", "connectors", "controlplane")
                      for path in (ROOT / package).rglob("*.py"))
    read = {name for rule in RULES.values() for name in re.findall(r"\b(trailpay_\w+?)(?:\{|\[|\)|\s)", rule.expr)}
    assert read == {
        "trailpay_payment_transitions_total", "trailpay_payments_overdue", "trailpay_late_payments_total",
        "trailpay_double_charges_total", "trailpay_suspicious_events_total", "trailpay_webhooks_total",
        "trailpay_dead_letters_total", "trailpay_unexpected_errors_total", "trailpay_consumer_lag_records",
        "trailpay_reconcile_mismatches",
    }
    for name in read:
        assert f'"{name}"' in sources, f"no metric named {name} is defined"


def _one_rule(**changes: object) -> dict[str, object]:
    rule: dict[str, object] = {
        "alert": "X", "expr": "sum(trailpay_payments_overdue) > 0", "for": "1m",
        "labels": {"severity": "warning"},
        "annotations": {"summary": "s", "description": "d", "runbook_url": "docs/operations.md#x"},
    }
    rule.update(changes)
    return {"groups": [{"name": "g", "rules": [{k: v for k, v in rule.items() if v is not None}]}]}


@pytest.mark.parametrize(("changes", "problem"), [
    ({"labels": {}}, "labels.severity must be one of"),
    ({"labels": {"severity": "page"}}, "labels.severity must be one of"),
    ({"annotations": {"summary": "s", "description": "d"}}, "annotations.runbook_url is required"),
    ({"expr": "sum(rate(x[5m])"}, "expected )"),
    ({"expr": "histogram_quantile(0.9, x)"}, "function histogram_quantile() is not in the supported subset"),
    ({"expr": "rate(x)"}, "rate() needs a range selector"),
    ({"expr": "sum without (a) (x)"}, "without (...) is not supported"),
    ({"for": "5 minutes"}, "for: not a duration"),
    ({"alert": "has space"}, "'alert' must be a metric-like name"),
    ({"keep_firing_for": "5m"}, "unknown key 'keep_firing_for'"),
    ({"annotations": {"summary": "{{ $value | humanize }}", "description": "d",
                      "runbook_url": "r"}}, "is not $value or $labels.<name>"),
    ({"expr": None}, "'expr' is required"),
])
def test_the_check_refuses_malformed_rules(changes, problem):
    with pytest.raises(alerts.RulesError, match=re.escape(problem)):
        alerts.check(_one_rule(**changes))


def test_the_check_refuses_duplicate_names_and_empty_files():
    doubled = _one_rule()
    doubled["groups"][0]["rules"] *= 2
    with pytest.raises(alerts.RulesError, match="alert name used twice"):
        alerts.check(doubled)
    with pytest.raises(alerts.RulesError, match="non-empty 'groups'"):
        alerts.check(yaml.safe_load("groups: []"))


# ----------------------------------------------------------------------------- the subset
def test_increase_is_last_minus_first_with_resets_and_no_extrapolation():
    node = parse("increase(c_total[5m])")
    data = [Scrape.of(T0, [("c_total", {"a": "1"}, 10)]), Scrape.of(T0 + 60, [("c_total", {"a": "1"}, 14)]),
            Scrape.of(T0 + 120, [("c_total", {"a": "1"}, 3)])]  # restarted: 14 -> 0 -> 3
    assert evaluate(node, data) == {(("a", "1"),): 7.0}
    assert evaluate(parse("rate(c_total[5m])"), data) == {(("a", "1"),): 7.0 / 300}
    assert evaluate(node, data[:1]) == {}  # one sample: no increase


def test_a_series_born_inside_the_range_counts_from_zero():
    one = [Scrape.of(T0, [("c_total", {"a": "1"}, 2), ("c_created", {"a": "1"}, T0 - 30)])]
    assert evaluate(parse("increase(c_total[5m])"), one) == {(("a", "1"),): 2.0}
    old = [Scrape.of(T0, [("c_total", {"a": "1"}, 2), ("c_created", {"a": "1"}, T0 - 3600)])]
    assert evaluate(parse("increase(c_total[5m])"), old) == {}


def test_matchers_aggregations_and_vector_arithmetic():
    data = [Scrape.of(T0, [("g", {"k": "a", "p": "0"}, 3), ("g", {"k": "a", "p": "1"}, 4),
                           ("g", {"k": "b", "p": "0"}, 5), ("h", {"k": "a"}, 2)])]
    assert evaluate(parse('sum by (k) (g{k=~"a|b"})'), data) == {(("k", "a"),): 7.0, (("k", "b"),): 5.0}
    assert evaluate(parse('max(g{k!="a"})'), data) == {(): 5.0}
    assert evaluate(parse('count(g{p!~"1"})'), data) == {(): 2.0}
    assert evaluate(parse("sum by (k) (g) / sum by (k) (h) > 3"), data) == {(("k", "a"),): 3.5}
    assert evaluate(parse("sum by (k) (g) > 4 and sum by (k) (h) > 0"), data) == {(("k", "a"),): 7.0}
    assert evaluate(parse("sum by (k) (g) == 5 or sum by (k) (h)"), data) == {
        (("k", "b"),): 5.0, (("k", "a"),): 2.0}
    with pytest.raises(PromQLError):
        parse("g[5m]")


# ----------------------------------------------------------------------------- each rule
def test_failure_rate_spike_fires_per_provider_with_enough_volume():
    before = [transitions("mpesa", "succeeded", 100), transitions("mpesa", "failed", 10),
              transitions("stripe", "succeeded", 100), transitions("stripe", "failed", 10),
              transitions("airtel", "succeeded", 5), transitions("airtel", "failed", 0)]
    after = [transitions("mpesa", "succeeded", 106), transitions("mpesa", "failed", 16),  # 6 of 12
             transitions("stripe", "succeeded", 118), transitions("stripe", "failed", 12),  # 2 of 20
             transitions("airtel", "succeeded", 6), transitions("airtel", "failed", 4)]  # 4 of 5: too few
    assert fired("TrailPayProviderFailureRateHigh", scrapes(before, after)) == [
        ({"provider": "mpesa", "severity": "critical"}, 0.5)]
    assert fired("TrailPayProviderFailureRateHigh", scrapes(before, before)) == []
    (alert,) = alerts.evaluate_rule(RULES["TrailPayProviderFailureRateHigh"], scrapes(before, after))
    assert alert.state == "pending"  # for: 5m
    assert alert.annotations["summary"] == "mpesa: more than 25% of settled payments failed in 15 minutes"


def test_stuck_payments_fire_when_any_worker_has_overdue_ones():
    idle = [("trailpay_payments_overdue", {"instance": "worker"}, 0),
            ("trailpay_payments_overdue", {"instance": "worker-2"}, 0)]
    stuck = [("trailpay_payments_overdue", {"instance": "worker"}, 0),
             ("trailpay_payments_overdue", {"instance": "worker-2"}, 3)]
    assert fired("TrailPayPaymentsStuckPastDeadline", scrapes(idle, stuck)) == [({"severity": "critical"}, 3.0)]
    assert fired("TrailPayPaymentsStuckPastDeadline", scrapes(stuck, idle)) == []


def test_dead_letters_fire_on_a_new_letter_even_on_a_new_series():
    name, created = "trailpay_dead_letters_total", "trailpay_dead_letters_created"
    labels = {"source_topic": "payments.requests.v1", "stage": "payments", "error_type": "InvalidRecord"}
    old = [(name, labels, 4), (created, labels, T0 - 7200)]
    assert fired("TrailPayDeadLetters", scrapes(old, old)) == []
    assert fired("TrailPayDeadLetters", scrapes(old, [(name, labels, 5), (created, labels, T0 - 7200)])) == [
        ({"source_topic": "payments.requests.v1", "stage": "payments", "severity": "warning"}, 1.0)]
    born = [(name, labels, 1), (created, labels, T0 + 30)]  # first letter between the scrapes
    assert fired("TrailPayDeadLetters", scrapes([], born)) == [
        ({"source_topic": "payments.requests.v1", "stage": "payments", "severity": "warning"}, 1.0)]


def test_rejected_provider_events_fire_on_suspicious_events_and_bad_webhooks():
    sus = "trailpay_suspicious_events_total"
    assert fired("TrailPayProviderEventsRejected", scrapes(
        [(sus, {"provider": "mpesa", "reason": "amount_mismatch"}, 0)],
        [(sus, {"provider": "mpesa", "reason": "amount_mismatch"}, 2)])) == [
        ({"provider": "mpesa", "reason": "amount_mismatch", "severity": "critical"}, 2.0)]
    assert fired("TrailPayProviderEventsRejected", scrapes(
        [(sus, {"provider": "mpesa", "reason": "amount_mismatch"}, 2)],
        [(sus, {"provider": "mpesa", "reason": "amount_mismatch"}, 2)])) == []
    hook = "trailpay_webhooks_total"
    before = [(hook, {"provider": "stripe", "verification": "rejected", "outcome": "rejected"}, 0),
              (hook, {"provider": "stripe", "verification": "verified", "outcome": "accepted"}, 0),
              (hook, {"provider": "airtel", "verification": "rejected", "outcome": "rejected"}, 0)]
    after = [(hook, {"provider": "stripe", "verification": "rejected", "outcome": "rejected"}, 9),
             (hook, {"provider": "stripe", "verification": "verified", "outcome": "accepted"}, 500),
             (hook, {"provider": "airtel", "verification": "rejected", "outcome": "rejected"}, 5)]
    assert fired("TrailPayWebhooksRejected", scrapes(before, after)) == [
        ({"provider": "stripe", "severity": "warning"}, 9.0)]


def test_late_payments_and_double_charges_fire_on_any():
    late = "trailpay_late_payments_total"
    assert fired("TrailPayLatePayments", scrapes(
        [(late, {"provider": "airtel", "decision": "refund"}, 1)],
        [(late, {"provider": "airtel", "decision": "refund"}, 2)])) == [
        ({"provider": "airtel", "decision": "refund", "severity": "warning"}, 1.0)]
    assert fired("TrailPayLatePayments", scrapes(
        [(late, {"provider": "airtel", "decision": "refund"}, 2)],
        [(late, {"provider": "airtel", "decision": "refund"}, 2)])) == []
    double = "trailpay_double_charges_total"
    assert fired("TrailPayDoubleCharges", scrapes([(double, {"provider": "mpesa"}, 0)],
                                                  [(double, {"provider": "mpesa"}, 1)])) == [
        ({"provider": "mpesa", "severity": "critical"}, 1.0)]
    assert fired("TrailPayDoubleCharges", scrapes([(double, {"provider": "mpesa"}, 1)],
                                                  [(double, {"provider": "mpesa"}, 1)])) == []


def _lag(group: str, partition: str, value: float, instance: str) -> tuple[str, dict[str, str], float]:
    return ("trailpay_consumer_lag_records",
            {"group": group, "topic": "payments.state.v1", "partition": partition, "instance": instance},
            value)


def test_consumer_lag_and_sinks_behind_count_each_partition_once():
    # the worker measures every group, the sink-postgres process its own: the same partition twice
    behind = [_lag("trailpay", "0", 700, "worker"), _lag("trailpay", "1", 400, "worker"),
              _lag("trailpay-sink-postgres", "0", 3000, "worker"),
              _lag("trailpay-sink-postgres", "0", 3000, "sink-postgres"),
              _lag("trailpay-sink-postgres", "1", 2500, "worker"),
              _lag("trailpay-sink-clickhouse", "0", 10, "worker")]
    assert fired("TrailPayConsumerLagHigh", scrapes(behind, behind)) == [
        ({"group": "trailpay", "severity": "warning"}, 1100.0)]
    assert fired("TrailPaySinkBehind", scrapes(behind, behind)) == [
        ({"group": "trailpay-sink-postgres", "severity": "warning"}, 5500.0)]
    caught_up = [_lag("trailpay", "0", 0, "worker"), _lag("trailpay-sink-postgres", "0", 4999, "worker"),
                 _lag("trailpay-sink-postgres", "0", 4999, "sink-postgres")]
    assert fired("TrailPayConsumerLagHigh", scrapes(caught_up, caught_up)) == []
    assert fired("TrailPaySinkBehind", scrapes(caught_up, caught_up)) == []


def test_unexpected_errors_reconcile_mismatches_and_targets_down():
    bug = "trailpay_unexpected_errors_total"
    assert fired("TrailPayUnexpectedErrors", scrapes([(bug, {"stage": "payments", "error_type": "KeyError"}, 0)],
                                                     [(bug, {"stage": "payments", "error_type": "KeyError"}, 1)])) == [
        ({"stage": "payments", "error_type": "KeyError", "severity": "critical"}, 1.0)]
    mismatch = "trailpay_reconcile_mismatches"
    assert fired("TrailPayReconcileMismatches", scrapes([], [(mismatch, {"provider": "stripe", "kind": "status"}, 2)])) == [
        ({"provider": "stripe", "kind": "status", "severity": "warning"}, 2.0)]
    assert fired("TrailPayReconcileMismatches", scrapes([], [])) == []
    up = [("up", {"job": "trailpay", "instance": "ingress"}, 1), ("up", {"job": "trailpay", "instance": "worker"}, 0)]
    assert fired("TrailPayTargetDown", scrapes(up, up)) == [
        ({"job": "trailpay", "instance": "worker", "severity": "critical"}, 0.0)]


# ----------------------------------------------------------------------------- scrape and report
def test_scrape_adds_target_labels_and_up():
    text = ('# TYPE trailpay_sink_lag_records gauge\n'
            'trailpay_sink_lag_records{sink="ch",topic="t",partition="0",instance="x"} 7.0\n')

    def fetch(url: str) -> str:
        if "down" in url:
            raise OSError("connection refused")
        return text

    taken, down = scrape({"analytics": "http://a/metrics", "worker": "http://down/metrics"}, fetch,
                         clock=lambda: T0)
    assert down == {"worker": "connection refused"}
    assert {(s.name, s.labels, s.value) for s in taken.samples} == {
        ("trailpay_sink_lag_records", (("exported_instance", "x"), ("instance", "analytics"), ("job", "trailpay"),
                                       ("partition", "0"), ("sink", "ch"), ("topic", "t")), 7.0),
        ("up", (("instance", "analytics"), ("job", "trailpay")), 1.0),
        ("up", (("instance", "worker"), ("job", "trailpay")), 0.0),
    }
    assert [s.name for s in samples_of("", "x")] == []


def test_report_alerts_scrapes_a_live_endpoint_and_prints_json(tmp_path):
    registry = CollectorRegistry()
    letters = Counter("trailpay_dead_letters_total", "d", ["source_topic", "stage", "error_type"],
                      registry=registry)
    letters.labels("payments.requests.v1", "payments", "InvalidRecord").inc()
    server = serve_metrics(0, registry=registry)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        result = CliRunner().invoke(cli, ["report", "--data-dir", str(tmp_path), "--metric", "alerts",
                                          "--target", f"worker={url}", "--json"])
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["targets_down"] == {}
    assert report["rules"] == 12
    assert [(a["alert"], a["state"], a["labels"]["stage"], a["value"]) for a in report["alerts"]] == [
        ("TrailPayDeadLetters", "firing", "payments", 1.0)]


def test_report_alerts_without_a_stack_says_how_to_start_one(tmp_path):
    result = CliRunner().invoke(cli, ["report", "--data-dir", str(tmp_path), "--metric", "alerts"])
    assert result.exit_code == 2
    assert "trailpay up" in result.output


def test_the_report_keeps_earlier_scrapes_so_a_second_run_sees_a_counter_move(tmp_path):
    born = time.time() - 7200  # the series is older than every range: one scrape sees no increase
    count = {"value": 4}

    def fetch(url: str) -> str:
        return ("# TYPE trailpay_dead_letters_total counter\n"
                f'trailpay_dead_letters_total{{source_topic="t",stage="s",error_type="E"}} {count["value"]}\n'
                f'trailpay_dead_letters_created{{source_topic="t",stage="s",error_type="E"}} {born}\n'
                "# TYPE trailpay_http_request_seconds histogram\n"
                'trailpay_http_request_seconds_bucket{route="/",le="+Inf"} 3\n')

    history = tmp_path / "alerts-scrapes.json"
    first = alerts_report({"worker": "http://w/metrics"}, history=history, fetch=fetch)
    assert first["alerts"] == [] and len(first["scrapes"]) == 1
    count["value"] = 6
    second = alerts_report({"worker": "http://w/metrics"}, history=history, fetch=fetch)
    assert len(second["scrapes"]) == 2
    assert [(a["alert"], a["labels"]["source_topic"], a["value"]) for a in second["alerts"]] == [
        ("TrailPayDeadLetters", "t", 2.0)]
    kept = json.loads(history.read_text())
    assert {name for s in kept for name, _, _ in s["samples"]} == {
        "trailpay_dead_letters_total", "trailpay_dead_letters_created", "up"}  # only what rules read
    history.write_text("{not json")
    assert alerts_report({"worker": "http://w/metrics"}, history=history, fetch=fetch)["alerts"] == []


class _Processor:
    """What :func:`sweep` reads of the payments processor: the policy and the open index."""

    policy = DEFAULT_POLICY

    def __init__(self, entries: dict[bytes, OpenEntry]) -> None:
        self.entries = entries

    @asynccontextmanager
    async def open_payments(self) -> AsyncIterator[OpenPayments]:
        yield OpenPayments(self.entries, lambda key: None)  # every payment gone: nothing to send


def test_the_sweeper_sets_the_gauges_behind_the_stuck_payments_rule():
    now = utcnow()
    past, future = now - timedelta(minutes=5), now + timedelta(minutes=5)
    processor = _Processor({
        b"TPexpiry-requested": OpenEntry(past, 0, queried=True, expired=True),
        b"TPjust-due": OpenEntry(past, 1),
        b"TPnot-yet": OpenEntry(future, 2),
    })
    asyncio.run(sweep(processor, producer=None))
    assert REGISTRY.get_sample_value("trailpay_payments_past_deadline") == 2.0
    assert REGISTRY.get_sample_value("trailpay_payments_overdue") == 1.0
    assert set(processor.entries) == {b"TPexpiry-requested", b"TPnot-yet"}  # the due one was forgotten
    asyncio.run(sweep(processor, producer=None))
    assert REGISTRY.get_sample_value("trailpay_payments_past_deadline") == 1.0
