"""Dashboard security against a real analytics service, ClickHouse (chDB) and PostgreSQL:
anonymous callers read and write nothing, sign-in gives a HttpOnly SameSite=Strict cookie,
a forged ClickHouse replay is refused without admin, and stored script or markup in every
field a user or a provider controls renders as text in headless Chromium.

The hostile data set is small and dated April 2031, on prefixed topics (nothing else sees it).
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from dashboards.queries import BY_NAME
from tests import sinkdata as sd
from tests.integration import dashutil as du
from tests.integration.dashutil import CHROMIUM, Analytics
from tests.support.rows import plain_url
from trailpay import codec, topics
from trailpay.domain.events import Provider
from trailpay.domain.status import PaymentStatus as S

pytestmark = pytest.mark.integration

T1 = datetime(2031, 4, 1, 10, 0, tzinfo=UTC)
SINCE, UNTIL = datetime(2031, 4, 1, tzinfo=UTC), datetime(2031, 4, 3, tzinfo=UTC)
RANGE = urllib.parse.urlencode({"since": SINCE.isoformat(), "until": UNTIL.isoformat()})
IMG = '<img src=x onerror="window.__xss=1">'
SCRIPT = "<script>window.__xss=2</script>"
REJECTED = '<img src=y onerror="window.__xss=3"> pay now'
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")


def _rejected_callback(settings: Any, reference: str, tag: str) -> None:
    """What the ingress records for a callback whose token was wrong: verified false, the
    provider's (here: an attacker's) text kept for the record."""
    with psycopg.connect(plain_url(settings)) as conn:
        conn.execute(
            "INSERT INTO provider_callbacks (event_id, provider, reference, received_at, verified,"
            " verification_error, provider_code, provider_message, body)"
            " VALUES (%s, 'mpesa', %s, %s, false, 'callback token does not match', '0', %s, %s)",
            (f"cb-hostile-{tag}", reference, T1 + timedelta(minutes=5), REJECTED, b"{}"))


@pytest.fixture(scope="module")
def hostile(stack, tmp_path_factory):
    settings = stack.settings
    tag = sd.new_prefix()[1:-1].upper()
    prefix = sd.new_prefix()
    data_dir = tmp_path_factory.mktemp("dash-sec")
    asyncio.run(sd.create_prefixed_topics(settings, prefix))
    refs = {k: f"TPXSS{tag}{k}" for k in ("H1", "H2", "H3")}
    changes = [
        # a booking id and a cancel reason (the customer's words) carrying markup
        *du.history(refs["H1"], Provider.MPESA, 40_000, "KES", S.CANCELLED, settle_after_s=30, start=T1,
                    message=SCRIPT, settled_by="request", phone="254712345670", booking_id=f"{IMG}{tag}"),
        # a refund reason carrying markup
        *du.history(refs["H2"], Provider.STRIPE, 5_000, "USD", S.SUCCEEDED, settle_after_s=10, start=T1,
                    code="succeeded", country="US", refund=(2_000, T1 + timedelta(hours=1)),
                    refund_reason=IMG),
        # a provider's failure text carrying markup
        *du.history(refs["H3"], Provider.MPESA, 10_000, "KES", S.FAILED, settle_after_s=20, start=T1,
                    code="1", message=IMG, phone="254712345671"),
    ]
    asyncio.run(sd.produce(settings, prefix + topics.PAYMENT_STATE, [(c.reference, c) for c in changes]))
    asyncio.run(sd.drain_clickhouse(settings, data_dir, prefix, f"dash-sec-ch-{tag}"))
    asyncio.run(sd.drain_postgres(settings, prefix, f"dash-sec-pg-{tag}"))
    _rejected_callback(settings, refs["H1"], tag)
    svc = Analytics(settings, data_dir)
    state = {"svc": svc, "refs": refs, "tag": tag, "settings": settings, "changes": changes,
             "api_url": stack.api_url,
             "viewer": du.issue_token(settings, f"viewer-{tag.lower()}@example.com", "viewer"),
             "admin": du.issue_token(settings, f"admin-{tag.lower()}@example.com", "admin"),
             "user": du.issue_token(settings, f"customer-{tag.lower()}@example.com", "user")}
    try:
        yield state
    finally:
        svc.stop()


def reads() -> list[str]:
    named = [f"/api/metrics/{n}?{RANGE}" for n in BY_NAME]
    return ["/api/metrics", f"/api/metrics/headlines?{RANGE}", f"/api/metrics/daily_revenue?{RANGE}&format=csv",
            *named, "/api/explorer/search?q=TPX", "/api/explorer/payments/TPX",
            "/api/sink/clickhouse/counts", "/api/sink/clickhouse/counts?reference_prefix=TP"]


def test_anonymous_callers_read_and_write_nothing(hostile):
    svc = hostile["svc"]
    for path in reads():
        status, _, body = svc.call("GET", path)
        assert status == 401, path
        assert json.loads(body)["detail"] == "sign in on the dashboard page or send Authorization: Token <token>"
    status, _, body = svc.call("POST", "/api/ops/replay/clickhouse", body={"records": []})
    assert status == 401 and "writes need Authorization" in json.loads(body)["detail"]
    # a customer's API token is no dashboard token
    status, _, body = svc.call("GET", f"/api/metrics/headlines?{RANGE}", token=hostile["user"])
    assert status == 403 and "role user" in json.loads(body)["detail"]
    assert svc.call("GET", "/api/metrics", token="not-a-token-at-all")[0] == 401


def test_sign_in_sets_a_strict_http_only_cookie(hostile):
    svc = hostile["svc"]
    status, headers, body = svc.call("POST", "/api/session", body={"token": hostile["viewer"]})
    assert status == 200 and json.loads(body)["role"] == "viewer"
    cookie = headers["set-cookie"]
    name_value = cookie.split(";")[0]
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert name_value.startswith("trailpay_session=") and len(name_value) > 50
    assert {"httponly", "samesite=strict", "path=/", "max-age=28800"} <= flags
    by_cookie = {"Cookie": name_value}
    assert svc.call("GET", f"/api/metrics/headlines?{RANGE}", headers=by_cookie)[0] == 200
    assert svc.call("GET", "/api/explorer/search?q=TPX", headers=by_cookie)[0] == 403
    assert svc.call("POST", "/api/ops/replay/clickhouse", body={"records": []}, headers=by_cookie)[0] == 401
    assert svc.call("DELETE", "/api/session", headers=by_cookie)[0] == 204
    status, _, body = svc.call("GET", "/api/metrics", headers=by_cookie)
    assert status == 401 and "expired or ended" in json.loads(body)["detail"]
    status, _, body = svc.call("POST", "/api/session", body={"token": "wrong"})
    assert status == 401 and json.loads(body)["detail"] == "the token is unknown or revoked"
    assert svc.call("POST", "/api/session", body={"token": hostile["user"]})[0] == 403


def test_a_role_belongs_to_the_user_not_to_a_token(hostile):
    email = f"viewer-{hostile['tag'].lower()}@example.com"
    with pytest.raises(subprocess.CalledProcessError) as refused:
        du.cli(hostile["settings"], "tokens", "create", "--email", email, "--role", "admin")
    assert f"{email} has the role viewer, not admin" in refused.value.stderr
    second = du.issue_token(hostile["settings"], email, "viewer")  # same role: one more token
    assert hostile["svc"].call("GET", "/api/metrics", token=second)[0] == 200


def test_a_viewer_token_takes_no_payments(hostile):
    request = urllib.request.Request(f"{hostile['api_url']}/api/payments/list/",
                                     headers={"Authorization": f"Token {hostile['viewer']}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    assert json.loads(refused.value.read())["detail"].startswith("the viewer role only reads the dashboard")


def test_the_page_and_its_files_carry_a_strict_csp(hostile):
    for path in ("/", "/static/app.js", "/static/format.js", "/static/plotly.min.js"):
        status, headers, _ = hostile["svc"].call("GET", path)
        assert status == 200, path
        assert headers["content-security-policy"] == CSP
        assert headers["x-content-type-options"] == "nosniff"


def test_a_forged_replay_record_is_refused_without_admin(hostile):
    svc = hostile["svc"]
    forged = hostile["changes"][2].model_copy(update={"reference": f"TPFORGED{hostile['tag']}"})
    record = {"topic": topics.PAYMENT_STATE, "partition": 0, "offset": 1,
              "key": base64.b64encode(forged.reference.encode()).decode(),
              "value": base64.b64encode(codec.encode(forged)).decode()}
    before = svc.get(f"/api/metrics/headlines?{RANGE}", hostile["viewer"])[1]["revenue"]
    assert svc.call("POST", "/api/ops/replay/clickhouse", body={"records": [record]})[0] == 401
    status, _, body = svc.call("POST", "/api/ops/replay/clickhouse", body={"records": [record]},
                               token=hostile["viewer"])
    assert status == 403 and json.loads(body)["detail"] == "writes are for admin users and TrailPay's tools (you are viewer)"
    assert svc.get(f"/api/metrics/headlines?{RANGE}", hostile["viewer"])[1]["revenue"] == before
    status, _, body = svc.call("POST", "/api/ops/replay/clickhouse", token=hostile["admin"],
                               body={"records": [{**record, "value": "%%% not base64"}]})
    assert status == 422 and json.loads(body)["detail"] == "record 0: value is not valid base64"
    assert svc.call("POST", "/api/ops/replay/clickhouse", token=hostile["admin"], raw=b"{oops")[0] == 422


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/test.sh installs it)")
def test_stored_markup_renders_as_text(hostile, artifacts_dir):
    from playwright.sync_api import sync_playwright

    svc, refs, tag = hostile["svc"], hostile["refs"], hostile["tag"]
    query = urllib.parse.urlencode({"since": SINCE.strftime("%Y-%m-%dT%H:%M"), "until": UNTIL.strftime("%Y-%m-%dT%H:%M")})
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = du.launch(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        du.sign_in(page, f"{svc.url}/?{query}&tab=revenue&currency=USD", hostile["admin"])
        page.wait_for_selector("body[data-loaded='revenue']", timeout=30_000)
        # the refund reason is a category on the refunds chart: shown, as text
        ticks = page.eval_on_selector_all("#metric-refunds .xtick text", "ts => ts.map(t => t.textContent)")
        assert ticks == [IMG]
        page.screenshot(path=str(artifacts_dir / "dashboard-hostile-revenue.png"), full_page=True)
        page.goto(f"{svc.url}/?{query}&tab=failures")
        page.wait_for_selector("body[data-loaded='failures']", timeout=30_000)
        reasons = page.inner_text("#metric-failure_reasons")
        assert IMG in reasons  # the provider's failure text, as text
        assert SCRIPT not in page.inner_text("body")  # a customer's cancel reason is not for everyone
        page.screenshot(path=str(artifacts_dir / "dashboard-hostile-failures.png"), full_page=True)

        page.goto(f"{svc.url}/?tab=explorer")
        page.fill("#q", f"{IMG}{tag}")
        page.click("#explorer-form button")
        page.wait_for_selector("#explorer-payment", timeout=30_000)
        detail = page.inner_text("#explorer-detail")
        assert f"booking {IMG}{tag}" in detail and SCRIPT in detail  # support sees the reason, as text
        assert page.inner_text("#explorer-detail .unverified") == f"unverified: {REJECTED}"
        assert "no (rejected)" in detail
        page.screenshot(path=str(artifacts_dir / "dashboard-hostile-explorer.png"), full_page=True)
        page.fill("#q", refs["H2"])
        page.click("#explorer-form button")
        page.wait_for_selector(f"#explorer-payment:has-text('{refs['H2']}')", timeout=30_000)
        assert IMG in page.inner_text("#explorer-detail")  # the refund reason

        assert page.evaluate("() => window.__xss") is None  # no stored text ran
        assert page.query_selector_all("main img, main script") == []  # none became an element
        browser.close()
    assert not errors, errors
