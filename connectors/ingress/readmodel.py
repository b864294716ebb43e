"""Reads from the PostgreSQL read model (filled by the sink) and the placeholder insert.

Every user-facing read is scoped to the caller: another user's reference is simply absent
(404), never "forbidden", so references cannot be probed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from connectors.ingress.errors import unavailable
from sinks.postgres.schema import (
    customers,
    payment_events,
    payment_methods,
    payments,
    refunds,
    users,
)
from trailpay.domain.events import CreatePayment
from trailpay.domain.masking import mask_email, mask_phone
from trailpay.domain.money import to_major_units


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _major(minor: int, currency: str) -> str:
    return str(to_major_units(minor, currency))


#: What an owner sees of each attempt (the snapshot's attempts, minus ids of our own).
ATTEMPT_FIELDS = ("number", "outcome", "provider_reference", "provider_code", "provider_message",
                  "started_at", "ended_at")


def provider_truth_json(snapshot: dict[str, Any] | None) -> dict[str, Any]:
    """Attempts and the late-payment marks, from the snapshot the sink stores (none yet on
    the placeholder row the ingress writes before the state machine has run)."""
    snap = snapshot or {}
    return {
        "attempts": [{k: a.get(k) for k in ATTEMPT_FIELDS} for a in snap.get("attempts") or ()],
        "late_from": snap.get("late_from"),
        "late_decision": snap.get("late_decision"),
    }


def payment_json(row: Row[Any]) -> dict[str, Any]:
    """The public shape of a payment (no client secret, phone masked)."""
    m = row._mapping
    return {
        "reference": m["reference"],
        "status": m["status"],
        "amount": _major(m["amount_minor"], m["currency"]),
        "amount_minor": m["amount_minor"],
        "currency": m["currency"],
        "provider": m["provider"],
        "payment_method": m["method"],
        "country": m["country"],
        "phone_number": m["phone_masked"],
        "description": m["description"],
        "booking_id": m["booking_id"],
        "provider_reference": m["provider_reference"],
        "provider_status": m["provider_status"],
        "provider_code": m["provider_code"],
        "provider_message": m["provider_message"],
        "refunded_amount": _major(m["refunded_minor"], m["currency"]),
        "refunded_minor": m["refunded_minor"],
        "created_at": _iso(m["created_at"]),
        "updated_at": _iso(m["updated_at"]),
        "deadline_at": _iso(m["deadline_at"]),
        **provider_truth_json(m.get("snapshot")),
    }


def intent_json(row: Row[Any]) -> dict[str, Any]:
    """A Stripe payment in the shape of the seed's PaymentIntent API."""
    out = payment_json(row)
    m = row._mapping
    out["id"] = m["provider_reference"] or m["reference"]
    out["payment_intent_id"] = m["provider_reference"]
    out["stripe_status"] = m["provider_status"]
    out["customer_id"] = m["customer_id"]
    out["payment_method_id"] = m["payment_method_id"]
    return out


def admin_json(row: Row[Any]) -> dict[str, Any]:
    out = payment_json(row)
    m = row._mapping
    out.update(user_id=m["user_id"], email=m["email"], version=m["version"],
               settled_by=m["settled_by"], customer_id=m["customer_id"],
               snapshot=m["snapshot"])
    return out


async def insert_placeholder(engine: AsyncEngine, request: CreatePayment) -> None:
    """The version-0 row that makes a new payment visible and owned at once."""
    amount = request.amount
    async with engine.begin() as conn:
        await conn.execute(insert(payments).values(
            reference=request.reference, version=0, status="pending",
            user_id=request.user_id, booking_id=request.booking_id,
            amount_minor=amount.amount, currency=amount.currency,
            provider=request.provider.value, method=request.method.value,
            country=request.country, phone_masked=mask_phone(request.phone_number) or None,
            email=mask_email(request.email) or None, description=request.description,
            payment_method_id=request.payment_method_id, customer_id=request.customer_id,
        ).on_conflict_do_nothing(index_elements=[payments.c.reference]))


