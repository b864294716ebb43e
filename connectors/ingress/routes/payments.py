"""``/api/payments/``: the seed's general payments API (M-Pesa, Airtel, Stripe by code)."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from connectors.ingress import idempotency, readmodel, service
from connectors.ingress.auth import User, current_user
from connectors.ingress.bodies import parse_model, read_body, request_body_doc
from connectors.ingress.context import IngressContext, get_context
from connectors.ingress.errors import ApiError, invalid, not_found
from connectors.ingress.models import CancelBody, CreatePaymentBody, RefundBody, resolve_payment
from connectors.ingress.pagination import OWN_PAGE, Page
from trailpay import routing, topics
from trailpay.domain import references
from trailpay.domain.events import (
    CancelPayment,
    CreatePayment,
    RefundPayment,
    stable_id,
    utcnow,
)
from trailpay.domain.money import Money, MoneyError
from trailpay.domain.status import CANCELLABLE, REFUNDABLE, PaymentStatus

router = APIRouter(prefix="/api/payments", tags=["payments"])


def accepted_payment(request: CreatePayment, *, location: str) -> dict[str, Any]:
    money = request.amount
    return {
        "reference": request.reference,
        "status": PaymentStatus.PENDING.value,
        "amount": str(money.major),
        "amount_minor": money.amount,
        "currency": money.currency,
        "provider": request.provider.value,
        "payment_method": request.method.value,
        "booking_id": request.booking_id,
        "description": request.description,
        "status_url": location,
    }


@router.get("/providers/", summary="List payment providers")
async def list_providers(_user: User = Depends(current_user),
                         ctx: IngressContext = Depends(get_context)) -> dict[str, Any]:
    items = [info.public() for info in routing.providers(ctx.settings).values()]
    items.sort(key=lambda item: int(str(item["id"])))
    return {"count": len(items), "results": items}


@router.post("/create/", status_code=201, summary="Create a payment",
             openapi_extra=request_body_doc(CreatePaymentBody))
async def create_payment(request: Request, user: User = Depends(current_user),
                         ctx: IngressContext = Depends(get_context)) -> JSONResponse:
    body = await read_body(request, ctx.settings.max_body_bytes)
    seed = idempotency.request_seed(request, user, body)

    async def work() -> tuple[int, dict[str, Any]]:
        data = parse_model(CreatePaymentBody, body)
        resolved = resolve_payment(
            ctx.settings, amount=data.amount, currency=data.currency,
            method=data.payment_method, provider=data.provider,
            phone_number=data.phone_number, country=data.country)
        reference = references.keyed_reference(seed) if seed else references.new_reference()
        create = CreatePayment(
            event_id=stable_id("create", reference), occurred_at=utcnow(),
            reference=reference, user_id=user.id, amount=resolved.amount,
            provider=resolved.provider, method=resolved.method,
            phone_number=resolved.phone_number, email=data.email or user.email,
            description=data.description, booking_id=str(data.booking_id) if data.booking_id else None,
            country=resolved.country, payment_method_id=data.payment_method_id,
            confirm=data.confirm, source="api")
        await service.submit_create(ctx, create)
        return 201, accepted_payment(create, location=f"/api/payments/{reference}/status/")

    return await idempotency.run(ctx.db(), request, user, body, work)


@router.get("/list/", summary="List the caller's payments")
async def list_payments(user: User = Depends(current_user),
                        ctx: IngressContext = Depends(get_context),
                        status: PaymentStatus | None = Query(default=None),
                        page: Page = Depends(OWN_PAGE)) -> dict[str, Any]:
    total, rows = await readmodel.list_payments(ctx.db(), user_id=user.id, status=status,
                                                limit=page.limit, offset=page.offset)
    return {"count": total, "results": [readmodel.payment_json(r) for r in rows]}


async def owned(ctx: IngressContext, user: User, reference: str,
                provider: str | None = None) -> Any:
    if len(reference) > 200:
        raise not_found()
    row = await readmodel.own_payment(ctx.db(), user.id, reference, provider)
    if row is None:
        raise not_found()
    return row


@router.get("/{reference}/", summary="Payment details")
async def payment_detail(reference: str, user: User = Depends(current_user),
                         ctx: IngressContext = Depends(get_context)) -> dict[str, Any]:
    row = await owned(ctx, user, reference)
    out = readmodel.payment_json(row)
    out["refunds"] = await readmodel.refunds_of(ctx.db(), row.reference)
    return out


@router.get("/{reference}/status/", summary="Payment status")
async def payment_status(reference: str, user: User = Depends(current_user),
                         ctx: IngressContext = Depends(get_context)) -> dict[str, Any]:
    row = await owned(ctx, user, reference)
    return {"reference": row.reference, "status": row.status,
            "provider_status": row.provider_status, "provider_code": row.provider_code,
            "provider_message": row.provider_message,
            "updated_at": row.updated_at.isoformat() if row.updated_at else None}


async def request_cancel(ctx: IngressContext, request: Request, user: User, reference: str,
                         provider: str | None = None) -> JSONResponse:
    body = await read_body(request, ctx.settings.max_body_bytes, allow_empty=True)
    seed = idempotency.request_seed(request, user, body) or secrets.token_hex(8)

    async def work() -> tuple[int, dict[str, Any]]:
        data = parse_model(CancelBody, body, empty_ok=True)
        row = await owned(ctx, user, reference, provider)
        if PaymentStatus(row.status) not in CANCELLABLE:
            raise ApiError(409, "not_cancellable",
                           f"payment {row.reference} is {row.status}; only created, pending or "
                           "processing payments can be cancelled"
                           + ("; ask for a refund instead" if row.status in REFUNDABLE else ""))
        cancel = CancelPayment(event_id=stable_id("cancel", row.reference, seed),
                               occurred_at=utcnow(), reference=row.reference, user_id=user.id,
                               reason=data.reason)
        await service.publish(ctx, topics.PAYMENT_REQUESTS, row.reference, cancel)
        return 202, {"reference": row.reference, "status": row.status,
                     "requested": "cancel", "request_id": cancel.event_id}

    return await idempotency.run(ctx.db(), request, user, body, work)


@router.post("/{reference}/cancel/", status_code=202, summary="Cancel a payment",
             openapi_extra=request_body_doc(CancelBody, required=False))
async def cancel_payment(reference: str, request: Request, user: User = Depends(current_user),
                         ctx: IngressContext = Depends(get_context)) -> JSONResponse:
    return await request_cancel(ctx, request, user, reference)


async def request_refund(ctx: IngressContext, request: Request, user: User, reference: str,
                         provider: str | None = None) -> JSONResponse:
    body = await read_body(request, ctx.settings.max_body_bytes, allow_empty=True)
    seed = idempotency.request_seed(request, user, body)

    async def work() -> tuple[int, dict[str, Any]]:
        data = parse_model(RefundBody, body, empty_ok=True)
        row = await owned(ctx, user, reference, provider)
        if PaymentStatus(row.status) not in REFUNDABLE:
            raise ApiError(409, "not_refundable",
                           f"payment {row.reference} is {row.status}; only succeeded payments "
                           "can be refunded" + ("; cancel it instead" if row.status in CANCELLABLE else ""))
        remaining = row.amount_minor - row.refunded_minor
        amount: Money | None = None
        if data.amount is not None:
            try:
                amount = Money(amount=routing.exact_minor_units(data.amount, row.currency),
                               currency=row.currency)
            except MoneyError as exc:
                raise invalid({"amount": str(exc)}) from exc
            if amount.amount > remaining:
                raise invalid({"amount": f"only {Money(amount=remaining, currency=row.currency)} "
                                         "is left to refund"})
        refund_id = "rf_" + (stable_id("refund-id", seed)[:24] if seed else secrets.token_hex(12))
        refund = RefundPayment(event_id=stable_id("refund", row.reference, refund_id),
                               occurred_at=utcnow(), reference=row.reference, refund_id=refund_id,
                               amount=amount, reason=data.reason, user_id=user.id)
        await service.publish(ctx, topics.PAYMENT_REQUESTS, row.reference, refund)
        shown = amount or Money(amount=remaining, currency=row.currency)
        return 202, {"reference": row.reference, "refund_id": refund_id,
                     "amount": str(shown.major), "amount_minor": shown.amount,
                     "currency": shown.currency, "status": "requested"}

    return await idempotency.run(ctx.db(), request, user, body, work)


@router.post("/{reference}/refund/", status_code=202, summary="Refund a payment (whole or part)",
             openapi_extra=request_body_doc(RefundBody, required=False))
async def refund_payment(reference: str, request: Request, user: User = Depends(current_user),
                         ctx: IngressContext = Depends(get_context)) -> JSONResponse:
    return await request_refund(ctx, request, user, reference)
