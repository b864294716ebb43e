"""Helpers for the ops tests: run `trailpay ...` against a stack, drive payments through the
API, and snapshot the PostgreSQL rows of some payments to compare before and after."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterable
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from sinks.postgres import schema
from tests.integration.ingressutil import ApiUser
from tests.stackutil import RunningStack
from tests.support.processes import clean_env, trailpay_argv
from tests.support.rows import rows
from tests.support.waits import wait_for
from trailpay.settings import Settings

OPEN = {"created", "pending", "processing"}


def cli_env(stack: RunningStack) -> dict[str, str]:
    return clean_env(TRAILPAY_DATA_DIR=str(stack.data_dir), COLUMNS="200")


async def trailpay(stack: RunningStack, *args: str, check: bool = True, stdin: bytes | None = None,
                   timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run `trailpay <args> --data-dir <stack>` in a subprocess (the CLI runs its own loop)."""
    argv = trailpay_argv(*args)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, env=cli_env(stack), capture_output=True, timeout=timeout,
                              text=True, input=None if stdin is None else stdin.decode())

    done = await asyncio.to_thread(run)
    if check and done.returncode != 0:
        raise AssertionError(f"trailpay {' '.join(args)} exited {done.returncode}:\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


async def create_mobile(api: httpx.AsyncClient, user: ApiUser, provider: str, phone: str,
                        amount: str = "150") -> str:
    resp = await api.post("/api/payments/create/", headers=user.headers, json={
        "amount": amount, "currency": "KES", "payment_method": "mobile_money", "provider": provider,
        "phone_number": phone, "description": "ops test"})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["reference"])


async def create_card(api: httpx.AsyncClient, user: ApiUser, method: str = "pm_card_visa") -> str:
    resp = await api.post("/api/stripe/payment-intents/create/", headers=user.headers, json={
        "amount": "42.50", "currency": "USD", "payment_method": method, "confirm": True})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["reference"])


async def payment_rows(settings: Settings, refs: Iterable[str]) -> dict[str, dict[str, Any]]:
    found = await rows(settings, "SELECT * FROM payments WHERE reference = ANY(:refs)", refs=list(refs))
    return {r.reference: dict(r._mapping) for r in found}


async def wait_rows(settings: Settings, refs: list[str], ok: Any, timeout: float = 60) -> dict[str, dict[str, Any]]:
    """Until ``ok(row)`` holds for every reference's payments row."""
    last: dict[str, tuple[str, int]] = {}

    async def reached() -> dict[str, dict[str, Any]] | None:
        found = await payment_rows(settings, refs)
        last.update({k: (v["status"], v["version"]) for k, v in found.items()})
        return found if len(found) == len(refs) and all(ok(r) for r in found.values()) else None

    try:
        result: dict[str, dict[str, Any]] = await wait_for(reached, timeout, "payments rows", interval=0.5)
    except AssertionError:
        raise AssertionError(f"not reached in {timeout}s: {last}") from None
    return result


async def snapshot(settings: Settings, refs: Iterable[str]) -> dict[str, Any]:
    """Every PostgreSQL row the sinks keep for these payments (minus write-time columns)."""
    refs = sorted(refs)
    engine = create_async_engine(settings.sqlalchemy_async_url())
    out: dict[str, Any] = {}
    try:
        async with engine.connect() as conn:
            for table, order in ((schema.payments, "reference"), (schema.payment_events, "event_id"),
                                 (schema.provider_callbacks, "event_id"), (schema.refunds, "refund_id"),
                                 (schema.payment_intents, "payment_intent_id")):
                cols = [c for c in table.c if c.name != "recorded_at"]
                rows = await conn.execute(select(*cols).where(table.c.reference.in_(refs))
                                          .order_by(table.c[order]))
                out[table.name] = [dict(r._mapping) for r in rows]
    finally:
        await engine.dispose()
    return out


async def delete_rows(settings: Settings, refs: Iterable[str]) -> None:
    """Forget these payments in PostgreSQL (as if the sinks never wrote them)."""
    refs = list(refs)
    engine = create_async_engine(settings.sqlalchemy_async_url())
    try:
        async with engine.begin() as conn:
            for table in (schema.payment_events, schema.provider_callbacks, schema.refunds,
                          schema.payment_intents, schema.payments):
                await conn.execute(table.delete().where(table.c.reference.in_(refs)))
    finally:
        await engine.dispose()
