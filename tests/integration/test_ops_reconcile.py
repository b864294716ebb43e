"""`trailpay reconcile` on a stack of its own whose callbacks are never delivered
(TRAILPAY_PUBLIC_BASE_URL names a closed port, so every sandbox callback and webhook is lost)
and whose deadlines are an hour (the sweeper does not ask the providers during the test):

- an M-Pesa payment that succeeds at the sandbox stays `pending` at TrailPay; an Airtel one
  likewise; a card payment whose 3-D Secure the customer completes stays `processing`; an
  M-Pesa payment paid on the phone and cancelled on the site says `cancelled`; a card
  payment the dispatcher settled agrees;
- reconcile lists the four, exits 1; `--fix` feeds the providers' answers in (source
  `reconcile`), the state machine applies them, exit 0; a second run sends nothing;
- the schedule inside `trailpay up` (TRAILPAY_RECONCILE_INTERVAL_S) sees the same mismatches
  in its metric, then none.

Also: PostgreSQL unreachable is one line naming the setting, exit 2.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.ingressutil import make_user
from tests.integration.opsutil import create_card, create_mobile, trailpay, wait_rows
from tests.stackutil import RunningStack, start_stack, stop_stack
from tests.support.processes import clean_env, trailpay_argv
from tests.support.rows import rows
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration

ENV = {"TRAILPAY_PUBLIC_BASE_URL": "http://127.0.0.1:9", "TRAILPAY_PENDING_DEADLINE_S": "3600",
       "TRAILPAY_PROCESSING_DEADLINE_S": "3600", "TRAILPAY_RECONCILE_INTERVAL_S": "2",
       "TRAILPAY_RECONCILE_MIN_AGE_S": "0", "TRAILPAY_LOG_LEVEL": "INFO"}


@pytest.fixture
def lost_callbacks(own_stack_dir: Path) -> Iterator[RunningStack]:
    running = start_stack(own_stack_dir, env=ENV)
    try:
        yield running
    finally:
        stop_stack(running)


async def reconcile(stack: RunningStack, *args: str) -> tuple[int, dict[str, Any]]:
    done = await trailpay(stack, "reconcile", "--since", "1h", "--min-age", "0", "--json", *args, check=False)
    assert done.returncode in (0, 1), f"exit {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.returncode, json.loads(done.stdout)


async def scheduled_mismatches(stack: RunningStack) -> dict[str, float]:
    """The schedule's ``trailpay_reconcile_mismatches`` samples by provider (last run)."""
    url = stack.refresh().metrics_urls["reconcile"]
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(url)).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r'trailpay_reconcile_mismatches\{kind="(\w+)",provider="(\w+)"\} (\S+)', line)
        if match:
            found[f"{match.group(2)}:{match.group(1)}"] = float(match.group(3))
    runs = re.search(r'trailpay_reconcile_runs_total\{outcome="none"\} (\S+)', text)
    found["runs_none"] = float(runs.group(1)) if runs else 0.0
    return found


