"""Issue 16 through a real ingress on the embedded stack: each measured defect of the edge as a
regression test (each answered 201, 5xx or "last wins" before), tokens list/revoke, and
failed authentication rate-limited per address."""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import httpx
import pytest

from connectors.ingress.app import create_app
from connectors.ingress.context import IngressContext
from tests.integration.ingressutil import ApiUser, child_env, make_user, read_topic
from tests.support.processes import trailpay_argv
from tests.support.waits import wait_for
from trailpay import topics

pytestmark = pytest.mark.integration

MPESA = {"amount": "100", "currency": "KES", "payment_method": "mobile_money", "provider": 1,
         "phone_number": "+254700000000", "description": "Travel booking payment"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
async def users(stack) -> dict[str, ApiUser]:
    return {"alice": await make_user(stack.settings), "admin": await make_user(stack.settings, "admin")}


@pytest.fixture
async def api(stack):
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=20) as client:
        yield client


async def refused(api, user, body, field, path="/api/payments/create/") -> dict:
    resp = await api.post(path, json=body, headers=user.headers)
    assert resp.status_code == 422, resp.text
    answer = resp.json()
    assert answer["error"] == "validation_error" and field in answer["fields"], answer
    return answer


async def test_unrepresentable_values_are_refused_before_any_payment(api, users, stack):
    alice = users["alice"]
    booking = f"EDGE-{uuid.uuid4().hex[:8]}"
    # measured: both answered 201 and were paid, then PostgreSQL refused the row
    await refused(api, alice, {**MPESA, "description": "trip\u0000", "booking_id": booking}, "description")
    await refused(api, alice, {**MPESA, "booking_id": booking + "x" * 100}, "booking_id")
    await refused(api, alice, {**MPESA, "booking_id": booking + "/.."}, "booking_id")
    await refused(api, alice, {"amount": "5", "currency": "USD", "description": "\x7f"}, "description",
                  "/api/stripe/payment-intents/create/")
    created = await read_topic(stack.settings.kafka_bootstrap, topics.PAYMENT_REQUESTS,
                               lambda r: str(getattr(r, "booking_id", "")).startswith(booking), timeout=3)
    assert created == []


async def test_email_with_cr_lf_is_refused_everywhere(api, users):
    alice, admin = users["alice"], users["admin"]
    bad = "guest@example.com\r\nBcc: everyone@example.com"  # measured: accepted
    await refused(api, alice, {**MPESA, "email": bad}, "email")
    await refused(api, alice, {"amount": "5", "currency": "USD", "email": bad}, "email",
                  "/api/stripe/payment-intents/create/")
    booking = {"kind": "created", "booking_id": "B1", "user_id": "u1", "amount": "100",
               "currency": "KES", "country": "KE", "email": bad}
    await refused(api, admin, booking, "email", "/api/bookings/events/")
    await refused(api, alice, {**MPESA, "email": "not an address"}, "email")
    ok = await api.post("/api/payments/create/", json={**MPESA, "email": "Guest@Example.com"},
                        headers=alice.headers)
    assert ok.status_code == 201, ok.text


async def test_lax_money_coercion_is_gone(api, users):
    alice = users["alice"]
    await refused(api, alice, {**MPESA, "amount": True}, "amount")  # measured: a KES 1.00 payment
    await refused(api, alice, {**MPESA, "amount": "\uff11\uff10\uff10"}, "amount")  # full-width 100
    await refused(api, alice, {**MPESA, "provider": True}, "provider")
    await refused(api, alice, {**MPESA, "currency": "000"}, "currency")  # schema and validator agree
    dup = await api.post("/api/payments/create/", headers={**alice.headers, **JSON},
                         content=b'{"amount": "1", "currency": "KES", "provider": 1, '
                                 b'"phone_number": "+254700000000", "amount": "1000000"}')
    assert dup.status_code == 400 and dup.json()["error"] == "duplicate_key"  # measured: last won


async def test_business_rules_are_told_apart_from_bad_shapes(api, users):
    resp = await api.post("/api/payments/create/", json={**MPESA, "currency": "USD"},
                          headers=users["alice"].headers)
    assert resp.status_code == 422 and resp.json()["error"] == "payment_refused"
    assert "currency" in resp.json()["fields"]


async def test_deep_json_is_400_on_every_body(api, users):
    deep = b"[" * 5000 + b"]" * 5000  # measured: 500
    for path, user in (("/api/payments/create/", users["alice"]),
                       ("/api/payments/TPX/refund/", users["alice"]),
                       ("/api/bookings/events/", users["admin"])):
        resp = await api.post(path, content=deep, headers={**user.headers, **JSON})
        assert resp.status_code == 400 and resp.json()["error"] == "json_too_deep", (path, resp.text)


