"""The booking platform's loop on the session stack: an endpoint added over the admin API
gets a payment's public events, signed and in order, from the stack's own deliverer
(``trailpay webhooks deliver`` under the supervisor); ``trailpay webhooks redeliver`` sends
one again; payments.events.v1 carries no personal data."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from connectors.outbound.signing import verify
from tests.integration.ingressutil import ApiUser, make_user
from tests.integration.webhook_receiver import Receiver, receiver
from tests.support.processes import service_env, trailpay_argv
from tests.support.waits import wait_for
from trailpay import topics

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def recv() -> AsyncIterator[Receiver]:
    async with receiver() as running:
        yield running


@pytest.fixture(scope="module")
async def admin(stack) -> ApiUser:
    return await make_user(stack.settings, "admin")


@pytest.fixture(scope="module")
async def user(stack) -> ApiUser:
    return await make_user(stack.settings)


@pytest.fixture(scope="module")
async def hook(stack, admin, recv) -> dict:
    """An endpoint of the receiver, added over the API (admin only)."""
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
        denied = await api.post("/api/admin/webhooks/endpoints/", json={"url": recv.url("/x")},
                                headers=(await make_user(stack.settings)).headers)
        assert denied.status_code == 403
        bad = await api.post("/api/admin/webhooks/endpoints/", headers=admin.headers,
                             json={"url": recv.url("/x"), "event_types": ["payment.unknown"]})
        assert bad.status_code == 422 and "event_types" in bad.json()["fields"]
        resp = await api.post("/api/admin/webhooks/endpoints/", headers=admin.headers,
                              json={"url": recv.url("/platform"), "description": "platform"})
        assert resp.status_code == 201, resp.text
        created = resp.json()
        assert created["secret"].startswith("whsec_") and created["enabled"] is True
        listed = (await api.get("/api/admin/webhooks/endpoints/", headers=admin.headers)).json()
        mine = [e for e in listed["results"] if e["id"] == created["id"]]
        assert mine and "secret" not in mine[0]
    return dict(created)


async def _pay(stack, user: ApiUser, booking_id: str) -> str:
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
        resp = await api.post("/api/payments/create/", headers=user.headers, json={
            "amount": "150", "currency": "KES", "payment_method": "mobile_money",
            "provider": "mpesa", "phone_number": "+254700000000", "booking_id": booking_id,
            "description": "Safari deposit"})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["reference"])


def _for(recv: Receiver, reference: str) -> list[dict]:
    return [json.loads(r.body) for r in recv.at("/platform") if json.loads(r.body)["reference"] == reference]


async def test_a_payment_reaches_the_platform_signed_and_in_order(stack, user, hook, recv):
    booking = f"bk-{uuid.uuid4().hex[:8]}"
    ref = await _pay(stack, user, booking)
    got = await wait_for(lambda: len(_for(recv, ref)) >= 2 and _for(recv, ref), 120,
                         "payment.created and payment.succeeded at the receiver", interval=0.5)
    assert [e["type"] for e in got] == ["payment.created", "payment.succeeded"]
    assert {e["booking_id"] for e in got} == {booking}
    assert got[1]["amount"] == 15000 and got[1]["currency"] == "KES" and got[1]["status"] == "succeeded"
    for req in recv.at("/platform"):
        if json.loads(req.body)["reference"] == ref:
            assert verify(req.body, req.headers["TrailPay-Signature"], hook["secret"])
            assert req.headers["TrailPay-Event-Id"] == json.loads(req.body)["event_id"]
            assert b"254700000000" not in req.body and b"client_secret" not in req.body

    # redelivery by command: the same event, the same id, once more
    listed = subprocess.run(
        trailpay_argv("webhooks", "list", "--reference", ref, "--json"), capture_output=True,
        text=True, env=service_env(stack.settings), timeout=60, check=True)
    rows = json.loads(listed.stdout)
    succeeded = next(r for r in rows if r["event_type"] == "payment.succeeded")
    assert succeeded["status"] == "delivered" and succeeded["endpoint_id"] == hook["id"]
    before = len(_for(recv, ref))
    subprocess.run(trailpay_argv("webhooks", "redeliver", str(succeeded["id"])), check=True,
                   env=service_env(stack.settings), timeout=60, capture_output=True)
    again = await wait_for(lambda: len(_for(recv, ref)) > before and _for(recv, ref), 60,
                           "the redelivered event", interval=0.5)
    assert again[-1]["event_id"] == got[1]["event_id"]
    shown = subprocess.run(trailpay_argv("webhooks", "show", str(succeeded["id"])), check=True,
                           env=service_env(stack.settings), timeout=60, capture_output=True, text=True)
    assert json.loads(shown.stdout)["redeliveries"] == 1


async def test_public_topic_carries_no_personal_data(stack, user, hook, recv):
    booking = f"bk-{uuid.uuid4().hex[:8]}"
    ref = await _pay(stack, user, booking)
    consumer = AIOKafkaConsumer(topics.PAYMENT_EVENTS, bootstrap_servers=stack.settings.kafka_bootstrap,
                                group_id=None, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen: list[tuple[bytes, bytes]] = []
    try:
        async def two() -> bool:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                seen.extend((r.key, r.value) for r in records if ref.encode() in r.value)
            return len(seen) >= 2

        await wait_for(two, 120, "two public events of the payment", interval=0.1)
    finally:
        await consumer.stop()
    for key, value in seen:
        assert key == booking.encode()
        for personal in (b"254700000000", b"+254", user.email.encode(), b"Safari", user.id.encode()):
            assert personal not in value


async def test_disable_stops_deliveries(stack, admin, user, hook, recv):
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
        resp = await api.post("/api/admin/webhooks/endpoints/", headers=admin.headers,
                              json={"url": recv.url("/off"), "event_types": ["payment.succeeded"]})
        off = resp.json()
        disabled = await api.post(f"/api/admin/webhooks/endpoints/{off['id']}/disable/",
                                  headers=admin.headers)
        assert disabled.status_code == 200 and disabled.json()["enabled"] is False
        missing = await api.post("/api/admin/webhooks/endpoints/we_nope/disable/", headers=admin.headers)
        assert missing.status_code == 404
        trail = (await api.get("/api/admin/audit/", headers=admin.headers,
                               params={"target": off["id"]})).json()["results"]
        assert [(row["action"], row["outcome"]) for row in trail] == [
            ("webhook_endpoint.disable", "ok"), ("webhook_endpoint.create", "ok")]
        assert all(recv.url("/off") not in str(row) for row in trail)  # the URL stays out
    ref = await _pay(stack, user, f"bk-{uuid.uuid4().hex[:8]}")
    await wait_for(lambda: len(_for(recv, ref)) >= 2, 120, "the enabled endpoint's deliveries",
                   interval=0.5)
    assert recv.at("/off") == []
