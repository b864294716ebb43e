"""Fault injection on one stack of the module's own (on Apache Kafka where it can run), while payments for the three providers
flow through the HTTP API (and booking events through Kafka); the sandboxes answer and call
back. After each fault: every payment terminal and as its inputs say, one row per payment,
one payment_events row per (reference, version) with no gap, and the ClickHouse totals equal
PostgreSQL's and the inputs' (:func:`tests.fault.faultutil.check_books`).

1. kill -9 of each service (worker, sink-postgres, analytics, ingress, sandbox) at a random
   point of a run; the supervisor restarts it;
2. the embedded PostgreSQL frozen (SIGSTOP of all its processes) while callbacks and booking
   events keep coming, then thawed;
3. a storm of duplicated, shuffled M-Pesa callbacks for payments waiting for theirs;
4. the broker restarted empty (stack stopped and started on the same data directory; on
   Apache Kafka, which keeps its records, its log directory is deleted in between), then
   `trailpay replay --from-archive --into pipeline`; the books must not move, and new
   payments still work. (tests/integration/test_ops_restart.py proves the state machine gets
   its payments back; this runs the same incident over everything the faults above left.)

After 1 and 2, and again after 4, `trailpay reconcile` finds no payment on which TrailPay and
the sandboxes disagree (over the payments the sandbox, restarted by 1 and 4, still knows).

Sizes are env-tunable: TRAILPAY_FAULT_N (payments per kill, default 12), TRAILPAY_FAULT_PG_PAUSE_S
(default 8; the issue's figure is 30), TRAILPAY_FAULT_STORM (webhooks, default 1,000; the
issue's figure is 10,000). Deadlines are short (TRAILPAY_PENDING_DEADLINE_S) so payments a
fault leaves open are settled by the sweeper in bounded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from benchmarks.ingress_bench import Connection
from tests.fault.faultutil import (
    Expected,
    Payment,
    cancelled_at_stripe,
    check_books,
    create,
    expected_status,
    open_payments,
    plan,
    rows,
)
from tests.integration.ingressutil import ApiUser, make_user
from tests.integration.opsutil import trailpay
from tests.stackutil import RunningStack, keep_logs, stack_dir, start_stack, stop_stack
from tests.support.waits import wait_caught_up, wait_for, wait_for_sync
from trailpay import topics
from trailpay.domain.events import BookingEvent, BookingEventKind, Money, Provider
from trailpay.domain.references import booking_reference
from trailpay.kafka import RecordProducer

pytestmark = [pytest.mark.integration, pytest.mark.fault]

N = int(os.environ.get("TRAILPAY_FAULT_N", "12"))
PG_PAUSE_S = float(os.environ.get("TRAILPAY_FAULT_PG_PAUSE_S", "8"))
STORM = int(os.environ.get("TRAILPAY_FAULT_STORM", "1000"))
DEADLINE_S = os.environ.get("TRAILPAY_FAULT_DEADLINE_S", "20")
#: Short deadlines for cards too (24 h by default: a customer may take their time), so a
#: card payment the killed sandbox forgot expires within the test. One attempt per payment:
#: these tests are about final outcomes, so a Stripe decline fails the payment (and cancels
#: its PaymentIntent) instead of leaving it open for another card (#15).
ENV = {"TRAILPAY_PENDING_DEADLINE_S": DEADLINE_S, "TRAILPAY_PROCESSING_DEADLINE_S": DEADLINE_S,
       "TRAILPAY_CARD_PENDING_DEADLINE_S": DEADLINE_S, "TRAILPAY_CARD_PROCESSING_DEADLINE_S": DEADLINE_S,
       "TRAILPAY_MAX_ATTEMPTS": "1", "TRAILPAY_PARK_TIMEOUT_S": "30", "TRAILPAY_LOG_LEVEL": "INFO"}
SERVICES = ["worker", "sink-postgres", "analytics", "ingress", "sandbox"]
SETTLE_S = 150


class Holder:
    """The module's stack (replaced when the broker-restart test starts it again)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.stack: RunningStack = start_stack(data_dir, env=ENV)
        self.expected = Expected()
        self.user: ApiUser | None = None
        self.admin: ApiUser | None = None


