"""Handing requests over to Kafka: the one place routes publish from."""

from __future__ import annotations

import logging

from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from connectors.ingress import readmodel
from connectors.ingress.context import IngressContext
from connectors.ingress.errors import unavailable
from connectors.ingress.publisher import KafkaUnavailable
from trailpay import topics
from trailpay.domain.events import CreatePayment

log = logging.getLogger(__name__)


async def publish(ctx: IngressContext, topic: str, key: str | None, record: BaseModel) -> None:
    """Publish and wait for the broker's ack, or answer 503 (the client may retry)."""
    try:
        await ctx.publisher.publish(topic, key, record)
    except KafkaUnavailable as exc:
        log.warning("could not publish to %s: %s", topic, exc)
        raise unavailable("the payment pipeline is not reachable; retry shortly") from exc
    ctx.metrics.published.labels(topic).inc()


async def submit_create(ctx: IngressContext, request: CreatePayment) -> None:
    """Publish the CreatePayment (the source of truth), then the version-0 placeholder row.

    Publishing first means a failure leaves no orphan row that never moves; if only the
    placeholder fails, the sink's first state change creates the row moments later.
    """
    await publish(ctx, topics.PAYMENT_REQUESTS, request.reference, request)
    try:
        await readmodel.insert_placeholder(ctx.db(), request)
    except SQLAlchemyError as exc:
        log.warning("payment %s: placeholder row not written (%s); the sink will add it",
                    request.reference, type(exc).__name__)
