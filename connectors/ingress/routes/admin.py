"""``/api/admin/``: ops reads across all users, used by the payment explorer.

Payments and their audit trails: the support and admin roles; the whole audit log: admin.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy.exc import SQLAlchemyError

from connectors.ingress import readmodel
from connectors.ingress.auth import User, admin_user, staff_user
from connectors.ingress.context import IngressContext, get_context
from connectors.ingress.errors import not_found, unavailable
from connectors.ingress.fields import DateTimeQuery
from connectors.ingress.pagination import ADMIN_PAGE, Page
from sinks.postgres.audit import AuditFilter, audit_json, list_audit
from trailpay.domain.status import PaymentStatus

router = APIRouter(prefix="/api/admin", tags=["admin"])
#: ``payments.reference`` is String(64); a PaymentIntent id (provider_reference) String(200).
MAX_REFERENCE_LEN = 200


def as_utc(value: datetime | None) -> datetime | None:
    """Aware UTC (naive = UTC); an instant UTC cannot hold (year 1 at +14:00) becomes the
    nearest one it can, so any date-time the schema allows is a valid bound."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC) if value.year < 2 else datetime.max.replace(tzinfo=UTC)

#: Snapshot fields an admin never sees: the Stripe client secret lets whoever holds it
#: confirm the customer's payment (snapshots written before issue 16 may still carry it).
SECRET_SNAPSHOT_FIELDS = frozenset({"client_secret"})


def admin_payment(row: Any) -> dict[str, Any]:
    """A payment for the admin API: :func:`readmodel.admin_json` without any secret."""
    out = readmodel.admin_json(row)
    snapshot = out.get("snapshot")
    if isinstance(snapshot, dict):
        out["snapshot"] = {k: v for k, v in snapshot.items() if k not in SECRET_SNAPSHOT_FIELDS}
    for name in SECRET_SNAPSHOT_FIELDS:
        out.pop(name, None)
    return out


@router.get("/payments/", summary="Search all payments (admin)")
async def search_payments(
    _staff: User = Depends(staff_user), ctx: IngressContext = Depends(get_context),
    status: PaymentStatus | None = Query(default=None),
    provider: str | None = Query(default=None, max_length=16),
    user_id: str | None = Query(default=None, max_length=100),
    booking_id: str | None = Query(default=None, max_length=100),
    reference: str | None = Query(default=None, max_length=200),
    created_after: DateTimeQuery | None = Query(default=None),
    created_before: DateTimeQuery | None = Query(default=None),
    page: Page = Depends(ADMIN_PAGE),
) -> dict[str, Any]:
    total, rows = await readmodel.list_payments(
        ctx.db(), user_id=user_id, status=status, provider=provider, booking_id=booking_id,
        reference=reference, created_after=as_utc(created_after),
        created_before=as_utc(created_before),
        limit=page.limit, offset=page.offset)
    return {"count": total, "results": [admin_payment(r) for r in rows]}


@router.get("/payments/{reference}/", summary="One payment with its history (admin)")
async def payment_history(reference: str, _staff: User = Depends(staff_user),
                          ctx: IngressContext = Depends(get_context)) -> dict[str, Any]:
    if len(reference) > MAX_REFERENCE_LEN:  # no reference is that long (never truncate one)
        raise not_found()
    _total, rows = await readmodel.list_payments(ctx.db(), reference=reference, limit=1)
    if not rows:
        raise not_found()
    out = admin_payment(rows[0])
    out["events"] = await readmodel.events_of(ctx.db(), rows[0].reference)
    out["refunds"] = await readmodel.refunds_of(ctx.db(), rows[0].reference)
    return out


async def _audit_rows(ctx: IngressContext, flt: AuditFilter) -> list[dict[str, Any]]:
    try:
        return [audit_json(r) for r in await list_audit(ctx.db(), flt)]
    except SQLAlchemyError as exc:
        raise unavailable("the audit log is not reachable") from exc


@router.get("/payments/{reference}/audit/", summary="A payment's audit trail (support, admin)")
async def payment_audit(reference: str, _staff: User = Depends(staff_user),
                        ctx: IngressContext = Depends(get_context),
                        page: Page = Depends(ADMIN_PAGE)) -> dict[str, Any]:
    """Who cancelled, refunded or retried the payment, when, from where and why; newest
    first. ``reference`` may be the PaymentIntent id."""
    if len(reference) > MAX_REFERENCE_LEN:
        raise not_found()
    _total, rows = await readmodel.list_payments(ctx.db(), reference=reference, limit=1)
    if not rows:
        raise not_found()
    items = await _audit_rows(ctx, AuditFilter(target=rows[0].reference, limit=page.limit,
                                               offset=page.offset))
    return {"reference": rows[0].reference, "count": len(items), "results": items}


@router.get("/audit/", summary="The audit log (admin)")
async def audit_log(
    _admin: User = Depends(admin_user), ctx: IngressContext = Depends(get_context),
    since: DateTimeQuery | None = Query(default=None),
    until: DateTimeQuery | None = Query(default=None),
    actor: str | None = Query(default=None, max_length=320, description="User id or e-mail"),
    target: str | None = Query(default=None, max_length=200,
                               description="Payment reference, token id, dead-letter id ..."),
    action: str | None = Query(default=None, max_length=64, description="e.g. payment.refund"),
    page: Page = Depends(ADMIN_PAGE),
) -> dict[str, Any]:
    """Every act of a person or an ops command, newest first."""
    items = await _audit_rows(ctx, AuditFilter(since=as_utc(since), until=as_utc(until),
                                               actor=actor, target=target, action=action,
                                               limit=page.limit, offset=page.offset))
    return {"count": len(items), "results": items}


#: How many of a customer's latest payments the overview lists.
OVERVIEW_PAYMENTS = 20


@router.get("/customers/{user}/", summary="A customer at a glance (support, admin)")
async def customer_overview(user: str, _staff: User = Depends(staff_user),
                            ctx: IngressContext = Depends(get_context)) -> dict[str, Any]:
    """``user`` is a user id or e-mail: the account, its Stripe customer and saved cards (as
    last cached: brand, last 4, expiry), totals per currency and status, the latest payments
    and the latest acts on them."""
    if len(user) > 320:
        raise not_found("customer")
    found = await readmodel.user_by_id_or_email(ctx.db(), user)
    if found is None:
        raise not_found("customer")
    total, rows = await readmodel.list_payments(ctx.db(), user_id=found.id, limit=OVERVIEW_PAYMENTS)
    refs = [r.reference for r in rows]
    acts = [a for ref in refs[:5] for a in await _audit_rows(ctx, AuditFilter(target=ref, limit=5))]
    acts.sort(key=lambda a: str(a["at"]), reverse=True)
    return {
        "user": {"id": found.id, "email": found.email, "role": found.role,
                 "created_at": found.created_at.isoformat()},
        "stripe_customer_id": await readmodel.customer_of(ctx.db(), found.id),
        "payment_methods": await readmodel.payment_methods_of(ctx.db(), found.id),
        "payment_count": total,
        "totals": await readmodel.payment_totals_of(ctx.db(), found.id),
        "payments": [admin_payment(r) for r in rows],
        "recent_acts": acts[:20],
    }
