"""Issue 18, "figures people read": the revenue chart per day, ISO week or month, and the
provider-latency and sweep-share tiles, run on ClickHouse (chDB, in a subprocess so no other
test's chDB path shares this process) over rows whose answers were worked out by hand."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dashboards.queries import BY_NAME, bucketed

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "dashboards" / "static"

_RUN = r"""
import asyncio, json, sys
from datetime import datetime, UTC
from dashboards.headlines import headlines
from dashboards.metrics_api import run_metric
from sinks.clickhouse.schema import statements
from trailpay.clickhouse import ClickHouse
from trailpay.settings import Settings

ch = ClickHouse(Settings())
for statement in statements():
    ch.command(statement)
ch.command('''INSERT INTO trailpay.payment_changes (event_id, reference, version, to_status, at,
    provider, method, currency, amount_minor, created_at, since_created_ms, settled_by) VALUES
  ('e1', 'R1', 2, 'succeeded', '2026-03-01 10:00:00', 'mpesa', 'mobile_money', 'KES', 100000, '2026-03-01 09:59:00', 60000, 'callback'),
  ('e2', 'R2', 2, 'succeeded', '2026-03-02 10:00:00', 'mpesa', 'mobile_money', 'KES', 50000, '2026-03-02 09:59:00', 30000, 'callback'),
  ('e3', 'R3', 2, 'succeeded', '2026-03-08 23:59:59', 'mpesa', 'mobile_money', 'KES', 25000, '2026-03-08 23:50:00', 300000, 'callback'),
  ('e4', 'R4', 2, 'succeeded', '2026-03-09 00:00:00', 'stripe', 'card', 'USD', 700, '2026-03-08 23:59:00', 5000, 'webhook'),
  ('e5', 'R5', 2, 'succeeded', '2027-01-01 12:00:00', 'airtel', 'mobile_money', 'KES', 1000, '2027-01-01 11:59:00', 1500, 'callback'),
  ('e6', 'R6', 2, 'succeeded', '2024-12-30 12:00:00', 'airtel', 'mobile_money', 'KES', 3000, '2024-12-30 11:59:00', 2500, 'callback'),
  ('e7', 'R7', 2, 'failed', '2026-03-03 10:00:00', 'mpesa', 'mobile_money', 'KES', 9000, '2026-03-03 09:58:00', 120000, 'sweep'),
  ('e7', 'R7', 2, 'failed', '2026-03-03 10:00:00', 'mpesa', 'mobile_money', 'KES', 9000, '2026-03-03 09:58:00', 120000, 'sweep')''')
ch.command('''INSERT INTO trailpay.refunds (refund_id, reference, amount_minor, currency, reason, status,
    requested_at, updated_at) VALUES
  ('rf2', 'R2', 20000, 'KES', 'requested_by_customer', 'succeeded', '2026-03-04 08:00:00', '2026-03-04 08:00:00')''')

def t(s):
    return datetime.fromisoformat(s).replace(tzinfo=UTC)

async def main():
    out = {}
    for bucket in ("day", "week", "month"):
        r = await run_metric(ch, "daily_revenue", t("2024-12-01"), t("2027-02-01"), None, bucket)
        out[bucket] = {"x": r["x"], "title": r["title"], "bucket": r["bucket"], "columns": r["columns"],
                       "rows": r["rows"]}
    usd = await run_metric(ch, "daily_revenue", t("2024-12-01"), t("2027-02-01"), "USD", "week")
    out["week_usd"] = usd["rows"]
    out["march"] = await headlines(ch, None, t("2026-03-01"), t("2026-04-01"), None)
    out["march_usd"] = await headlines(ch, None, t("2026-03-01"), t("2026-04-01"), "USD")
    out["empty"] = await headlines(ch, None, t("2020-01-01"), t("2020-01-02"), None)
    return out

