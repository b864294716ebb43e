"""``POST /api/bookings/events/``: booking events for platforms that cannot produce to Kafka.

Admin (service) tokens only. The event goes onto ``bookings.events.v1`` keyed by booking id,
exactly as a Kafka-producing platform would send it; the booking bridge turns it into
payment requests. The answer names the deterministic payment reference of that revision.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from connectors.ingress import idempotency, service
from connectors.ingress.auth import User, admin_user
from connectors.ingress.bodies import parse_model, read_body, request_body_doc
from connectors.ingress.context import IngressContext, get_context
from connectors.ingress.errors import refused
from connectors.ingress.models import BookingEventBody, resolve_money, resolve_payment
from trailpay import routing, topics
from trailpay.domain import references
from trailpay.domain.events import (
    BookingEvent,
    BookingEventKind,
    PaymentMethod,
    Provider,
    stable_id,
    utcnow,
)

router = APIRouter(prefix="/api/bookings", tags=["bookings"])


@router.post("/events/", status_code=202, summary="Publish a booking event (admin/service)",
             openapi_extra=request_body_doc(BookingEventBody))
async def booking_event(request: Request, user: User = Depends(admin_user),
                        ctx: IngressContext = Depends(get_context)) -> JSONResponse:
    body = await read_body(request, ctx.settings.max_body_bytes, max_depth=ctx.settings.max_json_depth)

    async def work() -> tuple[int, dict[str, Any]]:
        data = parse_model(BookingEventBody, body)
        fields: dict[str, str] = {}
        money = resolve_money(data.amount, data.currency, fields)
        if data.phone_number and data.country.upper() in routing.PHONE_RULES:
            try:
                routing.normalize_phone(data.phone_number, data.country)
            except ValueError as exc:
                fields["phone_number"] = str(exc)
        if fields or money is None:
            raise refused(fields or {"amount": "invalid"})
        if data.kind != "cancelled":  # refuse at the edge what the bridge could not pay
            resolve_payment(ctx.settings, amount=data.amount, currency=data.currency,
                            method=data.preferred_method, provider=data.provider,
                            phone_number=data.phone_number, country=data.country)
        booking_id = str(data.booking_id)
        event = BookingEvent(
            event_id=data.event_id or stable_id("booking", booking_id, data.revision, data.kind),
            occurred_at=utcnow(), kind=BookingEventKind(data.kind), booking_id=booking_id,
            user_id=data.user_id, amount=money, country=data.country.upper(),
            preferred_method=PaymentMethod(data.preferred_method) if data.preferred_method else None,
            provider=Provider(data.provider) if data.provider else None,
            phone_number=data.phone_number, email=data.email, description=data.description,
            revision=data.revision)
        await service.publish(ctx, topics.BOOKING_EVENTS, booking_id, event)
        return 202, {"event_id": event.event_id, "booking_id": booking_id, "kind": data.kind,
                     "revision": data.revision,
                     "reference": references.booking_reference(booking_id, data.revision)}

    return await idempotency.run(ctx.db(), request, user, body, work)
