"""The payment explorer: find a payment by any of its ids and show its whole history.

What the seed's Django admin did, for ops and support: every transition with its time and
cause, every callback or webhook with its verification result and the provider's own code
and text, refunds, and any dead letters about the payment. Reads the PostgreSQL read model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sinks.postgres import schema as pg


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass(frozen=True)
class Reached:
    """The drill-down filter: payments that reached ``status`` in [since, until), of one
    currency and one provider if given (a bar of the daily revenue or the status chart)."""

    status: str
    since: datetime
    until: datetime
    currency: str | None = None
    provider: str | None = None


async def search(engine: AsyncEngine, q: str | None, limit: int = 20,
                 reached: Reached | None = None) -> list[dict[str, Any]]:
    """Payments whose reference, booking id or provider reference (CheckoutRequestID,
    PaymentIntent id, Airtel id) is ``q``, and/or that match ``reached``."""
    p, ev = pg.payments, pg.payment_events
    query = select(p.c.reference, p.c.status, p.c.provider, p.c.amount_minor, p.c.currency,
                   p.c.booking_id, p.c.provider_reference, p.c.user_id, p.c.created_at,
                   p.c.updated_at)
    if q is not None:
        intent_refs = select(pg.payment_intents.c.reference).where(
            pg.payment_intents.c.payment_intent_id == q)
        query = query.where(or_(p.c.reference == q, p.c.booking_id == q,
                                p.c.provider_reference == q, p.c.reference.in_(intent_refs)))
    if reached is not None:
        got_there = select(ev.c.reference).where(
            ev.c.to_status == reached.status, ev.c.at >= reached.since, ev.c.at < reached.until)
        query = query.where(p.c.reference.in_(got_there))
        if reached.currency:
            query = query.where(p.c.currency == reached.currency.upper())
        if reached.provider:
            query = query.where(p.c.provider == reached.provider)
    query = query.order_by(p.c.created_at.desc(), p.c.reference).limit(limit)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        {"reference": r.reference, "status": r.status, "provider": r.provider,
         "amount_minor": r.amount_minor, "currency": r.currency, "booking_id": r.booking_id,
         "provider_reference": r.provider_reference, "user_id": r.user_id,
         "created_at": _iso(r.created_at), "updated_at": _iso(r.updated_at)}
        for r in rows
    ]


async def history(engine: AsyncEngine, reference: str) -> dict[str, Any] | None:
    p, ev, cb, rf, dl = (pg.payments, pg.payment_events, pg.provider_callbacks, pg.refunds,
                         pg.dead_letters)
    async with engine.connect() as conn:
        payment = (await conn.execute(select(p).where(p.c.reference == reference))).first()
        if payment is None:
            return None
        events = (await conn.execute(
            select(ev.c.version, ev.c.from_status, ev.c.to_status, ev.c.cause, ev.c.cause_event_id,
                   ev.c.at, ev.c.record)
            .where(ev.c.reference == reference).order_by(ev.c.version))).all()
        callbacks = (await conn.execute(
            select(cb.c.event_id, cb.c.provider, cb.c.received_at, cb.c.verified,
                   cb.c.verification_error, cb.c.event_type, cb.c.provider_code,
                   cb.c.provider_message)
            .where(cb.c.reference == reference).order_by(cb.c.received_at))).all()
        refunds = (await conn.execute(
            select(rf).where(rf.c.reference == reference).order_by(rf.c.requested_at))).all()
        letters = (await conn.execute(
            select(dl.c.event_id, dl.c.source_topic, dl.c.partition, dl.c.offset, dl.c.error_type,
                   dl.c.error_message, dl.c.stage, dl.c.failed_at, dl.c.redriven_at,
                   dl.c.redrive_count)
            .where(dl.c.reference == reference).order_by(dl.c.failed_at))).all()

    def snapshot_field(record: dict[str, Any], name: str) -> Any:
        return (record.get("payment") or {}).get(name)

    return {
        "payment": {
            "reference": payment.reference, "status": payment.status, "version": payment.version,
            "user_id": payment.user_id, "booking_id": payment.booking_id,
            "amount_minor": payment.amount_minor, "currency": payment.currency,
            "provider": payment.provider, "method": payment.method, "country": payment.country,
            "phone": payment.phone_masked, "provider_reference": payment.provider_reference,
            "provider_status": payment.provider_status, "provider_code": payment.provider_code,
            "provider_message": payment.provider_message, "refunded_minor": payment.refunded_minor,
            "settled_by": payment.settled_by, "created_at": _iso(payment.created_at),
            "updated_at": _iso(payment.updated_at), "deadline_at": _iso(payment.deadline_at),
        },
        "transitions": [
            {"version": e.version, "from": e.from_status, "to": e.to_status, "cause": e.cause,
             "cause_event_id": e.cause_event_id, "at": _iso(e.at),
             "provider_code": snapshot_field(e.record, "provider_code"),
             "provider_message": snapshot_field(e.record, "provider_message")}
            for e in events
        ],
        "callbacks": [
            {"event_id": c.event_id, "provider": c.provider, "received_at": _iso(c.received_at),
             "verified": c.verified, "verification_error": c.verification_error,
             "event_type": c.event_type, "provider_code": c.provider_code,
             "provider_message": c.provider_message}
            for c in callbacks
        ],
        "refunds": [
            {"refund_id": r.refund_id, "amount_minor": r.amount_minor, "currency": r.currency,
             "reason": r.reason, "status": r.status, "requested_at": _iso(r.requested_at),
             "updated_at": _iso(r.updated_at)}
            for r in refunds
        ],
        "dead_letters": [
            {"event_id": d.event_id, "source_topic": d.source_topic, "partition": d.partition,
             "offset": d.offset, "error_type": d.error_type, "error_message": d.error_message,
             "stage": d.stage, "failed_at": _iso(d.failed_at), "redriven_at": _iso(d.redriven_at),
             "redrive_count": d.redrive_count}
            for d in letters
        ],
    }