async def test_deep_webhook_is_refused_and_never_recorded(api, stack):
    marker = f"TPEDGE{uuid.uuid4().hex[:10].upper()}"
    token = stack.settings.airtel_callback_token.get_secret_value()
    resp = await api.post("/api/payments/callback/airtel/", params={"token": token, "reference": marker},
                          content=b"[" * 2000 + b"]" * 2000, headers=JSON)
    assert resp.status_code == 400 and resp.json()["error"] == "json_too_deep"
    recorded = await read_topic(stack.settings.kafka_bootstrap, topics.WEBHOOKS_RAW,
                                lambda r: r.reference == marker or marker.encode() in r.body, timeout=3)
    assert recorded == []


async def test_nul_in_path_or_query_is_4xx_not_503(api, users):
    alice, admin = users["alice"], users["admin"]
    for path, user in (("/api/payments/TP%00X/", alice), ("/api/payments/TP%00X/status/", alice),
                       ("/api/stripe/payment-intents/pi_%00/", alice),
                       ("/api/admin/payments/TP%00/", admin)):
        resp = await api.get(path, headers=user.headers)
        assert resp.status_code == 400 and resp.json()["error"] == "bad_request", (path, resp.text)
    for name in ("reference", "user_id", "booking_id", "provider"):
        resp = await api.get("/api/admin/payments/", params={name: "a\x00b"}, headers=admin.headers)
        assert resp.status_code == 400, (name, resp.text)  # measured: 503 "database not reachable"
    long_ref = await api.get(f"/api/admin/payments/{'A' * 300}/", headers=admin.headers)
    assert long_ref.status_code == 404  # was truncated to 200 characters and looked up
    wild = await api.get("/api/admin/payments/", params={"created_after": "0001-01-01T00:00:00+14:00"},
                         headers=admin.headers)
    assert wild.status_code == 200, wild.text


async def test_openapi_served_documents_errors(api):
    spec = (await api.get("/openapi.json")).json()
    create = spec["paths"]["/api/payments/create/"]["post"]["responses"]
    assert {"400", "401", "409", "413", "415", "422", "429"} <= set(create)
    assert create["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def cli(stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(trailpay_argv(*args), env=child_env(stack.settings), capture_output=True,
                          text=True, timeout=60, check=False)


async def test_tokens_list_and_revoke(api, stack):
    user = await make_user(stack.settings)
    assert (await api.get("/api/payments/list/", headers=user.headers)).status_code == 200
    listed = await asyncio.to_thread(cli, stack, "tokens", "list", "--email", user.email)
    assert listed.returncode == 0, listed.stderr
    assert user.token not in listed.stdout and user.token[3:20] not in listed.stdout
    [row] = [line for line in listed.stdout.splitlines() if user.email in line]
    token_id = row.split()[0]
    assert len(token_id) == 12 and "user" in row and "test" in row
    revoked = await asyncio.to_thread(cli, stack, "tokens", "revoke", token_id)
    assert revoked.returncode == 0 and token_id in revoked.stdout, revoked.stderr

    async def refused_now() -> bool:
        resp = await api.get("/api/payments/list/", headers=user.headers)
        return resp.status_code == 401 and resp.json()["error"] == "invalid_token"

    await wait_for(refused_now, 15, "the revoked token refused")
    again = await asyncio.to_thread(cli, stack, "tokens", "revoke", token_id)
    assert again.returncode == 2 and "0 live tokens" in again.stderr
    after = await asyncio.to_thread(cli, stack, "tokens", "list", "--email", user.email)
    assert token_id not in after.stdout
    everything = await asyncio.to_thread(cli, stack, "tokens", "list", "--email", user.email, "--all")
    assert token_id in everything.stdout and "revoked" in everything.stdout


async def test_failed_authentication_is_rate_limited(stack, users):
    """An ingress of its own (in-process, on the stack's PostgreSQL) with a small bucket, so
    the session's ingress keeps answering 401 to the other tests."""
    settings = stack.settings.model_copy(update={"auth_failure_burst": 3, "auth_failure_per_s": 0.2})
    ctx = IngressContext.build(settings)
    app = create_app(settings, ctx=ctx)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://edge") as c:
            bad = {"Authorization": "Token tp_guessed"}
            statuses = [(await c.get("/api/payments/list/", headers=bad)).status_code for _ in range(3)]
            assert statuses == [401, 401, 401]
            limited = await c.get("/api/payments/list/", headers=bad)
            assert limited.status_code == 429 and limited.json()["error"] == "too_many_failed_logins"
            assert 1 <= int(limited.headers["Retry-After"]) <= 5
            # while limited, even a good token from that address waits (no oracle for guesses)
            good = await c.get("/api/payments/list/", headers=users["alice"].headers)
            assert good.status_code == 429

            async def allowed_again() -> bool:
                resp = await c.get("/api/payments/list/", headers=users["alice"].headers)
                return resp.status_code == 200

            await wait_for(allowed_again, 15, "the bucket refilled")
    finally:
        await ctx.aclose()
