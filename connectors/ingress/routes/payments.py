"""``/api/payments/``: the seed's general payments API (M-Pesa, Airtel, Stripe by code)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from connectors.ingress import audit, idempotency, readmodel, service
from connectors.ingress.auth import User, current_user
from connectors.ingress.bodies import parse_model, read_body, request_body_doc
from connectors.ingress.context import IngressContext, get_context
from connectors.ingress.errors import ApiError, not_found, refused
from connectors.ingress.models import (
    CancelBody,
    CreatePaymentBody,
    RefundBody,
    ResolvedPayment,
    StripeIntentBody,
    resolve_payment,
)
from connectors.ingress.pagination import OWN_PAGE, Page
from trailpay import routing, topics
from trailpay.domain import references
from trailpay.domain.events import (
    CancelPayment,
    CreatePayment,
    PaymentMethod,
    Provider,
    RefundPayment,
    RetryPayment,
    stable_id,
    utcnow,
)
from trailpay.domain.money import Money, MoneyError
from trailpay.domain.status import CANCELLABLE, OPEN, REFUNDABLE, PaymentStatus

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


Work = Callable[[bytes, str | None], Awaitable[tuple[int, dict[str, Any]]]]


async def run_once(ctx: IngressContext, request: Request, user: User, work: Work, *,
                   body_optional: bool = False) -> JSONResponse:
    """Read the request body, then answer ``work(body, seed)`` once per Idempotency-Key (a
    repeated request gets the first answer); ``seed`` (None without a key) keys the ids the
    request makes, so a retried request names the same payment, refund or request."""
    body = await read_body(request, ctx.settings.max_body_bytes, allow_empty=body_optional,
                           max_depth=ctx.settings.max_json_depth)
    seed = idempotency.request_seed(request, user, body)
    return await idempotency.run(ctx.db(), request, user, body, lambda: work(body, seed))


def new_payment(seed: str | None, user: User, resolved: ResolvedPayment,
                data: CreatePaymentBody | StripeIntentBody, *, payment_method_id: str | None,
                phone_number: str | None = None, country: str | None = None,
                customer_id: str | None = None) -> CreatePayment:
    """The create request for a validated payment, under a new reference (keyed by ``seed``)."""
    reference = references.keyed_reference(seed) if seed else references.new_reference()
    return CreatePayment(
        event_id=stable_id("create", reference), occurred_at=utcnow(), reference=reference,
        user_id=user.id, amount=resolved.amount, provider=resolved.provider, method=resolved.method,
        phone_number=phone_number, email=data.email or user.email, description=data.description,
        booking_id=str(data.booking_id) if data.booking_id else None, country=country,
        payment_method_id=payment_method_id, confirm=data.confirm, customer_id=customer_id,
        return_url=getattr(data, "return_url", None), source="api")


async def stored_customer(ctx: IngressContext, user: User, provider: Provider) -> str | None:
    """The user's Stripe customer as TrailPay stored it, for a Stripe payment: the
    dispatcher searches Stripe only when there is none (search is rate-limited and
    eventually consistent)."""
    if provider is not Provider.STRIPE:
        return None
    return await readmodel.customer_of(ctx.db(), user.id)


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
    async def work(body: bytes, seed: str | None) -> tuple[int, dict[str, Any]]:
        data = parse_model(CreatePaymentBody, body)
        resolved = resolve_payment(
            ctx.settings, amount=data.amount, currency=data.currency,
            method=data.payment_method, provider=data.provider,
            phone_number=data.phone_number, country=data.country)
        create = new_payment(seed, user, resolved, data, payment_method_id=data.payment_method_id,
                             phone_number=resolved.phone_number, country=resolved.country,
                             customer_id=await stored_customer(ctx, user, resolved.provider))
        await service.submit_create(ctx, create)
        return 201, accepted_payment(create, location=f"/api/payments/{create.reference}/status/")

    return await run_once(ctx, request, user, work)


@router.get("/list/", summary="List the caller's payments")
async def list_payments(user: User = Depends(current_user),
                        ctx: IngressContext = Depends(get_context),
                        status: PaymentStatus | None = Query(default=None),
                        page: Page = Depends(OWN_PAGE)) -> dict[str, Any]:
    total, rows = await readmodel.list_payments(ctx.db(), user_id=user.id, status=status,
                                                limit=page.limit, offset=page.offset)
    return {"count": total, "results": [readmodel.payment_json(r) for r in rows]}


def require_reason(user: User, data: CancelBody | RefundBody) -> None:
    """Staff (support, admin) act on other people's payments: they must say why (the
    reason goes into the audit trail and onto the refund). 422 without one."""
    if user.is_staff and "reason" not in data.model_fields_set:
        raise refused({"reason": f"required for the {user.role} role: say why"},
                      "a support or admin act needs a reason")


async def actionable(ctx: IngressContext, user: User, reference: str,
                     provider: str | None = None) -> Any:
    """The payment ``user`` may cancel or refund: their own, or (support, admin) anyone's.
    Reads stay owner-only (:func:`owned`); staff read through ``/api/admin/``."""
    if not user.is_staff:
        return await owned(ctx, user, reference, provider)
    if len(reference) > 200:
        raise not_found()
    row = await readmodel.any_payment(ctx.db(), reference, provider)
    if row is None:
        raise not_found()
    return row


async def owned(ctx: IngressContext, user: User, reference: str,
                provider: str | None = None) -> Any:
    if len(reference) > 200:
        raise not_found()
    row = await readmodel.own_payment(ctx.db(), user.id, reference, provider)
    if row is None:
        raise not_found()
    return row


def require_status(row: Any, allowed: frozenset[PaymentStatus], code: str, rule: str = "") -> None:
    """409 ``code`` ("payment <reference> is <status><rule>") unless the payment's status is
    one of ``allowed``."""
    if PaymentStatus(row.status) not in allowed:
        raise ApiError(409, code, f"payment {row.reference} is {row.status}{rule}")


@router.get("/{reference}/", summary="Payment details")
async def payment_detail(reference: str, user: User = Depends(current_user),
                         ctx: IngressContext = Depends(get_context)) -> dict[str, Any]:
    row = await owned(ctx, user, reference)
    out = readmodel.payment_json(row)
    out["refunds"] = await readmodel.refunds_of(ctx.db(), row.reference)
    return out


#: The longest ``?wait=`` a status request may ask (``TRAILPAY_STATUS_WAIT_MAX_S`` may lower it).
MAX_STATUS_WAIT_S = 30.0
#: How often a waiting status request reads the read model again.
STATUS_POLL_S = 0.25


async def status_change(ctx: IngressContext, request: Request, user: User, reference: str,
                        since: str | None, wait_s: float) -> Any:
    """The payment once its status differs from ``since`` (default: its status now), or as
    it is after ``wait_s`` seconds, or when the client goes away."""
    row = await owned(ctx, user, reference)
    since = since or row.status
    deadline = time.monotonic() + wait_s
    while row.status == since and time.monotonic() < deadline:
        await asyncio.sleep(min(STATUS_POLL_S, max(deadline - time.monotonic(), 0.0)))
        if await request.is_disconnected():
            break
        row = await owned(ctx, user, reference)
    return row


@router.get("/{reference}/status/", summary="Payment status (long-polls with ?wait=N)")
async def payment_status(
    reference: str, request: Request, user: User = Depends(current_user),
    ctx: IngressContext = Depends(get_context),
    wait: float = Query(default=0, ge=0, le=MAX_STATUS_WAIT_S,
                        description="Hold the request up to this many seconds until the status "
                                    "changes (from since_status, or from the status now)"),
    since_status: PaymentStatus | None = Query(
        default=None, description="The status the caller knows: answer as soon as it is another"),
) -> dict[str, Any]:
    wait_s = min(wait, ctx.settings.status_wait_max_s)
    known = since_status.value if since_status is not None else None
    row = await status_change(ctx, request, user, reference, known, wait_s)
    return {"reference": row.reference, "status": row.status,
            "provider_status": row.provider_status, "provider_code": row.provider_code,
            "provider_message": row.provider_message,
            "updated_at": row.updated_at.isoformat() if row.updated_at else None}


async def request_cancel(ctx: IngressContext, request: Request, user: User, reference: str,
                         provider: str | None = None) -> JSONResponse:
    async def work(body: bytes, seed: str | None) -> tuple[int, dict[str, Any]]:
        data = parse_model(CancelBody, body, empty_ok=True)
        row = await actionable(ctx, user, reference, provider)
        require_reason(user, data)
        require_status(row, CANCELLABLE, "not_cancellable",
                       "; only created, pending or processing payments can be cancelled"
                       + ("; ask for a refund instead" if row.status in REFUNDABLE else ""))
        cancel = CancelPayment(event_id=stable_id("cancel", row.reference, seed or secrets.token_hex(8)),
                               occurred_at=utcnow(), reference=row.reference, user_id=user.id,
                               reason=data.reason)
        async with audit.audited(ctx, request, user, "payment.cancel", row.reference,
                                 reason=data.reason, request_id=cancel.event_id,
                                 details={"owner": row.user_id, "status": row.status}):
            await service.publish(ctx, topics.PAYMENT_REQUESTS, row.reference, cancel)
        return 202, {"reference": row.reference, "status": row.status,
                     "requested": "cancel", "request_id": cancel.event_id}

    return await run_once(ctx, request, user, work, body_optional=True)


@router.post("/{reference}/cancel/", status_code=202, summary="Cancel a payment",
             openapi_extra=request_body_doc(CancelBody, required=False))
async def cancel_payment(reference: str, request: Request, user: User = Depends(current_user),
                         ctx: IngressContext = Depends(get_context)) -> JSONResponse:
    return await request_cancel(ctx, request, user, reference)


#: Providers whose refund API takes back a whole transaction only (Airtel's
#: /standard/v1/payments/refund names the transaction, with no amount): a partial refund is
#: refused at once instead of failing later at the provider.
WHOLE_REFUNDS_ONLY = frozenset({"airtel"})


async def request_refund(ctx: IngressContext, request: Request, user: User, reference: str,
                         provider: str | None = None) -> JSONResponse:
    async def work(body: bytes, seed: str | None) -> tuple[int, dict[str, Any]]:
        data = parse_model(RefundBody, body, empty_ok=True)
        row = await actionable(ctx, user, reference, provider)
        require_reason(user, data)
        require_status(row, REFUNDABLE, "not_refundable",
                       "; only succeeded payments can be refunded"
                       + ("; cancel it instead" if row.status in CANCELLABLE else ""))
        # What the read model knows is committed: refunded, or asked for and not failed.
        committed = max(row.refunded_minor, await readmodel.committed_refund_minor(ctx.db(), row.reference))
        remaining = max(row.amount_minor - committed, 0)
        amount: Money | None = None
        if data.amount is not None:
            try:
                amount = Money(amount=routing.exact_minor_units(data.amount, row.currency),
                               currency=row.currency)
            except MoneyError as exc:
                raise refused({"amount": str(exc)}) from exc
        left = Money(amount=remaining, currency=row.currency)
        if remaining <= 0:
            raise ApiError(409, "nothing_left", f"payment {row.reference}: nothing left to refund")
        if amount is not None and amount.amount > remaining:
            raise ApiError(409, "exceeds_refundable",
                           f"payment {row.reference}: only {left} is left to refund")
        if row.provider in WHOLE_REFUNDS_ONLY and (committed > 0 or (
                amount is not None and amount.amount != row.amount_minor)):
            raise ApiError(409, "partial_refund_unsupported",
                           f"payment {row.reference}: {row.provider} refunds the whole transaction "
                           "only; refund it in full, or record money returned another way with "
                           "`trailpay refunds record-external`")
        refund_id = "rf_" + (stable_id("refund-id", seed)[:24] if seed else secrets.token_hex(12))
        refund = RefundPayment(event_id=stable_id("refund", row.reference, refund_id),
                               occurred_at=utcnow(), reference=row.reference, refund_id=refund_id,
                               amount=amount, reason=data.reason, user_id=user.id)
        shown = amount or Money(amount=remaining, currency=row.currency)
        async with audit.audited(ctx, request, user, "payment.refund", row.reference,
                                 reason=data.reason, request_id=refund_id,
                                 details={"owner": row.user_id, "refund_id": refund_id,
                                          "amount_minor": shown.amount,
                                          "currency": shown.currency,
                                          "whole": amount is None}):
            await service.publish(ctx, topics.PAYMENT_REQUESTS, row.reference, refund)
        return 202, {"reference": row.reference, "refund_id": refund_id,
                     "amount": str(shown.major), "amount_minor": shown.amount,
                     "currency": shown.currency, "status": "requested"}

    return await run_once(ctx, request, user, work, body_optional=True)


@router.post("/{reference}/refund/", status_code=202, summary="Refund a payment (whole or part)",
             openapi_extra=request_body_doc(RefundBody, required=False))
async def refund_payment(reference: str, request: Request, user: User = Depends(current_user),
                         ctx: IngressContext = Depends(get_context)) -> JSONResponse:
    return await request_refund(ctx, request, user, reference)


#: Mobile-money providers whose gateway can start a new attempt on a payment (Airtel: each
#: attempt has a transaction id of its own, ``<reference>-A<n>``).
RETRYABLE_PROVIDERS = frozenset({"mpesa", "airtel"})


def retry_refusal(row: Any, max_attempts: int) -> str | None:
    """Why the payment in ``row`` cannot take another attempt, or None. The state machine
    checks the same on the payment itself; this answers 409 at once where the read
    model already knows."""
    if row.method != PaymentMethod.MOBILE_MONEY.value:
        return (f"payment {row.reference} is a card payment; cards retry by confirming again "
                "with another payment method")
    if row.provider not in RETRYABLE_PROVIDERS:
        return f"payment {row.reference}: {row.provider} payments cannot be retried"
    if PaymentStatus(row.status) not in OPEN:
        return f"payment {row.reference} is {row.status}; only an open payment can be retried"
    snapshot = row.snapshot or {}
    if snapshot.get("cancel_request"):
        return f"payment {row.reference}: a cancel was asked for; it cannot be retried"
    attempts = snapshot.get("attempts") or ()
    if len(attempts) >= max_attempts:
        return f"payment {row.reference} has no attempts left ({max_attempts} allowed)"
    return None


@router.post("/{reference}/retry/", status_code=202,
             summary="Mobile money: a new STK push / Airtel prompt on the same payment",
             responses={409: {"description": "Not retryable (settled, no attempts left, or a card "
                                             "payment)"},
                        428: {"description": "Idempotency-Key missing"}})
async def retry_payment(reference: str, request: Request, user: User = Depends(current_user),
                        ctx: IngressContext = Depends(get_context)) -> JSONResponse:
    """A new attempt (new provider reference, new deadline) while the payment is open and
    attempts are left (``TRAILPAY_MAX_ATTEMPTS``). The Idempotency-Key is required: a
    repeated request must not put a second prompt on the customer's phone."""
    if not (request.headers.get(idempotency.HEADER) or "").strip():
        raise ApiError(428, "idempotency_key_required",
                       f"a retry needs an {idempotency.HEADER} header (it starts a new prompt)")

    async def work(body: bytes, seed: str | None) -> tuple[int, dict[str, Any]]:
        row = await owned(ctx, user, reference)
        refusal = retry_refusal(row, ctx.settings.max_attempts)
        if refusal is not None:
            raise ApiError(409, "not_retryable", refusal)
        retry = RetryPayment(event_id=stable_id("retry", row.reference, seed or secrets.token_hex(8)),
                             occurred_at=utcnow(), reference=row.reference, user_id=user.id)
        attempts = (row.snapshot or {}).get("attempts") or ()
        async with audit.audited(ctx, request, user, "payment.retry", row.reference,
                                 request_id=retry.event_id,
                                 details={"owner": row.user_id, "attempt": len(attempts) + 1}):
            await service.publish(ctx, topics.PAYMENT_REQUESTS, row.reference, retry)
        return 202, {"reference": row.reference, "status": row.status, "requested": "retry",
                     "attempt": len(attempts) + 1, "request_id": retry.event_id}

    return await run_once(ctx, request, user, work, body_optional=True)
