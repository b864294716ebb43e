"""Plumbing of the dashboard tests: payment histories on prefixed topics, an analytics service
of our own over a chDB directory the real ClickHouse sink filled, tokens issued by the real
`trailpay users` / `trailpay tokens` commands, and a headless Chromium signed in through the
page's own form."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from controlplane.stack.processes import free_port
from tests import sinkdata as sd
from tests.support.processes import ROOT, clean_env, trailpay_argv
from tests.support.waits import wait_for_sync
from trailpay.domain.events import (
    BookingEvent,
    BookingEventKind,
    Money,
    PaymentStateChanged,
    Provider,
    RefundState,
)
from trailpay.domain.references import booking_reference
from trailpay.domain.status import PaymentStatus as S

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SERVICE_TOKEN = "svc-dashboard-tests-5d1c0e7a9b3f42e68a1d"


def history(ref: str, provider: Provider, amount: int, currency: str, outcome: S, *,
            settle_after_s: int, start: datetime, code: str | None = None, message: str | None = None,
            settled_by: str = "callback", phone: str | None = None, country: str = "KE",
            booking_id: str | None = None, refund: tuple[int, datetime] | None = None,
            refund_reason: str = "requested_by_customer") -> list[PaymentStateChanged]:
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
        done = RefundState(refund_id=f"rf-{ref}", amount=Money(amount=amount_back, currency=currency),
                           reason=refund_reason, status="succeeded", requested_at=when, updated_at=when)
        steps.append((outcome, S.PARTIALLY_REFUNDED if amount_back < amount else S.REFUNDED, when, {
            "provider_code": code, "settled_by": settled_by, "refunded_amount": amount_back,
            "refunds": (done,)}))
    return sd.state_changes(ref, base, steps, cause="webhook", cause_prefix="c")


def cli(settings: Any, *args: str) -> str:
    env = clean_env(TRAILPAY_DATABASE_URL=settings.database_url,
                    TRAILPAY_KAFKA_BOOTSTRAP=settings.kafka_bootstrap)
    return subprocess.run(trailpay_argv(*args), env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=True).stdout


def issue_token(settings: Any, email: str, role: str) -> str:
    """A token from `trailpay tokens create --role` (which creates the user with that role)."""
    out = cli(settings, "tokens", "create", "--email", email, "--role", role)
    return out.strip().splitlines()[-1].split()[-1]


class Analytics:
    """Our own analytics service over a chDB directory filled by the real ClickHouse sink."""

    def __init__(self, settings: Any, data_dir: Path) -> None:
        self.port = free_port()
        env = sd.ch_env(settings)
        env.update({"TRAILPAY_DASHBOARD_PORT": str(self.port), "TRAILPAY_DATABASE_URL": settings.database_url,
                    "TRAILPAY_DATA_DIR": str(data_dir), "TRAILPAY_ANALYTICS_SERVICE_TOKEN": SERVICE_TOKEN})
        self.proc = subprocess.Popen(trailpay_argv("analytics"),
                                     env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        self.token: str | None = None  # sent by get() and metric() unless told otherwise

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2):
                    return True
            except OSError:
                return False

        wait_for_sync(healthy, 60, "the analytics service started", interval=0.3)

    def call(self, method: str, path: str, *, token: str | None = None, body: Any = None,
             raw: bytes | None = None, headers: dict[str, str] | None = None
             ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of one request; ``token`` None = anonymous."""
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Token {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            hdrs.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(f"{self.url}{path}", data=data, headers=hdrs, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        status, _, body = self.call("GET", path, token=token or self.token)
        return status, json.loads(body) if body else None

    def metric(self, name: str, since: datetime, until: datetime, currency: str | None = None,
               fmt: str = "json", bucket: str | None = None) -> Any:
        q = {"since": since.isoformat(), "until": until.isoformat(), "format": fmt}
        if currency:
            q["currency"] = currency
        if bucket:
            q["bucket"] = bucket
        status, _, body = self.call("GET", f"/api/metrics/{name}?{urllib.parse.urlencode(q)}",
                                    token=self.token)
        assert status == 200, (name, status, body[:300])
        return body.decode() if fmt == "csv" else json.loads(body)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def click_center(page: Any, selector: str, index: int = 0) -> None:
    """A real mouse click in the middle of the ``index``-th element drawn (non-empty) that
    ``selector`` finds: plotly takes clicks on its drag layer above the bars and markers, so
    the element itself is never the click's target."""
    boxes = [b for b in (h.bounding_box() for h in page.query_selector_all(selector))
             if b and b["width"] > 0 and b["height"] > 0]
    assert len(boxes) > index, (selector, boxes)
    box = boxes[index]
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def launch(pw: Any) -> Any:
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def sign_in(page: Any, url: str, token: str) -> None:
    """Sign in through the page's form; afterwards no token is left in the page."""
    page.goto(url)
    page.wait_for_selector("body[data-signin='1']", timeout=30_000)
    page.fill("#signin-token", token)
    page.click("#signin-submit")
    page.wait_for_selector("#who:not([hidden])", timeout=30_000)
    assert page.input_value("#signin-token") == ""
    assert token not in page.content()
    assert page.evaluate("() => localStorage.length + sessionStorage.length") == 0
    assert page.evaluate("() => document.cookie") == ""  # the session cookie is HttpOnly


# --------------------------------------------------------------------------- the seeded data set

T0 = datetime(2031, 3, 1, 10, 0, tzinfo=UTC)
SINCE = datetime(2031, 3, 1, tzinfo=UTC)
UNTIL = datetime(2031, 3, 3, tzinfo=UTC)


def at_t0(ref: str, provider: Provider, amount: int, currency: str, outcome: S, *,
          start: datetime = T0, **kw: Any) -> list[PaymentStateChanged]:
    return history(ref, provider, amount, currency, outcome, start=start, **kw)


def seed(tag: str) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]], dict[str, str]]:
    """Seven payments and two bookings; the expected figures are in test_dashboards.py."""
    b1, b2 = f"BK1-{tag}", f"BK2-{tag}"
    a1, a2 = booking_reference(b1, 1), booking_reference(b2, 1)
    refs = {"a1": a1, "a2": a2, **{k: f"TPDASH{tag}{k.upper()}" for k in ("a3", "a4", "a5", "a6", "a7")}}
    kes = "254712345670"
    changes = [
        *at_t0(a1, Provider.MPESA, 100_000, "KES", S.SUCCEEDED, settle_after_s=60, code="0",
               phone=kes, booking_id=b1),
        *at_t0(a2, Provider.MPESA, 50_000, "KES", S.FAILED, settle_after_s=30, code="1",
               message="The balance is insufficient for the transaction.", phone=kes, booking_id=b2),
        *at_t0(refs["a3"], Provider.MPESA, 20_000, "KES", S.EXPIRED, settle_after_s=300, code="1037",
               message="DS timeout user cannot be reached.", settled_by="sweep", phone=kes),
        *at_t0(refs["a4"], Provider.AIRTEL, 30_000, "KES", S.SUCCEEDED, settle_after_s=120, code="TS",
               phone="254733000000"),
        *at_t0(refs["a5"], Provider.STRIPE, 5_000, "USD", S.SUCCEEDED, settle_after_s=10,
               code="succeeded", country="US"),
        *at_t0(refs["a6"], Provider.STRIPE, 2_000, "USD", S.FAILED, settle_after_s=5,
               code="card_declined", message="Your card was declined.", country="US"),
        *at_t0(refs["a7"], Provider.STRIPE, 10_000, "USD", S.SUCCEEDED, settle_after_s=20,
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


class Svc:
    """The seeded analytics service, read with an analyst's (viewer) token."""

    def __init__(self, analytics: Analytics, token: str) -> None:
        self.analytics = analytics
        self.analytics.token = token
        self.url = analytics.url

    def metric(self, name: str, currency: str | None = None, fmt: str = "json",
               bucket: str | None = None) -> Any:
        return self.analytics.metric(name, SINCE, UNTIL, currency, fmt, bucket)

    def rows(self, name: str, currency: str | None = None, bucket: str | None = None) -> list[dict[str, Any]]:
        result = self.metric(name, currency, bucket=bucket)
        return [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]

    def stop(self) -> None:
        self.analytics.stop()


def by(rows: list[dict[str, Any]], *keys: str) -> dict[Any, dict[str, Any]]:
    return {tuple(r[k] for k in keys) if len(keys) > 1 else r[keys[0]]: r for r in rows}


def cards(page: Any) -> dict[str, tuple[int, str | None]]:
    return {c.get_attribute("id"): (int(c.get_attribute("data-rows") or 0), c.get_attribute("data-error"))
            for c in page.query_selector_all(".card")}


def explorer_refs(page: Any) -> list[str]:
    page.wait_for_selector("body[data-drilled='1']", timeout=30_000)
    return sorted(page.eval_on_selector_all("#explorer-results a.ref", "as => as.map(a => a.textContent)"))
