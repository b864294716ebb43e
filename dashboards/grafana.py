"""Grafana dashboards generated from the same queries as the built-in page.

``python -m dashboards.grafana`` rewrites ``dashboards/grafana/dashboards/*.json``; a test
checks the committed files equal what this generates, so the two never drift.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from dashboards.queries import METRICS, Metric

OUT = Path(__file__).resolve().parent / "grafana" / "dashboards"
DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "trailpay-clickhouse"}
BOARDS = {
    "revenue": ("TrailPay revenue", ("revenue",)),
    "failures": ("TrailPay failures", ("failures",)),
    "providers": ("TrailPay providers and payments", ("providers", "payments")),
}


def grafana_sql(metric: Metric) -> str:
    """Our server-side parameters -> the ClickHouse data source's macros and variables."""
    return (
        metric.sql.replace("{since:DateTime64(3, 'UTC')}", "$__fromTime")
        .replace("{until:DateTime64(3, 'UTC')}", "$__toTime")
        .replace("{currency:Nullable(String)}", "nullIf('${currency}', 'all')")
        .strip()
    )


def panel(metric: Metric, index: int) -> dict[str, Any]:
    kind = {"bar": "barchart", "line": "timeseries", "pie": "piechart", "table": "table"}[metric.chart]
    return {
        "id": index + 1,
        "type": kind,
        "title": metric.title,
        "description": metric.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 9, "w": 12, "x": 12 * (index % 2), "y": 9 * (index // 2)},
        "targets": [{
            "refId": "A",
            "datasource": DATASOURCE,
            "editorType": "sql",
            "format": 1 if metric.chart == "table" else 0,
            "queryType": "table",
            "rawSql": grafana_sql(metric),
        }],
        "fieldConfig": {"defaults": {"unit": "none"}, "overrides": []},
        "options": {},
    }


def dashboard(uid: str, title: str, groups: tuple[str, ...]) -> dict[str, Any]:
    metrics = [m for m in METRICS if m.group in groups]
    return {
        "uid": f"trailpay-{uid}",
        "title": title,
        "tags": ["trailpay"],
        "timezone": "utc",
        "schemaVersion": 39,
        "time": {"from": "now-30d", "to": "now"},
        "refresh": "1m",
        "templating": {"list": [{
            "name": "currency", "label": "Currency", "type": "custom",
            "query": "all,KES,UGX,TZS,USD,EUR,GBP",
            "current": {"text": "all", "value": "all"},
        }]},
        "panels": [panel(m, i) for i, m in enumerate(metrics)],
    }


def render() -> dict[str, str]:
    return {
        f"{uid}.json": json.dumps(dashboard(uid, title, groups), indent=2, sort_keys=True) + "\n"
        for uid, (title, groups) in BOARDS.items()
    }


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        sys.stdout.write(f"wrote {OUT / name}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
