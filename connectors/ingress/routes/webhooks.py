"""Provider webhooks and callbacks: durable on Kafka before they are answered.

The path is kept short (no database, no auth lookup): check size and content type, read the
exact bytes, tell the reference if the provider's handler can, verify (Stripe signature;
Daraja/Airtel callback token), produce a :class:`RawWebhook` on ``webhooks.raw.v1`` and wait
for the broker's ack. Only then 2xx. Kafka not taking it in time -> 503 so the provider
retries. A failed verification is produced too (``verified=False``, for audit; the dedup
agent never applies it) and answered 400 (Stripe) or 403 (a wrong callback token). The
callback token itself is removed from the recorded query once checked, and the phone numbers
of a mobile-money callback's body are masked. Daraja's results of our B2C refunds (ResultURL
and QueueTimeOutURL) are taken the same way, as M-Pesa callbacks.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from connectors.ingress.bodies import read_body
from connectors.ingress.context import IngressContext
from connectors.ingress.errors import ApiError
from connectors.ingress.publisher import KafkaUnavailable
from connectors.providers.base import WebhookRejected
from trailpay import topics
from trailpay.domain.events import Provider, RawWebhook, utcnow
from trailpay.logs import mask_phones_in_body

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])

#: Headers never recorded (credentials of whoever calls us).
_DROP_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
#: Query parameters checked at the ingress and never recorded (the callback token).
CREDENTIAL_PARAMS = frozenset({"token"})
#: Providers whose callbacks are kept with phone numbers masked (M-Pesa's CallbackMetadata
#: has the payer's number; nothing downstream needs it). Stripe's signed bytes stay exact.
MASKED_BODIES = frozenset({Provider.MPESA, Provider.AIRTEL})

_ACK: dict[Provider, dict[str, Any]] = {
    Provider.STRIPE: {"received": True},
    Provider.MPESA: {"ResultCode": 0, "ResultDesc": "Accepted"},
    Provider.AIRTEL: {"status": "received"},
}

_WEBHOOK_DOC: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
    "responses": {"503": {"description": "Not yet durable; the provider should retry"}},
}


async def receive_webhook(request: Request, provider: Provider) -> JSONResponse:
    ctx: IngressContext = request.app.state.ctx
    received_at = utcnow()
    try:
        body = await read_body(request, ctx.settings.max_body_bytes,
                               max_depth=ctx.settings.max_json_depth)
    except ApiError:
        ctx.metrics.webhooks.labels(provider.value, "unchecked", "refused").inc()
        raise
    headers = {k: v for k, v in request.headers.items() if k not in _DROP_HEADERS}
    query = dict(request.query_params)
    handler = ctx.handlers[provider]
    try:
        reference = handler.reference_of(body, query)
    except Exception:  # a handler bug must not lose the webhook
        log.exception("%s: reference_of failed; recording without a reference", provider.value)
        reference = None
    if reference is not None and len(reference) > 64:
        reference = None
    raw = RawWebhook(
        event_id=uuid.uuid4().hex, occurred_at=received_at, provider=provider, body=body,
        headers=headers, query=query, received_at=received_at, reference=reference,
    )
    error: str | None = None
    try:
        handler.verify(raw)
    except WebhookRejected as exc:
        error = str(exc) or type(exc).__name__
    # The callback token has done its work: Kafka gets only the verdict, never the secret
    # (a right token would let anyone reading the topic forge callbacks; a wrong one may be a
    # near miss of the right one).
    kept = {k: v for k, v in query.items() if k not in CREDENTIAL_PARAMS}
    update: dict[str, Any] = {"verified": error is None, "verification_error": error, "query": kept}
    if provider in MASKED_BODIES:  # checked (Airtel's HMAC is over the exact bytes): now mask
        update["body"] = mask_phones_in_body(body)
    raw = raw.model_copy(update=update)
    verification = "verified" if error is None else "rejected"
    try:
        await ctx.publisher.publish(topics.WEBHOOKS_RAW, reference, raw)
    except KafkaUnavailable as exc:
        ctx.metrics.webhooks.labels(provider.value, verification, "unavailable").inc()
        log.warning("%s webhook not durable (%s); answering 503", provider.value, exc)
        return JSONResponse({"error": "unavailable", "detail": "not recorded; retry"},
                            status_code=503, headers={"Retry-After": "2"})
    ctx.metrics.published.labels(topics.WEBHOOKS_RAW).inc()
    if error is not None:
        ctx.metrics.webhooks.labels(provider.value, verification, "rejected").inc()
        log.warning("%s webhook failed verification: %s (recorded for audit)", provider.value, error)
        status = 400 if provider is Provider.STRIPE else 403
        return JSONResponse({"error": "verification_failed", "detail": error}, status_code=status)
    ctx.metrics.webhooks.labels(provider.value, verification, "accepted").inc()
    return JSONResponse(_ACK[provider])


@router.post("/api/stripe/webhooks/stripe/", summary="Stripe webhooks (signed)",
             openapi_extra=_WEBHOOK_DOC)
async def stripe_webhook(request: Request) -> JSONResponse:
    return await receive_webhook(request, Provider.STRIPE)


#: Callback path names that are not a provider's code: Daraja's CallBackURL must not
#: contain "mpesa", "m-pesa" or "safaricom" (Safaricom filters such URLs), so the STK
#: callback is ``/api/payments/callback/stk/``; ``.../callback/mpesa/`` stays as an alias.
CALLBACK_ALIASES: dict[str, Provider] = {"stk": Provider.MPESA}
#: Daraja's asynchronous results of our B2C refunds: the ResultURL and the QueueTimeOutURL
#: (:mod:`connectors.providers.mpesa_refunds`); taken like the STK callback.
PAYOUT_CALLBACKS: dict[str, Provider] = {"payout-result": Provider.MPESA,
                                         "payout-timeout": Provider.MPESA}


@router.post("/api/payments/callback/payout-result/",
             summary="M-Pesa B2C refund results (Daraja's ResultURL)", openapi_extra=_WEBHOOK_DOC)
async def payout_result(request: Request) -> JSONResponse:
    return await receive_webhook(request, Provider.MPESA)


@router.post("/api/payments/callback/payout-timeout/",
             summary="M-Pesa B2C refund queue timeouts (Daraja's QueueTimeOutURL)",
             openapi_extra=_WEBHOOK_DOC)
async def payout_timeout(request: Request) -> JSONResponse:
    return await receive_webhook(request, Provider.MPESA)


@router.post("/api/payments/callback/{provider_code}/",
             summary="Provider callbacks (M-Pesa STK as 'stk' or 'mpesa', Airtel)",
             openapi_extra=_WEBHOOK_DOC)
async def provider_callback(provider_code: str, request: Request) -> JSONResponse:
    try:
        provider = CALLBACK_ALIASES.get(provider_code.lower()) or Provider(provider_code.lower())
    except ValueError:
        raise ApiError(404, "not_found", f"no callback endpoint for provider {provider_code!r}") from None
    return await receive_webhook(request, provider)


#: Exact webhook paths -> provider, for the fast path below.
FAST_PATHS: dict[str, Provider] = {
    "/api/stripe/webhooks/stripe/": Provider.STRIPE,
    "/api/payments/callback/stk/": Provider.MPESA,
    "/api/payments/callback/mpesa/": Provider.MPESA,
    "/api/payments/callback/airtel/": Provider.AIRTEL,
    "/api/payments/callback/stripe/": Provider.STRIPE,
    **{f"/api/payments/callback/{name}/": provider for name, provider in PAYOUT_CALLBACKS.items()},
}


PAYOUT_PATHS = frozenset(f"/api/payments/callback/{name}/" for name in PAYOUT_CALLBACKS)


@dataclass(frozen=True)
class RouteLabel:
    path: str


class WebhookFastPath:
    """Serves the webhook paths straight from ASGI, skipping FastAPI's routing, dependency
    resolution and exception layers (about half the per-request CPU of the hot path). The
    routes above stay registered for the OpenAPI document and as the fallback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        provider = FAST_PATHS.get(scope.get("path", "")) if scope["type"] == "http" else None
        if provider is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        template = ("/api/stripe/webhooks/stripe/" if scope["path"].startswith("/api/stripe/")
                    else scope["path"] if scope["path"] in PAYOUT_PATHS
                    else "/api/payments/callback/{provider_code}/")
        scope["route"] = RouteLabel(template)  # what the metrics middleware reads
        request = Request(scope, receive)
        try:
            response = await receive_webhook(request, provider)
        except ApiError as exc:
            response = exc.response()
        await response(scope, receive, send)
