"""Dashboard access without services: who may read and write, sessions, the security headers,
and page sources that never parse data as HTML. (The same against a real analytics service,
ClickHouse and PostgreSQL: tests/integration/test_dashboard_security.py.)"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from dashboards.access import Access
from dashboards.headers import install_security_headers
from dashboards.headlines import day_and_month, exponents
from dashboards.ops_routes import router as ops_router
from dashboards.session import COOKIE_NAME, SessionStore
from dashboards.session_routes import router as session_router
from dashboards.web import router as web_router
from trailpay.settings import load_settings

STATIC = Path(__file__).resolve().parents[2] / "dashboards" / "static"
SERVICE_TOKEN = "svc-unit-test-0123456789abcdef0123456789"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")

READS = ["/api/metrics", "/api/metrics/headlines", "/api/metrics/daily_revenue",
         "/api/metrics/daily_revenue?format=csv", "/api/explorer/search?q=x",
         "/api/explorer/payments/TPX1"]
BATCH = {"records": [{"topic": "payments.state.v1", "value": "bm90IGJhc2U2NCE!!"}]}


@pytest.fixture
def app(tmp_path) -> FastAPI:
    settings = load_settings(data_dir=tmp_path, analytics_service_token=SERVICE_TOKEN)
    app = FastAPI()
    for router in (web_router, ops_router, session_router):
        app.include_router(router)
    install_security_headers(app)
    app.state.trailpay = {"access": Access(settings)}  # no ClickHouse, no PostgreSQL
    return app


def session_cookie(app: FastAPI, role: str) -> dict[str, str]:
    """The Cookie header of a session made in the app's store (sign-in itself needs PostgreSQL)."""
    session_id, _ = app.state.trailpay["access"].sessions.create("usr_1", f"{role}@example.com", role)
    return {"Cookie": f"{COOKIE_NAME}={session_id}"}


def call(app: FastAPI, method: str, path: str, **kwargs: object) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await c.request(method, path, **kwargs)  # type: ignore[arg-type]

    return asyncio.run(go())


@pytest.mark.parametrize("path", READS)
def test_anonymous_reads_are_refused_with_a_reason(app, path):
    resp = call(app, "GET", path)
    assert resp.status_code == 401
    assert "sign in" in resp.json()["detail"]
    assert resp.headers["WWW-Authenticate"] == "Token"


def test_the_session_probe_says_nobody_is_signed_in(app):
    resp = call(app, "GET", "/api/session")
    assert resp.status_code == 200
    assert resp.json() == {"signed_in": False, "reason": "sign in on the dashboard page or send "
                                                         "Authorization: Token <token>"}


def test_anonymous_and_session_writes_are_refused(app):
    anonymous = call(app, "POST", "/api/ops/replay/clickhouse", json=BATCH)
    assert anonymous.status_code == 401
    assert "writes need Authorization" in anonymous.json()["detail"]
    by_cookie = call(app, "POST", "/api/ops/replay/clickhouse", json=BATCH,
                     headers=session_cookie(app, "admin"))
    assert by_cookie.status_code == 401
    assert "a dashboard session cannot write" in by_cookie.json()["detail"]


def test_invalid_base64_is_a_4xx_with_the_record(app):
    service = {"Authorization": f"Token {SERVICE_TOKEN}"}
    resp = call(app, "POST", "/api/ops/replay/clickhouse", json=BATCH, headers=service)
    assert resp.status_code == 422
    assert resp.json()["detail"] == "record 0: value is not valid base64"
    bad_body = call(app, "POST", "/api/ops/replay/clickhouse", content=b"{not json",
                    headers=service | {"Content-Type": "application/json"})
    assert bad_body.status_code == 422


def test_a_malformed_authorization_header_is_401(app):
    resp = call(app, "GET", "/api/metrics", headers={"Authorization": "Basic abc"})
    assert resp.status_code == 401
    assert resp.json()["detail"] == "send Authorization: Token <token>"