async def _first(engine: AsyncEngine, query: Any) -> Row[Any] | None:
    try:
        async with engine.connect() as conn:
            return (await conn.execute(query)).first()
    except SQLAlchemyError as exc:
        raise unavailable("the payments database is not reachable") from exc


async def _all(engine: AsyncEngine, query: Any) -> list[Row[Any]]:
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(query)).all())
    except SQLAlchemyError as exc:
        raise unavailable("the payments database is not reachable") from exc


async def own_payment(engine: AsyncEngine, user_id: str, reference: str,
                      provider: str | None = None) -> Row[Any] | None:
    """The caller's payment by our reference or (for Stripe) the PaymentIntent id."""
    match = or_(payments.c.reference == reference, payments.c.provider_reference == reference)
    query = select(payments).where(match, payments.c.user_id == user_id)
    if provider is not None:
        query = query.where(payments.c.provider == provider)
    return await _first(engine, query.limit(1))


async def any_payment(engine: AsyncEngine, reference: str,
                      provider: str | None = None) -> Row[Any] | None:
    """Anyone's payment by reference or PaymentIntent id: for staff acts only (support and
    admin cancel or refund any payment); owners go through :func:`own_payment`."""
    match = or_(payments.c.reference == reference, payments.c.provider_reference == reference)
    query = select(payments).where(match)
    if provider is not None:
        query = query.where(payments.c.provider == provider)
    return await _first(engine, query.limit(1))


async def list_payments(engine: AsyncEngine, *, user_id: str | None = None,
                        status: str | None = None, provider: str | None = None,
                        booking_id: str | None = None, reference: str | None = None,
                        created_after: datetime | None = None,
                        created_before: datetime | None = None,
                        limit: int = 50, offset: int = 0) -> tuple[int, list[Row[Any]]]:
    conds = []
    if user_id is not None:
        conds.append(payments.c.user_id == user_id)
    if status:
        conds.append(payments.c.status == status)
    if provider:
        conds.append(payments.c.provider == provider)
    if booking_id:
        conds.append(payments.c.booking_id == booking_id)
    if reference:
        conds.append(or_(payments.c.reference == reference,
                         payments.c.provider_reference == reference))
    if created_after:
        conds.append(payments.c.created_at >= created_after)
    if created_before:
        conds.append(payments.c.created_at < created_before)
    where = and_(*conds) if conds else None
    count_q = select(func.count()).select_from(payments)
    rows_q = select(payments).order_by(payments.c.created_at.desc(), payments.c.reference)
    if where is not None:
        count_q = count_q.where(where)
        rows_q = rows_q.where(where)
    total_row = await _first(engine, count_q)
    rows = await _all(engine, rows_q.limit(limit).offset(offset))
    return (int(total_row[0]) if total_row else 0), rows


async def events_of(engine: AsyncEngine, reference: str) -> list[dict[str, Any]]:
    rows = await _all(engine, select(
        payment_events.c.version, payment_events.c.from_status, payment_events.c.to_status,
        payment_events.c.cause, payment_events.c.cause_event_id, payment_events.c.at,
    ).where(payment_events.c.reference == reference).order_by(payment_events.c.version))
    return [{"version": r.version, "from_status": r.from_status, "to_status": r.to_status,
             "cause": r.cause, "cause_event_id": r.cause_event_id, "at": _iso(r.at)}
            for r in rows]


async def refunds_of(engine: AsyncEngine, reference: str) -> list[dict[str, Any]]:
    rows = await _all(engine, select(refunds).where(refunds.c.reference == reference)
                      .order_by(refunds.c.requested_at))
    return [{"refund_id": r.refund_id, "amount": _major(r.amount_minor, r.currency),
             "amount_minor": r.amount_minor, "currency": r.currency, "reason": r.reason,
             "status": r.status, "failure_code": r.failure_code,
             "failure_message": r.failure_message, "requested_at": _iso(r.requested_at),
             "updated_at": _iso(r.updated_at)} for r in rows]


