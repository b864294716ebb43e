"""End to end over real HTTP: create -> the state machine, dispatcher, sandboxes and the
PostgreSQL sink move it -> the API reports the terminal state. M-Pesa, Airtel and Stripe
succeed; a payment left waiting is cancelled; a Stripe payment is refunded; the success
e-mail lands in the outbox.

Runs on both brokers (Apache Kafka and tansu). Uses the stack's stream worker when `trailpay up` runs one; otherwise starts `trailpay
worker` (every agent) against the stack for this module.
"""

from __future__ import annotations

import email
from pathlib import Path

import httpx
import pytest

from tests.integration.ingressutil import ApiUser, make_user, worker
from tests.stackutil import KAFKA, TANSU, stack_on
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration

TERMINAL = {"succeeded", "failed", "cancelled", "expired", "refunded", "partially_refunded"}


@pytest.fixture(scope="module", params=[KAFKA, TANSU])
def stack(request, stack):
    """Every test here on Apache Kafka and on tansu: the session stack for its broker, a
    stack of this module's own for the other."""
    with stack_on(request.param, stack, "e2e") as running:
        yield running


@pytest.fixture(scope="module")
def pipeline(stack, tmp_path_factory):
    if stack.info and "worker" in stack.info.processes:
        yield None
        return
    from streams.worker import AGENTS

    proc = worker(stack.settings, tmp_path_factory.mktemp("e2e") / "worker.log", list(AGENTS),
                  TRAILPAY_SANDBOX_PORT=str(stack.settings.sandbox_port),
                  TRAILPAY_STRIPE_API_BASE=f"{stack.sandbox_url}/stripe",
                  TRAILPAY_MPESA_BASE_URL=f"{stack.sandbox_url}/mpesa",
                  TRAILPAY_AIRTEL_BASE_URL=f"{stack.sandbox_url}/airtel",
                  TRAILPAY_API_PORT=str(stack.settings.api_port)).start()
    try:
        proc.wait_for_log("Worker ready", timeout=120)
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
async def user(stack) -> ApiUser:
    return await make_user(stack.settings)


async def wait_status(api: httpx.AsyncClient, user: ApiUser, ref: str, wanted: set[str],
                      timeout: float = 90, path: str = "/api/payments/{ref}/status/") -> dict:
    async def status() -> dict | None:
        resp = await api.get(path.format(ref=ref), headers=user.headers)
        body = resp.json() if resp.status_code == 200 else {"status": resp.status_code}
        return body if body["status"] in wanted else None

    result: dict = await wait_for(status, timeout, f"{ref} in {sorted(wanted)}", interval=0.5)
    return result


@pytest.fixture
async def api(stack):
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as client:
        yield client


@pytest.mark.parametrize(("provider", "phone"), [("mpesa", "+254700000000"), ("airtel", "0733000000")])
async def test_mobile_money_succeeds(api, user, pipeline, stack, provider, phone):
    resp = await api.post("/api/payments/create/", headers=user.headers, json={
        "amount": "150", "currency": "KES", "payment_method": "mobile_money", "provider": provider,
        "phone_number": phone, "description": "Safari deposit"})
    assert resp.status_code == 201, resp.text
    ref = resp.json()["reference"]
    done = await wait_status(api, user, ref, TERMINAL)
    assert done["status"] == "succeeded", done
    detail = (await api.get(f"/api/payments/{ref}/", headers=user.headers)).json()
    assert detail["provider"] == provider and detail["amount"] == "150.00" and detail["provider_reference"]
    listed = (await api.get("/api/payments/list/", headers=user.headers)).json()["results"]
    assert next(p for p in listed if p["reference"] == ref)["status"] == "succeeded"

    if provider == "mpesa":  # the success e-mail (embedded default: the outbox directory)
        outbox = Path(stack.data_dir) / "outbox"

        def mailed() -> list:
            return [m for m in (email.message_from_bytes(p.read_bytes()) for p in outbox.glob("*.eml"))
                    if m["X-TrailPay-Reference"] == ref] if outbox.exists() else []

        found = await wait_for(mailed, 30, "the success e-mail in the outbox", interval=0.5)
        assert "Payment received: KES 150.00" in found[0]["Subject"]
        assert found[0]["To"] == user.email


