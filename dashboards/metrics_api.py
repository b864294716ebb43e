"""Run dashboard metrics: JSON and CSV, shared by the web page and ``trailpay report``."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

from dashboards.headlines import exponents
from dashboards.queries import BY_NAME, Metric, bucketed, parameters
from trailpay import codec
from trailpay.clickhouse import ClickHouse


class UnknownMetric(KeyError):
    pass


def metric(name: str) -> Metric:
    try:
        return BY_NAME[name]
    except KeyError:
        raise UnknownMetric(f"unknown metric {name!r}; known: {', '.join(BY_NAME)}") from None


async def run_metric(ch: ClickHouse, name: str, since: datetime, until: datetime,
                     currency: str | None, bucket: str = "day") -> dict[str, Any]:
    m = bucketed(metric(name), bucket)
    columns, rows = await ch.aquery(m.sql, parameters(since, until, currency))
    if m.name == "failure_reasons":
        rows = [_without_cancel_reason(columns, row) for row in rows]
    currencies = sorted({str(r[columns.index("currency")]) for r in rows}) if "currency" in columns else []
    return {
        "name": m.name,
        "title": m.title,
        "chart": m.chart,
        "x": m.x,
        "y": list(m.y),
        "series": m.series,
        "money": m.money,
        "group": m.group,
        "bucket": bucket if m.buckets else None,
        "columns": columns,
        "rows": [[codec.jsonable(v) for v in row] for row in rows],
        "exponents": exponents(currencies),
    }


def _without_cancel_reason(columns: list[str], row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A cancelled payment's provider message is the customer's own cancel reason: it is not
    for everyone who reads the failure table (the explorer still shows it to support)."""
    if row[columns.index("outcome")] != "cancelled":
        return row
    at = columns.index("provider_message")
    return (*row[:at], "", *row[at + 1:])


def to_csv(result: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(result["columns"])
    writer.writerows(result["rows"])
    return out.getvalue()


def describe() -> list[dict[str, Any]]:
    return [
        {"name": m.name, "title": m.title, "chart": m.chart, "group": m.group, "money": m.money,
         "description": m.description, "buckets": m.buckets}
        for m in BY_NAME.values()
    ]
