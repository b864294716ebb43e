"""``/api/admin/webhooks/endpoints/``: the booking platform's webhook endpoints (admin role).

Create (the answer shows the signing secret, the only time it is shown), list, disable,
and rotate the secret: the new secret signs from now on, and the old one signs alongside it
(two ``v1`` values in ``TrailPay-Signature``) for a grace period, so the platform can switch
without dropping a delivery. An event-type filter limits an endpoint to some public event
types (docs/events.md); none means every type. Deliveries: ``trailpay webhooks``.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from connectors.ingress import audit
from connectors.ingress.auth import User, admin_user
from connectors.ingress.bodies import parse_model, read_body, request_body_doc
from connectors.ingress.context import IngressContext, get_context
from connectors.ingress.errors import invalid, not_found
from connectors.ingress.fields import ReturnUrl
from connectors.ingress.models import Body
from sinks.postgres import webhook_store as store
from trailpay.domain.public_events import PublicEventType

router = APIRouter(prefix="/api/admin/webhooks", tags=["admin"])

EVENT_TYPES = [t.value for t in PublicEventType]
#: One event type, documented as the enum of known types (so a schema-valid request names
#: only known ones) and checked by :func:`_types`, which says which types exist.
EventTypeName = Annotated[str, Field(json_schema_extra={"enum": EVENT_TYPES})]
MAX_ID_LEN = 40


class EndpointBody(Body):
    url: ReturnUrl
    event_types: list[EventTypeName] | None = Field(
        default=None, max_length=len(EVENT_TYPES),
        description="Public event types to send (docs/events.md); none: all")
    description: str = Field(default="", max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")


class RotateBody(Body):
    grace_s: int | None = Field(default=None, ge=0, le=30 * 24 * 3600,
                                description="How long the old secret still signs "
                                "(default TRAILPAY_OUTBOUND_WEBHOOK_ROTATION_GRACE_S)")


def new_secret() -> str:
    return "whsec_" + secrets.token_hex(24)


def _types(data: EndpointBody) -> list[str] | None:
    if not data.event_types:
        return None
    unknown = [t for t in data.event_types if t not in EVENT_TYPES]
    if unknown:
        raise invalid({"event_types": f"unknown event type {unknown[0]!r}; known: "
                                      + ", ".join(EVENT_TYPES)})
    return list(dict.fromkeys(data.event_types))


async def _endpoint_or_404(ctx: IngressContext, endpoint_id: str) -> store.Endpoint:
    found = None if len(endpoint_id) > MAX_ID_LEN else await store.get_endpoint(ctx.db(), endpoint_id)
    if found is None:
        raise not_found("webhook endpoint")
    return found


@router.post("/endpoints/", status_code=201, summary="Add a webhook endpoint (admin)",
             openapi_extra=request_body_doc(EndpointBody))
async def create_endpoint(request: Request, user: User = Depends(admin_user),
                          ctx: IngressContext = Depends(get_context)) -> JSONResponse:
    body = await read_body(request, ctx.settings.max_body_bytes, max_depth=ctx.settings.max_json_depth)

    async def work() -> tuple[int, dict[str, Any]]:
        data = parse_model(EndpointBody, body)
        secret = new_secret()
        endpoint = await store.create_endpoint(
            ctx.db(), endpoint_id="we_" + secrets.token_hex(12), url=data.url, secret=secret,
            event_types=_types(data), description=data.description, created_by=user.id)
        # The URL stays out of the audit row: a platform may put a token in its query.
        await audit.record(ctx, request, user, "webhook_endpoint.create", endpoint.id,
                           details={"event_types": endpoint.public().get("event_types")})
        return 201, {**endpoint.public(), "secret": secret}

    status, payload = await work()  # no Idempotency-Key replay: the answer holds a secret
    return JSONResponse(payload, status_code=status)


@router.get("/endpoints/", summary="List webhook endpoints (admin)")
async def list_endpoints(_admin: User = Depends(admin_user),
                         ctx: IngressContext = Depends(get_context)) -> dict[str, Any]:
    endpoints = await store.list_endpoints(ctx.db())
    return {"count": len(endpoints), "results": [e.public() for e in endpoints]}


@router.post("/endpoints/{endpoint_id}/disable/", summary="Disable a webhook endpoint (admin)")
async def disable_endpoint(endpoint_id: str, request: Request, user: User = Depends(admin_user),
                           ctx: IngressContext = Depends(get_context)) -> dict[str, Any]:
    await _endpoint_or_404(ctx, endpoint_id)
    endpoint = await store.disable_endpoint(ctx.db(), endpoint_id)
    if endpoint is None:
        raise not_found("webhook endpoint")
    await audit.record(ctx, request, user, "webhook_endpoint.disable", endpoint_id)
    return endpoint.public()


@router.post("/endpoints/{endpoint_id}/rotate/", summary="Rotate a webhook endpoint's secret (admin)",
             openapi_extra=request_body_doc(RotateBody, required=False))
async def rotate_secret(endpoint_id: str, request: Request, user: User = Depends(admin_user),
                        ctx: IngressContext = Depends(get_context)) -> JSONResponse:
    body = await read_body(request, ctx.settings.max_body_bytes, allow_empty=True,
                           max_depth=ctx.settings.max_json_depth)

    async def work() -> tuple[int, dict[str, Any]]:
        data = parse_model(RotateBody, body, empty_ok=True)
        await _endpoint_or_404(ctx, endpoint_id)
        grace = ctx.settings.outbound_webhook_rotation_grace_s if data.grace_s is None else data.grace_s
        secret = new_secret()
        endpoint = await store.rotate_secret(ctx.db(), endpoint_id, secret, grace)
        if endpoint is None:  # the settings endpoint: its secret is TRAILPAY_OUTBOUND_WEBHOOK_SECRET
            raise invalid({"endpoint_id": "this endpoint's secret is set in the settings"})
        await audit.record(ctx, request, user, "webhook_endpoint.rotate", endpoint_id,
                           details={"grace_s": grace})
        return 200, {**endpoint.public(), "secret": secret}

    status, payload = await work()  # no Idempotency-Key replay: the answer holds a secret
    return JSONResponse(payload, status_code=status)
