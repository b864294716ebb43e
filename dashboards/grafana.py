"""Grafana dashboards generated from the same queries as the built-in page.

``python -m dashboards.grafana`` rewrites ``dashboards/grafana/dashboards/*.json``; a test
checks the committed files equal what this generates, so the two never drift.

What Grafana adds to the page's SQL, and only that:

- the page's parameters become the ClickHouse data source's macros and variables;
- money in major units: every ``*_minor`` column a money query returns is divided by
  ``10^exponent`` of its row's currency (the exponents of :mod:`trailpay.domain.money`, so
  KES 250000 minor reads 2500 and UGX 2500 reads 2500) and loses its ``_minor`` suffix; a
  currency without a known exponent reads NaN, never a guessed figure;
- money panels repeat per currency (the ``currency`` variable lists the range's currencies,
  busiest first, so the default is the busiest): no panel ever sums or draws two
  currencies together;
- revenue by day, week or month (the ``bucket`` variable), regrouped from the page's daily
  revenue query, on a category axis.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from dashboards.queries import METRICS, Metric
from sinks.clickhouse.schema import DATABASE
from trailpay.domain.money import CURRENCY_EXPONENTS

OUT = Path(__file__).resolve().parent / "grafana" / "dashboards"
DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "trailpay-clickhouse"}
BOARDS = {
    "revenue": ("TrailPay revenue", ("revenue",)),
    "failures": ("TrailPay failures", ("failures",)),
    "providers": ("TrailPay providers and payments", ("providers", "payments")),
}
CHARTS = {"bar": "barchart", "line": "timeseries", "pie": "piechart", "table": "table"}
MINOR = "_minor"
#: ``10^exponent`` of the row's currency (NaN for a currency we do not know).
_CODES = sorted(CURRENCY_EXPONENTS)
SCALE = ("exp10(transform(toString(currency), [{codes}], [{exps}], nan))".format(
    codes=", ".join(f"'{c}'" for c in _CODES),
    exps=", ".join(f"{CURRENCY_EXPONENTS[c]}." for c in _CODES)))
BUCKET = ("toString(multiIf('${bucket}' = 'month', toStartOfMonth(day), "
          "'${bucket}' = 'week', toMonday(day), day))")
#: The range's currencies, busiest first (Grafana selects the first by default).
CURRENCIES_SQL = (f"SELECT currency FROM {DATABASE}.payments FINAL WHERE created_at >= $__fromTime "
                  "AND created_at < $__toTime GROUP BY currency ORDER BY count() DESC, currency")


def outer_columns(sql: str) -> list[str]:
    """The names of the columns the final (outermost) SELECT of ``sql`` returns."""
    depth, start, end = 0, None, None
    for match in re.finditer(r"\(|\)|\bSELECT\b|\bFROM\b", sql):
        token = match.group()
        if token in "()":
            depth += 1 if token == "(" else -1
        elif depth == 0 and token == "SELECT":
            start, end = match.end(), None
        elif depth == 0 and token == "FROM" and start is not None and end is None:
            end = match.start()
    if start is None or end is None:
        raise ValueError("no outer SELECT ... FROM in the query")
    items, depth, begin = [], 0, start
    for i in range(start, end):
        depth += {"(": 1, ")": -1}.get(sql[i], 0)
        if depth == 0 and sql[i] == ",":
            items.append(sql[begin:i])
            begin = i + 1
    items.append(sql[begin:end])
    return [re.split(r"\s+AS\s+", item.strip())[-1].split(".")[-1].strip() for item in items]


def in_major_units(sql: str) -> str:
    """``sql`` with every ``*_minor`` column it returns divided by its currency's 10^exponent."""
    columns = outer_columns(sql)
    money = [c for c in columns if c.endswith(MINOR)]
    if not money:
        return sql  # already in major units
    if "currency" not in columns:
        raise ValueError(f"a money query returning *_minor columns needs its currency, not {columns}")
    shown = ",\n       ".join(
        f"{c} / {SCALE} AS {c.removesuffix(MINOR)}" if c in money else c for c in columns)
    return f"SELECT {shown}\nFROM (\n{sql}\n)"


