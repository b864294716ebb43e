"""Mobile-money retries and confirmed callbacks on an embedded stack of this module's own
(#15 items 1 and 3): ``TRAILPAY_MAX_ATTEMPTS=2`` and ``TRAILPAY_MPESA_CONFIRM_BY_QUERY``
forced on against the sandbox (the default is on only for a Daraja that is not it).

- the first STK push is refused by Daraja (``500.001.1001``, subscriber locked): a failed
  attempt, the payment stays ``pending``; ``POST /api/payments/<ref>/retry/`` starts a
  second push, which pays: ``succeeded`` with 2 attempts (before: the refusal was retried
  as a 5xx, and there was no retry route);
- Airtel: the first push goes unanswered (an ``outcome`` fault: the sandbox settles it by
  the no-callback rule, whatever the phone); the retry is a new collection under a
  transaction id of its own (``<reference>-A2``: Airtel refuses an id twice), which pays:
  ``succeeded`` with 2 attempts (before: 409, Airtel retries were refused);
- M-Pesa: the customer cancels the first prompt (1032, an ``outcome`` fault: the sandbox
  settles the push by digit 2's rule whatever the phone): a cancelled attempt, the payment
  stays ``pending``; the retry's push pays: ``succeeded`` with 2 attempts (before: the
  payment ended ``cancelled`` and the retry answered 409);
- M-Pesa: a wrong PIN (2001) and no retry: ``pending`` for the 15 s retry window, then
  ``failed`` with 2001 and Daraja's text, not ``expired`` (before: ``failed`` at once, no
  retry possible);
- the retry route's refusals: no Idempotency-Key (428), another user's payment (404), a
  settled payment, a card payment, no attempts left (409 with the reason);
- a forged success callback (right URL token, the payment's CheckoutRequestID and amount)
  is not applied: the STK Query it triggers says the prompt timed out (1037), and the
  payment ends ``expired`` (before: ``succeeded``).
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.ingressutil import ApiUser, make_user
from tests.stackutil import RunningStack, keep_logs, stack_dir, start_stack, stop_stack
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration

LOCKED = {"requestId": "sandbox-lock", "errorCode": "500.001.1001",
          "errorMessage": "Unable to lock subscriber, a transaction is already in process for the "
                          "current subscriber"}


@pytest.fixture(scope="module")
def mobile_stack() -> Iterator[RunningStack]:
    data_dir = stack_dir("mobile")
    running = start_stack(data_dir, env={"TRAILPAY_MAX_ATTEMPTS": "2", "TRAILPAY_MPESA_CONFIRM_BY_QUERY": "true",
                                         "TRAILPAY_PENDING_DEADLINE_S": "30",
                                         # long enough to retry after seeing the failed attempt
                                         # through the read model under load; the no-retry test
                                         # waits it out
                                         "TRAILPAY_MOBILE_RETRY_WINDOW_S": "15",
                                         "TRAILPAY_LOG_LEVEL": "INFO"})
    try:
        yield running
    finally:
        stop_stack(running)
        keep_logs(data_dir, "mobile")
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
async def users(mobile_stack: RunningStack) -> dict[str, ApiUser]:
    return {"alice": await make_user(mobile_stack.settings), "bob": await make_user(mobile_stack.settings)}


@pytest.fixture
async def api(mobile_stack: RunningStack):
    async with httpx.AsyncClient(base_url=mobile_stack.api_url, timeout=20) as client:
        yield client


def _key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


async def _create(api: httpx.AsyncClient, user: ApiUser, phone: str) -> str:
    resp = await api.post("/api/payments/create/", headers={**user.headers, **_key()}, json={
        "amount": "150", "currency": "KES", "payment_method": "mobile_money", "provider": "mpesa",
        "phone_number": phone, "description": "Safari deposit"})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["reference"])


async def _detail_when(api: httpx.AsyncClient, user: ApiUser, ref: str, ok: Any, what: str,
                       timeout: float = 90) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        resp = await api.get(f"/api/payments/{ref}/", headers=user.headers)
        body = resp.json() if resp.status_code == 200 else None
        return body if body is not None and ok(body) else None

    found: dict[str, Any] = await wait_for(check, timeout, what, interval=0.5)
    return found


def _first_attempt_ended(detail: dict[str, Any]) -> bool:
    return bool(detail["attempts"]) and detail["attempts"][0]["outcome"] != "open"


def _attempts(detail: dict[str, Any]) -> list[tuple[int, str, str | None]]:
    return [(a["number"], a["outcome"], a["provider_code"]) for a in detail["attempts"]]


async def _fault(stack: Any, **fault: Any) -> None:
    """Arm one sandbox fault (``/_sandbox/faults``) for the next matching provider call."""
    async with httpx.AsyncClient(base_url=stack.sandbox_url, timeout=10) as sandbox:
        armed = await sandbox.post("/_sandbox/faults", json={"count": 1, **fault})
        assert armed.status_code == 200, armed.text


async def test_a_locked_first_push_then_a_retry_that_pays(api, users, mobile_stack) -> None:
    alice, bob = users["alice"], users["bob"]
    await _fault(mobile_stack, provider="mpesa", mode="error", status=500, path="/stkpush/", body=LOCKED)
    ref = await _create(api, alice, "+254712340010")

    detail = await _detail_when(api, alice, ref, lambda d: any(a["outcome"] == "failed" for a in d["attempts"]),
                                "the refused first push as a failed attempt")
    assert detail["status"] == "pending"
    assert _attempts(detail) == [(1, "failed", "500.001.1001")]
    assert "Unable to lock subscriber" in detail["attempts"][0]["provider_message"]

    path = f"/api/payments/{ref}/retry/"
    no_key = await api.post(path, headers=alice.headers)
    assert no_key.status_code == 428 and no_key.json()["error"] == "idempotency_key_required"
    assert (await api.post(path, headers={**bob.headers, **_key()})).status_code == 404

    key = _key()
    retried = await api.post(path, headers={**alice.headers, **key})
    assert retried.status_code == 202, retried.text
    assert (retried.json()["requested"], retried.json()["attempt"]) == ("retry", 2)
    again = await api.post(path, headers={**alice.headers, **key})  # the same request: replayed
    assert again.status_code == 202 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["request_id"] == retried.json()["request_id"]

    paid = await _detail_when(api, alice, ref, lambda d: d["status"] == "succeeded", "the second push's success")
    assert _attempts(paid) == [(1, "failed", "500.001.1001"), (2, "succeeded", "0")]
    assert paid["provider_reference"].startswith("ws_CO_")
    assert paid["provider_reference"] == paid["attempts"][1]["provider_reference"]

    settled = await api.post(path, headers={**alice.headers, **_key()})
    assert settled.status_code == 409 and settled.json() == {
        "error": "not_retryable", "detail": f"payment {ref} is succeeded; only an open payment can be retried"}


async def test_an_unanswered_airtel_push_then_a_retry_that_pays_under_its_own_id(api, users, mobile_stack) -> None:
    alice = users["alice"]
    await _fault(mobile_stack, provider="airtel", mode="outcome", outcome="3", path="/merchant/v1/payments/")
    created = await api.post("/api/payments/create/", headers={**alice.headers, **_key()}, json={
        "amount": "150", "currency": "KES", "payment_method": "mobile_money", "provider": "airtel",
        "phone_number": "0733000010"})  # 0: the sandbox's success, but the fault holds the first push
    assert created.status_code == 201, created.text
    ref = str(created.json()["reference"])
    pushed = await _detail_when(api, alice, ref, lambda d: d["provider_reference"], "the first push's id")
    assert pushed["status"] == "pending" and pushed["provider_reference"] == ref
    assert [(a["number"], a["provider_reference"], a["outcome"]) for a in pushed["attempts"]] == [(1, ref, "open")]

    retried = await api.post(f"/api/payments/{ref}/retry/", headers={**alice.headers, **_key()})
    assert retried.status_code == 202, retried.text
    assert (retried.json()["requested"], retried.json()["attempt"]) == ("retry", 2)

    paid = await _detail_when(api, alice, ref, lambda d: d["status"] == "succeeded", "the second push's success")
    assert _attempts(paid) == [(1, "superseded", None), (2, "succeeded", "TS")]
    assert [a["provider_reference"] for a in paid["attempts"]] == [ref, f"{ref}-A2"]
    assert paid["provider_reference"] == f"{ref}-A2"
    async with httpx.AsyncClient(base_url=mobile_stack.sandbox_url, timeout=10) as sandbox:
        counts = (await sandbox.get("/_sandbox/requests")).json()
    assert counts.get("POST /airtel/merchant/v1/payments/") == 2


async def test_a_cancelled_prompt_then_a_retry_that_pays(api, users, mobile_stack) -> None:
    alice = users["alice"]
    await _fault(mobile_stack, provider="mpesa", mode="outcome", outcome="2", path="/stkpush/")
    ref = await _create(api, alice, "+254712340040")  # 0: pays, but the fault cancels the first prompt

    declined = await _detail_when(api, alice, ref, _first_attempt_ended,
                                  "the cancelled first prompt as an ended attempt")
    assert declined["status"] == "pending"
    assert _attempts(declined) == [(1, "cancelled", "1032")]
    assert declined["attempts"][0]["provider_message"] == "Request cancelled by user"
    assert (declined["provider_code"], declined["provider_message"]) == ("1032", "Request cancelled by user")

    retried = await api.post(f"/api/payments/{ref}/retry/", headers={**alice.headers, **_key()})
    assert retried.status_code == 202, retried.text
    assert (retried.json()["requested"], retried.json()["attempt"]) == ("retry", 2)

    paid = await _detail_when(api, alice, ref, lambda d: d["status"] == "succeeded", "the retry's success")
    assert _attempts(paid) == [(1, "cancelled", "1032"), (2, "succeeded", "0")]
    first, second = (a["provider_reference"] for a in paid["attempts"])
    assert first.startswith("ws_CO_") and second.startswith("ws_CO_") and first != second
    assert paid["provider_reference"] == second
    assert paid["late_from"] is None


async def test_a_wrong_pin_and_no_retry_fails_when_the_window_passes(api, users, mobile_stack) -> None:
    alice = users["alice"]
    ref = await _create(api, alice, "+254712340044")  # 4: Daraja 2001, the wrong PIN
    declined = await _detail_when(api, alice, ref, _first_attempt_ended,
                                  "the wrong PIN as a failed attempt")
    assert declined["status"] == "pending"
    assert _attempts(declined) == [(1, "failed", "2001")]

    final = await _detail_when(api, alice, ref, lambda d: d["status"] != "pending",
                               "the payment's end after the 15 s retry window")
    assert final["status"] == "failed"
    assert (final["provider_code"], final["provider_message"]) == ("2001", "The initiator information is invalid.")
    assert _attempts(final) == [(1, "failed", "2001")]
    spent = await api.post(f"/api/payments/{ref}/retry/", headers={**alice.headers, **_key()})
    assert spent.status_code == 409 and spent.json()["detail"] == (
        f"payment {ref} is failed; only an open payment can be retried")


async def test_retry_refusals_card_and_no_attempts_left(api, users, mobile_stack) -> None:
    alice = users["alice"]
    card = await api.post("/api/stripe/payment-intents/create/", headers={**alice.headers, **_key()},
                          json={"amount": "42.50", "currency": "USD"})
    assert card.status_code == 201, card.text
    card_ref = card.json()["reference"]
    refused = await api.post(f"/api/payments/{card_ref}/retry/", headers={**alice.headers, **_key()})
    assert refused.status_code == 409 and refused.json()["error"] == "not_retryable"
    assert "cards retry by confirming again" in refused.json()["detail"]

    ref = await _create(api, alice, "+254712340023")  # 3: no callback, the prompt stays open a while
    await _detail_when(api, alice, ref, lambda d: d["provider_reference"], "the first push's reference")
    first = await api.post(f"/api/payments/{ref}/retry/", headers={**alice.headers, **_key()})
    assert first.status_code == 202, first.text
    await _detail_when(api, alice, ref, lambda d: len(d["attempts"]) == 2, "the second attempt")
    spent = await api.post(f"/api/payments/{ref}/retry/", headers={**alice.headers, **_key()})
    assert spent.status_code == 409 and spent.json()["detail"] == (
        f"payment {ref} has no attempts left (2 allowed)")


async def test_a_forged_success_callback_is_checked_by_a_query_and_not_applied(api, users, mobile_stack) -> None:
    alice = users["alice"]
    ref = await _create(api, alice, "+254712340033")  # 3: Daraja's answer will be 1037 (timeout)
    pushed = await _detail_when(api, alice, ref, lambda d: d["provider_reference"], "the push's reference")
    checkout = pushed["provider_reference"]
    forged = {"Body": {"stkCallback": {
        "MerchantRequestID": "29115-34620561-1", "CheckoutRequestID": checkout, "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.",
        "CallbackMetadata": {"Item": [
            {"Name": "Amount", "Value": 150.0}, {"Name": "MpesaReceiptNumber", "Value": "NLJ7RT61SV"},
            {"Name": "TransactionDate", "Value": 20191219102115}, {"Name": "PhoneNumber", "Value": 254712340033}]}}}}
    token = mobile_stack.settings.mpesa_callback_token.get_secret_value()
    resp = await api.post("/api/payments/callback/stk/", params={"token": token, "reference": ref},
                          content=json.dumps(forged), headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text  # recorded and acknowledged like any callback

    final = await _detail_when(api, alice, ref, lambda d: d["status"] not in ("pending", "processing"),
                               "the payment settled by Daraja's own answer")
    assert final["status"] == "expired"
    assert _attempts(final) == [(1, "expired", "1037")]
    async with httpx.AsyncClient(base_url=mobile_stack.sandbox_url, timeout=10) as sandbox:
        counts = (await sandbox.get("/_sandbox/requests")).json()
    assert counts.get("POST /mpesa/mpesa/stkpushquery/v1/query", 0) >= 1
