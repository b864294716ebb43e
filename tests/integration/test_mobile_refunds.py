"""Mobile-money refunds on the session stack (#17 item 3), through the API, the state machine,
the dispatcher, the Daraja / Airtel sandboxes and the result callbacks:

- M-Pesa: a partial refund (a B2C payment of 200 KES back to the payer, settled by its
  asynchronous result on the ResultURL) -> ``partially_refunded``, then the rest ->
  ``refunded`` (before: every M-Pesa refund ended ``unsupported``);
- a failing result (the sandbox org's balance is insufficient, ResultCode 1) and a queue
  timeout (the QueueTimeOutURL notice): the refund ``failed`` with Daraja's code, the payment
  stays ``succeeded`` with nothing refunded;
- Airtel: a partial refund is refused at once (409, its API refunds whole transactions),
  the whole refund goes through;
- ``trailpay refunds record-external``: money returned outside TrailPay counts as refunded.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.ingressutil import ApiUser, make_user
from tests.integration.opsutil import trailpay
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def user(stack) -> ApiUser:
    return await make_user(stack.settings)


@pytest.fixture
async def api(stack):
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=20) as client:
        yield client


def _key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


async def _paid(api: httpx.AsyncClient, user: ApiUser, provider: str, phone: str, amount: str) -> str:
    resp = await api.post("/api/payments/create/", headers={**user.headers, **_key()}, json={
        "amount": amount, "currency": "KES", "payment_method": "mobile_money", "provider": provider,
        "phone_number": phone, "description": "Lodge booking"})
    assert resp.status_code == 201, resp.text
    ref = str(resp.json()["reference"])
    assert (await _when(api, user, ref, lambda d: d["status"] != "pending" and d["status"] != "created"
                        and d["status"] != "processing", "settled"))["status"] == "succeeded"
    return ref


async def _when(api: httpx.AsyncClient, user: ApiUser, ref: str, ok: Any, what: str,
                timeout: float = 60) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        resp = await api.get(f"/api/payments/{ref}/", headers=user.headers)
        body = resp.json() if resp.status_code == 200 else None
        return body if body is not None and ok(body) else None

    found: dict[str, Any] = await wait_for(check, timeout, f"{ref}: {what}", interval=0.5)
    return found


async def _refund(api: httpx.AsyncClient, user: ApiUser, ref: str, amount: str | None) -> httpx.Response:
    body = {} if amount is None else {"amount": amount}
    return await api.post(f"/api/payments/{ref}/refund/", headers={**user.headers, **_key()}, json=body)


def _refunds(detail: dict[str, Any]) -> list[tuple[int, str, str | None]]:
    return [(r["amount_minor"], r["status"], r["failure_code"]) for r in detail["refunds"]]


async def test_mpesa_partial_then_whole_refund(api, user) -> None:
    ref = await _paid(api, user, "mpesa", "0712 300 010", "500")
    partial = await _refund(api, user, ref, "200")
    assert partial.status_code == 202, partial.text
    assert (partial.json()["amount_minor"], partial.json()["status"]) == (20_000, "requested")
    detail = await _when(api, user, ref, lambda d: d["status"] == "partially_refunded", "partly refunded")
    assert (detail["refunded_minor"], _refunds(detail)) == (20_000, [(20_000, "succeeded", None)])

    rest = await _refund(api, user, ref, None)
    assert rest.status_code == 202 and rest.json()["amount_minor"] == 30_000, rest.text
    detail = await _when(api, user, ref, lambda d: d["status"] == "refunded", "refunded")
    assert detail["refunded_minor"] == 50_000
    assert _refunds(detail) == [(20_000, "succeeded", None), (30_000, "succeeded", None)]


async def test_mpesa_refund_failure_and_queue_timeout_leave_the_payment_paid(api, user) -> None:
    # last digit 6: the sandbox's B2C result says the org's balance is insufficient (1);
    # 8: the request times out in Daraja's queue (the QueueTimeOutURL notice)
    refs = await asyncio.gather(_paid(api, user, "mpesa", "0712300016", "300"),
                                _paid(api, user, "mpesa", "0712300018", "300"))
    for ref in refs:
        assert (await _refund(api, user, ref, "100")).status_code == 202
    failed = [await _when(api, user, ref, lambda d: d["refunds"] and d["refunds"][0]["status"] != "requested",
                          "the refund settled") for ref in refs]
    assert [_refunds(d) for d in failed] == [[(10_000, "failed", "1")], [(10_000, "failed", "queue_timeout")]]
    assert failed[0]["refunds"][0]["failure_message"] == "The balance is insufficient for the transaction."
    assert [(d["status"], d["refunded_minor"]) for d in failed] == [("succeeded", 0), ("succeeded", 0)]


async def test_airtel_refunds_whole_payments_only(api, user) -> None:
    ref = await _paid(api, user, "airtel", "0733300000", "500")
    partial = await _refund(api, user, ref, "100")
    assert partial.status_code == 409 and partial.json()["error"] == "partial_refund_unsupported", partial.text
    whole = await _refund(api, user, ref, None)
    assert whole.status_code == 202, whole.text
    detail = await _when(api, user, ref, lambda d: d["status"] == "refunded", "refunded")
    assert (detail["refunded_minor"], _refunds(detail)) == (50_000, [(50_000, "succeeded", None)])


async def test_record_external_refund(api, user, stack) -> None:
    ref = await _paid(api, user, "mpesa", "0712300019", "400")
    done = await trailpay(stack, "refunds", "record-external", "--reference", ref, "--amount", "150",
                          "--reason", "cash at the lodge desk", "--actor", "ops-amina")
    assert "Recorded refund ext_" in done.stdout
    detail = await _when(api, user, ref, lambda d: d["status"] == "partially_refunded", "recorded")
    assert (detail["refunded_minor"], _refunds(detail)) == (15_000, [(15_000, "succeeded", None)])
    assert detail["refunds"][0]["reason"] == "recorded outside TrailPay by ops-amina: cash at the lodge desk"
