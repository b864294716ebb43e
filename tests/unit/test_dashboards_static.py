"""Dashboard definitions that need no services: Grafana files and the metric registry."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from dashboards import grafana
from dashboards.queries import BY_NAME, METRICS, parameters


def test_committed_grafana_dashboards_are_generated_from_the_queries():
    for name, text in grafana.render().items():
        assert (grafana.OUT / name).read_text() == text, f"run `python -m dashboards.grafana` ({name})"


def test_grafana_sql_uses_macros_only():
    for board in grafana.render().values():
        for panel in json.loads(board)["panels"]:
            sql = panel["targets"][0]["rawSql"]
            assert not re.search(r"\{(since|until|currency):", sql), panel["title"]
            assert "$__fromTime" in sql


def test_every_chart_group_is_on_a_grafana_board():
    groups = {g for _, gs in grafana.BOARDS.values() for g in gs}
    assert {m.group for m in METRICS} <= groups


@pytest.mark.parametrize("metric", METRICS, ids=lambda m: m.name)
def test_metrics_read_facts_with_final(metric):
    for table in re.findall(r"trailpay\.(\w+)", metric.sql):
        assert re.search(rf"trailpay\.{table} FINAL", metric.sql), f"{metric.name} reads {table} without FINAL"
    assert metric.x is None or metric.chart == "table" or metric.y


def test_parameters_validate_range():
    with pytest.raises(ValueError):
        parameters(datetime(2030, 1, 2, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC), None)
    with pytest.raises(ValueError):
        parameters(datetime(2030, 1, 1), datetime(2030, 1, 2), None)
    assert parameters(datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 1, 2, tzinfo=UTC), "kes")["currency"] == "KES"
    assert set(BY_NAME) == {m.name for m in METRICS}
