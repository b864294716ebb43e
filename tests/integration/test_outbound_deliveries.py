"""The webhook deliverer against a receiver over real HTTP and a real PostgreSQL: a 500 then
a success, a timeout, per-booking order, a secret rotation, a dead delivery redelivered.

The deliverer runs in the test's process with a fast backoff, on a database of this
module's own in the stack's PostgreSQL (the stack's own deliverer never sees these rows).
The Kafka side (payments.events.v1 -> the delivery log) is in test_outbound_webhooks.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from aiokafka.structs import ConsumerRecord
from pydantic import SecretStr
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from connectors.outbound.backoff import Backoff
from connectors.outbound.deliverer import Deliverer, _deliver_loop, delivery_rows
from connectors.outbound.signing import verify
from sinks.postgres import webhook_store as store
from sinks.postgres.migrations import upgrade
from tests.integration.webhook_receiver import Receiver, receiver
from tests.support.waits import wait_for
from trailpay import topics
from trailpay.domain.public_events import PublicPaymentEvent
from trailpay.settings import Settings

pytestmark = pytest.mark.integration

FAST = Backoff(base_s=0.2, cap_s=0.4, max_age_s=3600.0)


@pytest.fixture(scope="module")
def db_settings(stack) -> Settings:
    name = f"outbound_{uuid.uuid4().hex[:8]}"
    admin_url = stack.settings.sqlalchemy_async_url().rsplit("/", 1)[0] + "/postgres"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    settings = stack.settings.model_copy(update={
        "database_url": admin_url.rsplit("/", 1)[0] + f"/{name}",
        "outbound_webhook_timeout_s": 1.0})
    upgrade(settings)
    yield settings
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
async def engine(db_settings) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(db_settings.sqlalchemy_async_url(), pool_size=4)
    yield eng
    await eng.dispose()


@pytest.fixture
async def recv() -> AsyncIterator[Receiver]:
    async with receiver() as running:
        yield running


async def running_deliverer(settings: Settings, engine: AsyncEngine, backoff: Backoff = FAST):
    """Start the delivery loop; returns (stop event, task, client)."""
    client = httpx.AsyncClient(timeout=settings.outbound_webhook_timeout_s)
    deliverer = Deliverer(settings, engine, client, backoff=backoff)
    stop = asyncio.Event()
    task = asyncio.create_task(_deliver_loop(deliverer, 0.05, stop))
    return stop, task, client


async def halt(stop: asyncio.Event, task: asyncio.Task, client: httpx.AsyncClient) -> None:
    stop.set()
    await task
    await client.aclose()


def event(booking: str, n: int, type_: str = "payment.succeeded") -> PublicPaymentEvent:
    return PublicPaymentEvent(
        event_id=f"{booking}-{n}-{uuid.uuid4().hex[:8]}", type=type_,
        occurred_at=datetime(2025, 12, 1, 12, 0, n, tzinfo=UTC), reference=f"TP-{booking}",
        booking_id=booking, amount=1000, currency="KES", provider="mpesa", method="mobile_money",
        status="succeeded", attempts=1, payment_version=n + 1)


async def endpoint(engine: AsyncEngine, recv: Receiver, secret: str, path: str) -> store.Endpoint:
    return await store.create_endpoint(engine, endpoint_id="we_" + uuid.uuid4().hex[:12],
                                       url=recv.url(path), secret=secret, event_types=None,
                                       description="test", created_by=None)


async def delivery(engine: AsyncEngine, event_id: str):
    rows = await store.list_deliveries(engine, event_id=event_id)
    return rows[0] if rows else None


async def test_a_500_then_a_success_is_retried_and_each_attempt_signed(db_settings, engine, recv):
    ep = await endpoint(engine, recv, "whsec_retry", "/retry")
    ev = event("bk-retry", 1)
    recv.script[ev.event_id] = [500]
    assert await store.enqueue(engine, delivery_rows(ev, [ep])) == 1
    assert await store.enqueue(engine, delivery_rows(ev, [ep])) == 0  # the same event again: no row
    loop = await running_deliverer(db_settings, engine)
    try:
        row = await wait_for(lambda: _delivered(engine, ev.event_id), 30, "delivered")
    finally:
        await halt(*loop)
    assert [r.answered for r in recv.at("/retry")] == [500, 200]
    assert row.attempts == 2 and row.last_status_code == 200 and row.last_error is None
    for req in recv.at("/retry"):
        assert req.headers["TrailPay-Event-Id"] == ev.event_id
        assert req.headers["Content-Type"] == "application/json"
        assert verify(req.body, req.headers["TrailPay-Signature"], "whsec_retry")
        assert PublicPaymentEvent.model_validate_json(req.body) == ev


async def _delivered(engine: AsyncEngine, event_id: str):
    row = await delivery(engine, event_id)
    return row if row is not None and row.status == "delivered" else None


async def test_a_timeout_is_retried(db_settings, engine, recv):
    ep = await endpoint(engine, recv, "whsec_slow", "/slow")
    ev = event("bk-slow", 1)
    recv.script[ev.event_id] = [-3]  # hangs 3 s; the deliverer gives up after 1 s
    await store.enqueue(engine, delivery_rows(ev, [ep]))
    loop = await running_deliverer(db_settings, engine)
    try:
        row = await wait_for(lambda: _delivered(engine, ev.event_id), 30, "delivered after a timeout")
    finally:
        await halt(*loop)
    assert row.attempts == 2


async def test_one_bookings_events_arrive_in_order(db_settings, engine, recv):
    ep = await endpoint(engine, recv, "whsec_order", "/order")
    a1, a2, b1 = event("bk-a", 1), event("bk-a", 2, "payment.refunded"), event("bk-b", 1)
    recv.script[a1.event_id] = [500, 500, 503]
    await store.enqueue(engine, [*delivery_rows(a1, [ep]), *delivery_rows(a2, [ep]),
                                 *delivery_rows(b1, [ep])])
    loop = await running_deliverer(db_settings, engine)
    try:
        await wait_for(lambda: _delivered(engine, a2.event_id), 30, "the later event delivered")
    finally:
        await halt(*loop)
    got = [(r.headers["TrailPay-Event-Id"], r.answered) for r in recv.at("/order")]
    ids = [g[0] for g in got]
    assert [g for g in got if g[0] == a1.event_id] == [(a1.event_id, s) for s in (500, 500, 503, 200)]
    # a2 was not tried until a1 was delivered; b1 (another booking) did not wait for a1
    assert ids.index(a2.event_id) > ids.index(a1.event_id) + 3
    assert ids.index(b1.event_id) < ids.index(a1.event_id) + 3
    assert ids.count(a2.event_id) == 1


async def test_rotation_signs_with_both_secrets_during_the_grace(db_settings, engine, recv):
    ep = await endpoint(engine, recv, "whsec_old", "/rotate")
    assert await store.rotate_secret(engine, ep.id, "whsec_new", 3600) is not None
    first = event("bk-rot", 1)
    await store.enqueue(engine, delivery_rows(first, [ep]))
    loop = await running_deliverer(db_settings, engine)
    try:
        await wait_for(lambda: _delivered(engine, first.event_id), 30, "delivered while rotating")
        header = recv.at("/rotate")[0].headers["TrailPay-Signature"]
        assert header.count("v1=") == 2
        body = recv.at("/rotate")[0].body
        assert verify(body, header, "whsec_new") and verify(body, header, "whsec_old")
        assert await store.rotate_secret(engine, ep.id, "whsec_newer", 0) is not None  # no grace
        second = event("bk-rot", 2)
        await store.enqueue(engine, delivery_rows(second, [ep]))
        await wait_for(lambda: _delivered(engine, second.event_id), 30, "delivered after the grace")
    finally:
        await halt(*loop)
    last = recv.at("/rotate")[-1]
    assert last.headers["TrailPay-Signature"].count("v1=") == 1
    assert verify(last.body, last.headers["TrailPay-Signature"], "whsec_newer")
    assert not verify(last.body, last.headers["TrailPay-Signature"], "whsec_new")


async def test_dead_after_the_window_then_redelivered(db_settings, engine, recv):
    ep = await endpoint(engine, recv, "whsec_dead", "/dead")
    ev = event("bk-dead", 1)
    recv.script[ev.event_id] = [500] * 1000
    await store.enqueue(engine, delivery_rows(ev, [ep]))
    short = Backoff(base_s=0.2, cap_s=0.4, max_age_s=1.0)
    loop = await running_deliverer(db_settings, engine, short)
    try:
        async def dead():
            row = await delivery(engine, ev.event_id)
            return row if row is not None and row.status == "dead" else None

        row = await wait_for(dead, 30, "dead once the window closed")
        assert row.attempts >= 2 and row.last_status_code == 500
        tries = len(recv.at("/dead"))
        recv.script[ev.event_id] = []
        redone = await store.redeliver(engine, row.id)
        assert redone is not None and redone.status == "pending" and redone.redeliveries == 1
        row = await wait_for(lambda: _delivered(engine, ev.event_id), 30, "redelivered")
    finally:
        await halt(*loop)
    assert len(recv.at("/dead")) == tries + 1 and row.attempts == tries + 1


def _record(offset: int, value: bytes) -> ConsumerRecord:
    return ConsumerRecord(topic=topics.PAYMENT_EVENTS, partition=1, offset=offset, timestamp=0,
                          timestamp_type=0, key=b"bk-set", value=value, checksum=None,
                          serialized_key_size=6, serialized_value_size=len(value), headers=[])


async def test_the_settings_endpoint_and_ingest(db_settings, engine, recv):
    settings = db_settings.model_copy(update={"outbound_webhook_url": recv.url("/settings"),
                                              "outbound_webhook_secret": SecretStr("s3t-f00d-c0ffee")})
    async with httpx.AsyncClient(timeout=5) as client:
        deliverer = Deliverer(settings, engine, client, backoff=FAST)
        await deliverer.start()
        settings_row = await store.get_endpoint(engine, "settings")
        assert settings_row is not None and settings_row.enabled and settings_row.secret is None
        ev = event("bk-set", 1)
        others = [e.id for e in await store.list_endpoints(engine, enabled_only=True)]
        new, dead = await deliverer.ingest([_record(5, b"not json"), _record(6, ev.model_dump_json().encode())])
        assert new == len(others)  # one delivery per enabled endpoint (those of earlier tests too)
        assert [(d.offset, d.stage, d.error_type) for d in dead] == [(5, "webhooks", "InvalidRecord")]
        assert (await deliverer.ingest([_record(6, ev.model_dump_json().encode())]))[0] == 0
        await wait_for(deliverer.deliver_due, 10, "an attempt")
        await wait_for(lambda: recv.at("/settings"), 10, "the settings endpoint's delivery")
        req = recv.at("/settings")[0]
        assert verify(req.body, req.headers["TrailPay-Signature"], "s3t-f00d-c0ffee")
        await Deliverer(db_settings, engine, client).start()  # no URL in the settings: disabled
        settings_row = await store.get_endpoint(engine, "settings")
        assert settings_row is not None and not settings_row.enabled
