"""`trailpay payments check-pending`: a Daraja payment whose callback never comes (sandbox:
phone ending in 3; STK Query answers 1037) ends terminal through `--update`; running it again
changes nothing. (The automatic sweep is tested with short deadlines in test_ops_restart.)
Also `trailpay providers setup|list`: idempotent, no secrets stored."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.integration.ingressutil import make_user
from tests.integration.opsutil import create_mobile, payment_rows, trailpay, wait_rows

pytestmark = pytest.mark.integration


async def test_check_pending_update_settles_a_payment_without_callback(stack):
    if stack.info is None:
        pytest.skip("needs the embedded stack")
    user = await make_user(stack.settings)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
        ref = await create_mobile(api, user, "mpesa", "0712345673")
    pending = await wait_rows(stack.settings, [ref],
                              lambda r: r["status"] == "pending" and r["provider_reference"], timeout=60)

    listed = await trailpay(stack, "payments", "check-pending", "--hours", "0", "--reference", ref)
    assert ref in listed.stdout and "--update" in listed.stdout
    none = await trailpay(stack, "payments", "check-pending", "--reference", ref)  # default: 24 hours
    assert "No payment has been open for 24 hours" in none.stdout

    done = await trailpay(stack, "payments", "check-pending", "--hours", "0", "--reference", ref,
                          "--update", "--wait", "30")
    assert "provider says expired" in done.stdout and f"{ref}=expired" in done.stdout
    row = (await payment_rows(stack.settings, [ref]))[ref]
    assert row["status"] == "expired" and row["settled_by"] == "sweep" and row["provider_code"] == "1037"
    assert row["version"] == pending[ref]["version"] + 1

    again = await trailpay(stack, "payments", "check-pending", "--hours", "0", "--reference", ref, "--update")
    assert "No payment has been open" in again.stdout
    assert (await payment_rows(stack.settings, [ref]))[ref] == row


async def test_providers_setup_is_idempotent_and_listed(stack):
    if stack.info is None:
        pytest.skip("needs the embedded stack")
    first = await trailpay(stack, "providers", "setup")
    assert {line.split()[0] for line in first.stdout.splitlines()} == {"stripe", "mpesa", "airtel"}
    again = await trailpay(stack, "providers", "setup")
    assert all(line.split()[1] == "unchanged" for line in again.stdout.splitlines()), again.stdout
    listed = await trailpay(stack, "providers", "list", "--json")
    rows = {r["code"]: r for r in json.loads(listed.stdout)}
    assert set(rows) == {"stripe", "mpesa", "airtel"}
    assert rows["mpesa"]["currencies"] == ["KES"] and rows["mpesa"]["methods"] == ["mobile_money"]
    assert rows["stripe"]["countries"] == [] and "USD" in rows["stripe"]["currencies"]
    assert "secret" not in json.dumps(rows["mpesa"]["config"]).lower()