@pytest.fixture(scope="module")
def holder() -> Iterator[Holder]:
    data_dir = stack_dir("faults")
    h = Holder(data_dir)
    try:
        yield h
    finally:
        stop_stack(h.stack)
        keep_logs(data_dir, "faults")
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
async def api(holder: Holder) -> AsyncIterator[httpx.AsyncClient]:
    if holder.user is None:
        holder.user = await make_user(holder.stack.settings)
        holder.admin = await make_user(holder.stack.settings, "admin")
    async with httpx.AsyncClient(base_url=holder.stack.api_url, timeout=15) as client:
        yield client


async def run_payments(api: httpx.AsyncClient, user: ApiUser, n: int, seed: int, every_s: float = 0.1
                       ) -> list[Payment]:
    """Create ``n`` payments, one every ``every_s`` (concurrently, so a fault lands mid-run)."""
    async def one(i: int, provider: str, target: str, amount: int) -> Payment:
        await asyncio.sleep(i * every_s)
        return await create(api, user, provider, target, amount)

    return list(await asyncio.gather(*(one(i, *args) for i, args in enumerate(plan(n, seed)))))


def wait_healthy(h: Holder, service: str, timeout: float = 90) -> None:
    url = {"ingress": h.stack.api_url, "analytics": h.stack.dashboard_url,
           "sandbox": h.stack.sandbox_url}.get(service)
    if url is None:
        return

    def healthy() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        return False

    wait_for_sync(healthy, timeout, f"{service} healthy again", interval=0.3)


async def test_kill_each_service_mid_run(holder: Holder, api: httpx.AsyncClient) -> None:
    h = holder
    assert h.user is not None
    rng = random.Random(os.environ.get("TRAILPAY_FAULT_SEED", "9"))
    lost_by_sandbox = frozenset({"expired", "failed"})
    for k, service in enumerate(SERVICES):
        run = asyncio.create_task(run_payments(api, h.user, N, seed=k * 100))
        await asyncio.sleep(rng.uniform(0.2, N * 0.1))
        # Payments of earlier rounds may still wait at the sandbox for their callback.
        open_before = (await open_payments(h.stack.settings, list(h.expected.payments))
                       if service == "sandbox" else set())
        old = h.stack.kill_service(service)
        new = await asyncio.to_thread(h.stack.wait_restarted, service, old, 90)
        assert new != old
        await asyncio.to_thread(wait_healthy, h, service)
        made = await run
        if service == "sandbox":
            # The sandbox keeps its transactions in memory: one killed mid-run forgets the
            # prompts it had not answered yet, so those payments may end expired (the sweeper
            # asks, the provider does not know them) or failed instead of their planned outcome.
            # The same goes for the earlier rounds' payments still open when it died.
            made = [Payment(p.reference, p.provider, p.status, p.amount_minor, p.currency,
                            lost_by_sandbox) for p in made]
            h.expected.also_accept(open_before, lost_by_sandbox)
        for p in made:
            h.expected.add(p)
    books = await check_books(h.stack.settings, h.stack.dashboard_url, h.expected, timeout=SETTLE_S)
    assert books["payments"] == len(SERVICES) * N


def postgres_processes(h: Holder) -> list[psutil.Process]:
    pid = h.stack.pid("postgres")
    assert pid
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def booking(run: str, i: int) -> BookingEvent:
    return BookingEvent(event_id=f"bk-{run}-{i}", occurred_at=datetime.now(UTC), kind=BookingEventKind.CREATED,
                        booking_id=f"bk-{run}-{i}", user_id=f"usr-fault-{i}",
                        amount=Money(amount=20000 + i * 100, currency="KES"), country="KE",
                        provider=Provider.MPESA if i % 2 else Provider.AIRTEL,
                        phone_number=f"{'07123450' if i % 2 else '07330000'}{i % 10}{(i * 7) % 10}")