async def test_stripe_payment_intent_succeeds_and_refunds(api, user, pipeline):
    resp = await api.post("/api/stripe/payment-intents/create/", headers=user.headers, json={
        "amount": 99.99, "currency": "USD", "booking_id": 123, "payment_method": "pm_card_visa",
        "confirm": True})
    assert resp.status_code == 201, resp.text
    ref = resp.json()["reference"]
    secret = await api.get(f"/api/stripe/payment-intents/{ref}/client-secret/", params={"wait": 10},
                           headers=user.headers)
    assert secret.status_code in (200, 409), secret.text  # 409 once already settled without one
    done = await wait_status(api, user, ref, TERMINAL, path="/api/stripe/payment-intents/{ref}/")
    assert done["status"] == "succeeded", done
    assert done["payment_intent_id"].startswith("pi_") and done["amount_minor"] == 9999
    by_pi = await api.get(f"/api/stripe/payment-intents/{done['payment_intent_id']}/", headers=user.headers)
    assert by_pi.status_code == 200 and by_pi.json()["reference"] == ref

    methods = await api.get("/api/stripe/payment-methods/", headers=user.headers)
    assert methods.status_code == 200, methods.text
    if methods.json()["customer_id"]:
        assert methods.json()["source"] == "stripe"
    for pm in methods.json()["results"]:
        assert set(pm) >= {"id", "brand", "last4"} and "number" not in pm

    refund = await api.post(f"/api/stripe/payment-intents/{ref}/refunds/", json={"amount": "9.99"},
                            headers=user.headers)
    assert refund.status_code == 202, refund.text
    after = await wait_status(api, user, ref, {"partially_refunded", "refunded"},
                              path="/api/stripe/payment-intents/{ref}/")
    assert after["refunded_minor"] == 999


async def test_cancel_a_waiting_payment(api, user, pipeline):
    # last digit 3: the sandbox never calls back, so the payment waits
    resp = await api.post("/api/payments/create/", headers=user.headers, json={
        "amount": "200", "currency": "KES", "provider": "mpesa", "phone_number": "0700000003"})
    ref = resp.json()["reference"]
    await wait_status(api, user, ref, {"pending", "processing"})
    cancel = await api.post(f"/api/payments/{ref}/cancel/", headers=user.headers)
    assert cancel.status_code == 202, cancel.text
    done = await wait_status(api, user, ref, TERMINAL)
    assert done["status"] == "cancelled", done
    again = await api.post(f"/api/payments/{ref}/cancel/", headers=user.headers)
    assert again.status_code == 409 and again.json()["error"] == "not_cancellable"


async def test_booking_drives_payment_and_cancellation_refunds_or_cancels(api, stack, pipeline):
    import uuid

    from trailpay.domain.references import booking_reference

    admin = await make_user(stack.settings, "admin")
    traveller = await make_user(stack.settings, user_id=f"usr_bk_{uuid.uuid4().hex[:8]}")
    paid, waiting = f"BK-{uuid.uuid4().hex[:8]}", f"BK-{uuid.uuid4().hex[:8]}"
    # Airtel for the one that gets paid (a whole refund at once; M-Pesa refunds are B2C payments
    # with results later, tests/integration/test_mobile_refunds.py); last digit 0 pays, 3 never
    # answers.
    for booking_id, phone, provider in ((paid, "0733000000", "airtel"), (waiting, "0712345673", None)):
        body = {"kind": "created", "booking_id": booking_id, "user_id": traveller.id, "amount": "500",
                "currency": "KES", "country": "KE", "phone_number": phone, "email": traveller.email,
                "provider": provider}
        resp = await api.post("/api/bookings/events/", json=body, headers=admin.headers)
        assert resp.status_code == 202, resp.text
    paid_ref, waiting_ref = booking_reference(paid, 1), booking_reference(waiting, 1)
    assert (await wait_status(api, traveller, paid_ref, TERMINAL))["status"] == "succeeded"
    await wait_status(api, traveller, waiting_ref, {"pending", "processing"})

    for booking_id in (paid, waiting):
        resp = await api.post("/api/bookings/events/", headers=admin.headers, json={
            "kind": "cancelled", "booking_id": booking_id, "user_id": traveller.id, "amount": "500",
            "currency": "KES", "country": "KE"})
        assert resp.status_code == 202
    assert (await wait_status(api, traveller, waiting_ref, TERMINAL))["status"] == "cancelled"
    refunded = await wait_status(api, traveller, paid_ref, {"refunded"})
    assert refunded["status"] == "refunded"
