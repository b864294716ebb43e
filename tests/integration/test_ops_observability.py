"""Observability after a run on the session stack: payments for all three providers (phone
numbers, Stripe test cards, a card number typed into a description) and a poisoned record.

- No log line of any service (DATA_DIR/logs/*.log) holds a full phone number, a configured
  secret or token, an API token, a Stripe key or client secret, or a card number.
- Every service's /metrics exposes its series with the right labels; /healthz and /readyz
  answer on every HTTP service (and on the worker's metrics port).
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import httpx
import pytest

from tests.integration.ingressutil import make_user
from tests.integration.opsutil import create_card, create_mobile, wait_rows
from tests.support.waits import wait_caught_up, wait_for
from trailpay import topics
from trailpay.kafka import make_producer

pytestmark = pytest.mark.integration

SETTLED = {"succeeded", "failed", "cancelled", "expired", "refunded", "partially_refunded"}
#: The worker's topics a payment run goes through.
OBSERVED = (topics.PAYMENT_REQUESTS, topics.PROVIDER_COMMANDS, topics.WEBHOOKS_RAW, topics.PROVIDER_EVENTS)
PHONES = ["0712345670", "+254 712 345 674", "0733000009", "254700123456"]
PHONE = re.compile(r"(?<!\d)(?:\+?\s?254\s?|0)[17]\d{2}\s?\d{3}\s?\d{3}(?!\d)")
CARD = re.compile(r"(?<![\d-])(?:4\d{3}|5[1-5]\d{2}|3[47]\d{2}|6011)(?:[ -]?\d{4}){2}[ -]?\d{3,4}(?![\d-])")
GENERIC = re.compile(r"\b(?:sk|rk)_(?:test|live)_[A-Za-z0-9]+|\bwhsec_[A-Za-z0-9]+|_secret_[A-Za-z0-9]{6,}"
                     r"|(?i:\b(?:Bearer|Token|Basic)\s+(?!\[redacted\])[A-Za-z0-9._~+/=-]{12,})")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def leaks(line: str, secrets: list[str]) -> list[str]:
    found = [f"phone {m.group(0)!r}" for m in PHONE.finditer(line)]
    found += [f"card {m.group(0)!r}" for m in CARD.finditer(line) if _luhn(re.sub(r"\D", "", m.group(0)))]
    found += [f"secret-looking {m.group(0)[:12]!r}..." for m in GENERIC.finditer(line)]
    found += [f"configured secret {s[:4]!r}..." for s in secrets if s in line]
    return found


def test_leak_patterns_catch_what_they_should():
    assert leaks("sent STK push to 254712345670", [])
    assert leaks("phone +254 712 345 674", []) and leaks("msisdn 0733000009", [])
    assert leaks("card 4242 4242 4242 4242 declined", []) and leaks("Authorization: Bearer abcdefghijklmnop", [])
    assert leaks("token=mpesa-callback-token-change-me", ["mpesa-callback-token-change-me"])
    assert not leaks("sent STK push to 2547******70; card ****4242; Token [redacted]", [])
    assert not leaks("offset 1764175000123 at 2026-11-26T10:21:15 id ws_CO_26112026163633b290321166b5", [])


def declined_once(row: dict) -> bool:
    """A Stripe decline leaves the PaymentIntent open (``requires_payment_method``): one
    failed attempt, the payment still ``pending`` for the customer's next card (#15)."""
    attempts = (row.get("snapshot") or {}).get("attempts") or []
    return row["status"] == "pending" and [a["outcome"] for a in attempts] == ["failed"]


@pytest.fixture(scope="module")
async def ran(stack):
    if stack.info is None:
        pytest.skip("needs the embedded stack (logs and metrics ports)")
    user = await make_user(stack.settings)
    refs = []
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
        refs.append(await create_mobile(api, user, "mpesa", PHONES[0]))
        refs.append(await create_mobile(api, user, "mpesa", PHONES[1]))
        refs.append(await create_mobile(api, user, "airtel", PHONES[2]))
        refs.append(await create_card(api, user, "pm_card_visa"))
        declined = await create_card(api, user, "pm_card_chargeDeclined")
        refs.append(declined)
        resp = await api.post("/api/payments/create/", headers=user.headers, json={
            "amount": "10", "currency": "KES", "provider": "mpesa", "phone_number": PHONES[3],
            "description": "card 4242 4242 4242 4242 exp 12/34"})
        assert resp.status_code == 201, resp.text
        refs.append(resp.json()["reference"])
    producer = make_producer(stack.settings)
    await producer.start()
    try:  # one poisoned record, for the dead-letter series
        ref = f"TPOBS{uuid.uuid4().hex[:12].upper()}"
        await producer.send_and_wait(topics.PAYMENT_REQUESTS, b'{"kind": "create", "phone_number": '
                                     b'"254712345670"}', key=ref.encode())
    finally:
        await producer.stop()
    await wait_rows(stack.settings, refs, lambda r: declined_once(r) if r["reference"] == declined
                    else r["status"] in SETTLED, timeout=90)
    # Every record of the run handled (the poisoned one dead-lettered, its letter archived):
    # the logs and metrics the tests read are complete.
    await wait_caught_up(stack.settings, {stack.settings.worker_id: OBSERVED,
                                          topics.POSTGRES_SINK_GROUP: topics.POSTGRES_SINK_TOPICS},
                         90, "the run through the worker and the sink")
    return user


