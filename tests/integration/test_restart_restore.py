"""Issue 19: an ordinary restart of `trailpay up` never strands an open payment.

tansu starts empty, so before this the worker forgot every open payment at a restart: they
stayed ``pending`` in PostgreSQL for ever unless someone ran the runbook's replay. Now `up`
re-publishes the PostgreSQL archive itself before it says it is ready, and prints what it
restored. On Apache Kafka with its log directory kept, nothing is replayed.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.integration.ingressutil import make_user
from tests.integration.opsutil import OPEN, create_mobile, payment_rows, trailpay, wait_rows
from tests.integration.streamutil import read_until
from tests.stackutil import kafka_missing, stack_dir, start_stack, stop_stack
from tests.support.rows import rows
from tests.support.waits import wait_for_sync
from trailpay import topics

pytestmark = pytest.mark.integration

#: A payment's deadline is fixed when it enters its status, so the payments get deadlines
#: long enough to be open still at the stop, and short enough to pass after the restart.
SHORT = {"TRAILPAY_PENDING_DEADLINE_S": "20", "TRAILPAY_PROCESSING_DEADLINE_S": "20",
         "TRAILPAY_CARD_PENDING_DEADLINE_S": "20", "TRAILPAY_CARD_PROCESSING_DEADLINE_S": "20"}
RESTORED = re.compile(r"^  Restored from the PostgreSQL archive: (\d+) payments \((\d+) open\), "
                      r"(\d+) state changes, (\d+) webhook ids", re.MULTILINE)


async def _open_card(api: httpx.AsyncClient, headers: dict[str, str]) -> str:
    """A PaymentIntent waiting for its payment method (the customer is still typing)."""
    resp = await api.post("/api/stripe/payment-intents/create/", headers=headers,
                          json={"amount": "42.50", "currency": "USD"})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["reference"])


def _restore_lines(data_dir, start: int) -> list[tuple[int, int, int, int]]:
    """The restore counts `up` printed after byte ``start`` of up.log (stack.json is written
    just before the "is up" text, so wait for that text)."""
    def printed() -> str | None:
        text = (data_dir / "up.log").read_text(errors="replace")[start:]
        return text if "TrailPay is up." in text and "stack.json" in text.split("TrailPay is up.")[1] else None

    text = wait_for_sync(printed, 15, "the start message of trailpay up", interval=0.2)
    return [tuple(int(g) for g in m.groups()) for m in RESTORED.finditer(text)]  # type: ignore[misc]


async def _state_records(settings) -> list[tuple[str, int]]:
    records = await read_until(settings.kafka_bootstrap or "", topics.PAYMENT_STATE,
                               lambda k, v: True, lambda got: False, timeout=8, quiet_s=3)
    return sorted((json.loads(v)["reference"], json.loads(v)["version"]) for _k, v in records)


async def _query_phones(settings, refs: list[str]) -> dict[str, set[str]]:
    """The phone numbers of the sweep's provider queries (provider.commands.v1) per payment."""
    wanted = {ref.encode() for ref in refs}
    records = await read_until(settings.kafka_bootstrap or "", topics.PROVIDER_COMMANDS,
                               lambda k, v: k in wanted and json.loads(v)["kind"] == "query",
                               lambda got: {k for k, _v in got} == wanted, timeout=20)
    found: dict[str, set[str]] = {}
    for key, value in records:
        found.setdefault((key or b"").decode(), set()).add(json.loads(value)["phone_number"])
    return found


