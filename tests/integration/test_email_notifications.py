"""notifications.v1 -> a real local SMTP server (aiosmtpd), through a real worker process.

The SMTP server starts only after the notifications are on Kafka, so the first attempts fail
and the retry with backoff is what delivers them. A duplicate record is sent once.
"""

from __future__ import annotations

import asyncio
import email
import uuid
from datetime import UTC, datetime
from email.message import Message

import pytest
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller

from controlplane.stack.processes import free_port
from tests.integration.ingressutil import worker
from tests.support.waits import wait_for
from trailpay import codec, topics
from trailpay.domain.events import Money, Notification, NotificationTemplate, Provider

pytestmark = pytest.mark.integration


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd calls handle_DATA
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


async def test_notifications_are_mailed_with_retries(stack, tmp_path):
    port = free_port()
    proc = worker(stack.settings, tmp_path / "worker.log", ["streams.agents.notifications"],
                  TRAILPAY_SMTP_HOST="127.0.0.1", TRAILPAY_SMTP_PORT=str(port)).start()
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    try:
        await asyncio.to_thread(proc.wait_for_log, "Worker ready", 120)
        ref = "TPB-" + uuid.uuid4().hex[:20]
        now = datetime.now(UTC)
        details = {NotificationTemplate.PAYMENT_FAILED: "The balance is insufficient for 254712345678",
                   NotificationTemplate.PAYMENT_SUCCEEDED_LATE:
                       "it arrived after the payment was expired; it is kept as your payment"}
        notes = [
            Notification(event_id=f"{ref}:{t.value}", occurred_at=now, template=t, reference=ref,
                         user_id="usr_1", email="traveller@example.com", booking_id="BK-9",
                         amount=Money(amount=125000, currency="KES"), provider=Provider.MPESA,
                         detail=details.get(t, ""))
            for t in NotificationTemplate
        ]
        producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for note in [*notes, notes[0]]:  # the last one is a redelivery
                await producer.send_and_wait(topics.NOTIFICATIONS, codec.encode(note), key=ref.encode())
        finally:
            await producer.stop()
        await asyncio.sleep(1.0)  # the worker is failing to connect now
        controller.start()

        def mine() -> list[Message]:
            return [m for m in inbox.messages if m["X-TrailPay-Reference"] == ref]

        await wait_for(lambda: len(mine()) >= 4, 30, "the four e-mails")
        # Would a duplicate follow? A marker on the same key (so the same partition, read after
        # the redelivery) for another reference: once its e-mail is out, the duplicate was handled.
        marker = notes[0].model_copy(update={"event_id": f"{ref}-marker:0", "reference": f"{ref}-marker"})
        producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topics.NOTIFICATIONS, codec.encode(marker), key=ref.encode())
        finally:
            await producer.stop()
        await wait_for(lambda: any(m["X-TrailPay-Reference"] == f"{ref}-marker" for m in inbox.messages),
                       60, "the marker's e-mail")
        got = {m["X-TrailPay-Template"]: m for m in mine()}
        assert len(mine()) == 4, [m["Subject"] for m in mine()]
        assert set(got) == {"payment_succeeded", "payment_failed", "payment_succeeded_late", "refund_succeeded"}
        assert "Payment received: KES 1,250.00" in got["payment_succeeded"]["Subject"]
        assert "Payment received after all: KES 1,250.00" in got["payment_succeeded_late"]["Subject"]
        assert "It arrived after the payment was expired" in got["payment_succeeded_late"].get_payload()
        assert got["refund_succeeded"]["To"] == "traveller@example.com"
        failed_body = got["payment_failed"].get_payload()
        assert "insufficient" in failed_body and "254712345678" not in failed_body
        assert "retry" in proc.log_text()  # it did have to retry
    finally:
        if controller.loop.is_running():
            controller.stop()
        proc.stop()
