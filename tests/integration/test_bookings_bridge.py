"""Booking events -> payment requests, through the real broker and a real worker process.

The same booking event twice (once over HTTP, once straight onto Kafka, plus a "confirmed"
for the same revision) makes one CreatePayment; a cancellation makes one CancelPayment with
refund_if_paid. Uses the stack's own worker when `trailpay up` runs one; otherwise starts
`trailpay worker --only streams.agents.bookings` with its own consumer group.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from tests.integration.ingressutil import make_user, read_topic, worker
from trailpay import codec, topics
from trailpay.domain.events import BookingEvent, CancelPayment, CreatePayment, DeadLetter, Money
from trailpay.domain.references import booking_reference

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bridge(stack, tmp_path_factory):
    if stack.info and "worker" in stack.info.processes:
        yield None
        return
    proc = worker(stack.settings, tmp_path_factory.mktemp("bookings") / "worker.log",
                  ["streams.agents.bookings"]).start()
    try:
        proc.wait_for_log("Worker ready", timeout=120)
        yield proc
    finally:
        proc.stop()


async def test_same_booking_event_twice_makes_one_payment(stack, bridge):
    admin = await make_user(stack.settings, "admin")
    booking_id = f"BK-{uuid.uuid4().hex[:10]}"
    body = {"event_id": f"evt-{booking_id}", "kind": "created", "booking_id": booking_id,
            "user_id": "usr_booker", "amount": "2500", "currency": "KES", "country": "KE",
            "phone_number": "0712345670", "email": "booker@example.com", "description": "Safari"}
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=20, headers=admin.headers) as api:
        first = await api.post("/api/bookings/events/", json=body)
        assert first.status_code == 202, first.text
        ref = first.json()["reference"]
        assert ref == booking_reference(booking_id, 1)
        # the platform retries without an idempotency key, then confirms the same revision
        assert (await api.post("/api/bookings/events/", json=body)).status_code == 202
        confirmed = await api.post("/api/bookings/events/", json={**body, "kind": "confirmed",
                                                                   "event_id": f"conf-{booking_id}"})
        assert confirmed.json()["reference"] == ref
        bad = await api.post("/api/bookings/events/", json={**body, "amount": "10.001"})
        assert bad.status_code == 422 and "amount" in bad.json()["fields"]
        unpayable = await api.post("/api/bookings/events/", json={**body, "phone_number": "12345"})
        assert unpayable.status_code == 422 and "phone_number" in unpayable.json()["fields"]

    # ... and the same event straight onto Kafka, as a Kafka-producing platform would
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        event = BookingEvent(event_id=f"evt-{booking_id}", occurred_at=datetime.now(UTC), kind="created",
                             booking_id=booking_id, user_id="usr_booker",
                             amount=Money(amount=250000, currency="KES"), country="KE",
                             phone_number="0712345670", email="booker@example.com")
        await producer.send_and_wait(topics.BOOKING_EVENTS, codec.encode(event), key=booking_id.encode())
        broken = f"BK-broken-{uuid.uuid4().hex[:6]}"
        await producer.send_and_wait(topics.BOOKING_EVENTS, b'{"kind": "created"}', key=broken.encode())
    finally:
        await producer.stop()

    creates = await read_topic(stack.settings.kafka_bootstrap, topics.PAYMENT_REQUESTS,
                               lambda r: getattr(r, "reference", None) == ref, timeout=60, settle=3.0)
    assert len(creates) == 1, creates
    [create] = creates
    assert isinstance(create, CreatePayment)
    assert (create.provider.value, create.amount.amount, create.phone_number, create.booking_id,
            create.source) == ("mpesa", 250000, "254712345670", booking_id, "booking")

    dead = await read_topic(stack.settings.kafka_bootstrap, topics.DEAD_LETTERS,
                            lambda d: isinstance(d, DeadLetter) and d.key == broken.encode()
                            and d.stage == "bookings", timeout=30)
    assert dead and dead[0].value == b'{"kind": "created"}' and "booking_id" in dead[0].error_message

    async with httpx.AsyncClient(base_url=stack.api_url, timeout=20, headers=admin.headers) as api:
        cancel = await api.post("/api/bookings/events/", json={**body, "kind": "cancelled",
                                                                "event_id": f"cancel-{booking_id}"})
        assert cancel.status_code == 202
        await api.post("/api/bookings/events/", json={**body, "kind": "cancelled", "event_id": f"cancel-{booking_id}"})
    cancels = await read_topic(stack.settings.kafka_bootstrap, topics.PAYMENT_REQUESTS,
                               lambda r: getattr(r, "reference", None) == ref and r.kind == "cancel",
                               timeout=60, settle=2.0)
    assert len(cancels) == 1 and isinstance(cancels[0], CancelPayment) and cancels[0].refund_if_paid


async def test_amendment_cancels_old_revision_and_creates_new(stack, bridge):
    admin = await make_user(stack.settings, "admin")
    booking_id = f"BK-{uuid.uuid4().hex[:10]}"
    body = {"kind": "amended", "booking_id": booking_id, "user_id": "usr_booker", "amount": "120.50",
            "currency": "USD", "country": "US", "revision": 2, "email": "booker@example.com"}
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=20, headers=admin.headers) as api:
        resp = await api.post("/api/bookings/events/", json=body)
        assert resp.status_code == 202, resp.text
    old, new = booking_reference(booking_id, 1), booking_reference(booking_id, 2)
    found = await read_topic(stack.settings.kafka_bootstrap, topics.PAYMENT_REQUESTS,
                             lambda r: getattr(r, "reference", None) in (old, new), want=2, timeout=60)
    kinds = {(r.reference, r.kind) for r in found}
    assert kinds == {(old, "cancel"), (new, "create")}
    create = next(r for r in found if r.kind == "create")
    assert create.provider.value == "stripe" and create.amount.amount == 12050
