"""Stuck payments: find payments still open after N hours and ask their provider.

The stream worker's sweeper already asks the provider at each state's deadline (property 5);
``trailpay payments check-pending`` is the manual version for ops (the seed's
``check_pending_payments``), reading PostgreSQL so it works whatever the worker knows.

With ``--update`` each payment's provider is asked through its gateway with the very QUERY
command the sweeper would send for that payment version (:func:`query_command`, id
``stable_id(reference, version, "query")``), and the answers are produced onto
provider.events.v1 as provider events (``source="sweep"``, ids ``query:<command id>``).
Running it twice, or after the sweeper, changes nothing: the state machine has applied that
event id already.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from connectors.providers.base import ProviderGateway
from sinks.postgres import schema
from trailpay import codec, topics
from trailpay.domain.commands import query_command
from trailpay.domain.errors import TrailPayError
from trailpay.domain.events import PaymentSnapshot, Provider, ProviderEvent
from trailpay.domain.payment import Payment
from trailpay.domain.status import OPEN

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenPayment:
    reference: str
    version: int
    status: str
    provider: str
    amount_minor: int
    currency: str
    created_at: datetime
    updated_at: datetime
    deadline_at: datetime | None
    provider_reference: str | None
    snapshot: dict[str, Any] | None

    def age(self, now: datetime) -> timedelta:
        return now - self.created_at


async def find_open(engine: AsyncEngine, older_than: timedelta, now: datetime, *,
                    provider: str | None = None, references: tuple[str, ...] = (),
                    limit: int = 1000) -> list[OpenPayment]:
    """Payments created/pending/processing, created at least ``older_than`` ago, oldest first."""
    t = schema.payments
    stmt = (select(t.c.reference, t.c.version, t.c.status, t.c.provider, t.c.amount_minor, t.c.currency,
                   t.c.created_at, t.c.updated_at, t.c.deadline_at, t.c.provider_reference, t.c.snapshot)
            .where(t.c.status.in_(sorted(s.value for s in OPEN)), t.c.created_at <= now - older_than)
            .order_by(t.c.created_at).limit(limit))
    if provider:
        stmt = stmt.where(t.c.provider == provider)
    if references:
        stmt = stmt.where(t.c.reference.in_(references))
    async with engine.connect() as conn:
        return [OpenPayment(**dict(r._mapping)) for r in await conn.execute(stmt)]


@dataclass
class Answer:
    payment: OpenPayment
    events: list[ProviderEvent] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None

    @property
    def verdict(self) -> str:
        if self.skipped:
            return f"skipped: {self.skipped}"
        if self.error:
            return f"error: {self.error}"
        if not self.events:
            return "still open at the provider"
        ev = self.events[0]
        said = ev.status.value if ev.status else ev.kind.value
        words = " ".join(w for w in (ev.provider_code, ev.provider_message) if w)
        return f"provider says {said}" + (f" ({words})" if words else "")


async def ask(gateways: dict[Provider, ProviderGateway], payment: OpenPayment) -> Answer:
    """The provider's answer for one open payment (never raises)."""
    if payment.version < 1 or not payment.snapshot:
        return Answer(payment, skipped="never reached the state machine (version 0); "
                      "see `trailpay replay` and `trailpay dlq list --reference`")
    try:
        snapshot = PaymentSnapshot.model_validate(payment.snapshot)
        gateway = gateways[snapshot.provider]
        command = query_command(Payment(snapshot=snapshot))
        return Answer(payment, events=list(await gateway.execute(command)))
    except TrailPayError as exc:
        return Answer(payment, error=str(exc)[:300])
    except Exception as exc:
        log.warning("query for %s failed", payment.reference, exc_info=True)
        return Answer(payment, error=f"{type(exc).__name__}: {str(exc)[:300]}")


async def ask_all(gateways: dict[Provider, ProviderGateway], payments: list[OpenPayment], *,
                  concurrency: int = 8) -> list[Answer]:
    slots = asyncio.Semaphore(concurrency)

    async def one(p: OpenPayment) -> Answer:
        async with slots:
            return await ask(gateways, p)

    return list(await asyncio.gather(*(one(p) for p in payments)))


async def feed(producer: Any, answers: list[Answer]) -> int:
    """Produce every answer's events onto provider.events.v1 (keyed by reference)."""
    futures = []
    for answer in answers:
        for ev in answer.events:
            futures.append(await producer.send(topics.PROVIDER_EVENTS, codec.encode(ev),
                                               key=ev.reference.encode()))
    await asyncio.gather(*futures)
    return len(futures)