async def test_no_phone_number_secret_token_or_card_in_any_log_line(stack, ran):
    s = stack.settings
    secrets = [v.get_secret_value() for v in (
        s.stripe_api_key, s.mpesa_consumer_key, s.mpesa_consumer_secret, s.mpesa_passkey,
        s.mpesa_callback_token, s.airtel_client_id, s.airtel_client_secret, s.airtel_callback_token,
        *s.stripe_webhook_secrets)]
    secrets.append(ran.token)
    logs = sorted(Path(stack.data_dir, "logs").glob("*.log"))
    assert {p.stem for p in logs} >= {"worker", "ingress", "sink-postgres", "analytics", "sandbox"}
    problems = []
    for path in logs:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for leak in leaks(line, secrets):
                problems.append(f"{path.name}:{number}: {leak}: {line[:200]}")
    assert not problems, "\n".join(problems[:30])


async def _get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=20) as client:
        return await client.get(url)


def _series(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{") or line.startswith(name + " ")]


async def test_metrics_health_and_readiness_of_every_service(stack, ran):
    urls = stack.refresh().metrics_urls
    assert set(urls) >= {"ingress", "worker", "sink-postgres", "analytics"}

    ingress = (await _get(urls["ingress"])).text
    assert any('route="/api/payments/create/"' in s and 'status="201"' in s
               for s in _series(ingress, "trailpay_http_requests_total"))
    webhooks = _series(ingress, "trailpay_webhooks_total")
    for provider in ("stripe", "mpesa", "airtel"):
        assert any(f'provider="{provider}"' in s and 'verification="verified"' in s for s in webhooks), provider

    async def worker_metrics() -> str | None:  # the lag gauge's first measurement may still be running
        text = (await _get(urls["worker"])).text
        return text if _series(text, "trailpay_consumer_lag_records") else None

    worker: str = await wait_for(worker_metrics, 30, "the worker's consumer lag gauge", interval=1)
    transitions = _series(worker, "trailpay_payment_transitions_total")
    for provider in ("stripe", "mpesa", "airtel"):
        assert any(f'provider="{provider}"' in s and 'to_status="succeeded"' in s for s in transitions)
    assert any('from_status="none"' in s and 'to_status="created"' in s for s in transitions)
    assert any('source_topic="payments.requests.v1"' in s and 'stage="payments"' in s
               and 'error_type="InvalidRecord"' in s for s in _series(worker, "trailpay_dead_letters_total"))
    assert "# TYPE trailpay_sweep_actions_total counter" in worker
    lag = _series(worker, "trailpay_consumer_lag_records")
    for group in ("trailpay", "trailpay-sink-postgres", "trailpay-sink-clickhouse"):
        assert any(f'group="{group}"' in s for s in lag), group

    sink = (await _get(urls["sink-postgres"])).text
    assert _series(sink, "trailpay_sink_write_seconds_count") and 'sink="sink-postgres"' in sink
    assert _series(sink, "trailpay_sink_lag_records")
    analytics = (await _get(urls["analytics"])).text
    assert any('sink="sink-clickhouse"' in s for s in _series(analytics, "trailpay_sink_write_seconds_count"))

    info = stack.refresh()
    worker_base = urls["worker"].rsplit("/", 1)[0]
    for base in (info.api_url, info.dashboard_url, worker_base):
        for path in ("/healthz", "/readyz"):
            resp = await _get(f"{base}{path}")
            assert resp.status_code == 200, (base, path, resp.text)
    assert (await _get(f"{info.sandbox_url}/healthz")).status_code == 200
    assert json.loads((await _get(f"{worker_base}/readyz")).text) == {"ready": True}