async def test_postgres_frozen_while_events_flow(holder: Holder, api: httpx.AsyncClient) -> None:
    """PostgreSQL stops answering (every process SIGSTOPped) for PG_PAUSE_S: the ingress still
    takes callbacks (Kafka only), the booking platform still publishes, the state machine
    goes on; the PostgreSQL sink waits and catches up without losing or doubling a thing."""
    h = holder
    assert h.user is not None
    before = await run_payments(api, h.user, N, seed=1000, every_s=0.02)  # callbacks land in the pause
    run = uuid.uuid4().hex[:8]
    events = [booking(run, i) for i in range(N)]
    procs = postgres_processes(h)
    for p in procs:
        p.send_signal(signal.SIGSTOP)
    try:
        producer = RecordProducer(h.stack.settings)
        await producer.start()
        try:
            await producer.send_many(topics.BOOKING_EVENTS, [(e.booking_id, e) for e in events])
        finally:
            await producer.stop()
        await asyncio.sleep(PG_PAUSE_S)
    finally:
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGCONT)
    for p in before:
        h.expected.add(p)
    for e in events:
        assert e.phone_number and e.provider
        h.expected.add(Payment(booking_reference(e.booking_id, 1), e.provider.value,
                               expected_status(e.provider.value, e.phone_number), e.amount.amount, "KES"))
    await check_books(h.stack.settings, h.stack.dashboard_url, h.expected, timeout=SETTLE_S)
    assert h.stack.proc is not None and h.stack.proc.poll() is None, "the stack stopped"
    # The declined cards' last (only) attempt failed: the state machine sent CANCEL, and
    # the dispatcher cancelled each PaymentIntent at Stripe.
    declined = [p.reference for p in before if p.provider == "stripe" and p.status == "failed"]
    assert declined
    await cancelled_at_stripe(h.stack.settings, h.stack.sandbox_url, declined, timeout=60)


async def test_reconcile_after_the_faults_finds_no_mismatch(holder: Holder) -> None:
    """After the kills and the frozen PostgreSQL, TrailPay and the sandboxes agree on every
    payment (`trailpay reconcile`, #15). The window starts when the sandbox came back from
    its kill: it keeps its transactions in memory, so it has forgotten the payments before
    (the storm below, whose forged successes the sandbox never saw, comes after)."""
    h = holder
    await check_books(h.stack.settings, h.stack.dashboard_url, h.expected, timeout=SETTLE_S)
    result = await reconcile_since_the_sandbox_started(h)
    # the frozen-PostgreSQL round alone: N API payments of the three providers, N bookings
    assert result["total"] >= 2 * N and set(result["checked"]) == {"stripe", "mpesa", "airtel"}


async def reconcile_since_the_sandbox_started(h: Holder) -> dict[str, Any]:
    """`trailpay reconcile --json` over the payments created since the sandbox (which keeps
    its transactions in memory) last started; asserts exit 0, no mismatch, nothing unchecked."""
    sandbox = h.stack.pid("sandbox")
    assert sandbox
    since = datetime.fromtimestamp(psutil.Process(sandbox).create_time(), UTC)
    done = await trailpay(h.stack, "reconcile", "--since", since.isoformat(), "--min-age", "0", "--json",
                          check=False)
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(done.stdout)
    assert result["mismatches"] == [] and result["errors"] == []
    return result


def mpesa_callback(checkout: str) -> bytes:
    return json.dumps({"Body": {"stkCallback": {
        "MerchantRequestID": "29115-34620561-1", "CheckoutRequestID": checkout, "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.",
        "CallbackMetadata": {"Item": [{"Name": "Amount", "Value": 150},
                                      {"Name": "MpesaReceiptNumber", "Value": "NLJ7RT61SV"}]}}}}).encode()