def test_the_service_token_reads_but_cannot_sign_in(app):
    listed = call(app, "GET", "/api/metrics", headers={"Authorization": f"Token {SERVICE_TOKEN}"})
    assert listed.status_code == 200 and any(m["name"] == "daily_revenue" for m in listed.json())
    refused = call(app, "POST", "/api/session", json={"token": SERVICE_TOKEN})
    assert refused.status_code == 403


def test_a_viewer_session_reads_figures_not_the_explorer(app):
    cookie = session_cookie(app, "viewer")
    assert call(app, "GET", "/api/metrics", headers=cookie).status_code == 200
    assert call(app, "GET", "/api/session", headers=cookie).json()["role"] == "viewer"
    explorer = call(app, "GET", "/api/explorer/search?q=x", headers=cookie)
    assert explorer.status_code == 403
    assert "support and admin" in explorer.json()["detail"]


def test_sign_out_ends_the_session(app):
    cookie = session_cookie(app, "viewer")
    out = call(app, "DELETE", "/api/session", headers=cookie)
    assert out.status_code == 204
    assert out.headers["set-cookie"].startswith(f'{COOKIE_NAME}=""')
    gone = call(app, "GET", "/api/metrics", headers=cookie)
    assert gone.status_code == 401 and "expired or ended" in gone.json()["detail"]


def test_sessions_expire_and_are_keyed_by_hash():
    now = [datetime(2031, 3, 1, 9, 0, tzinfo=UTC)]
    store = SessionStore(timedelta(hours=8), clock=lambda: now[0])
    session_id, session = store.create("usr_1", "a@example.com", "viewer")
    assert session.expires_at == datetime(2031, 3, 1, 17, 0, tzinfo=UTC)
    assert len(session_id) >= 43 and session_id not in repr(store.__dict__)
    now[0] = datetime(2031, 3, 1, 16, 59, tzinfo=UTC)
    assert store.get(session_id) == session
    now[0] = datetime(2031, 3, 1, 17, 0, tzinfo=UTC)
    assert store.get(session_id) is None and len(store) == 0
    other, _ = store.create("usr_2", "b@example.com", "admin")
    assert store.drop_user("usr_2") == 1 and store.get(other) is None


def test_page_and_static_files_carry_the_csp(app):
    for path in ("/", "/static/app.js", "/static/format.js", "/static/app.css"):
        resp = call(app, "GET", path)
        assert resp.status_code == 200, path
        assert resp.headers["Content-Security-Policy"] == CSP
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "DENY"
    assert call(app, "GET", "/api/metrics").headers["X-Content-Type-Options"] == "nosniff"


def test_the_page_has_no_inline_script_style_or_token_field():
    html = (STATIC / "index.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert "<style" not in html and " style=" not in html
    assert re.search(r"\son[a-z]+=", html) is None
    assert 'id="token"' not in html


@pytest.mark.parametrize("name", ["app.js", "format.js"])
def test_scripts_never_parse_data_as_html(name):
    source = (STATIC / name).read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "localStorage",
                 "sessionStorage", "eval(", "new Function"):
        assert sink not in source, f"{name} uses {sink}"


def test_today_and_month_are_those_of_the_range_end():
    assert day_and_month(datetime(2031, 3, 3, tzinfo=UTC)) == (
        datetime(2031, 3, 2, tzinfo=UTC), datetime(2031, 3, 1, tzinfo=UTC))
    assert day_and_month(datetime(2031, 4, 1, 0, 0, 1, tzinfo=UTC)) == (
        datetime(2031, 4, 1, tzinfo=UTC), datetime(2031, 4, 1, tzinfo=UTC))


def test_exponents_come_from_the_money_table():
    assert exponents(["KES", "UGX", "KWD", "XYZ"]) == {"KES": 2, "UGX": 0, "KWD": 3}
