"""The alert rules file: a promtool-like structure check, and which rules would fire now.

The rules live in ``dashboards/alerts/trailpay.rules.yml`` (Prometheus' rule-file format;
the compose Prometheus loads the same file). :func:`check` validates it the way
``promtool check rules`` would for the parts we use, and every expression parses in the
PromQL subset of :mod:`controlplane.ops.alerts_promql`. :func:`evaluate` runs each rule over
scrapes and returns the alerts its expression yields, each ``firing`` when the rule has no
``for`` and ``pending`` otherwise: one evaluation cannot tell how long an expression has
held, so a rule with ``for`` is reported as Prometheus would report it on its first
evaluation.

Annotation templates support ``{{ $labels.<name> }}`` and ``{{ $value }}`` only (the value
formatted with ``%g``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from controlplane.ops.alerts_promql import Node, PromQLError, Scrape, evaluate, parse, parse_duration

RULES_FILE = Path(__file__).resolve().parents[2] / "dashboards" / "alerts" / "trailpay.rules.yml"
SEVERITIES = ("critical", "warning", "info")
REQUIRED_ANNOTATIONS = ("summary", "description", "runbook_url")
_RULE_KEYS = {"alert", "expr", "for", "labels", "annotations"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_TEMPLATE_VALUE = re.compile(r"\$value|\$labels\.([A-Za-z_][A-Za-z0-9_]*)")


class RulesError(ValueError):
    """The rules file is malformed; the message lists every problem found."""


@dataclass(frozen=True)
class Rule:
    group: str
    alert: str
    expr: str
    node: Node
    for_s: float
    labels: dict[str, str]
    annotations: dict[str, str]

    @property
    def severity(self) -> str:
        return self.labels["severity"]


@dataclass(frozen=True)
class Alert:
    """One series a rule's expression yielded: what Prometheus would show as an alert."""

    rule: Rule
    labels: dict[str, str]
    value: float
    annotations: dict[str, str]

    @property
    def state(self) -> Literal["firing", "pending"]:
        return "pending" if self.rule.for_s else "firing"

    def as_json(self) -> dict[str, Any]:
        return {"alert": self.rule.alert, "state": self.state, "severity": self.rule.severity,
                "for": self.rule.for_s, "labels": self.labels, "value": self.value,
                "annotations": self.annotations, "group": self.rule.group}


def _template_problems(where: str, text: str) -> list[str]:
    return [f"{where}: template {{{{ {body} }}}} is not $value or $labels.<name>"
            for body in _TEMPLATE.findall(text) if not _TEMPLATE_VALUE.fullmatch(body)]


def _rule_problems(where: str, raw: Any) -> list[str]:
    if not isinstance(raw, dict):
        return [f"{where}: a rule is a mapping"]
    problems = [f"{where}: unknown key {key!r}" for key in sorted(set(raw) - _RULE_KEYS)]
    if "record" in raw:
        problems.append(f"{where}: recording rules are not used here")
    alert = raw.get("alert")
    if not isinstance(alert, str) or not _NAME.fullmatch(alert):
        problems.append(f"{where}: 'alert' must be a metric-like name")
    if not isinstance(raw.get("expr"), str) or not raw["expr"].strip():
        problems.append(f"{where}: 'expr' is required")
    else:
        try:
            parse(raw["expr"])
        except PromQLError as exc:
            problems.append(f"{where}: expr: {exc}")
    try:
        parse_duration(str(raw.get("for", "0s")))
    except PromQLError as exc:
        problems.append(f"{where}: for: {exc}")
    labels, annotations = raw.get("labels"), raw.get("annotations")
    if not isinstance(labels, dict) or labels.get("severity") not in SEVERITIES:
        problems.append(f"{where}: labels.severity must be one of {', '.join(SEVERITIES)}")
    elif any(not isinstance(v, str) for v in labels.values()):
        problems.append(f"{where}: label values are strings")
    if not isinstance(annotations, dict):
        problems.append(f"{where}: annotations {', '.join(REQUIRED_ANNOTATIONS)} are required")
    else:
        problems += [f"{where}: annotations.{key} is required" for key in REQUIRED_ANNOTATIONS
                     if not isinstance(annotations.get(key), str) or not annotations[key].strip()]
        for key, text in annotations.items():
            problems += _template_problems(f"{where}: annotations.{key}", str(text))
    return problems


def check(data: Any) -> list[Rule]:
    """Every rule of a parsed rules file, or :class:`RulesError` listing all problems."""
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list) or not data["groups"]:
        raise RulesError("the file needs a non-empty 'groups' list")
    problems: list[str] = []
    rules: list[Rule] = []
    groups_seen: set[str] = set()
    alerts_seen: set[str] = set()
    for gi, group in enumerate(data["groups"]):
        name = group.get("name") if isinstance(group, dict) else None
        if not isinstance(name, str) or not name:
            problems.append(f"group {gi}: 'name' is required")
            continue
        if name in groups_seen:
            problems.append(f"group {name}: defined twice")
        groups_seen.add(name)
        unknown = sorted(set(group) - {"name", "rules", "interval"})
        if unknown:
            problems.append(f"group {name}: unknown keys {unknown}")
        if not isinstance(group.get("rules"), list) or not group["rules"]:
            problems.append(f"group {name}: 'rules' must be a non-empty list")
            continue
        for ri, raw in enumerate(group["rules"]):
            where = f"group {name} rule {ri}" + (f" ({raw.get('alert')})" if isinstance(raw, dict) else "")
            found = _rule_problems(where, raw)
            problems += found
            if found:
                continue
            if raw["alert"] in alerts_seen:
                problems.append(f"{where}: alert name used twice")
            alerts_seen.add(raw["alert"])
            rules.append(Rule(name, raw["alert"], raw["expr"], parse(raw["expr"]),
                              parse_duration(str(raw.get("for", "0s"))), dict(raw["labels"]),
                              {k: str(v) for k, v in raw["annotations"].items()}))
    if problems:
        raise RulesError("\n".join(problems))
    return rules


def load(path: Path = RULES_FILE) -> list[Rule]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RulesError(f"{path}: {exc}") from exc
    return check(data)


def _render(text: str, labels: dict[str, str], value: float) -> str:
    def one(match: re.Match[str]) -> str:
        body = match.group(1)
        return f"{value:g}" if body == "$value" else labels.get(body.removeprefix("$labels."), "")

    return _TEMPLATE.sub(one, text)


def evaluate_rule(rule: Rule, scrapes: Sequence[Scrape]) -> list[Alert]:
    result = evaluate(rule.node, scrapes)
    if not isinstance(result, dict):
        raise PromQLError(f"{rule.alert}: the expression is a number, not a vector")
    alerts = []
    for series, value in sorted(result.items()):
        labels = {**dict(series), **rule.labels}
        annotations = {k: _render(v, labels, value) for k, v in rule.annotations.items()}
        alerts.append(Alert(rule, labels, value, annotations))
    return alerts


def evaluate_rules(rules: Sequence[Rule], scrapes: Sequence[Scrape]) -> list[Alert]:
    """Every alert the rules yield on ``scrapes`` (oldest first), in rule order."""
    return [alert for rule in rules for alert in evaluate_rule(rule, scrapes)]
