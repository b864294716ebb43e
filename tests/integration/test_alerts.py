"""Issue 18: on the running stack, a garbage payment request becomes a dead letter, and
``trailpay report --metric alerts --json`` shows the TrailPayDeadLetters alert for it."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.integration.opsutil import trailpay
from tests.support.waits import wait_for
from trailpay import topics
from trailpay.kafka import make_producer

pytestmark = pytest.mark.integration

LABELS = {"source_topic": "payments.requests.v1", "stage": "payments", "severity": "warning"}


async def _dead_letter_alert(stack) -> tuple[dict, float]:
    """The whole report, and the value of the dead-letter alert for payments.requests.v1."""
    done = await trailpay(stack, "report", "--metric", "alerts", "--json")
    report = json.loads(done.stdout)
    values = [a["value"] for a in report["alerts"] if a["alert"] == "TrailPayDeadLetters"
              and all(a["labels"].get(k) == v for k, v in LABELS.items())]
    return report, values[0] if values else 0.0


async def test_a_dead_letter_fires_the_dead_letter_alert(stack):
    if stack.info is None:
        pytest.skip("needs the embedded stack (metrics URLs in stack.json)")
    # The first run scrapes every service and keeps the scrape: the baseline of increase().
    baseline, before = await _dead_letter_alert(stack)
    assert baseline["targets_down"] == {}
    assert set(baseline["targets"]) >= {"ingress", "worker", "sink-postgres", "analytics"}
    assert baseline["rules"] == 12
    async with httpx.AsyncClient(timeout=20) as client:  # the sweeper's gauges behind the stuck rule
        worker = (await client.get(baseline["targets"]["worker"])).text
    assert "# TYPE trailpay_payments_overdue gauge" in worker
    assert "# TYPE trailpay_payments_past_deadline gauge" in worker

    producer = make_producer(stack.settings)
    await producer.start()
    try:
        ref = f"TPALERT{uuid.uuid4().hex[:12].upper()}"
        await producer.send_and_wait(topics.PAYMENT_REQUESTS, b"\xff\xfe not a payment request",
                                     key=ref.encode())
    finally:
        await producer.stop()

    async def fired() -> dict | None:
        report, value = await _dead_letter_alert(stack)
        return report if value >= before + 1 else None

    report = await wait_for(fired, 60, "TrailPayDeadLetters for payments.requests.v1", interval=1)
    (alert,) = [a for a in report["alerts"] if a["alert"] == "TrailPayDeadLetters"
                and a["labels"]["source_topic"] == "payments.requests.v1" and a["labels"]["stage"] == "payments"]
    assert alert["state"] == "firing" and alert["severity"] == "warning"
    assert alert["annotations"]["summary"] == "Dead letters from payments.requests.v1 at stage payments"
    assert alert["annotations"]["runbook_url"] == "docs/operations.md#trailpaydeadletters"
    assert len(report["scrapes"]) >= 2  # the baseline run's scrape was kept
