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
import shutil
import subprocess
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controlplane.stack.processes import free_port
from controlplane.stack.state import StackInfo
from tests import sinkdata as sd
from tests.support.processes import ROOT, clean_env, trailpay_argv
from tests.support.waits import wait_for_sync
from trailpay import topics
from trailpay.domain.events import (
    BookingEvent,
    BookingEventKind,
    Money,
    PaymentStateChanged,
    Provider,
)
from trailpay.domain.references import booking_reference
from trailpay.domain.status import PaymentStatus as S

pytestmark = pytest.mark.integration

T0 = datetime(2031, 3, 1, 10, 0, tzinfo=UTC)
SINCE = datetime(2031, 3, 1, tzinfo=UTC)
UNTIL = datetime(2031, 3, 3, tzinfo=UTC)


def history(ref: str, provider: Provider, amount: int, currency: str, outcome: S, *,
            settle_after_s: int, code: str | None = None, message: str | None = None,
            settled_by: str = "callback", phone: str | None = None, country: str = "KE",
            booking_id: str | None = None, refund: tuple[int, datetime] | None = None,
            start: datetime = T0) -> list[PaymentStateChanged]:
    base: dict[str, Any] = dict(
        reference=ref, user_id="dash-user", amount=Money(amount=amount, currency=currency),
        provider=provider, method=sd.method_for(provider), booking_id=booking_id, country=country,
        phone_number=phone, created_at=start, provider_reference=f"prov-{ref}")
    steps: list[sd.Step] = [
        (None, S.CREATED, start, {}),
        (S.CREATED, S.PENDING, start + timedelta(seconds=1), {}),
        (S.PENDING, outcome, start + timedelta(seconds=settle_after_s),
         {"provider_code": code, "provider_message": message, "settled_by": settled_by}),
    ]
    if refund:
        amount_back, when = refund
        steps.append((outcome, S.PARTIALLY_REFUNDED if amount_back < amount else S.REFUNDED, when, {
            "provider_code": code, "settled_by": settled_by, "refunded_amount": amount_back,
            "refunds": (sd.refund_done(ref, amount_back, currency, when),)}))
    return sd.state_changes(ref, base, steps, cause="webhook", cause_prefix="c")


def seed(tag: str) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]], dict[str, str]]:
    """Seven payments and two bookings; the expected figures are in the tests below."""
    b1, b2 = f"BK1-{tag}", f"BK2-{tag}"
    a1, a2 = booking_reference(b1, 1), booking_reference(b2, 1)
    refs = {"a1": a1, "a2": a2, **{k: f"TPDASH{tag}{k.upper()}" for k in ("a3", "a4", "a5", "a6", "a7")}}
    kes = "254712345670"
    changes = [
        *history(a1, Provider.MPESA, 100_000, "KES", S.SUCCEEDED, settle_after_s=60, code="0",
                 phone=kes, booking_id=b1),
        *history(a2, Provider.MPESA, 50_000, "KES", S.FAILED, settle_after_s=30, code="1",
                 message="The balance is insufficient for the transaction.", phone=kes, booking_id=b2),
        *history(refs["a3"], Provider.MPESA, 20_000, "KES", S.EXPIRED, settle_after_s=300, code="1037",
                 message="DS timeout user cannot be reached.", settled_by="sweep", phone=kes),
        *history(refs["a4"], Provider.AIRTEL, 30_000, "KES", S.SUCCEEDED, settle_after_s=120, code="TS",
                 phone="254733000000"),
        *history(refs["a5"], Provider.STRIPE, 5_000, "USD", S.SUCCEEDED, settle_after_s=10,
                 code="succeeded", country="US"),
        *history(refs["a6"], Provider.STRIPE, 2_000, "USD", S.FAILED, settle_after_s=5,
                 code="card_declined", message="Your card was declined.", country="US"),
        *history(refs["a7"], Provider.STRIPE, 10_000, "USD", S.SUCCEEDED, settle_after_s=20,
                 code="succeeded", country="US",
                 refund=(3_000, datetime(2031, 3, 2, 9, 0, tzinfo=UTC))),
    ]
    bookings = [
        BookingEvent(event_id=f"bk-{b}", occurred_at=T0 - timedelta(minutes=1), kind=BookingEventKind.CREATED,
                     booking_id=b, user_id="dash-user", amount=Money(amount=amt, currency="KES"),
                     country="KE", provider=Provider.MPESA, phone_number=kes)
        for b, amt in ((b1, 100_000), (b2, 50_000))
    ]
    return ([(c.reference, c) for c in changes], [(b.booking_id, b) for b in bookings], refs)


