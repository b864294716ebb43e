"""The HTTP API over real HTTP against the embedded stack: auth, ownership, idempotency,
validation, webhooks recorded on Kafka, health and metrics."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import create_async_engine

from connectors.ingress.idempotency import IN_FLIGHT_LEASE, request_hash
from sinks.postgres.schema import idempotency_keys
from tests.integration.ingressutil import ApiUser, make_user, read_topic, stripe_signature
from tests.support.waits import wait_for
from trailpay import topics
from trailpay.domain.events import CreatePayment, RawWebhook, stable_id, utcnow
from trailpay.domain.references import keyed_reference

pytestmark = pytest.mark.integration

MPESA = {"amount": "100", "currency": "KES", "payment_method": "mobile_money", "provider": 1,
         "phone_number": "+254700000000", "description": "Travel booking payment"}


@pytest.fixture(scope="module")
async def users(stack) -> dict[str, ApiUser]:
    return {"alice": await make_user(stack.settings), "bob": await make_user(stack.settings),
            "admin": await make_user(stack.settings, "admin")}


@pytest.fixture
async def api(stack):
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=20) as client:
        yield client


async def create(api: httpx.AsyncClient, user: ApiUser, body: dict | None = None, **headers: str) -> httpx.Response:
    return await api.post("/api/payments/create/", json=body or MPESA, headers={**user.headers, **headers})


async def test_health_ready_docs(api):
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"ready": True, "kafka": True, "database": True}
    spec = (await api.get("/openapi.json")).json()
    assert "/api/payments/create/" in spec["paths"] and "/api/stripe/webhooks/stripe/" in spec["paths"]
    assert (await api.get("/docs")).status_code == 200


async def test_auth_required(api, users):
    for path in ("/api/payments/list/", "/api/payments/providers/", "/api/stripe/payment-intents/"):
        none = await api.get(path)
        assert none.status_code == 401 and none.json()["error"] == "not_authenticated"
        bad = await api.get(path, headers={"Authorization": "Token tp_nonsense"})
        assert bad.status_code == 401 and bad.json()["error"] == "invalid_token"
    assert (await api.get("/api/payments/list/", headers=users["alice"].headers)).status_code == 200


async def test_providers_listed(api, users):
    body = (await api.get("/api/payments/providers/", headers=users["alice"].headers)).json()
    codes = {p["code"]: p for p in body["results"]}
    assert set(codes) == {"mpesa", "airtel", "stripe"} and codes["mpesa"]["id"] == 1
    assert codes["mpesa"]["currencies"] == ["KES"]


async def test_create_and_read_own_payment_only(api, users, stack):
    alice, bob = users["alice"], users["bob"]
    resp = await create(api, alice)
    assert resp.status_code == 201, resp.text
    payment = resp.json()
    ref = payment["reference"]
    assert ref.startswith("TP") and len(ref) == 22 and payment["status"] == "pending"
    assert (payment["amount"], payment["amount_minor"], payment["provider"]) == ("100.00", 10000, "mpesa")

    detail = (await api.get(f"/api/payments/{ref}/", headers=alice.headers)).json()
    assert detail["reference"] == ref and detail["phone_number"] == "2547******00"
    status = (await api.get(f"/api/payments/{ref}/status/", headers=alice.headers)).json()
    assert status["reference"] == ref and status["status"] in {"pending", "created", "processing", "succeeded"}
    listed = (await api.get("/api/payments/list/", headers=alice.headers)).json()
    assert ref in {p["reference"] for p in listed["results"]}

    for path in (f"/api/payments/{ref}/", f"/api/payments/{ref}/status/"):
        other = await api.get(path, headers=bob.headers)
        assert other.status_code == 404 and other.json()["error"] == "not_found"
    assert (await api.post(f"/api/payments/{ref}/cancel/", headers=bob.headers)).status_code == 404
    assert ref not in {p["reference"] for p in (await api.get("/api/payments/list/", headers=bob.headers)).json()["results"]}

    [request] = await read_topic(stack.settings.kafka_bootstrap, topics.PAYMENT_REQUESTS,
                                 lambda r: getattr(r, "reference", None) == ref)
    assert isinstance(request, CreatePayment)
    assert (request.user_id, request.amount.amount, request.phone_number, request.email) == (
        alice.id, 10000, "254700000000", alice.email)


async def test_admin_endpoints(api, users):
    ref = (await create(api, users["alice"])).json()["reference"]
    assert (await api.get("/api/admin/payments/", headers=users["alice"].headers)).status_code == 403
    found = await api.get("/api/admin/payments/", params={"reference": ref}, headers=users["admin"].headers)
    assert found.status_code == 200 and found.json()["results"][0]["user_id"] == users["alice"].id
    one = await api.get(f"/api/admin/payments/{ref}/", headers=users["admin"].headers)
    assert one.status_code == 200 and "events" in one.json()
    booking = {"kind": "created", "booking_id": "x", "user_id": "u", "amount": "1", "currency": "KES", "country": "KE"}
    assert (await api.post("/api/bookings/events/", json=booking, headers=users["alice"].headers)).status_code == 403


async def test_idempotency_key(api, users, stack):
    alice = users["alice"]
    key = uuid.uuid4().hex
    first = await create(api, alice, **{"Idempotency-Key": key})
    again = await create(api, alice, **{"Idempotency-Key": key})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and again.headers.get("Idempotent-Replayed") == "true"
    reordered = await api.post("/api/payments/create/", content=json.dumps(dict(reversed(list(MPESA.items())))),
                               headers={**alice.headers, "Idempotency-Key": key, "Content-Type": "application/json"})
    assert reordered.json()["reference"] == first.json()["reference"]
    different = await create(api, alice, {**MPESA, "amount": "200"}, **{"Idempotency-Key": key})
    assert different.status_code == 409 and different.json()["error"] == "idempotency_key_reused"
    # keys are per user: bob may use the same key for his own request
    assert (await create(api, users["bob"], **{"Idempotency-Key": key})).status_code == 201
    ref = first.json()["reference"]
    requests = await read_topic(stack.settings.kafka_bootstrap, topics.PAYMENT_REQUESTS,
                                lambda r: getattr(r, "reference", None) == ref, settle=1.0)
    assert len(requests) == 1


async def test_a_claim_whose_request_died_is_taken_over_after_the_lease(api, users, stack):
    """kill -9 of the ingress between claiming a key and answering leaves the claim in flight:
    a retry gets 409 while the lease runs, then runs the request, with the same reference
    the dead run would have made."""
    alice = users["alice"]
    digest = request_hash("POST", "/api/payments/create/", json.dumps(MPESA).encode())
    fresh, stale = uuid.uuid4().hex, uuid.uuid4().hex
    engine = create_async_engine(stack.settings.sqlalchemy_async_url())
    try:
        async with engine.begin() as conn:
            for key, age in ((fresh, timedelta(seconds=1)), (stale, IN_FLIGHT_LEASE + timedelta(seconds=5))):
                await conn.execute(insert(idempotency_keys).values(
                    user_id=alice.id, key=key, request_hash=digest, created_at=utcnow() - age))
    finally:
        await engine.dispose()
    busy = await create(api, alice, **{"Idempotency-Key": fresh})
    assert busy.status_code == 409 and busy.json()["error"] == "idempotency_in_progress"
    taken = await create(api, alice, **{"Idempotency-Key": stale})
    assert taken.status_code == 201
    again = await create(api, alice, **{"Idempotency-Key": stale})
    assert again.json() == taken.json() and again.headers.get("Idempotent-Replayed") == "true"
    retry_of_fresh = await create(api, alice, {**MPESA}, **{"Idempotency-Key": fresh})
    assert retry_of_fresh.status_code == 409
    # the reference comes from user, key and request: a run after a dead one names the same payment
    seed = stable_id("idempotency", alice.id, stale, digest)
    assert taken.json()["reference"] == keyed_reference(seed)


@pytest.mark.parametrize(("body", "field", "why"), [
    ({**MPESA, "amount": "0"}, "amount", "greater than zero"),
    ({**MPESA, "amount": -5}, "amount", "greater than zero"),
    ({**MPESA, "provider": "stripe", "payment_method": "card", "currency": "USD", "amount": "1.001"}, "amount", "more decimals"),
    ({**MPESA, "amount": "100.50"}, "amount", "whole number"),
    ({**MPESA, "currency": "XYZ"}, "currency", "unknown"),
    ({**MPESA, "provider": "paypal"}, "provider", "unsupported"),
    ({**MPESA, "phone_number": "+25470000"}, "phone_number", "not a valid"),
    ({**MPESA, "phone_number": "+255712345678"}, "phone_number", "must be a KE number"),
    ({**MPESA, "phone_number": "07abcdefgh"}, "phone_number", "digits only"),
    ({k: v for k, v in MPESA.items() if k != "amount"}, "amount", "required"),
])
async def test_validation(api, users, body, field, why):
    resp = await create(api, users["alice"], body)
    assert resp.status_code == 422, resp.text
    assert why in resp.json()["fields"][field]


@pytest.mark.parametrize(("body", "reason"), [
    ({"amount": "0.01", "currency": "USD", "provider": "stripe", "payment_method": "card"},
     "below Stripe's minimum of 0.50 USD"),
    ({**MPESA, "amount": "250001"}, "above M-Pesa's maximum of 250000.00 KES"),
])
async def test_an_amount_the_provider_cannot_take_is_422_at_once(api, users, stack, body, reason):
    """#15: USD 0.01 used to be accepted with 201 and fail later at Stripe."""
    resp = await create(api, users["alice"], body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["fields"] == {"amount": reason}


async def test_a_declined_card_is_a_failed_attempt_and_the_next_card_pays(api, users, stack):
    """#15: Stripe keeps a declined PaymentIntent open (``requires_payment_method``) and the
    customer may pay with another card: the owner sees the payment ``pending`` with one
    failed attempt and the decline's code, not ``failed``; a confirm with another card is
    the second attempt, and it pays (before: ``failed``, the confirm answered 409, and the
    success Stripe reported was dead-lettered)."""
    alice = users["alice"]
    resp = await api.post("/api/stripe/payment-intents/create/", headers=alice.headers, json={
        "amount": "42.50", "currency": "USD", "payment_method": "pm_card_chargeDeclined", "confirm": True})
    assert resp.status_code == 201, resp.text
    ref = resp.json()["reference"]

    async def declined() -> dict | None:
        body = (await api.get(f"/api/payments/{ref}/", headers=alice.headers)).json()
        # The create opens attempt 1 at once: wait for its end, not for the list to fill.
        return body if any(a["outcome"] == "failed" for a in body["attempts"]) else None

    detail = await wait_for(declined, 60, "the declined attempt on the owner's read")
    assert detail["status"] == "pending"
    [attempt] = detail["attempts"]
    assert (attempt["number"], attempt["outcome"], attempt["provider_code"]) == (1, "failed", "generic_decline")
    assert attempt["provider_reference"] == detail["provider_reference"]
    assert attempt["provider_reference"].startswith("pi_") and attempt["ended_at"]
    assert (detail["late_from"], detail["late_decision"]) == (None, None)

    again = await api.post(f"/api/stripe/payment-intents/{ref}/confirm/", headers=alice.headers,
                           json={"payment_method": "pm_card_visa"})
    assert again.status_code == 202, again.text

    async def paid() -> dict | None:
        body = (await api.get(f"/api/payments/{ref}/", headers=alice.headers)).json()
        return body if body["status"] == "succeeded" else None

    detail = await wait_for(paid, 60, "the second card's success")
    assert [(a["number"], a["outcome"]) for a in detail["attempts"]] == [(1, "failed"), (2, "succeeded")]
    assert detail["provider_reference"] == attempt["provider_reference"]  # one PaymentIntent throughout
    assert detail["late_from"] is None


async def test_float_amount_is_exact(api, users, stack):
    raw = b'{"amount": 99.99, "currency": "USD", "provider": "stripe"}'
    resp = await api.post("/api/payments/create/", content=raw,
                          headers={**users["alice"].headers, "Content-Type": "application/json"})
    assert resp.status_code == 201 and resp.json()["amount_minor"] == 9999


async def test_size_type_and_json_checks(api, users, stack):
    h = users["alice"].headers
    big = json.dumps({**MPESA, "description": "x" * (stack.settings.max_body_bytes + 10)})
    too_big = await api.post("/api/payments/create/", content=big, headers={**h, "Content-Type": "application/json"})
    assert too_big.status_code == 413
    form = await api.post("/api/payments/create/", data={"amount": "100"}, headers=h)
    assert form.status_code == 415
    broken = await api.post("/api/payments/create/", content=b"{not json", headers={**h, "Content-Type": "application/json"})
    assert broken.status_code == 400 and broken.json()["error"] == "bad_json"
    hook = await api.post("/api/payments/callback/mpesa/", content=b"<xml/>", headers={"Content-Type": "text/xml"})
    assert hook.status_code == 415
    big_hook = await api.post("/api/stripe/webhooks/stripe/", content=b"{" + b" " * stack.settings.max_body_bytes + b"}",
                              headers={"Content-Type": "application/json"})
    assert big_hook.status_code == 413


async def test_cancel_and_refund_rules(api, users, stack):
    alice = users["alice"]
    ref = (await create(api, alice, {**MPESA, "phone_number": "+254700000003"})).json()["reference"]  # 3: no callback
    resp = await api.post(f"/api/payments/{ref}/cancel/", headers=alice.headers)
    assert resp.status_code == 202 and resp.json()["requested"] == "cancel"
    refund = await api.post(f"/api/payments/{ref}/refund/", json={"amount": "10"}, headers=alice.headers)
    assert refund.status_code in (409, 202)  # 409 while not succeeded (it never will: cancelled)
    requests = await read_topic(stack.settings.kafka_bootstrap, topics.PAYMENT_REQUESTS,
                                lambda r: getattr(r, "reference", None) == ref and r.kind == "cancel")
    assert requests and requests[0].user_id == alice.id


async def test_webhooks_recorded_before_ack(api, stack):
    ref = "TP" + uuid.uuid4().hex[:20].upper()
    token = stack.settings.mpesa_callback_token.get_secret_value()
    body = json.dumps({"Body": {"stkCallback": {"MerchantRequestID": "m", "CheckoutRequestID": f"ws_{ref}",
                                                "ResultCode": 1032, "ResultDesc": "Request cancelled by user"}}}).encode()
    ok = await api.post("/api/payments/callback/mpesa/", params={"token": token, "reference": ref}, content=body,
                        headers={"Content-Type": "application/json"})
    assert ok.status_code == 200 and ok.json() == {"ResultCode": 0, "ResultDesc": "Accepted"}
    bad = await api.post("/api/payments/callback/mpesa/", params={"token": "wrong", "reference": ref}, content=body,
                         headers={"Content-Type": "application/json"})
    assert bad.status_code == 403

    stripe_body = json.dumps({"id": f"evt_{ref}", "type": "payment_intent.succeeded", "created": 1,
                              "data": {"object": {"id": f"pi_{ref}", "metadata": {"trailpay_reference": ref}}}}).encode()
    signed = await api.post("/api/stripe/webhooks/stripe/", content=stripe_body,
                            headers={"Content-Type": "application/json", "Stripe-Signature": stripe_signature(
                                stripe_body, stack.settings.stripe_webhook_secrets[0].get_secret_value())})
    assert signed.status_code == 200
    forged = await api.post("/api/stripe/webhooks/stripe/", content=stripe_body,
                            headers={"Content-Type": "application/json",
                                     "Stripe-Signature": stripe_signature(stripe_body, "whsec_wrong")})
    assert forged.status_code == 400 and forged.json()["error"] == "verification_failed"

    raws: list[RawWebhook] = await read_topic(stack.settings.kafka_bootstrap, topics.WEBHOOKS_RAW,
                                              lambda r: r.reference == ref, want=4, settle=0.5)
    by = {(r.provider.value, r.verified) for r in raws}
    assert by == {("mpesa", True), ("mpesa", False), ("stripe", True), ("stripe", False)}
    for r in raws:
        assert r.body in (body, stripe_body) and r.received_at.tzinfo is not None
    forged_raw = next(r for r in raws if r.provider.value == "stripe" and r.verified is False)
    assert forged_raw.verification_error and "stripe-signature" in {k.lower() for k in forged_raw.headers}

    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families((await api.get("/metrics")).text)
               for s in family.samples}
    hooks = {dict(labels)["provider"] + "/" + dict(labels)["outcome"]
             for (name, labels), value in samples.items() if name == "trailpay_webhooks_total" and value}
    assert {"mpesa/accepted", "mpesa/rejected", "stripe/accepted", "stripe/rejected"} <= hooks
    routes = {dict(labels).get("route") for (name, labels) in samples if name == "trailpay_http_requests_total"}
    assert "/api/payments/callback/{provider_code}/" in routes


async def test_unknown_callback_provider(api):
    resp = await api.post("/api/payments/callback/paypal/", json={})
    assert resp.status_code == 404
