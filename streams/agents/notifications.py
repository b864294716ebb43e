"""``send_notifications``: notifications.v1 -> e-mail (SMTP, or the outbox directory).

Idempotent by the notification's ``event_id``: a table ``notifications-sent`` remembers what
went out, and the Message-ID is derived from the same id so a duplicate that slips through
(a crash between sending and the table write) is recognisable by the receiving side. SMTP
failures are retried under ``POLICIES.notifications`` (:mod:`trailpay.retry`); a message
still not accepted when the policy gives up (stage ``notifications.exhausted``), or refused
for good (stage ``notifications``), becomes a dead letter (re-drivable) and the agent moves on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from connectors.email.senders import Sender
from connectors.email.templates import render
from streams.agents.common import Incoming, Meter, Outbox
from streams.agents.retention import ExpiringTable, register_purge
from streams.app import StreamContext
from trailpay import codec, topics
from trailpay.domain.errors import RetriableError, TrailPayError, is_retriable
from trailpay.domain.events import Notification
from trailpay.domain.masking import mask_email
from trailpay.logs import scrub
from trailpay.retry import POLICIES, RetryPolicy, Sleep, retry

log = logging.getLogger(__name__)

STAGE = "notifications"
SENT = b"1"


class MailNotDelivered(RetriableError):
    """Every attempt failed; dead-lettered so ops can re-drive it once mail works again."""


async def deliver(sender: Sender, notification: Notification, message: Any,
                  policy: RetryPolicy = POLICIES.notifications, *, sleep: Sleep = asyncio.sleep) -> None:
    """Send one e-mail under ``policy``: a refusal (:class:`MailRejected`) is raised at once,
    transient failures are retried; the last one, once the policy gives up, comes back as
    :class:`MailNotDelivered` with it as its cause."""
    try:
        await retry(lambda: sender.send(notification.event_id, message), policy,
                    what=f"e-mail {notification.event_id}", sleep=sleep)
    except TrailPayError as exc:
        if not is_retriable(exc):
            raise
        raise MailNotDelivered(f"not delivered after {policy.attempts} attempts: {exc}") from exc


class Notifier:
    def __init__(self, ctx: StreamContext, sent: ExpiringTable, sender: Sender,
                 policy: RetryPolicy = POLICIES.notifications) -> None:
        self.ctx = ctx
        self.sent = sent
        self.sender = sender
        self.policy = policy
        self.meter = Meter("notifications")

    async def process(self, events: list[Any]) -> None:
        """Send each notification of the batch on its own: one that cannot be decoded,
        rendered or sent is a dead letter (original bytes, reason) and the rest go out."""
        out = Outbox()
        done: list[tuple[int, bytes]] = []
        for event in events:
            incoming = Incoming.of(event)
            try:
                sent = await self._one(incoming, done)
            except Exception as exc:  # noqa: BLE001 - routed by type: refused, exhausted or a bug
                out.dead_letter(incoming, exc, STAGE, reference=_reference(incoming))
                continue
            if sent is not None:
                done.append((incoming.partition, sent))
        await out.flush(self.ctx.app.producer)
        for partition, key in done:
            self.sent.put(partition, key, SENT)
        self.meter.maybe_log()

    async def _one(self, incoming: Incoming, done: list[tuple[int, bytes]]) -> bytes | None:
        """Send one notification; its key once it is done with (sent or nothing to send)."""
        notification = codec.decode(topics.NOTIFICATIONS, incoming.value)
        key = notification.event_id.encode()
        if key in self.sent or any(key == k for _, k in done):
            self.meter.add("duplicate")
            return None
        if not notification.email:
            log.info("notification %s for %s has no e-mail address; skipped",
                     notification.event_id, notification.reference)
            self.meter.add("no_address")
            return key
        message = render(notification, self.ctx.settings)
        await deliver(self.sender, notification, message, self.policy)
        log.info("sent %s e-mail for %s to %s", notification.template.value,
                 notification.reference, scrub(mask_email(notification.email)))
        self.meter.add(notification.template.value)
        return key


def _reference(incoming: Incoming) -> str | None:
    """The payment reference of a record for its dead letter: the key, when it is one."""
    if incoming.key is None or len(incoming.key) > 64:
        return None
    text = incoming.key.decode("utf-8", "replace")
    return text if text.isprintable() else None


def register(ctx: StreamContext, sender: Sender,
             policy: RetryPolicy = POLICIES.notifications) -> Notifier:
    """The ``send_notifications`` agent mailing through ``sender``, its table and purge timer."""
    app = ctx.app
    table = app.Table("notifications-sent", key_type=bytes, value_type=bytes,
                      partitions=ctx.settings.partitions, help="notification event id -> sent")
    sent = ExpiringTable(table, ctx.settings.idempotency_ttl_s, "notifications-sent")
    register_purge(ctx, sent)
    notifier = Notifier(ctx, sent, sender, policy)
    source = app.topic(topics.NOTIFICATIONS, key_type=bytes, value_type=bytes)

    @app.agent(source, name="send_notifications")
    async def send_notifications(stream: Any) -> None:
        async for events in stream.take_events(100, within=0.2):
            await notifier.process(events)

    return notifier
