"""The webhook deliverer: payments.events.v1 -> signed POSTs to every endpoint that wants them.

Its own process (``trailpay webhooks deliver``, a service of ``trailpay up``), apart from
the state machine, so a slow or dead endpoint never holds up a payment. Two loops:

- **ingest** reads payments.events.v1 (group ``trailpay-webhooks``) and writes one delivery
  row per endpoint that takes the event's type, then commits the offsets: once in the
  delivery log an event is not lost (at-least-once); a redelivered event finds its row
  there (unique per endpoint and event) and adds nothing. A record that is not a valid
  public event is a dead letter (stage ``webhooks``) and the loop goes on;
- **deliver** claims due deliveries (the earliest pending one per endpoint and booking: a
  later event for the same booking waits while an earlier one is retrying) and POSTs each
  with ``TrailPay-Signature`` and ``TrailPay-Event-Id``. A 2xx is delivered; anything else
  (another status, a timeout, a refused connection) is tried again after the backoff of
  :mod:`connectors.outbound.backoff`, until the retry window (72 h) closes: then the
  delivery is ``dead``, waiting for ``trailpay webhooks redeliver``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from prometheus_client import Counter
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from connectors.outbound.backoff import Backoff
from connectors.outbound.signing import EVENT_ID_HEADER, SIGNATURE_HEADER, signature_header
from sinks.postgres import webhook_store as store
from sinks.postgres.webhook_tables import SETTINGS_ENDPOINT_ID
from trailpay import codec, topics
from trailpay.deadletters import dead_letter
from trailpay.domain.errors import ConfigurationError
from trailpay.domain.public_events import PublicPaymentEvent
from trailpay.kafka import bootstrap, make_producer
from trailpay.logs import scrub
from trailpay.secret_settings import is_placeholder
from trailpay.settings import Settings

log = logging.getLogger(__name__)

STAGE = "webhooks"
USER_AGENT = "TrailPay-Webhooks/1"

DELIVERY_ATTEMPTS = Counter("trailpay_webhook_attempts_total",
                            "Outgoing webhook attempts by outcome", ["outcome"])


def settings_secret(settings: Settings) -> str | None:
    """The settings endpoint's secret; refused when missing or a placeholder."""
    if settings.outbound_webhook_url is None:
        return None
    secret = settings.outbound_webhook_secret
    if secret is None or is_placeholder(secret.get_secret_value()):
        raise ConfigurationError("TRAILPAY_OUTBOUND_WEBHOOK_SECRET: required (and not a placeholder) "
                                 "with TRAILPAY_OUTBOUND_WEBHOOK_URL")
    return secret.get_secret_value()


def signing_secrets(endpoint: store.Endpoint, fallback: str | None, now: datetime) -> list[str]:
    """The secrets that sign for ``endpoint`` now: its own (the settings' for the settings
    endpoint), then the rotated-out one while its grace period lasts."""
    current = endpoint.secret or (fallback if endpoint.id == SETTINGS_ENDPOINT_ID else None)
    secrets = [current] if current else []
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and expires > now:
        secrets.append(endpoint.previous_secret)
    return secrets


def delivery_rows(event: PublicPaymentEvent, endpoints: Iterable[store.Endpoint]) -> list[dict[str, Any]]:
    """One delivery per endpoint that takes ``event``'s type."""
    payload = event.model_dump_json()
    return [{"endpoint_id": e.id, "event_id": event.event_id, "event_type": event.type.value,
             "ordering_key": event.key[:100], "reference": event.reference, "payload": payload}
            for e in endpoints if e.enabled and e.wants(event.type.value)]