sys.stdout.write(json.dumps(asyncio.run(main()), default=str))
"""


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    data = tmp_path_factory.mktemp("figures")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAILPAY_")}
    env["TRAILPAY_DATA_DIR"] = str(data)
    done = subprocess.run([sys.executable, "-c", _RUN], capture_output=True, text=True, timeout=180,
                          cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_day_buckets_are_the_daily_query(ran):
    assert ran["day"]["x"] == "day" and ran["day"]["bucket"] == "day"
    assert ran["day"]["rows"][:3] == [["2024-12-30", "KES", 3000, 0, 3000],
                                      ["2026-03-01", "KES", 100000, 0, 100000],
                                      ["2026-03-02", "KES", 50000, 0, 50000]]


def test_iso_weeks_start_on_monday_and_carry_their_iso_year(ran):
    week = ran["week"]
    assert (week["x"], week["title"]) == ("week", "Revenue per ISO week (gross, refunds, net)")
    assert week["columns"] == ["week", "currency", "gross_minor", "refunded_minor", "net_minor"]
    assert week["rows"] == [
        ["2025-W01", "KES", 3000, 0, 3000],         # Monday 30 December 2024
        ["2026-W09", "KES", 100000, 0, 100000],     # Sunday 1 March
        ["2026-W10", "KES", 75000, 20000, 55000],   # Monday 2 March to Sunday 8 March 23:59:59
        ["2026-W11", "USD", 700, 0, 700],           # Monday 9 March 00:00
        ["2026-W53", "KES", 1000, 0, 1000]]         # Friday 1 January 2027
    assert ran["week_usd"] == [["2026-W11", "USD", 700, 0, 700]]


def test_months(ran):
    month = ran["month"]
    assert (month["x"], month["title"]) == ("month", "Revenue per month (gross, refunds, net)")
    assert month["rows"] == [
        ["2024-12", "KES", 3000, 0, 3000],
        ["2026-03", "KES", 175000, 20000, 155000],
        ["2026-03", "USD", 700, 0, 700],
        ["2027-01", "KES", 1000, 0, 1000]]


def test_latency_and_sweep_tiles(ran):
    march = ran["march"]
    # mpesa settled after 30, 60, 120 and 300 s (the failed one twice in the table: once here)
    assert march["latency"] == [
        {"provider": "mpesa", "payments": 4, "p50_ms": 120000, "p95_ms": 300000},
        {"provider": "stripe", "payments": 1, "p50_ms": 5000, "p95_ms": 5000}]
    assert march["sweep"] == {"settled": 5, "by_sweep": 1, "share": 0.2}
    assert ran["march_usd"]["latency"] == [{"provider": "stripe", "payments": 1, "p50_ms": 5000, "p95_ms": 5000}]
    assert ran["march_usd"]["sweep"] == {"settled": 1, "by_sweep": 0, "share": 0.0}
    assert ran["empty"]["latency"] == [] and ran["empty"]["sweep"] == {"settled": 0, "by_sweep": 0, "share": None}


def test_only_bucketed_metrics_take_a_bucket():
    assert bucketed(BY_NAME["success_rates"], "week") is BY_NAME["success_rates"]
    assert bucketed(BY_NAME["daily_revenue"], "day") is BY_NAME["daily_revenue"]
    with pytest.raises(ValueError, match="day, week or month"):
        bucketed(BY_NAME["daily_revenue"], "year")
    assert [m.name for m in BY_NAME.values() if m.buckets] == ["daily_revenue"]


@pytest.mark.parametrize("path", sorted(STATIC.glob("*.js")), ids=lambda p: p.name)
def test_every_page_script_builds_nodes_from_text_and_stays_small(path):
    text = path.read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "localStorage"):
        assert sink not in text, f"{path.name} uses {sink}"
    assert len(text.splitlines()) <= 400


def test_the_page_loads_every_script_from_a_file():
    html = (STATIC / "index.html").read_text()
    loaded = re.findall(r'<script src="/static/([\w.]+)"', html)
    assert loaded == ["plotly.min.js", "format.js", "dom.js", "tiles.js", "explorer.js", "app.js"]
    assert {p.name for p in STATIC.glob("*.js")} == set(loaded) - {"plotly.min.js"}
