"""Issue 18: the Grafana boards read money in major units, per currency, with day/week/month
buckets, from the page's own queries; the SQL runs on ClickHouse (chDB, in a subprocess so
no other test's chDB path shares this process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dashboards import grafana
from dashboards.queries import BY_NAME, METRICS

ROOT = Path(__file__).resolve().parents[2]
BOARDS = {name: json.loads(text) for name, text in grafana.render().items()}
PANELS = [p for board in BOARDS.values() for p in board["panels"]]


def _panel(title: str) -> dict:
    (found,) = [p for p in PANELS if p["title"] == title]
    return found


def test_outer_columns_are_what_the_final_select_returns():
    assert grafana.outer_columns(BY_NAME["average_amount"].sql) == [
        "currency", "provider", "payments", "total_minor", "average_minor"]
    assert grafana.outer_columns("WITH a AS (SELECT 1 AS x FROM t) SELECT f(x, 2) AS y, z FROM a") == ["y", "z"]
    with pytest.raises(ValueError, match="needs its currency"):
        grafana.in_major_units("SELECT provider, total_minor FROM t")
    assert grafana.in_major_units("SELECT currency, total FROM t") == "SELECT currency, total FROM t"


def test_every_money_panel_is_in_major_units_and_repeats_per_currency():
    money = {m.title for m in METRICS if m.money}
    assert money == {"Average successful transaction amount", "Payments by country",
                     "Daily revenue (gross, refunds, net)", "Monthly revenue (gross, refunds, net)",
                     "Refund rate and reasons"}
    for title in [*money, "Revenue by ${bucket} (gross, refunds, net)"]:
        panel = _panel(f"{title} (${{currency}})")
        sql = panel["targets"][0]["rawSql"]
        assert panel["repeat"] == "currency"
        assert "exp10(transform(toString(currency), [" in sql
        assert "'KES', 'KRW', 'KWD'" in sql and "2., 0., 3." in sql  # KES 2, KRW 0, KWD 3
        assert not [c for c in grafana.outer_columns(sql) if c.endswith("_minor")], title
    for panel in PANELS:
        if "repeat" not in panel:
            assert "exp10(" not in panel["targets"][0]["rawSql"], panel["title"]


def test_the_currency_variable_lists_the_busiest_first_and_buckets_are_day_week_month():
    for board in BOARDS.values():
        currency, bucket = board["templating"]["list"]
        assert currency["name"] == "currency" and currency["type"] == "query"
        assert currency["query"].endswith("ORDER BY count() DESC, currency")
        assert currency["includeAll"] is True and currency["allValue"] == "all"
        assert bucket["name"] == "bucket" and bucket["query"] == "day,week,month"
    bucketed = _panel("Revenue by ${bucket} (gross, refunds, net) (${currency})")
    assert bucketed["type"] == "barchart" and bucketed["options"] == {"xField": "bucket"}


#: Run in a subprocess: the seeded rows and what each Grafana query returns for them.
_RUN = r"""
import json, sys
import clickhouse_connect
from dashboards import grafana
from dashboards.queries import BY_NAME
from sinks.clickhouse.schema import statements

client = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1])
for statement in statements():
    client.command(statement)
client.command('''INSERT INTO trailpay.payment_changes (event_id, reference, version, to_status, at,
    provider, method, currency, amount_minor, created_at, since_created_ms) VALUES
  ('e1', 'R1', 2, 'succeeded', '2026-03-02 10:00:00', 'mpesa', 'mobile_money', 'KES', 250000, '2026-03-02 09:59:00', 60000),
  ('e2', 'R2', 2, 'succeeded', '2026-03-03 10:00:00', 'mpesa', 'mobile_money', 'KES', 100050, '2026-03-03 09:59:00', 60000),
  ('e3', 'R3', 2, 'succeeded', '2026-03-03 11:00:00', 'airtel', 'mobile_money', 'UGX', 2500, '2026-03-03 10:59:00', 60000),
  ('e4', 'R4', 2, 'succeeded', '2026-03-10 11:00:00', 'stripe', 'card', 'KWD', 4250, '2026-03-10 10:59:00', 60000)''')
client.command('''INSERT INTO trailpay.payments (reference, version, status, amount_minor, currency, provider,
    method, created_at, updated_at) VALUES
  ('R1', 2, 'succeeded', 250000, 'KES', 'mpesa', 'mobile_money', '2026-03-02 09:59:00', '2026-03-02 10:00:00'),
  ('R2', 2, 'succeeded', 100050, 'KES', 'mpesa', 'mobile_money', '2026-03-03 09:59:00', '2026-03-03 10:00:00'),
  ('R3', 2, 'succeeded', 2500, 'UGX', 'airtel', 'mobile_money', '2026-03-03 10:59:00', '2026-03-03 11:00:00')''')


def run(sql, currency, bucket="day"):
    sql = (sql.replace("$__fromTime", "toDateTime64('2026-03-01 00:00:00', 3, 'UTC')")
              .replace("$__toTime", "toDateTime64('2026-04-01 00:00:00', 3, 'UTC')")
              .replace("${currency}", currency).replace("${bucket}", bucket))
    result = client.query(sql)
    return [list(result.column_names), [[str(v) for v in row] for row in result.result_rows]]


out = {
    "daily_all": run(grafana.grafana_sql(BY_NAME["daily_revenue"]), "all"),
    "average_kes": run(grafana.grafana_sql(BY_NAME["average_amount"]), "KES"),
    "week_kes": run(grafana.bucketed_sql(BY_NAME["daily_revenue"]), "KES", "week"),
    "month_kes": run(grafana.bucketed_sql(BY_NAME["daily_revenue"]), "KES", "month"),
    "day_ugx": run(grafana.bucketed_sql(BY_NAME["daily_revenue"]), "UGX", "day"),
    "currencies": run(grafana.CURRENCIES_SQL, "all"),
}
sys.stdout.write(json.dumps(out))
"""


def test_the_grafana_sql_runs_on_clickhouse_in_major_units(tmp_path):
    done = subprocess.run([sys.executable, "-c", _RUN, str(tmp_path / "chdb")], capture_output=True,
                          text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["daily_all"] == [["day", "currency", "gross", "refunded", "net"], [
        ["2026-03-02", "KES", "2500.0", "0.0", "2500.0"],
        ["2026-03-03", "KES", "1000.5", "0.0", "1000.5"],
        ["2026-03-03", "UGX", "2500.0", "0.0", "2500.0"],
        ["2026-03-10", "KWD", "4.25", "0.0", "4.25"]]]
    assert out["average_kes"] == [["currency", "provider", "payments", "total", "average"], [
        ["KES", "mpesa", "2", "3500.5", "1750.25"]]]
    assert out["week_kes"] == [["bucket", "currency", "gross", "refunded", "net"], [
        ["2026-03-02", "KES", "3500.5", "0.0", "3500.5"]]]
    assert out["month_kes"][1] == [["2026-03-01", "KES", "3500.5", "0.0", "3500.5"]]
    assert out["day_ugx"][1] == [["2026-03-03", "UGX", "2500.0", "0.0", "2500.0"]]
    assert out["currencies"] == [["currency"], [["KES"], ["UGX"]]]  # the busiest first