def _with_macros(metric: Metric) -> str:
    """Our server-side parameters -> the ClickHouse data source's macros and variables."""
    sql = (
        metric.sql.replace("{since:DateTime64(3, 'UTC')}", "$__fromTime")
        .replace("{until:DateTime64(3, 'UTC')}", "$__toTime")
        .replace("{currency:Nullable(String)}", "nullIf('${currency}', 'all')")
    )
    # any other string parameter becomes the dashboard variable of the same name
    return re.sub(r"\{(\w+):String\}", r"'${\1}'", sql).strip()


def grafana_sql(metric: Metric) -> str:
    """The page's query of ``metric`` for Grafana (money in major units)."""
    sql = _with_macros(metric)
    return in_major_units(sql) if metric.money else sql


def bucketed_sql(metric: Metric) -> str:
    """A daily money query regrouped by the ``bucket`` variable (day, week or month)."""
    inner = _with_macros(metric)
    sums = ", ".join(f"sum({c}) AS {c}" for c in outer_columns(inner) if c.endswith(MINOR))
    regrouped = (f"SELECT {BUCKET} AS bucket, currency, {sums}\nFROM (\n{inner}\n)\n"
                 "GROUP BY bucket, currency ORDER BY bucket, currency")
    return in_major_units(regrouped)


def _target(sql: str, table: bool) -> dict[str, Any]:
    return {
        "refId": "A",
        "datasource": DATASOURCE,
        "editorType": "sql",
        "format": 1 if table else 0,
        "queryType": "table",
        "rawSql": sql,
    }


def panel(metric: Metric, index: int, *, sql: str | None = None, title: str | None = None,
          kind: str | None = None, x: str | None = None) -> dict[str, Any]:
    kind = kind or CHARTS[metric.chart]
    out: dict[str, Any] = {
        "id": index + 1,
        "type": kind,
        "title": title or metric.title,
        "description": metric.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 9, "w": 12, "x": 12 * (index % 2), "y": 9 * (index // 2)},
        "targets": [_target(sql or grafana_sql(metric), metric.chart == "table")],
        "fieldConfig": {"defaults": {"unit": "none"}, "overrides": []},
        "options": {"xField": x} if kind == "barchart" and x else {},
    }
    if metric.money:
        # one panel per currency: the title names it, the query filters on it
        out["title"] = f"{out['title']} (${{currency}})"
        out["repeat"] = "currency"
        out["repeatDirection"] = "h"
        out["maxPerRow"] = 2
        out["description"] = (metric.description + " " if metric.description else "") + \
            "Amounts in major units of the currency."
    return out


def panels(metrics: list[Metric]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for metric in metrics:
        out.append(panel(metric, len(out), x=metric.x))
        if metric.money and metric.x == "day" and any(c.endswith(MINOR) for c in outer_columns(metric.sql)):
            out.append(panel(metric, len(out), sql=bucketed_sql(metric), kind="barchart", x="bucket",
                             title=metric.title.replace("Daily revenue", "Revenue by ${bucket}")))
    return out


def variables() -> list[dict[str, Any]]:
    return [
        {"name": "currency", "label": "Currency", "type": "query", "datasource": DATASOURCE,
         "query": CURRENCIES_SQL, "definition": CURRENCIES_SQL, "refresh": 2,
         "includeAll": True, "allValue": "all", "multi": False, "sort": 0},
        {"name": "bucket", "label": "Buckets", "type": "custom", "query": "day,week,month",
         "current": {"text": "day", "value": "day"},
         "options": [{"text": b, "value": b, "selected": b == "day"} for b in ("day", "week", "month")]},
    ]


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
        "templating": {"list": variables()},
        "panels": panels(metrics),
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
