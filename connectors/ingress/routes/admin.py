"""``/api/admin/``: ops reads across all users (admin role), used by the payment explorer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Query

from connectors.ingress import readmodel
from connectors.ingress.auth import User, admin_user
from connectors.ingress.context import IngressContext, get_context
from connectors.ingress.errors import not_found
from connectors.ingress.pagination import ADMIN_PAGE, Page
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
    _admin: User = Depends(admin_user), ctx: IngressContext = Depends(get_context),
    status: PaymentStatus | None = Query(default=None),
    provider: str | None = Query(default=None, max_length=16),
    user_id: str | None = Query(default=None, max_length=100),
    booking_id: str | None = Query(default=None, max_length=100),
    reference: str | None = Query(default=None, max_length=200),
    created_after: datetime | None = Query(default=None),
    created_before: datetime | None = Query(default=None),
    page: Page = Depends(ADMIN_PAGE),
) -> dict[str, Any]:
    total, rows = await readmodel.list_payments(
        ctx.db(), user_id=user_id, status=status, provider=provider, booking_id=booking_id,
        reference=reference, created_after=as_utc(created_after),
        created_before=as_utc(created_before),
        limit=page.limit, offset=page.offset)
    return {"count": total, "results": [admin_payment(r) for r in rows]}


@router.get("/payments/{reference}/", summary="One payment with its history (admin)")
async def payment_history(reference: str, _admin: User = Depends(admin_user),
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
