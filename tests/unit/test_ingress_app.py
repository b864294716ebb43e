"""The ingress app in-process, with no broker and no database: what must hold even then."""

from __future__ import annotations

import httpx
import pytest

from connectors.ingress.app import create_app
from connectors.ingress.context import IngressContext
from trailpay.settings import load_settings

SETTINGS = load_settings(kafka_bootstrap="127.0.0.1:9", database_url=None)


@pytest.fixture
async def client():
    ctx = IngressContext.build(SETTINGS, with_database=False)
    app = create_app(SETTINGS, ctx=ctx)  # lifespan not run: the producer never connects
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


async def test_webhook_answers_503_when_kafka_cannot_take_it(client):
    token = SETTINGS.mpesa_callback_token.get_secret_value()
    resp = await client.post("/api/payments/callback/mpesa/", params={"token": token, "reference": "TP1"},
                             json={"Body": {}})
    assert resp.status_code == 503 and resp.headers["Retry-After"]
    stripe = await client.post("/api/stripe/webhooks/stripe/", json={"id": "evt_1"})
    assert stripe.status_code == 503  # even a bad signature is recorded first, so: not yet


async def test_webhook_size_and_type(client):
    assert (await client.post("/api/payments/callback/airtel/", content=b"a=1",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})).status_code == 415
    big = b"{" + b" " * SETTINGS.max_body_bytes + b"}"
    assert (await client.post("/api/payments/callback/airtel/", content=big,
                              headers={"Content-Type": "application/json"})).status_code == 413
    assert (await client.post("/api/payments/callback/paypal/", json={})).status_code == 404


async def test_auth_before_anything_else(client):
    resp = await client.post("/api/payments/create/", json={"amount": "1", "currency": "KES"})
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == "Token"
    assert (await client.get("/api/admin/payments/")).status_code == 401


async def test_health_metrics_openapi(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 503 and ready.json() == {"ready": False, "kafka": False, "database": False}
    spec = (await client.get("/openapi.json")).json()
    create = spec["paths"]["/api/payments/create/"]["post"]
    assert "amount" in create["requestBody"]["content"]["application/json"]["schema"]["properties"]
    metrics = (await client.get("/metrics")).text
    assert "trailpay_http_requests_total" in metrics
