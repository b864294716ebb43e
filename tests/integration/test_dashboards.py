"""Dashboards: every metric on a seeded data set whose answers were worked out by hand,
duplicates and replays that change nothing, the page in headless Chromium, the payment
explorer and `trailpay report`.

The data goes through the real ClickHouse sink (into its own chDB directory) and the real
PostgreSQL sink, on prefixed topics so the stack's own services never see it; an analytics
service of our own then serves that chDB directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import urllib.parse
from datetime import UTC, datetime
from typing import Any

import pytest

from controlplane.stack.state import StackInfo
from tests import sinkdata as sd
from tests.integration import dashutil as du
from tests.integration.dashutil import (
    CHROMIUM,
    SERVICE_TOKEN,
    SINCE,
    UNTIL,
    Analytics,
    Svc,
    by,
    cards,
    explorer_refs,
    seed,
)
from tests.support.processes import ROOT, clean_env, trailpay_argv
from trailpay import topics

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def seeded(stack, tmp_path_factory):
    settings = stack.settings
    tag = sd.new_prefix()[1:-1].upper()
    prefix = sd.new_prefix()
    data_dir = tmp_path_factory.mktemp("dash")
    asyncio.run(sd.create_prefixed_topics(settings, prefix))
    changes, bookings, refs = seed(tag)
    # everything twice: duplicates must change no figure
    for _ in range(2):
        asyncio.run(sd.produce(settings, prefix + topics.PAYMENT_STATE, changes))
        asyncio.run(sd.produce(settings, prefix + topics.BOOKING_EVENTS, bookings))
    asyncio.run(sd.drain_clickhouse(settings, data_dir, prefix, f"dash-ch-{tag}"))
    asyncio.run(sd.drain_postgres(settings, prefix, f"dash-pg-{tag}"))
    viewer = du.issue_token(settings, f"analyst-{tag.lower()}@example.com", "viewer")
    state = {"svc": Svc(Analytics(settings, data_dir), viewer), "refs": refs, "settings": settings,
             "prefix": prefix, "tag": tag, "data_dir": data_dir, "changes": changes, "bookings": bookings,
             "viewer_token": viewer}
    try:
        yield state
    finally:
        state["svc"].stop()


def test_success_and_failure_rates(seeded):
    rows = by(seeded["svc"].rows("success_rates"), "provider")
    assert {k: (r["settled"], r["succeeded"], r["failed"], r["cancelled"], r["expired"]) for k, r in rows.items()} == {
        "mpesa": (3, 1, 1, 0, 1), "airtel": (1, 1, 0, 0, 0), "stripe": (3, 2, 1, 0, 0)}
    assert rows["mpesa"]["success_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert rows["stripe"]["failure_rate"] == pytest.approx(1 / 3, abs=1e-4)


def test_failure_reasons_keep_provider_codes(seeded):
    rows = seeded["svc"].rows("failure_reasons")
    assert sorted((r["provider"], r["outcome"], r["provider_code"], r["payments"]) for r in rows) == [
        ("mpesa", "expired", "1037", 1), ("mpesa", "failed", "1", 1), ("stripe", "failed", "card_declined", 1)]


def test_average_amount_in_minor_units(seeded):
    rows = by(seeded["svc"].rows("average_amount"), "currency", "provider")
    assert {k: (r["payments"], r["average_minor"]) for k, r in rows.items()} == {
        ("KES", "mpesa"): (1, 100_000), ("KES", "airtel"): (1, 30_000), ("USD", "stripe"): (2, 7_500)}
    only_usd = seeded["svc"].rows("average_amount", currency="USD")
    assert [(r["currency"], r["average_minor"]) for r in only_usd] == [("USD", 7_500)]


def test_methods_countries_regions(seeded):
    svc = seeded["svc"]
    methods = by(svc.rows("payment_methods"), "method", "provider")
    assert {k: (r["payments"], r["paid"]) for k, r in methods.items()} == {
        ("mobile_money", "mpesa"): (3, 1), ("mobile_money", "airtel"): (1, 1), ("card", "stripe"): (3, 2)}
    countries = by(svc.rows("countries"), "country", "currency")
    assert {k: (r["payments"], r["paid"], r["gross_minor"]) for k, r in countries.items()} == {
        ("KE", "KES"): (4, 2, 130_000), ("US", "USD"): (3, 2, 15_000)}
    regions = by(svc.rows("mobile_regions"), "prefix", "provider")
    assert {k: (r["country"], r["payments"], r["paid"]) for k, r in regions.items()} == {
        ("25471", "mpesa"): ("KE", 3, 1), ("25473", "airtel"): ("KE", 1, 1)}


def test_daily_and_monthly_revenue_gross_and_net(seeded):
    svc = seeded["svc"]
    daily = by(svc.rows("daily_revenue"), "day", "currency")
    assert {k: (r["gross_minor"], r["refunded_minor"], r["net_minor"]) for k, r in daily.items()} == {
        ("2031-03-01", "KES"): (130_000, 0, 130_000),
        ("2031-03-01", "USD"): (15_000, 0, 15_000),
        ("2031-03-02", "USD"): (0, 3_000, -3_000)}
    monthly = svc.rows("monthly_revenue", currency="USD")
    assert [(r["month"], r["gross_minor"], r["refunded_minor"], r["net_minor"]) for r in monthly] == [
        ("2031-03-01", 15_000, 3_000, 12_000)]


def test_revenue_per_iso_week_and_month(seeded):
    svc = seeded["svc"]
    # Saturday 1 and Sunday 2 March 2031 are both in ISO week 9 (Monday 24 February on)
    weekly = svc.rows("daily_revenue", bucket="week")
    assert [(r["week"], r["currency"], r["gross_minor"], r["refunded_minor"], r["net_minor"]) for r in weekly] == [
        ("2031-W09", "KES", 130_000, 0, 130_000), ("2031-W09", "USD", 15_000, 3_000, 12_000)]
    monthly = svc.rows("daily_revenue", currency="USD", bucket="month")
    assert [(r["month"], r["currency"], r["gross_minor"], r["refunded_minor"], r["net_minor"]) for r in monthly] == [
        ("2031-03", "USD", 15_000, 3_000, 12_000)]
    assert svc.metric("daily_revenue", bucket="week")["x"] == "week"
    status, _, _ = svc.analytics.call("GET", "/api/metrics/daily_revenue?bucket=year", token=svc.analytics.token)
    assert status == 422


def test_refunds_and_refund_rate(seeded):
    svc = seeded["svc"]
    assert [(r["currency"], r["reason"], r["refunds"], r["refunded_minor"]) for r in svc.rows("refunds")] == [
        ("USD", "requested_by_customer", 1, 3_000)]
    rate = by(svc.rows("refund_rate"), "provider")
    assert {k: (r["paid_payments"], r["refunded_payments"], r["refund_rate"]) for k, r in rate.items()} == {
        "airtel": (1, 0, 0.0), "mpesa": (1, 0, 0.0), "stripe": (2, 1, 0.5)}


def test_conversion_and_time_to_pay(seeded):
    (row,) = seeded["svc"].rows("conversion")
    # BK1 booked at 09:59, paid 10:01 (120 s); BK2's payment failed
    assert (row["bookings"], row["paid_bookings"], row["conversion"]) == (2, 1, 0.5)
    assert row["p50_seconds_to_pay"] == 120


def test_provider_performance_percentiles_and_sweeps(seeded):
    rows = by(seeded["svc"].rows("provider_performance"), "provider")
    # mpesa settled after 60 s, 30 s and 300 s (the last one by the sweeper)
    assert (rows["mpesa"]["settled"], rows["mpesa"]["p50_ms"], rows["mpesa"]["p99_ms"]) == (3, 60_000, 300_000)
    assert (rows["mpesa"]["settled_by_sweep"], rows["mpesa"]["sweep_share"]) == (1, pytest.approx(0.3333, abs=1e-4))
    assert (rows["stripe"]["p50_ms"], rows["stripe"]["settled_by_sweep"]) == (10_000, 0)


def test_anomalies_flag_nothing_in_a_quiet_hour(seeded):
    rows = seeded["svc"].rows("anomalies")
    assert rows, "one row per provider and hour"
    assert not any(r["failure_spike"] or r["volume_spike"] for r in rows)


def test_csv_export_matches_json(seeded):
    svc = seeded["svc"]
    csv_text = svc.metric("success_rates", fmt="csv")
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith("provider,settled,succeeded")
    assert len(lines) == 1 + len(svc.rows("success_rates"))


def test_replay_changes_nothing(seeded):
    settings, prefix = seeded["settings"], seeded["prefix"]
    before = {name: seeded["svc"].rows(name) for name in ("success_rates", "daily_revenue", "refunds", "conversion")}
    seeded["svc"].stop()
    asyncio.run(sd.produce(settings, prefix + topics.PAYMENT_STATE, seeded["changes"]))
    asyncio.run(sd.produce(settings, prefix + topics.BOOKING_EVENTS, seeded["bookings"]))
    # a fresh consumer group reads the whole topic again: a full replay of three copies
    asyncio.run(sd.drain_clickhouse(settings, seeded["data_dir"], prefix, f"dash-replay-{seeded['tag']}"))
    seeded["svc"] = Svc(Analytics(settings, seeded["data_dir"]), seeded["viewer_token"])
    after = {name: seeded["svc"].rows(name) for name in before}
    assert after == before


def test_headline_tiles_per_currency(seeded):
    svc = seeded["svc"].analytics
    query = urllib.parse.urlencode({"since": SINCE.isoformat(), "until": UNTIL.isoformat()})
    status, h = svc.get(f"/api/metrics/headlines?{query}")
    assert status == 200
    # "today" is the range end's day, 2 March: nothing settled then (only the USD refund)
    assert (h["today"], h["month"]) == ("2031-03-02", "2031-03")
    assert h["revenue"] == [
        {"currency": "KES", "today_payments": 0, "today_minor": 0, "month_payments": 2, "month_minor": 130_000},
        {"currency": "USD", "today_payments": 0, "today_minor": 0, "month_payments": 2, "month_minor": 15_000}]
    assert h["success"] == {"settled": 7, "succeeded": 4, "rate": 0.5714, "currency": None}
    assert h["currencies"] == [{"currency": "KES", "payments": 4}, {"currency": "USD", "payments": 3}]
    assert h["exponents"] == {"KES": 2, "USD": 2}
    assert (h["open_payments"], h["stuck_payments"], h["late_payments"]) == (0, 0, 0)
    assert isinstance(h["dead_letters"], int)  # the session stack's database: other tests add some
    # request to settled: mpesa 30, 60 and 300 s; airtel 120 s; stripe 5, 10 and 20 s
    assert h["latency"] == [
        {"provider": "airtel", "payments": 1, "p50_ms": 120_000, "p95_ms": 120_000},
        {"provider": "mpesa", "payments": 3, "p50_ms": 60_000, "p95_ms": 300_000},
        {"provider": "stripe", "payments": 3, "p50_ms": 10_000, "p95_ms": 20_000}]
    assert h["sweep"] == {"settled": 7, "by_sweep": 1, "share": 0.1429}  # the expired mpesa one
    _, usd = svc.get(f"/api/metrics/headlines?{query}&currency=USD")
    assert usd["success"] == {"settled": 3, "succeeded": 2, "rate": 0.6667, "currency": "USD"}
    assert [r["provider"] for r in usd["latency"]] == ["stripe"]
    assert usd["sweep"] == {"settled": 3, "by_sweep": 0, "share": 0.0}
    status, first_day = svc.get("/api/metrics/headlines?" + urllib.parse.urlencode(
        {"since": SINCE.isoformat(), "until": datetime(2031, 3, 2, tzinfo=UTC).isoformat()}))
    assert [(r["currency"], r["today_payments"], r["today_minor"]) for r in first_day["revenue"]] == [
        ("KES", 2, 130_000), ("USD", 2, 15_000)]


def test_explorer_finds_by_every_id_and_orders_history(seeded, stack):
    settings, refs = seeded["settings"], seeded["refs"]
    email = f"ops-{seeded['tag'].lower()}@example.com"
    du.cli(settings, "users", "create", "--email", email, "--role", "admin")
    token = du.issue_token(settings, email, "admin")
    svc = seeded["svc"].analytics

    assert svc.call("GET", "/api/explorer/search?q=x")[0] == 401
    assert svc.get("/api/explorer/search?q=x", seeded["viewer_token"])[0] == 403  # analysts see no customers
    for q in (refs["a7"], f"BK1-{seeded['tag']}", f"prov-{refs['a6']}"):
        status, body = svc.get(f"/api/explorer/search?q={urllib.parse.quote(q)}", token)
        assert status == 200 and len(body["results"]) == 1, (q, body)
    status, detail = svc.get(f"/api/explorer/payments/{refs['a7']}", token)
    assert status == 200
    assert [t["to"] for t in detail["transitions"]] == ["created", "pending", "succeeded", "partially_refunded"]
    assert [t["version"] for t in detail["transitions"]] == [1, 2, 3, 4]
    assert detail["refunds"][0]["amount_minor"] == 3_000
    assert detail["payment"]["provider_code"] == "succeeded"
    seeded["admin_token"] = token


def test_explorer_drill_down_filters(seeded):
    refs, svc, token = seeded["refs"], seeded["svc"].analytics, seeded["admin_token"]

    def found(**q: str) -> list[str]:
        status, body = svc.get(f"/api/explorer/search?{urllib.parse.urlencode(q)}", token)
        assert status == 200, body
        return sorted(r["reference"] for r in body["results"])

    day = {"since": "2031-03-01T00:00:00Z", "until": "2031-03-02T00:00:00Z"}
    assert found(reached="succeeded", currency="KES", **day) == sorted([refs["a1"], refs["a4"]])
    assert found(reached="succeeded", currency="USD", **day) == sorted([refs["a5"], refs["a7"]])
    assert found(reached="failed", provider="stripe", **day) == [refs["a6"]]
    assert found(reached="succeeded", since="2031-03-02T00:00:00Z", until="2031-03-03T00:00:00Z") == []
    assert svc.get("/api/explorer/search?reached=succeeded", token)[0] == 422  # needs a range
    assert svc.get("/api/explorer/search", token)[0] == 422
    q = urllib.parse.urlencode({"reached": "succeeded", **day})
    assert svc.get(f"/api/explorer/search?{q}", seeded["viewer_token"])[0] == 403


def test_report_matches_the_queries(seeded, tmp_path):
    svc = seeded["svc"]
    info = StackInfo(data_dir=str(tmp_path), started_at=datetime.now(UTC), supervisor_pid=os.getpid(),
                     kafka_bootstrap=seeded["settings"].kafka_bootstrap, database_url=seeded["settings"].database_url,
                     clickhouse_dsn=f"chdb://{seeded['data_dir']}/clickhouse", dashboard_url=svc.url, partitions=4)
    info.write(tmp_path)
    # what `trailpay up` generates: the report sends the data directory's service token
    (tmp_path / "secrets.json").write_text(json.dumps({"analytics_service_token": SERVICE_TOKEN}))
    env = clean_env()
    out = subprocess.run([*trailpay_argv("report"), "--data-dir", str(tmp_path),
                          "--since", SINCE.isoformat(), "--until", UNTIL.isoformat(), "--format", "json",
                          "--metric", "success_rates", "--metric", "daily_revenue"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    results = {r["name"]: r for r in json.loads(out.stdout)}
    assert results["success_rates"]["rows"] == svc.metric("success_rates")["rows"]
    assert results["daily_revenue"]["rows"] == svc.metric("daily_revenue")["rows"]
    table = subprocess.run([*trailpay_argv("report"), "--data-dir", str(tmp_path),
                            "--since", SINCE.isoformat(), "--until", UNTIL.isoformat(), "--metric", "success_rates"],
                           env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert table.returncode == 0 and "mpesa" in table.stdout and "Success and failure" in table.stdout


_RANGE_QUERY = urllib.parse.urlencode({"since": SINCE.strftime("%Y-%m-%dT%H:%M"),
                                       "until": UNTIL.strftime("%Y-%m-%dT%H:%M")})


def _signed_in_on_revenue(pw: Any, seeded: dict[str, Any], who: str, errors: list[str]) -> tuple[Any, Any]:
    """Chromium signed in as an admin on the revenue tab of the seeded range, its console
    errors and page errors collected into ``errors``."""
    browser = du.launch(pw)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    token = seeded.get("admin_token") or du.issue_token(
        seeded["settings"], f"{who}-{seeded['tag'].lower()}@example.com", "admin")
    du.sign_in(page, f"{seeded['svc'].url}/?{_RANGE_QUERY}&tab=revenue", token)
    page.wait_for_selector("body[data-loaded='revenue']", timeout=30_000)
    return browser, page


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/test.sh installs it)")
def test_page_renders_every_chart_in_chromium(seeded, artifacts_dir):
    from playwright.sync_api import sync_playwright

    svc = seeded["svc"]
    errors: list[str] = []
    with sync_playwright() as pw:
        browser, page = _signed_in_on_revenue(pw, seeded, "ops-page", errors)
        # the currency picker defaults to the busiest currency of the range: KES (4 payments to 3)
        assert page.input_value("#currency") == "KES"
        assert page.inner_text("#tile-month .figure[data-currency='KES'] strong") == "KES 1,300.00"
        assert page.inner_text("#tile-month .figure[data-currency='USD'] strong") == "USD 150.00"
        assert page.inner_text("#tile-success strong") == "50.0 %"
        assert page.inner_text("#tile-success .count") == "2 of 4 settled payments"  # KES only
        assert cards(page)["metric-daily_revenue"] == (1, None)
        # day buckets on a category axis: one tick per day, no 23:59:59.999
        ticks = page.eval_on_selector_all("#metric-daily_revenue .xtick text", "ts => ts.map(t => t.textContent)")
        assert ticks == ["2031-03-01"]
        # the tiles of the chosen currency (KES): latency per provider, the sweep's share
        assert page.inner_text("#tile-latency .figure[data-provider='mpesa']") == "mpesa p50 60 s · p95 300 s (3 payments)"
        assert page.inner_text("#tile-latency .figure[data-provider='airtel']") == "airtel p50 120 s · p95 120 s (1 payment)"
        assert page.inner_text("#tile-sweep strong") == "25.0 %"
        assert page.inner_text("#tile-sweep .count") == "1 of 4 settled payments"
        # consumer lag: measured in the background, so a count of records or not yet measured
        assert page.inner_text("#tile-lag h3") == "Consumer lag"
        assert re.fullmatch(r"n/a|\d+ records?", page.inner_text("#tile-lag strong"))
        # ISO week and month buckets, on the same category axis
        for bucket, tick, title in (("week", "2031-W09", "Revenue per ISO week"), ("month", "2031-03", "Revenue per month")):
            page.goto(f"{svc.url}/?{_RANGE_QUERY}&tab=revenue&bucket={bucket}")
            page.wait_for_selector("body[data-loaded='revenue']", timeout=30_000)
            assert page.input_value("#bucket") == bucket
            ticks = page.eval_on_selector_all("#metric-daily_revenue .xtick text", "ts => ts.map(t => t.textContent)")
            assert ticks == [tick], bucket
            assert page.inner_text("#metric-daily_revenue h2 span") == f"{title} (gross, refunds, net)"
        page.screenshot(path=str(artifacts_dir / "dashboard-revenue-month.png"), full_page=True)
        drawn: dict[str, int] = {}
        for tab in ("revenue", "failures", "providers", "payments"):
            page.goto(f"{svc.url}/?{_RANGE_QUERY}&tab={tab}&currency=USD")
            page.wait_for_selector(f"body[data-loaded='{tab}']", timeout=30_000)
            found = cards(page)
            assert found, tab
            for name, (rows, error) in found.items():
                assert error is None, (name, error)
                assert rows > 0, f"{name} has no data"
                drawn[name] = rows
            page.screenshot(path=str(artifacts_dir / f"dashboard-{tab}.png"), full_page=True)
        from dashboards.queries import BY_NAME
        assert set(drawn) == {f"metric-{n}" for n in BY_NAME}
        assert drawn["metric-daily_revenue"] == 2  # USD: the sale on 1 March, the refund on 2 March
        assert page.input_value("#currency") == "USD"
        # an empty range says so instead of drawing -1..1 axes
        empty = urllib.parse.urlencode({"since": "2030-01-01T00:00", "until": "2030-01-02T00:00"})
        page.goto(f"{svc.url}/?{empty}&tab=revenue")
        page.wait_for_selector("body[data-loaded='revenue']", timeout=30_000)
        assert all(rows == 0 for rows, _ in cards(page).values())
        assert page.inner_text("#metric-daily_revenue .body") == "no payments in this range"
        assert page.query_selector_all(".plot") == []
        page.screenshot(path=str(artifacts_dir / "dashboard-empty-range.png"), full_page=True)
        # the explorer shows a payment's history in order, its amount in major units
        page.goto(f"{svc.url}/?tab=explorer")
        page.fill("#q", seeded["refs"]["a7"])
        page.click("#explorer-form button")
        page.wait_for_selector("#explorer-payment", timeout=30_000)
        text = page.inner_text("#explorer-detail")
        transitions = text[text.index("Transitions"):text.index("Callbacks and webhooks")]
        assert (transitions.index("created") < transitions.index("pending")
                < transitions.index("succeeded") < transitions.index("partially_refunded"))
        assert "USD 100.00" in text and "USD 30.00" in text
        page.screenshot(path=str(artifacts_dir / "dashboard-explorer.png"), full_page=True)
        browser.close()
    assert not errors, errors


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/test.sh installs it)")
def test_drill_down_from_a_chart_to_the_payments_behind_it(seeded, artifacts_dir):
    from playwright.sync_api import sync_playwright

    svc, refs = seeded["svc"], seeded["refs"]
    errors: list[str] = []
    with sync_playwright() as pw:
        browser, page = _signed_in_on_revenue(pw, seeded, "ops-drill", errors)
        assert page.input_value("#currency") == "KES"
        # the KES point of 1 March: the two KES payments that succeeded that day
        du.click_center(page, "#metric-daily_revenue .scatterlayer .point")
        assert explorer_refs(page) == sorted([refs["a1"], refs["a4"]])
        assert page.inner_text("#explorer-drill") == "Payments that reached succeeded on 2031-03-01 · KES"
        assert page.is_visible("#explorer") and not page.is_visible("#charts")
        page.screenshot(path=str(artifacts_dir / "dashboard-drill-revenue.png"), full_page=True)
        # the status chart: stripe's "failed" bar (airtel's is empty, mpesa's comes first)
        page.goto(f"{svc.url}/?{_RANGE_QUERY}&tab=failures")
        page.wait_for_selector("body[data-loaded='failures']", timeout=30_000)
        du.click_center(page, "#metric-success_rates .barlayer .trace:nth-child(2) .point path", index=1)
        assert explorer_refs(page) == [refs["a6"]]
        # an analyst (viewer) is told that drill-down needs the support role
        viewer = browser.new_page(viewport={"width": 1400, "height": 1000})
        viewer.on("pageerror", lambda exc: errors.append(str(exc)))
        du.sign_in(viewer, f"{svc.url}/?{_RANGE_QUERY}&tab=revenue", seeded["viewer_token"])
        viewer.wait_for_selector("body[data-loaded='revenue']", timeout=30_000)
        du.click_center(viewer, "#metric-daily_revenue .scatterlayer .point")
        viewer.wait_for_selector("#notice:not([hidden])", timeout=30_000)
        assert viewer.inner_text("#notice") == (
            "Drill-down to the payments behind a figure needs the support role (you are viewer).")
        assert viewer.is_visible("#charts") and not viewer.is_visible("#explorer")
        browser.close()
    assert not errors, errors
