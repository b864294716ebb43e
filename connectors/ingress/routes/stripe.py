"""``/api/stripe/``: the seed's PaymentIntent API over the pipeline.

``<id>`` is our payment reference or, once the dispatcher created it, the PaymentIntent id
(``pi_...``). Creating answers at once with the reference; the client secret appears when
the dispatcher has created the PaymentIntent (``client-secret/?wait=5`` waits for it).

Saved cards: a create with ``save_payment_method`` (or Stripe's ``setup_future_usage``)
asks Stripe to attach the card to the user's customer once the payment succeeds; a
SetupIntent (``setup-intents/create/``) saves one without paying. ``payment-methods/``
lists what the customer has at Stripe.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from connectors.ingress import idempotency, readmodel, service
from connectors.ingress.auth import User, current_user
from connectors.ingress.bodies import parse_model, read_body, request_body_doc
from connectors.ingress.context import IngressContext, get_context
from connectors.ingress.errors import ApiError
from connectors.ingress.models import (
    CancelBody,
    ConfirmBody,
    RefundBody,
    SetupIntentBody,
    StripeIntentBody,
    resolve_payment,
)
from connectors.ingress.pagination import OWN_PAGE, Page
from connectors.ingress.routes.payments import (
    accepted_payment,
    new_payment,
    owned,
    request_cancel,
    request_refund,
    require_status,
    run_once,
    stored_customer,
)
from trailpay import topics
from trailpay.domain.errors import ProviderRejected, TrailPayError
from trailpay.domain.events import ConfirmPayment, stable_id, utcnow
from trailpay.domain.status import OPEN, PaymentStatus

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/stripe", tags=["stripe"])
STRIPE = "stripe"
STRIPE_LIST_TIMEOUT_S = 5.0


@router.post("/payment-intents/create/", status_code=201, summary="Create a PaymentIntent",
             openapi_extra=request_body_doc(StripeIntentBody))
async def create_intent(request: Request, user: User = Depends(current_user),
                        ctx: IngressContext = Depends(get_context)) -> JSONResponse:
    async def work(body: bytes, seed: str | None) -> tuple[int, dict[str, Any]]:
        data = parse_model(StripeIntentBody, body)
        resolved = resolve_payment(ctx.settings, amount=data.amount, currency=data.currency,
                                   method="card", provider=STRIPE, phone_number=None,
                                   country=None)
        create = new_payment(seed, user, resolved, data, payment_method_id=data.payment_method,
                             customer_id=await stored_customer(ctx, user, resolved.provider))
        if data.future_usage:  # Stripe keeps it on the PaymentIntent: not on the payment
            create = create.model_copy(update={"setup_future_usage": data.future_usage})
        reference = create.reference
        await service.submit_create(ctx, create)
        out = accepted_payment(create, location=f"/api/stripe/payment-intents/{reference}/")
        out.update(id=reference, payment_intent_id=None, client_secret=None,
                   setup_future_usage=create.setup_future_usage,
                   publishable_key=ctx.settings.stripe_publishable_key,
                   client_secret_url=f"/api/stripe/payment-intents/{reference}/client-secret/")
        return 201, out

    answer = await run_once(ctx, request, user, work)
    return await with_client_secret(ctx, user, answer)


async def with_client_secret(ctx: IngressContext, user: User, answer: JSONResponse) -> JSONResponse:
    """The create answer with the PaymentIntent's ``id`` and ``client_secret`` once the
    dispatcher made it, waited for up to ``TRAILPAY_STRIPE_CREATE_WAIT_S`` (the seed's front
    end reads them from this answer); as it was (``client_secret`` null, the
    ``client_secret_url`` to wait on) when Stripe is slower. Added after the idempotent
    part, so the secret is asked of Stripe each time and never stored with the answer."""
    wait_s = ctx.settings.stripe_create_wait_s
    if answer.status_code != 201 or wait_s <= 0:
        return answer
    payload = json.loads(bytes(answer.body))
    found: tuple[Any, str] | None = None
    try:
        async with asyncio.timeout(wait_s):
            found = await client_secret_of(ctx, user, str(payload["reference"]), until=None)
    except (TimeoutError, ApiError) as exc:
        log.info("payment %s: no client secret within %.1f s (%s); answering the URL",
                 payload["reference"], wait_s, type(exc).__name__)
    if found is not None:
        row, secret = found
        payload.update(id=row.provider_reference, payment_intent_id=row.provider_reference,
                       client_secret=secret, stripe_status=row.provider_status)
    headers = {k: v for k, v in answer.headers.items() if k.lower() == "idempotent-replayed"}
    return JSONResponse(payload, status_code=answer.status_code, headers=headers)


@router.get("/payment-intents/", summary="List the caller's PaymentIntents")
async def list_intents(user: User = Depends(current_user),
                       ctx: IngressContext = Depends(get_context),
                       status: PaymentStatus | None = Query(default=None),
                       page: Page = Depends(OWN_PAGE)) -> dict[str, Any]:
    total, rows = await readmodel.list_payments(ctx.db(), user_id=user.id, provider=STRIPE,
                                                status=status, limit=page.limit, offset=page.offset)
    return {"count": total, "results": [readmodel.intent_json(r) for r in rows]}


@router.get("/payment-methods/", summary="The caller's saved payment methods")
async def list_payment_methods(user: User = Depends(current_user),
                               ctx: IngressContext = Depends(get_context)) -> dict[str, Any]:
    """Live from Stripe for the caller's customer (cached in PostgreSQL); the cache when
    Stripe does not answer in time, and an empty list before the first card payment."""
    customer = await readmodel.customer_of(ctx.db(), user.id)
    source = "cache"
    if customer is not None:
        try:
            async with asyncio.timeout(STRIPE_LIST_TIMEOUT_S):
                listed = await ctx.stripe().list_payment_methods(customer)
            await readmodel.save_payment_methods(ctx.db(), user.id, customer,
                                                 [card_fields(pm) for pm in listed])
            source = "stripe"
        except (TimeoutError, TrailPayError) as exc:
            log.warning("listing payment methods from Stripe failed (%s); answering from cache", exc)
    items = await readmodel.payment_methods_of(ctx.db(), user.id)
    return {"count": len(items), "results": items, "customer_id": customer, "source": source}


def card_fields(pm: Any) -> dict[str, Any]:
    card = getattr(pm, "card", None)

    def get(name: str) -> Any:
        return getattr(card, name, None) if card is not None else None

    return {"id": str(pm.id), "type": getattr(pm, "type", None) or "card", "brand": get("brand"),
            "last4": get("last4"), "exp_month": get("exp_month"), "exp_year": get("exp_year")}


@router.post("/setup-intents/create/", status_code=201, summary="Create a SetupIntent (save a card)",
             openapi_extra=request_body_doc(SetupIntentBody, required=False))
async def create_setup_intent(request: Request, user: User = Depends(current_user),
                              ctx: IngressContext = Depends(get_context)) -> dict[str, Any]:
    """A SetupIntent for the caller's Stripe customer (found or made, then kept): the front
    end confirms it with the client secret and Stripe attaches the card to the customer.
    An ``Idempotency-Key`` becomes Stripe's, so a retry answers the same SetupIntent; the
    client secret is asked of Stripe each time, never stored."""
    body = await read_body(request, ctx.settings.max_body_bytes, allow_empty=True,
                           max_depth=ctx.settings.max_json_depth)
    data = parse_model(SetupIntentBody, body, empty_ok=True)
    seed = idempotency.request_seed(request, user, body)
    try:
        async with asyncio.timeout(STRIPE_LIST_TIMEOUT_S * 2):
            customer = await readmodel.customer_of(ctx.db(), user.id)
            if customer is None:
                customer = await ctx.stripe().get_or_create_customer(user.id, user.email)
                await readmodel.remember_customer(ctx.db(), user.id, customer, user.email)
            seti = await ctx.stripe().create_setup_intent(
                customer=customer, user_id=user.id, usage=data.usage,
                idempotency_key=f"trailpay-setup-{seed}" if seed else None)
    except ProviderRejected as exc:
        raise ApiError(502, "provider_refused", f"Stripe refused: {exc.provider_message}") from exc
    except (TimeoutError, TrailPayError) as exc:
        raise ApiError(503, "provider_unavailable", "Stripe did not answer; retry shortly",
                       headers={"Retry-After": "2"}) from exc
    return {"id": str(seti.id), "client_secret": seti.client_secret, "status": seti.status,
            "usage": seti.usage, "customer_id": customer,
            "publishable_key": ctx.settings.stripe_publishable_key}


@router.get("/payment-intents/{intent_id}/", summary="PaymentIntent details")
async def intent_detail(intent_id: str, user: User = Depends(current_user),
                        ctx: IngressContext = Depends(get_context)) -> dict[str, Any]:
    row = await owned(ctx, user, intent_id, STRIPE)
    out = readmodel.intent_json(row)
    out["refunds"] = await readmodel.refunds_of(ctx.db(), row.reference)
    return out


@router.get("/payment-intents/{intent_id}/client-secret/", summary="The PaymentIntent's client secret")
async def client_secret(intent_id: str, user: User = Depends(current_user),
                        ctx: IngressContext = Depends(get_context),
                        wait: float = Query(default=0, ge=0, le=10,
                                            description="Seconds to wait for it to exist")) -> dict[str, Any]:
    row, secret = await client_secret_of(ctx, user, intent_id, until=time.monotonic() + wait)
    return {"id": row.provider_reference or row.reference, "reference": row.reference,
            "client_secret": secret, "publishable_key": ctx.settings.stripe_publishable_key}


async def client_secret_of(ctx: IngressContext, user: User, intent_id: str, *,
                           until: float | None) -> tuple[Any, str]:
    """The owner's payment row and its client secret, once the PaymentIntent exists:
    polls the read model until ``until`` (monotonic; None = until cancelled), then 409
    ``not_ready``; 409 ``no_client_secret`` once the payment settled without one."""
    while True:
        row = await owned(ctx, user, intent_id, STRIPE)
        # Asked of Stripe for the owner, never kept in a snapshot (issue 16); a row written
        # before that still has it in its own column, which only this route reads.
        secret = row.client_secret or await _client_secret_from_stripe(ctx, row.provider_reference)
        if secret:
            return row, secret
        require_status(row, OPEN, "no_client_secret")
        if until is not None and time.monotonic() >= until:
            raise ApiError(409, "not_ready",
                           "the PaymentIntent is still being created; retry shortly",
                           headers={"Retry-After": "1"})
        await asyncio.sleep(0.2)


async def _client_secret_from_stripe(ctx: IngressContext, intent_id: str | None) -> str | None:
    if not intent_id or not intent_id.startswith("pi_"):
        return None
    try:
        async with asyncio.timeout(STRIPE_LIST_TIMEOUT_S):
            intent = await ctx.stripe().retrieve_intent(intent_id)
    except (TimeoutError, TrailPayError) as exc:
        raise ApiError(503, "provider_unavailable", "Stripe did not answer; retry shortly",
                       headers={"Retry-After": "2"}) from exc
    secret = getattr(intent, "client_secret", None)
    return str(secret) if secret else None


@router.post("/payment-intents/{intent_id}/confirm/", status_code=202,
             summary="Confirm a PaymentIntent", openapi_extra=request_body_doc(ConfirmBody, required=False))
async def confirm_intent(intent_id: str, request: Request, user: User = Depends(current_user),
                         ctx: IngressContext = Depends(get_context)) -> JSONResponse:
    async def work(body: bytes, seed: str | None) -> tuple[int, dict[str, Any]]:
        data = parse_model(ConfirmBody, body, empty_ok=True)
        row = await owned(ctx, user, intent_id, STRIPE)
        require_status(row, OPEN, "not_confirmable")
        confirm = ConfirmPayment(
            event_id=stable_id("confirm", row.reference, seed or secrets.token_hex(8)),
            occurred_at=utcnow(), reference=row.reference,
            payment_method_id=data.payment_method, return_url=data.return_url, user_id=user.id)
        await service.publish(ctx, topics.PAYMENT_REQUESTS, row.reference, confirm)
        return 202, {"id": row.provider_reference or row.reference, "reference": row.reference,
                     "status": row.status, "requested": "confirm", "request_id": confirm.event_id}

    return await run_once(ctx, request, user, work, body_optional=True)


@router.post("/payment-intents/{intent_id}/cancel/", status_code=202,
             summary="Cancel a PaymentIntent", openapi_extra=request_body_doc(CancelBody, required=False))
async def cancel_intent(intent_id: str, request: Request, user: User = Depends(current_user),
                        ctx: IngressContext = Depends(get_context)) -> JSONResponse:
    return await request_cancel(ctx, request, user, intent_id, STRIPE)


@router.post("/payment-intents/{intent_id}/refunds/", status_code=202, summary="Refund a PaymentIntent",
             openapi_extra=request_body_doc(RefundBody, required=False))
async def refund_intent(intent_id: str, request: Request, user: User = Depends(current_user),
                        ctx: IngressContext = Depends(get_context)) -> JSONResponse:
    return await request_refund(ctx, request, user, intent_id, STRIPE)
