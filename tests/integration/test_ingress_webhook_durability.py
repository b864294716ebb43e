"""Webhooks are durable before they are acknowledged (ARCHITECTURE property 1).

An ingress of our own runs against a broker port where nothing listens yet (the shared
stack's broker cannot be stopped): every webhook gets 503. Then a broker of the session's
kind (Apache Kafka where it can run, else tansu) starts on that port; the "provider" retries each webhook until it is acknowledged, and every one is
found on webhooks.raw.v1 with its exact bytes. Finally the broker is stopped again and a
webhook gets 503 within the ack timeout instead of a 2xx.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest

from controlplane.stack.processes import free_port
from tests.integration.ingressutil import Subprocess, child_env, read_topic
from tests.stackutil import default_broker, start_broker
from trailpay import topics
from trailpay.kafka import create_topics

pytestmark = [pytest.mark.integration, pytest.mark.fault]


def callback(ref: str, n: int) -> bytes:
    return json.dumps({"Body": {"stkCallback": {
        "MerchantRequestID": f"m{n}", "CheckoutRequestID": f"ws_CO_{ref}_{n}", "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully."}}}).encode()


async def test_webhooks_503_while_kafka_is_down_and_none_lost(stack, tmp_path):
    api_port = free_port()
    broker = start_broker(default_broker(), tmp_path, start=False)
    bootstrap = broker.bootstrap
    env = child_env(stack.settings, TRAILPAY_KAFKA_BOOTSTRAP=bootstrap, TRAILPAY_API_PORT=str(api_port),
                    TRAILPAY_WEBHOOK_ACK_TIMEOUT_S="1")
    ingress = Subprocess(["ingress"], env, tmp_path / "ingress.log").start()
    token = stack.settings.mpesa_callback_token.get_secret_value()
    ref = "TP" + uuid.uuid4().hex[:20].upper()
    bodies = [callback(ref, n) for n in range(20)]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=10) as api:
            for _ in range(100):
                try:
                    if (await api.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
            ready = await api.get("/readyz")
            assert ready.status_code == 503 and ready.json()["kafka"] is False

            async def post(body: bytes) -> int:
                resp = await api.post("/api/payments/callback/mpesa/", content=body,
                                      params={"token": token, "reference": ref},
                                      headers={"Content-Type": "application/json"})
                return resp.status_code

            assert [await post(b) for b in bodies] == [503] * len(bodies)

            broker.start()
            await asyncio.to_thread(broker.wait_ready)
            await create_topics(stack.settings.model_copy(update={"kafka_bootstrap": bootstrap}))

            pending = list(bodies)
            deadline = time.monotonic() + 60
            while pending and time.monotonic() < deadline:  # the provider's retries
                pending = [b for b in pending if await post(b) != 200]
                if pending:
                    await asyncio.sleep(0.5)
            assert not pending, f"{len(pending)} webhooks never accepted:\n{ingress.log_text()[-2000:]}"

            raws = await read_topic(bootstrap, topics.WEBHOOKS_RAW, lambda r: r.reference == ref,
                                    want=len(bodies), timeout=30)
            assert {r.body for r in raws} == set(bodies)
            assert all(r.verified is True and r.provider.value == "mpesa" for r in raws)

            broker.stop()
            started = time.monotonic()
            assert await post(callback(ref, 99)) == 503
            assert time.monotonic() - started < 8
    finally:
        ingress.stop()
        broker.stop()