class Deliverer:
    """Ingests public events into the delivery log and delivers what is due."""

    def __init__(self, settings: Settings, engine: AsyncEngine, client: httpx.AsyncClient, *,
                 backoff: Backoff | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.engine = engine
        self.client = client
        self.backoff = backoff or Backoff.from_settings(settings)
        self.clock = clock
        self.secret = settings_secret(settings)
        self.limit = settings.outbound_webhook_concurrency
        self.lease_s = settings.outbound_webhook_timeout_s + 30

    async def start(self) -> None:
        await store.sync_settings_endpoint(self.engine, self.settings.outbound_webhook_url)

    async def ingest(self, records: list[Any]) -> tuple[int, list[Any]]:
        """Write the deliveries of ``records`` (aiokafka records, in order); returns how many
        are new and the dead letters of records that are not public events."""
        endpoints = await store.list_endpoints(self.engine, enabled_only=True)
        rows: list[dict[str, Any]] = []
        dead: list[Any] = []
        for record in records:
            try:
                event = codec.decode(topics.PAYMENT_EVENTS, record.value)
            except Exception as exc:  # noqa: BLE001 - routed by type: refused or a bug
                dead.append(dead_letter(source_topic=record.topic, partition=record.partition,
                                        offset=record.offset, key=record.key, value=record.value,
                                        exc=exc, stage=STAGE))
                continue
            rows.extend(delivery_rows(event, endpoints))
        return await store.enqueue(self.engine, rows), dead

    async def deliver_due(self) -> int:
        """Claim what is due and attempt each once, in parallel; how many were attempted."""
        due = await store.claim_due(self.engine, self.limit, self.lease_s)
        if not due:
            return 0
        endpoints = {e.id: e for e in await store.list_endpoints(self.engine)}
        await asyncio.gather(*(self._attempt(d, endpoints.get(d.endpoint_id)) for d in due))
        return len(due)

    async def _attempt(self, due: store.Due, endpoint: store.Endpoint | None) -> None:
        code: int | None = None
        error: str | None = None
        try:
            if endpoint is None:
                raise LookupError(f"endpoint {due.endpoint_id} is gone")
            code = await self.post(endpoint, due)
            if 200 <= code < 300:
                DELIVERY_ATTEMPTS.labels("delivered").inc()
                await store.record_attempt(self.engine, due.id, status=store.DELIVERED,
                                           status_code=code, error=None, retry_in_s=None)
                return
            error = f"HTTP {code}"
        except (httpx.HTTPError, OSError, LookupError, ValueError) as exc:
            error = scrub(f"{type(exc).__name__}: {exc}")[:500]
        wait = self.backoff.delay(due.attempts + 1)
        if self.backoff.gives_up(due.age_s, wait):
            DELIVERY_ATTEMPTS.labels("dead").inc()
            log.warning("webhook delivery %s (event %s to %s) is dead after %d attempts: %s",
                        due.id, due.event_id, due.endpoint_id, due.attempts + 1, error)
            await store.record_attempt(self.engine, due.id, status=store.DEAD, status_code=code,
                                       error=error, retry_in_s=None)
            return
        DELIVERY_ATTEMPTS.labels("retry").inc()
        log.info("webhook delivery %s to %s failed (%s); attempt %d in %.1f s", due.id,
                 due.endpoint_id, error, due.attempts + 2, wait)
        await store.record_attempt(self.engine, due.id, status=store.PENDING, status_code=code,
                                   error=error, retry_in_s=wait)

    async def post(self, endpoint: store.Endpoint, due: store.Due) -> int:
        """POST one delivery, signed; the response status."""
        body = due.payload.encode()
        secrets = signing_secrets(endpoint, self.secret, datetime.now(UTC))
        if not secrets:
            raise ValueError(f"endpoint {endpoint.id} has no secret to sign with")
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   SIGNATURE_HEADER: signature_header(body, secrets, int(self.clock())),
                   EVENT_ID_HEADER: due.event_id}
        response = await self.client.post(endpoint.url, content=body, headers=headers)
        return response.status_code


async def _ingest_loop(deliverer: Deliverer, settings: Settings, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(*topics.WEBHOOKS_TOPICS, bootstrap_servers=bootstrap(settings),
                                group_id=topics.WEBHOOKS_GROUP, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_poll_records=500)
    producer = make_producer(settings)
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            records = [r for part in batches.values() for r in part]
            if not records:
                continue
            new, dead = await _ingest_until_written(deliverer, records, stop)
            for letter in dead:
                log.warning("dead letter from %s[%s]@%s (%s): %s", letter.source_topic,
                            letter.partition, letter.offset, STAGE, letter.error_message)
                await producer.send_and_wait(topics.DEAD_LETTERS, codec.encode(letter),
                                             key=letter.source_topic.encode())
            await consumer.commit()
            log.debug("ingested %d events, %d new deliveries", len(records), new)
    finally:
        await consumer.stop()
        await producer.stop()


async def _ingest_until_written(deliverer: Deliverer, records: list[Any],
                                stop: asyncio.Event) -> tuple[int, list[Any]]:
    """:meth:`Deliverer.ingest`, tried again every few seconds while the database is away
    (the offsets wait: nothing is committed before the rows are written)."""
    wait = 0.5
    while True:
        try:
            return await deliverer.ingest(records)
        except (SQLAlchemyError, OSError) as exc:
            if stop.is_set():
                raise
            log.warning("webhook deliveries not written (%s: %s); again in %.1f s",
                        type(exc).__name__, str(exc)[:200], wait)
            await asyncio.sleep(wait)
            wait = min(wait * 2, 10.0)


async def _deliver_loop(deliverer: Deliverer, poll_s: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            attempted = await deliverer.deliver_due()
        except Exception:
            log.exception("webhook delivery round failed; trying again")
            attempted = 0
        if not attempted:
            try:
                await asyncio.wait_for(stop.wait(), poll_s)
            except TimeoutError:
                pass


async def serve(settings: Settings, engine: AsyncEngine, stop: asyncio.Event) -> None:
    """Run both loops until ``stop`` is set (or one of them fails)."""
    async with httpx.AsyncClient(timeout=settings.outbound_webhook_timeout_s,
                                 follow_redirects=False) as client:
        deliverer = Deliverer(settings, engine, client)
        await deliverer.start()
        tasks = [asyncio.create_task(_ingest_loop(deliverer, settings, stop)),
                 asyncio.create_task(_deliver_loop(deliverer, settings.outbound_webhook_poll_s, stop))]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        for task in pending:
            await task
        for task in done:
            task.result()
