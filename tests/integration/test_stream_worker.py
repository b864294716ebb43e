"""The stream worker on both real brokers (Apache Kafka and tansu): bad input, parked
events, the deadline sweep, and the fetched high watermark (load and crashes:
``test_stream_worker_load.py``).

The tests do not use the session stack's broker: the stack runs its own `trailpay worker`
and provider dispatcher, which would act on these payments too. They share the session's
bare broker of each kind (``shared_broker``).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from tests.integration.streamutil import (
    T0,
    WorkerProcess,
    create_record,
    dead_letters,
    encoded,
    finals,
    mpesa_record,
    new_worker,
    produce,
    provider_record,
    read_until,
    unique,
    wait_final,
)
from tests.stackutil import KAFKA
from trailpay import topics
from trailpay.domain.events import CancelPayment, ExpirePayment, Provider, RawWebhook
from trailpay.domain.status import PaymentStatus
from trailpay.highwater import fetched_highwaters
from trailpay.settings import Settings

pytestmark = pytest.mark.integration
S = PaymentStatus


@pytest.fixture(scope="module")
def broker(shared_broker: Settings) -> Settings:
    """The session's broker of each kind, shared by the small tests (a few records each,
    unique references)."""
    return shared_broker


# ----------------------------------------------------------------------------- bad input & timers


@pytest.fixture(scope="module")
def short_timers_worker(broker, tmp_path_factory) -> Iterator[WorkerProcess]:
    worker = new_worker(broker, tmp_path_factory.mktemp("short"), pending_deadline_s=5,
                        processing_deadline_s=5, park_timeout_s=3)
    worker.start()
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


async def test_bad_input_goes_to_dead_letters_and_the_agent_keeps_going(broker, short_timers_worker):
    prefix = unique("TPB")
    # T0 is fixed when the module is collected; in a long suite that is minutes ago, and the
    # 5 s deadlines of this worker would expire the live payments before their events arrive.
    lag = (datetime.now(UTC) - T0).total_seconds()
    token = broker.mpesa_callback_token.get_secret_value()
    ok, illegal, bad_token = f"{prefix}ok", f"{prefix}il", f"{prefix}tk"
    garbage = b"\x00\xffnot json at all " + prefix.encode()
    wrong_schema = json.dumps({"event_id": f"{prefix}-ws", "hello": "world"}).encode()
    unknown_provider = json.dumps({
        "event_id": f"{prefix}-up", "occurred_at": T0.isoformat(), "provider": "paypal",
        "body": "e30=", "received_at": T0.isoformat(), "reference": prefix}).encode()
    wrong_token = mpesa_record(broker, bad_token, 0, 0).model_copy(
        update={"query": {"token": "guess", "reference": bad_token}})
    unparseable = RawWebhook(event_id=f"{prefix}-np", occurred_at=T0, provider=Provider.MPESA,
                             body=b"[1,2]", received_at=T0,
                             query={"token": token, "reference": f"{prefix}np"}, reference=f"{prefix}np")
    unverified = mpesa_record(broker, ok, 1, 9).model_copy(
        update={"verified": False, "verification_error": "bad signature", "event_id": f"{prefix}-uv"})
    items = [
        (topics.PAYMENT_REQUESTS, prefix.encode(), garbage),
        (topics.PROVIDER_EVENTS, prefix.encode(), wrong_schema),
        (topics.WEBHOOKS_RAW, prefix.encode(), unknown_provider),
        encoded(topics.WEBHOOKS_RAW, bad_token, wrong_token),
        encoded(topics.WEBHOOKS_RAW, f"{prefix}np", unparseable),
        encoded(topics.WEBHOOKS_RAW, ok, unverified),  # never applied: would fail the payment
        encoded(topics.PAYMENT_REQUESTS, illegal, create_record(illegal, seconds=lag)),
        encoded(topics.PROVIDER_EVENTS, illegal, provider_record(illegal, S.SUCCEEDED, event_id=f"{illegal}-s",
                                                                 seconds=lag + 3)),
        encoded(topics.PAYMENT_REQUESTS, ok, create_record(ok, seconds=lag)),
        encoded(topics.WEBHOOKS_RAW, ok, mpesa_record(broker, ok, 0, 0).model_copy(
            update={"occurred_at": T0 + timedelta(seconds=lag + 1)})),
    ]
    await produce(broker.kafka_bootstrap or "", items)
    # The cancel goes on another topic than the success, and Kafka orders nothing across
    # topics: sent together, the cancel could be applied first, and the success after it is a
    # late success (never dead-lettered). So the cancel follows the applied success.
    await wait_final(broker, illegal, {illegal: "succeeded"}, timeout=60)
    await produce(broker.kafka_bootstrap or "", [
        encoded(topics.PAYMENT_REQUESTS, illegal, CancelPayment(
            event_id=f"{illegal}-c", occurred_at=T0 + timedelta(seconds=lag + 4), reference=illegal))])
    letters = await dead_letters(broker, prefix.encode(), 6)
    by_stage: dict[str, list[dict[str, Any]]] = {}
    for letter in letters:
        by_stage.setdefault(letter["stage"], []).append(letter)
    reasons = " | ".join(f"{d['error_type']}: {d['error_message']}" for d in letters)
    assert len(letters) == 6, reasons
    originals = {base64.b64decode(d["value"]) for d in letters}
    assert {garbage, wrong_schema, unknown_provider} <= originals
    assert all(d["offset"] is not None and d["partition"] is not None for d in letters)
    assert "not a valid record for payments.requests.v1" in reasons
    assert "not a valid record for provider.events.v1" in reasons
    assert "not a valid record for webhooks.raw.v1: provider" in reasons  # "paypal"
    assert "WebhookRejected" in reasons and "wrong token" in reasons
    assert "WebhookUnparseable" in reasons
    assert "IllegalTransition" in reasons and "succeeded -> cancelled" in reasons
    assert {d["source_topic"] for d in letters} == {topics.PAYMENT_REQUESTS, topics.PROVIDER_EVENTS,
                                                   topics.WEBHOOKS_RAW}
    changes, _ = await wait_final(broker, ok, {ok: "succeeded"}, timeout=60)
    assert [c[0]["to_status"] for c in sorted(changes.values(), key=lambda c: c[0]["version"])] == [
        "created", "succeeded"]  # the unverified "failed" callback was never applied


async def test_event_for_unknown_payment_waits_then_is_dead_lettered(broker, short_timers_worker):
    late, never = unique("TPP"), unique("TPN")
    await produce(broker.kafka_bootstrap or "", [
        encoded(topics.PROVIDER_EVENTS, late, provider_record(late, S.SUCCEEDED, event_id=f"{late}-s", seconds=4)),
        encoded(topics.PROVIDER_EVENTS, never, provider_record(never, S.SUCCEEDED, event_id=f"{never}-s", seconds=4)),
    ])
    await asyncio.sleep(1)
    await produce(broker.kafka_bootstrap or "", [encoded(topics.PAYMENT_REQUESTS, late, create_record(late))])
    changes, _ = await wait_final(broker, late, {late: "succeeded"}, timeout=60)
    assert len(changes) == 2
    (letter,) = await dead_letters(broker, never.encode(), 1, timeout=60)
    assert letter["error_type"] == "ParkedTooLong" and "within 3s" in letter["error_message"]
    assert letter["source_topic"] == topics.PROVIDER_EVENTS and letter["reference"] == never


async def test_sweeper_queries_then_expires_a_payment_nobody_answers(broker, short_timers_worker):
    silent = unique("TPS")
    created_at = T0 - timedelta(days=1)  # long past: its deadline is already due
    record = create_record(silent).model_copy(update={"occurred_at": created_at})
    await produce(broker.kafka_bootstrap or "", [encoded(topics.PAYMENT_REQUESTS, silent, record)])
    changes, _ = await wait_final(broker, silent, {silent: "expired"}, timeout=90)
    expired = finals(changes)[silent]
    assert expired["cause"] == "expire" and expired["payment"]["settled_by"] == "sweep"
    marker = f'"reference":"{silent}"'.encode()
    commands = await read_until(broker.kafka_bootstrap or "", topics.PROVIDER_COMMANDS, lambda k, v: marker in v,
                                lambda got: len(got) >= 2, timeout=30, quiet_s=1)
    kinds = sorted({json.loads(v)["kind"] for _, v in commands})
    assert kinds == ["initiate", "query"]
    requests = await read_until(broker.kafka_bootstrap or "", topics.PAYMENT_REQUESTS, lambda k, v: marker in v,
                                lambda got: len(got) >= 2, timeout=30, quiet_s=1)
    expires = [json.loads(v) for _, v in requests if json.loads(v)["kind"] == "expire"]
    assert expires and ExpirePayment.model_validate(expires[0]).occurred_at > created_at


async def test_fetched_high_watermark_corrects_the_short_end_offset(broker, broker_kind):
    """Why trailpay.highwater exists: after several produce batches tansu's ListOffsets
    answer is short of the true end; the fetch high watermark is right."""
    bootstrap = broker.kafka_bootstrap or ""
    topic = topics.NOTIFICATIONS
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        before = (await consumer.end_offsets([tp]))[tp]
        fetched_before = (await fetched_highwaters(bootstrap, {tp: before}))[tp]
        sent = 0
        for batch in range(5):
            items = [(topic, b"k", f"hw-{batch}-{i}".encode()) for i in range(50 + batch)]
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
            await producer.start()
            try:
                await asyncio.gather(*[await producer.send(t, v, key=k, partition=0) for t, k, v in items])
            finally:
                await producer.stop()
            sent += len(items)
        reported = (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()
    fetched = (await fetched_highwaters(bootstrap, {tp: reported}))[tp]
    assert fetched == fetched_before + sent
    assert reported <= fetched  # on tansu: short by the newest batch
    if broker_kind == KAFKA:  # why Apache Kafka needs no correction
        assert reported == fetched