async def committed_refund_minor(engine: AsyncEngine, reference: str) -> int:
    """Minor units refunded or asked for and not failed or refused (as the read model has
    them: a request still on its way is not counted, and the state machine then refuses)."""
    row = await _first(engine, select(func.coalesce(func.sum(refunds.c.amount_minor), 0)).where(
        refunds.c.reference == reference, refunds.c.status.in_(("requested", "succeeded"))))
    return int(row[0]) if row is not None else 0


async def payment_methods_of(engine: AsyncEngine, user_id: str) -> list[dict[str, Any]]:
    rows = await _all(engine, select(payment_methods).where(
        payment_methods.c.user_id == user_id, payment_methods.c.detached_at.is_(None),
    ).order_by(payment_methods.c.created_at.desc()))
    return [{"id": r.payment_method_id, "type": r.type, "brand": r.brand, "last4": r.last4,
             "exp_month": r.exp_month, "exp_year": r.exp_year, "is_default": r.is_default,
             "customer_id": r.customer_id, "created_at": _iso(r.created_at)} for r in rows]


async def customer_of(engine: AsyncEngine, user_id: str) -> str | None:
    row = await _first(engine, select(customers.c.customer_id).where(customers.c.user_id == user_id))
    if row is not None:
        return str(row.customer_id)
    latest = await _first(engine, select(payments.c.customer_id).where(
        payments.c.user_id == user_id, payments.c.customer_id.is_not(None),
    ).order_by(payments.c.updated_at.desc()).limit(1))
    return str(latest.customer_id) if latest is not None else None


async def remember_customer(engine: AsyncEngine, user_id: str, customer_id: str,
                            email: str | None) -> None:
    """Keep a Stripe customer made outside a payment (a SetupIntent's), as the sink keeps a
    payment's: the first one stored for a user stays."""
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(customers).values(
                user_id=user_id, customer_id=customer_id, email=email).on_conflict_do_nothing())
    except SQLAlchemyError as exc:
        raise unavailable("the payments database is not reachable") from exc


async def save_payment_methods(engine: AsyncEngine, user_id: str, customer_id: str,
                               methods: list[dict[str, Any]]) -> None:
    """Cache what Stripe listed (brand, last 4 digits, expiry: never the card number)."""
    if not methods:
        return
    rows = [{"payment_method_id": m["id"], "user_id": user_id, "customer_id": customer_id,
             "provider": "stripe", "type": m.get("type") or "card", "brand": m.get("brand"),
             "last4": m.get("last4"), "exp_month": m.get("exp_month"), "exp_year": m.get("exp_year")}
            for m in methods]
    stmt = insert(payment_methods).values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=[payment_methods.c.payment_method_id],
        set_={c: stmt.excluded[c] for c in ("customer_id", "brand", "last4", "exp_month", "exp_year")},
    )
    try:
        async with engine.begin() as conn:
            await conn.execute(stmt)
    except SQLAlchemyError as exc:
        raise unavailable("the payments database is not reachable") from exc


async def user_by_id_or_email(engine: AsyncEngine, who: str) -> Row[Any] | None:
    """A user row (id, e-mail, role, created) by id or e-mail: the support overview."""
    return await _first(engine, select(users.c.id, users.c.email, users.c.role, users.c.created_at)
                        .where(or_(users.c.id == who, users.c.email == who.strip().lower())))


async def payment_totals_of(engine: AsyncEngine, user_id: str) -> list[dict[str, Any]]:
    """Per currency and status: how many payments, how much asked and refunded (minor units)."""
    rows = await _all(engine, select(
        payments.c.currency, payments.c.status, func.count().label("payments"),
        func.sum(payments.c.amount_minor).label("amount_minor"),
        func.sum(payments.c.refunded_minor).label("refunded_minor"),
    ).where(payments.c.user_id == user_id).group_by(payments.c.currency, payments.c.status)
        .order_by(payments.c.currency, payments.c.status))
    return [{"currency": r.currency, "status": r.status, "count": int(r.payments),
             "amount_minor": int(r.amount_minor or 0), "refunded_minor": int(r.refunded_minor or 0),
             "amount": _major(int(r.amount_minor or 0), r.currency),
             "refunded_amount": _major(int(r.refunded_minor or 0), r.currency)} for r in rows]