async def test_storm_of_duplicated_shuffled_webhooks(holder: Holder, api: httpx.AsyncClient) -> None:
    """STORM success callbacks for payments waiting for theirs (phones ending in 3: the
    sandbox never calls back), each payment's callback many times, all shuffled and sent
    over 32 connections: each payment succeeds exactly once."""
    h = holder
    assert h.user is not None
    waiting = max(10, STORM // 20)
    made: list[Payment] = []
    for start in range(0, waiting, 10):
        made += await asyncio.gather(*(create(api, h.user, "mpesa", f"07123456{i % 10}3", 150)
                                       for i in range(start, min(waiting, start + 10))))
    refs = [p.reference for p in made]
    deadline = time.monotonic() + 60
    found: list[tuple[str, str]] = []
    while time.monotonic() < deadline:
        found = [(r, c) for r, c in await rows(
            h.stack.settings, "SELECT reference, provider_reference FROM payments WHERE reference = ANY(:r) "
                              "AND status = 'pending' AND provider_reference IS NOT NULL", r=refs)]
        if len(found) == waiting:
            break
        await asyncio.sleep(0.3)
    assert len(found) == waiting, f"{len(found)} of {waiting} waiting"
    token = h.stack.settings.mpesa_callback_token.get_secret_value()
    port = h.stack.settings.api_port
    requests = []
    for i in range(STORM):
        ref, checkout = found[i % waiting]
        body = mpesa_callback(checkout)
        requests.append((f"POST /api/payments/callback/mpesa/?token={token}&reference={ref} HTTP/1.1\r\n"
                         f"Host: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    random.Random(3).shuffle(requests)
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    statuses: list[int] = []

    async def sender() -> None:
        conn = Connection(port)
        try:
            while not queue.empty():
                statuses.append(await conn.call(queue.get_nowait()))
        finally:
            await conn.close()

    await asyncio.gather(*(sender() for _ in range(32)))
    assert statuses.count(200) == STORM, {s: statuses.count(s) for s in set(statuses)}
    for p in made:
        h.expected.add(Payment(p.reference, "mpesa", "succeeded", p.amount_minor, p.currency))
    await check_books(h.stack.settings, h.stack.dashboard_url, h.expected, timeout=SETTLE_S)
    one = await rows(h.stack.settings, "SELECT count(*) FROM payment_events WHERE reference = ANY(:r) "
                                       "AND to_status = 'succeeded'", r=refs)
    assert one[0][0] == waiting
    # Every delivery archived (each applied once, above). The archive comes from
    # webhooks.raw.v1, a topic of its own: it may finish after the payments settled.
    async def archived() -> bool:
        (callbacks,), = await rows(h.stack.settings, "SELECT count(*) FROM provider_callbacks "
                                                     "WHERE reference = ANY(:r)", r=refs)
        return bool(callbacks >= STORM)

    await wait_for(archived, SETTLE_S, f"{STORM} deliveries archived", interval=0.5)


#: Every state change, as compared across the broker restart (a new one names its cause).
CHANGES = ("SELECT reference, version, from_status, to_status, cause, cause_event_id FROM payment_events")


async def test_broker_restarted_empty_then_archive_replay(holder: Holder) -> None:
    h = holder
    books = await check_books(h.stack.settings, h.stack.dashboard_url, h.expected, timeout=SETTLE_S)
    before = await rows(h.stack.settings, "SELECT reference, version, status, amount_minor FROM payments "
                                          "ORDER BY reference")
    changes_before = set(await rows(h.stack.settings, CHANGES))
    stop_stack(h.stack)
    # Apache Kafka keeps its log directory across restarts; lose it, as tansu loses its memory.
    shutil.rmtree(h.data_dir / "kafka", ignore_errors=True)
    h.stack = start_stack(h.data_dir, env=ENV)
    replayed = await trailpay(h.stack, "replay", "--from-archive", "--into", "pipeline", timeout=300)
    assert "payments.state.v1" in replayed.stdout
    # Nothing changes: wait until every group has committed the replayed records, then compare.
    await wait_caught_up(h.stack.settings, timeout=SETTLE_S, what="the replayed archive")
    after = await check_books(h.stack.settings, h.stack.dashboard_url, h.expected, timeout=SETTLE_S)
    changes_after = set(await rows(h.stack.settings, CHANGES))
    touched = {c[0] for c in changes_after - changes_before}
    assert after == books, ("state changes made by the restart and replay, with the whole history "
                            f"of their payments: {sorted(c for c in changes_after if c[0] in touched)}")
    assert await rows(h.stack.settings, "SELECT reference, version, status, amount_minor FROM payments "
                                        "ORDER BY reference") == before
    # The pipeline still works on the restarted broker.
    user = await make_user(h.stack.settings)
    async with httpx.AsyncClient(base_url=h.stack.api_url, timeout=15) as api:
        for p in await run_payments(api, user, 6, seed=5000, every_s=0.05):
            h.expected.add(p)
    await check_books(h.stack.settings, h.stack.dashboard_url, h.expected, timeout=SETTLE_S)


async def test_reconcile_after_the_restart_finds_no_mismatch(holder: Holder) -> None:
    """The last word of the suite: after the broker restart and the archive replay, the
    payments made since (the restarted sandbox knows only those) agree with the sandboxes."""
    result = await reconcile_since_the_sandbox_started(holder)
    assert result["total"] >= 6