async def test_reconcile_finds_lost_successes_and_fix_makes_them_agree(lost_callbacks: RunningStack) -> None:
    stack = lost_callbacks
    user = await make_user(stack.settings)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
        mpesa = await create_mobile(api, user, "mpesa", "0712345670")
        airtel = await create_mobile(api, user, "airtel", "0733123450")
        card_3ds = await create_card(api, user, "pm_card_threeDSecure2Required")
        card_ok = await create_card(api, user)
        cancelled = await create_mobile(api, user, "mpesa", "0712345679")
        waiting = await wait_rows(stack.settings, [mpesa, airtel, card_3ds, card_ok, cancelled], lambda r: (
            r["status"] == "succeeded" if r["reference"] == card_ok else
            r["status"] == "processing" if r["reference"] == card_3ds else
            r["status"] == "pending" if r["reference"] == airtel else  # Airtel: no reference until paid
            r["status"] == "pending" and r["provider_reference"] is not None), timeout=90)
        # The customer pays on the phone (the sandbox's success) and cancels on the site: an
        # M-Pesa cancel is local, so TrailPay says cancelled while the money moved.
        assert (await api.post(f"/api/payments/{cancelled}/cancel/", headers=user.headers)).status_code == 202
        await wait_rows(stack.settings, [cancelled], lambda r: r["status"] == "cancelled")
        intent = waiting[card_3ds]["provider_reference"]
        async with httpx.AsyncClient(base_url=stack.sandbox_url, timeout=30) as sandbox:
            done = await sandbox.post(f"/_sandbox/stripe/payment_intents/{intent}/3ds", json={"outcome": "succeed"})
            assert done.status_code == 200 and done.json()["status"] == "succeeded", done.text

    async def all_four() -> tuple[int, dict[str, Any]] | None:
        code, doc = await reconcile(stack)
        return (code, doc) if len(doc["mismatches"]) == 4 else None

    code, doc = await wait_for(all_four, 60, "the four lost successes found", interval=1)
    assert code == 1 and doc["total"] == 5 and doc["checked"] == {"airtel": 1, "mpesa": 2, "stripe": 2}
    found = {m["reference"]: m for m in doc["mismatches"]}
    assert set(found) == {mpesa, airtel, card_3ds, cancelled}
    assert {r: (m["trailpay_says"], m["provider_says"], m["kind"], m["fixable"]) for r, m in found.items()} == {
        mpesa: ("pending", "succeeded", "paid_at_provider", True),
        airtel: ("pending", "succeeded", "paid_at_provider", True),
        card_3ds: ("processing", "succeeded", "paid_at_provider", True),
        cancelled: ("cancelled", "succeeded", "paid_at_provider", True)}
    assert found[card_3ds]["amount_asked"] == {"amount": 4250, "currency": "USD"}
    assert found[card_3ds]["amount_at_provider"] == {"amount": 4250, "currency": "USD"}
    assert found[mpesa]["amount_asked"] == {"amount": 15000, "currency": "KES"}
    assert found[mpesa]["amount_at_provider"] is None

    table = await trailpay(stack, "reconcile", "--since", "1h", "--min-age", "0", check=False)
    assert table.returncode == 1
    assert "4 mismatches" in table.stdout and mpesa in table.stdout and "42.50 USD" in table.stdout
    assert "5 payments checked (airtel 1, mpesa 2, stripe 2); 4 mismatches" in table.stdout
    assert "--fix" in table.stdout

    seen = await wait_for(lambda: _has(scheduled_mismatches(stack), "mpesa:paid_at_provider"), 60,
                          "the schedule's metric")
    assert seen["mpesa:paid_at_provider"] == 2.0 and seen["stripe:paid_at_provider"] == 1.0
    assert seen["airtel:paid_at_provider"] == 1.0

    code, fixed = await reconcile(stack, "--fix", "--wait", "90")
    assert code == 0, fixed
    four = [mpesa, airtel, card_3ds, cancelled]
    assert fixed["events_sent"] == 4 and sorted(fixed["fixed"]) == sorted(four)
    assert fixed["mismatches"] == []
    settled = await wait_rows(stack.settings, four, lambda r: r["status"] == "succeeded")
    assert {r["settled_by"] for r in settled.values()} == {"sweep"}
    # the cancelled one is a late success (the late-payment policy applies to it)
    assert {r: row["snapshot"].get("late_from") for r, row in settled.items()} == {
        mpesa: None, airtel: None, card_3ds: None, cancelled: "cancelled"}
    paid_by = ("SELECT reference, cause FROM payment_events WHERE reference = ANY(:refs) "
               "AND to_status = 'succeeded' AND from_status <> 'succeeded'")
    causes = await rows(stack.settings, paid_by, refs=four)
    assert sorted((c.reference, c.cause) for c in causes) == sorted((r, "reconcile") for r in four)

    code, again = await reconcile(stack, "--fix")
    assert (code, again["mismatches"], again["events_sent"], again["total"]) == (0, [], 0, 5)
    assert sorted((c.reference, c.cause) for c in await rows(stack.settings, paid_by, refs=four)) == sorted(
        (r, "reconcile") for r in four)

    async def schedule_agrees() -> dict[str, float] | None:
        now = await scheduled_mismatches(stack)
        return now if now["runs_none"] >= 1 and len(now) == 1 else None

    await wait_for(schedule_agrees, 60, "the schedule sees no mismatch", interval=1)


async def _has(pending: Any, key: str) -> dict[str, float] | None:
    found: dict[str, float] = await pending
    return found if key in found else None


def test_postgres_unreachable_names_the_setting(tmp_path: Path) -> None:
    env = clean_env(TRAILPAY_DATA_DIR=str(tmp_path), TRAILPAY_KAFKA_BOOTSTRAP="127.0.0.1:9",
                    TRAILPAY_DATABASE_URL="postgresql+psycopg://trailpay:x@127.0.0.1:9/trailpay")
    done = subprocess.run(trailpay_argv("reconcile"), env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "PostgreSQL is not reachable" in done.stderr and "TRAILPAY_DATABASE_URL" in done.stderr
    assert "127.0.0.1:9/trailpay" in done.stderr and "Traceback" not in done.stderr