class Analytics:
    """Our own analytics service over a chDB directory filled by the real ClickHouse sink."""

    def __init__(self, settings, data_dir: Path) -> None:
        self.port = free_port()
        env = sd.ch_env(settings)
        env.update({"TRAILPAY_DASHBOARD_PORT": str(self.port), "TRAILPAY_DATABASE_URL": settings.database_url,
                    "TRAILPAY_DATA_DIR": str(data_dir)})
        self.proc = subprocess.Popen(trailpay_argv("analytics"),
                                     env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2):
                    return True
            except OSError:
                return False

        wait_for_sync(healthy, 60, "the analytics service started", interval=0.3)

    def metric(self, name: str, currency: str | None = None, fmt: str = "json") -> Any:
        q = {"since": SINCE.isoformat(), "until": UNTIL.isoformat(), "format": fmt}
        if currency:
            q["currency"] = currency
        with urllib.request.urlopen(f"{self.url}/api/metrics/{name}?{urllib.parse.urlencode(q)}",
                                    timeout=30) as resp:
            body = resp.read().decode()
        return body if fmt == "csv" else json.loads(body)

    def rows(self, name: str, currency: str | None = None) -> list[dict[str, Any]]:
        result = self.metric(name, currency)
        return [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


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
    state = {"svc": Analytics(settings, data_dir), "refs": refs, "settings": settings, "prefix": prefix,
             "tag": tag, "data_dir": data_dir, "changes": changes, "bookings": bookings}
    try:
        yield state
    finally:
        state["svc"].stop()


def by(rows: list[dict[str, Any]], *keys: str) -> dict[Any, dict[str, Any]]:
    return {tuple(r[k] for k in keys) if len(keys) > 1 else r[keys[0]]: r for r in rows}


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
    seeded["svc"] = Analytics(settings, seeded["data_dir"])
    after = {name: seeded["svc"].rows(name) for name in before}
    assert after == before


def test_explorer_finds_by_every_id_and_orders_history(seeded, stack):
    settings, refs = seeded["settings"], seeded["refs"]
    env = clean_env(TRAILPAY_DATABASE_URL=settings.database_url, TRAILPAY_KAFKA_BOOTSTRAP=settings.kafka_bootstrap)
    email = f"ops-{seeded['tag'].lower()}@example.com"
    def run(*a):
        return subprocess.run(trailpay_argv(*a), env=env, cwd=ROOT,
                                        capture_output=True, text=True, timeout=60, check=True)
    run("users", "create", "--email", email, "--role", "admin")
    token = run("tokens", "create", "--email", email).stdout.strip().splitlines()[-1].split()[-1]
    headers = {"Authorization": f"Token {token}"}
    svc = seeded["svc"]

    def get(path: str, hdrs: dict[str, str] | None = None) -> tuple[int, Any]:
        req = urllib.request.Request(f"{svc.url}{path}", headers=hdrs or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, None

    assert get("/api/explorer/search?q=x")[0] == 401
    for q in (refs["a7"], f"BK1-{seeded['tag']}", f"prov-{refs['a6']}"):
        status, body = get(f"/api/explorer/search?q={urllib.parse.quote(q)}", headers)
        assert status == 200 and len(body["results"]) == 1, (q, body)
    status, detail = get(f"/api/explorer/payments/{refs['a7']}", headers)
    assert status == 200
    assert [t["to"] for t in detail["transitions"]] == ["created", "pending", "succeeded", "partially_refunded"]
    assert [t["version"] for t in detail["transitions"]] == [1, 2, 3, 4]
    assert detail["refunds"][0]["amount_minor"] == 3_000
    assert detail["payment"]["provider_code"] == "succeeded"
    seeded["admin_token"] = token


def test_report_matches_the_queries(seeded, tmp_path):
    svc = seeded["svc"]
    info = StackInfo(data_dir=str(tmp_path), started_at=datetime.now(UTC), supervisor_pid=os.getpid(),
                     kafka_bootstrap=seeded["settings"].kafka_bootstrap, database_url=seeded["settings"].database_url,
                     clickhouse_dsn=f"chdb://{seeded['data_dir']}/clickhouse", dashboard_url=svc.url, partitions=4)
    info.write(tmp_path)
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


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/test.sh installs it)")
def test_page_renders_every_chart_in_chromium(seeded, artifacts_dir):
    from playwright.sync_api import sync_playwright

    svc = seeded["svc"]
    errors: list[str] = []
    query = urllib.parse.urlencode({"since": SINCE.strftime("%Y-%m-%dT%H:%M"), "until": UNTIL.strftime("%Y-%m-%dT%H:%M")})
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        drawn: dict[str, int] = {}
        for tab in ("revenue", "failures", "providers", "payments"):
            page.goto(f"{svc.url}/?{query}&tab={tab}")
            page.wait_for_selector(f"body[data-loaded='{tab}']", timeout=30_000)
            cards = page.query_selector_all(".card")
            assert cards, tab
            for card in cards:
                name = card.get_attribute("id")
                assert card.get_attribute("data-error") is None, (name, card.get_attribute("data-error"))
                assert int(card.get_attribute("data-rows") or 0) > 0, f"{name} has no data"
                drawn[name] = int(card.get_attribute("data-rows"))
            page.screenshot(path=str(artifacts_dir / f"dashboard-{tab}.png"), full_page=True)
        # every metric appears on some tab
        from dashboards.queries import BY_NAME
        assert set(drawn) == {f"metric-{n}" for n in BY_NAME}
        # the currency filter changes the data
        page.goto(f"{svc.url}/?{query}&tab=revenue&currency=USD")
        page.wait_for_selector("body[data-loaded='revenue']", timeout=30_000)
        usd_rows = int(page.get_attribute("#metric-daily_revenue", "data-rows"))
        assert usd_rows == 2 and usd_rows < drawn["metric-daily_revenue"]
        # the explorer shows a payment's history in order
        if "admin_token" in seeded:
            page.goto(f"{svc.url}/?tab=explorer")
            page.fill("#token", seeded["admin_token"])
            page.fill("#q", seeded["refs"]["a7"])
            page.click("#explorer-form button")
            page.wait_for_selector("#explorer-payment", timeout=30_000)
            text = page.inner_text("#explorer-detail")
            transitions = text[text.index("Transitions"):text.index("Callbacks and webhooks")]
            assert (transitions.index("created") < transitions.index("pending")
                    < transitions.index("succeeded") < transitions.index("partially_refunded"))
            page.screenshot(path=str(artifacts_dir / "dashboard-explorer.png"), full_page=True)
        browser.close()
    assert not errors, errors