async def test_tansu_restart_restores_open_payments_and_their_deadlines_settle_them():
    data_dir = stack_dir("restart-restore")
    stack = start_stack(data_dir, env=SHORT, broker="tansu")
    try:
        user = await make_user(stack.settings)
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
            paid = await create_mobile(api, user, "mpesa", "0712345670")
            mpesa = await create_mobile(api, user, "mpesa", "0712345673")  # no callback ever
            airtel = await create_mobile(api, user, "airtel", "0733000003")  # no callback ever
            card = await _open_card(api, user.headers)
        open_refs = [mpesa, airtel, card]
        await wait_rows(stack.settings, [paid], lambda r: r["status"] == "succeeded", timeout=90)
        await wait_rows(stack.settings, [mpesa], lambda r: r["status"] == "pending" and r["provider_reference"],
                        timeout=90)
        await wait_rows(stack.settings, [airtel], lambda r: r["status"] == "pending", timeout=90)
        await wait_rows(stack.settings, [card], lambda r: r["status"] in OPEN and r["version"] >= 1,
                        timeout=90)
    finally:
        stop_stack(stack)

    # An ordinary restart; the deadlines pass while it runs.
    mark = (data_dir / "up.log").stat().st_size
    stack = start_stack(data_dir, env=SHORT, broker="tansu")
    try:
        (payments, open_payments, changes, webhooks), = _restore_lines(data_dir, mark)
        assert (payments, open_payments) == (4, 3)
        assert changes == 4 and webhooks >= 1  # each payment's newest change alone (issue 14)
        settled = await wait_rows(stack.settings, open_refs, lambda r: r["status"] not in OPEN, timeout=150)
        assert {ref: settled[ref]["status"] for ref in open_refs} == {
            mpesa: "expired", airtel: "expired", card: "expired"}, settled
        assert all(settled[ref]["settled_by"] == "sweep" for ref in open_refs), settled
        # payments.state.v1 carries the phone numbers masked: the restore opened their seals, so
        # the sweep's provider question (as a retry or refund would) went to the whole number
        assert await _query_phones(stack.settings, [mpesa, airtel]) == {
            mpesa: {"254712345673"}, airtel: {"254733000003"}}
        archived = [tuple(r) for r in await rows(
            stack.settings, "SELECT reference, version FROM payment_events ORDER BY reference, version")]
        newest = [tuple(r) for r in await rows(
            stack.settings, "SELECT reference, max(version) FROM payment_events GROUP BY reference "
                            "ORDER BY reference")]
    finally:
        stop_stack(stack)

    # Another restart: the archive is re-published once more, and nothing is applied twice.
    mark = (data_dir / "up.log").stat().st_size
    stack = start_stack(data_dir, broker="tansu")
    try:
        (payments, open_payments, changes, _webhooks), = _restore_lines(data_dir, mark)
        assert (payments, open_payments, changes) == (4, 0, 4)
        after = [tuple(r) for r in await rows(
            stack.settings, "SELECT reference, version FROM payment_events ORDER BY reference, version")]
        assert after == archived
        # The topic holds each payment's newest change once, and the worker made no new one.
        assert await _state_records(stack.settings) == newest
        check = await trailpay(stack, "restore", "--check", check=False)
        assert check.returncode == 0 and "No restore needed" in check.stdout, check.stdout
    finally:
        stop_stack(stack)


@pytest.mark.skipif(kafka_missing() is not None, reason=kafka_missing() or "")
async def test_kafka_restart_with_its_log_dir_replays_nothing():
    data_dir = stack_dir("restart-kafka")
    stack = start_stack(data_dir, env=SHORT, broker="kafka")
    try:
        user = await make_user(stack.settings)
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
            waiting = await create_mobile(api, user, "mpesa", "0712345673")  # no callback ever
        await wait_rows(stack.settings, [waiting], lambda r: r["status"] == "pending" and r["provider_reference"],
                        timeout=90)
    finally:
        stop_stack(stack)
    mark = (data_dir / "up.log").stat().st_size
    stack = start_stack(data_dir, env=SHORT, broker="kafka")
    try:
        assert _restore_lines(data_dir, mark) == []
        settled = await wait_rows(stack.settings, [waiting], lambda r: r["status"] not in OPEN, timeout=150)
        assert settled[waiting]["status"] == "expired" and settled[waiting]["settled_by"] == "sweep"
        got = await payment_rows(stack.settings, [waiting])
        assert got[waiting]["version"] == 3  # created, pending, expired: nothing replayed twice
    finally:
        stop_stack(stack)
