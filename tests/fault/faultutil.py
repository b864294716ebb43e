"""Inputs with known outcomes, and the checks every fault test ends with.

Outcomes follow the sandboxes' rules (docs/sandboxes.md): M-Pesa / Airtel by the phone's
last digit, Stripe by the payment method. ``Expected`` keeps, per payment, the status the
inputs imply and its amount; :func:`check_books` then proves 0 lost and 0 doubled in
PostgreSQL and that the ClickHouse totals equal PostgreSQL's and the inputs'.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from aiokafka.admin import AIOKafkaAdminClient

from tests.integration.ingressutil import ApiUser
from tests.support.analytics import service_headers
from tests.support.rows import rows
from tests.support.waits import wait_for
from trailpay.settings import Settings

TERMINAL = {"succeeded", "failed", "cancelled", "expired", "refunded", "partially_refunded"}
PAID = {"succeeded", "partially_refunded", "refunded"}

#: last digit -> status (docs/sandboxes.md)
MPESA = {0: "succeeded", 1: "failed", 2: "cancelled", 3: "expired", 4: "failed", 5: "failed",
         6: "succeeded", 7: "succeeded", 8: "succeeded", 9: "succeeded"}
AIRTEL = {**MPESA, 2: "failed"}
CARDS = {"pm_card_visa": "succeeded", "pm_card_mastercard": "succeeded", "pm_card_chargeDeclined": "failed"}


@dataclass
class Payment:
    reference: str
    provider: str
    status: str
    amount_minor: int
    currency: str
    #: Other terminal statuses accepted (a provider sandbox that lost the transaction).
    also: frozenset[str] = frozenset()


@dataclass
class Expected:
    payments: dict[str, Payment] = field(default_factory=dict)

    def add(self, p: Payment) -> None:
        assert p.reference not in self.payments, f"{p.reference} created twice"
        self.payments[p.reference] = p

    def also_accept(self, references: set[str], statuses: frozenset[str]) -> None:
        """Accept ``statuses`` too as the end of these payments."""
        for ref in references & set(self.payments):
            p = self.payments[ref]
            self.payments[ref] = Payment(p.reference, p.provider, p.status, p.amount_minor,
                                         p.currency, p.also | statuses)


async def open_payments(settings: Settings, refs: list[str]) -> set[str]:
    """Those of ``refs`` that are not terminal in PostgreSQL now."""
    found = await rows(settings, "SELECT reference, status FROM payments WHERE reference = ANY(:r)", r=refs)
    return {r for r, s in found if s not in TERMINAL}


def plan(n: int, seed: int = 0) -> list[tuple[str, str, int]]:
    """``n`` (provider, phone or card, amount in whole units) across the three providers."""
    cards = list(CARDS)
    out = []
    for i in range(seed, seed + n):
        kind = i % 3
        amount = 100 + i % 37
        if kind == 0:
            out.append(("mpesa", f"07123456{i % 10:01d}{i % 10}", amount))
        elif kind == 1:
            out.append(("airtel", f"07330000{i % 10:01d}{(i // 3) % 10}", amount))
        else:
            out.append(("stripe", cards[i % len(cards)], amount))
    return out


def expected_status(provider: str, target: str) -> str:
    if provider == "stripe":
        return CARDS[target]
    return (MPESA if provider == "mpesa" else AIRTEL)[int(target[-1])]


async def create(api: httpx.AsyncClient, user: ApiUser, provider: str, target: str, amount: int,
                 *, give_up_s: float = 90) -> Payment:
    """Create one payment through the API, retrying with the same Idempotency-Key while the
    ingress (or what it needs) is down: one payment, however many attempts."""
    key = uuid.uuid4().hex
    if provider == "stripe":
        path, body = "/api/stripe/payment-intents/create/", {
            "amount": f"{amount}.50", "currency": "USD", "payment_method": target, "confirm": True}
        minor, currency = amount * 100 + 50, "USD"
    else:
        path, body = "/api/payments/create/", {
            "amount": str(amount), "currency": "KES", "payment_method": "mobile_money",
            "provider": provider, "phone_number": target, "description": "fault test"}
        minor, currency = amount * 100, "KES"
    deadline = time.monotonic() + give_up_s
    last = ""
    while time.monotonic() < deadline:
        try:
            resp = await api.post(path, json=body, headers={**user.headers, "Idempotency-Key": key})
            if resp.status_code == 201:
                return Payment(resp.json()["reference"], provider, expected_status(provider, target),
                               minor, currency)
            last = f"{resp.status_code} {resp.text[:200]}"
            if resp.status_code < 500 and resp.status_code != 409:
                raise AssertionError(f"create refused: {last}")
        except httpx.TransportError as exc:
            last = f"{type(exc).__name__}"
        await asyncio.sleep(0.5)
    raise AssertionError(f"could not create a payment in {give_up_s}s: {last}")


async def wait_terminal(settings: Settings, refs: list[str], timeout: float) -> dict[str, tuple[str, int]]:
    found: dict[str, tuple[str, int]] = {}

    async def terminal() -> bool:
        found.clear()
        found.update({r: (s, v) for r, s, v in await rows(
            settings, "SELECT reference, status, version FROM payments WHERE reference = ANY(:r)", r=refs)})
        return len(found) == len(refs) and all(s in TERMINAL for s, _ in found.values())

    try:
        await wait_for(terminal, timeout, "every payment terminal", interval=1)
    except AssertionError:
        open_ = Counter(s for s, _ in found.values() if s not in TERMINAL)
        missing = [r for r in refs if r not in found][:10]
        stuck = [(r, s, v) for r, (s, v) in found.items() if s not in TERMINAL][:10]
        raise AssertionError(f"{len(refs) - len(found)} payments missing, open: {dict(open_)} after {timeout}s; "
                             f"missing e.g. {missing}; open e.g. {stuck}") from None
    return dict(found)


async def cancelled_at_stripe(settings: Settings, sandbox_url: str, refs: list[str], *,
                              timeout: float) -> None:
    """Until the Stripe sandbox holds every one of these payments' PaymentIntents as
    ``canceled`` (after a final failure the state machine asks Stripe to cancel it)."""
    key = settings.stripe_api_key.get_secret_value()
    intents = dict(await rows(settings, "SELECT reference, provider_reference FROM payments "
                                        "WHERE reference = ANY(:r)", r=refs))
    assert len(intents) == len(refs) and all(intents.values()), intents
    statuses: dict[str, str] = {}

    async def cancelled() -> bool:
        async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {key}"}) as client:
            for ref, pi in intents.items():
                resp = await client.get(f"{sandbox_url}/stripe/v1/payment_intents/{pi}")
                statuses[ref] = resp.json().get("status", str(resp.status_code))
        return all(s == "canceled" for s in statuses.values())

    try:
        await wait_for(cancelled, timeout, "declined PaymentIntents cancelled at Stripe", interval=1)
    except AssertionError:
        raise AssertionError(f"PaymentIntents not cancelled after {timeout}s: {statuses}") from None


async def ch_counts(settings: Settings, dashboard_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=60, headers=service_headers(settings)) as client:
        resp = await client.get(f"{dashboard_url}/api/sink/clickhouse/counts")
        resp.raise_for_status()
        body: dict[str, Any] = resp.json()
        return body


async def check_books(settings: Settings, dashboard_url: str, expected: Expected, *,
                      timeout: float = 120) -> dict[str, Any]:
    """0 lost, 0 doubled, every status as the inputs say; PostgreSQL = ClickHouse = inputs.

    The stack is the test module's own, so every payment in it is one of ``expected``."""
    refs = list(expected.payments)
    final = await wait_terminal(settings, refs, timeout)
    wrong = {r: (final[r][0], p.status) for r, p in expected.payments.items()
             if final[r][0] != p.status and final[r][0] not in p.also}
    assert not wrong, f"{len(wrong)} payments ended otherwise than their inputs say: {list(wrong.items())[:10]}"

    # PostgreSQL: one row per payment (the primary key) and nothing else; one payment_events row
    # per (reference, version), versions 1..current with no gap, no version with two contents.
    (total,), = await rows(settings, "SELECT count(*) FROM payments")
    assert total == len(refs), f"{total} payments in PostgreSQL, {len(refs)} created"
    doubled = await rows(settings, "SELECT reference, version, count(*) FROM payment_events "
                                   "GROUP BY reference, version HAVING count(*) > 1 LIMIT 10")
    assert not doubled, f"payment_events doubled: {doubled}"
    gaps = await rows(settings, "SELECT p.reference, p.version, count(e.event_id), min(e.version), "
                                "max(e.version) FROM payments p LEFT JOIN payment_events e "
                                "ON e.reference = p.reference GROUP BY p.reference, p.version "
                                "HAVING count(e.event_id) <> p.version OR max(e.version) <> p.version "
                                "OR min(e.version) <> 1 LIMIT 10")
    assert not gaps, f"state changes lost (reference, version, rows, min, max): {gaps}"

    by_status = Counter(p.status for p in expected.payments.values())
    got_status = Counter(s for s, _ in final.values())
    paid: Counter[str] = Counter()
    for r, p in expected.payments.items():
        if final[r][0] in PAID:
            paid[p.currency] += p.amount_minor
    pg_paid = dict(await rows(settings, "SELECT currency, sum(amount_minor)::bigint FROM payments "
                                        "WHERE status IN ('succeeded', 'partially_refunded', 'refunded') "
                                        "GROUP BY currency"))
    assert pg_paid == dict(paid), (pg_paid, dict(paid))
    if all(not p.also for p in expected.payments.values()):
        assert got_status == by_status

    # ClickHouse: the same payments, the same paid totals, the same count of state changes.
    (changes,), = await rows(settings, "SELECT count(*) FROM payment_events")
    deadline = time.monotonic() + timeout
    ch: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            ch = await ch_counts(settings, dashboard_url)
        except httpx.HTTPError as exc:  # the analytics service restarting after a kill (seen: 404)
            ch = {"unreachable": repr(exc)}
            await asyncio.sleep(1)
            continue
        gross = {c: v["gross_minor"] for c, v in ch["revenue"].items() if v["gross_minor"]}
        if (ch["tables"]["payments"]["final"] == total and gross == dict(paid)
                and ch["tables"]["payment_changes"]["final"] == changes):
            return {"payments": total, "changes": changes, "paid": dict(paid), "status": dict(got_status)}
        await asyncio.sleep(1)
    raise AssertionError(f"ClickHouse {ch} != PostgreSQL payments={total} changes={changes} paid={dict(paid)}")


def kafka_node_pids(data_dir: Path) -> dict[int, int]:
    """node id -> pid of the running nodes of the embedded three-node Apache Kafka of
    ``data_dir`` (each a JVM whose command names its ``kafka/node-<id>/server.properties``)."""
    wanted = {str(data_dir.resolve() / "kafka" / f"node-{i}" / "server.properties"): i for i in (1, 2, 3)}
    found: dict[int, int] = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        for arg in proc.info["cmdline"] or ():
            if arg in wanted:
                found[wanted[arg]] = proc.info["pid"]
    return found


async def topic_replicas(settings: Settings, topic: str) -> list[tuple[list[int], list[int]]]:
    """(replicas, in-sync replicas) of each partition of ``topic``, by partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap or "")
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    parts = sorted(described["partitions"], key=lambda p: p["partition"])
    return [(sorted(p["replicas"]), sorted(p["isr"])) for p in parts]
