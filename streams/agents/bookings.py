"""``bridge_bookings``: bookings.events.v1 -> payment requests on payments.requests.v1.

* created / confirmed -> :class:`CreatePayment` for the revision's deterministic reference
  (``TPB-`` + stable id of booking and revision): both kinds make the *same* request, so a
  booking confirmed after it was created, or any event delivered twice, makes one payment;
* cancelled -> :class:`CancelPayment` of that revision with ``refund_if_paid`` (the bridge
  cannot know whether it was paid; the state machine cancels or refunds);
* amended (revision n) -> cancel (or refund) revision n-1's payment, create revision n's.
  Revisions are expected to go up by one; the platform bumps ``revision`` on every amendment.

The provider comes from the event, else from the routing table (currency, country, method:
configuration, see :mod:`trailpay.routing`). A booking that cannot be paid as
described (no provider takes it, a bad phone number) is a dead letter with the reason.
Request ids are derived from booking, revision and kind, so a replay re-sends identical
records; a table of handled request ids keeps a redelivery from sending them again.
"""

from __future__ import annotations

import logging
from typing import Any

from streams import offsettrace
from streams.agents.common import Incoming, Meter, Outbox
from streams.agents.retention import ExpiringTable, register_purge
from streams.app import StreamContext
from trailpay import codec, routing, topics
from trailpay.domain import references
from trailpay.domain.errors import PermanentError
from trailpay.domain.events import (
    BookingEvent,
    BookingEventKind,
    CancelPayment,
    CreatePayment,
    stable_id,
)
from trailpay.settings import Settings

log = logging.getLogger(__name__)

STAGE = "bookings"
DONE = b"1"


class UnpayableBooking(PermanentError):
    """The booking cannot become a payment as described (provider, currency, phone)."""


def create_request(event: BookingEvent, settings: Settings, revision: int) -> CreatePayment:
    currency = event.amount.currency
    method = routing.choose_method(currency, event.phone_number, event.preferred_method)
    provider = event.provider or routing.route(settings, currency, event.country, method)
    if provider is None:
        raise UnpayableBooking(f"no provider takes {method.value} payments in {currency} "
                               f"from {event.country} (see TRAILPAY_PROVIDER_ROUTES)")
    info = routing.providers(settings)[provider]
    if method not in info.methods:
        method = next(iter(info.methods))
    phone: str | None = None
    if info.needs_phone:
        if not event.phone_number:
            raise UnpayableBooking(f"{provider.value} needs a phone number and the booking has none")
        try:
            phone = routing.normalize_phone(event.phone_number, event.country)
        except ValueError as exc:
            raise UnpayableBooking(f"phone number {exc}") from exc
    if currency not in info.currencies:
        raise UnpayableBooking(f"{provider.value} does not take {currency}")
    if info.whole_units_only and routing.whole_major_units(event.amount.amount, currency) is None:
        raise UnpayableBooking(f"{provider.value} takes whole {currency} only")
    if event.amount.amount <= 0:
        raise UnpayableBooking("the booking amount is not positive")
    reference = references.booking_reference(event.booking_id, revision)
    return CreatePayment(
        event_id=stable_id("booking-create", event.booking_id, revision),
        occurred_at=event.occurred_at, reference=reference, user_id=event.user_id,
        amount=event.amount, provider=provider, method=method, phone_number=phone,
        email=event.email, description=event.description or f"Booking {event.booking_id}",
        booking_id=event.booking_id, country=event.country, source="booking")


def cancel_request(event: BookingEvent, revision: int, reason: str) -> CancelPayment:
    return CancelPayment(
        event_id=stable_id("booking-cancel", event.booking_id, revision),
        occurred_at=event.occurred_at, reference=references.booking_reference(event.booking_id, revision),
        user_id=event.user_id, reason=reason, refund_if_paid=True)


Request = CreatePayment | CancelPayment


def requests_for(event: BookingEvent, settings: Settings) -> list[tuple[str, Request]]:
    """The payment requests (keyed by reference) one booking event stands for. Pure."""
    kind, rev = event.kind, event.revision
    if kind in (BookingEventKind.CREATED, BookingEventKind.CONFIRMED):
        create = create_request(event, settings, rev)
        return [(create.reference, create)]
    if kind is BookingEventKind.CANCELLED:
        cancel = cancel_request(event, rev, "booking_cancelled")
        return [(cancel.reference, cancel)]
    out: list[tuple[str, Request]] = []
    if rev > 1:
        cancel = cancel_request(event, rev - 1, "booking_amended")
        out.append((cancel.reference, cancel))
    create = create_request(event, settings, rev)
    out.append((create.reference, create))
    return out


class Bridge:
    def __init__(self, ctx: StreamContext, done: ExpiringTable) -> None:
        self.ctx = ctx
        self.done = done
        self.meter = Meter("bookings")

    async def process(self, events: list[Any]) -> None:
        out = Outbox()
        handled: list[tuple[int, bytes]] = []
        for event in events:
            incoming = Incoming.of(event)
            try:
                booking = codec.decode(topics.BOOKING_EVENTS, incoming.value)
                requests = requests_for(booking, self.ctx.settings)
            except Exception as exc:  # noqa: BLE001 - routed by type: permanent or a bug
                out.dead_letter(incoming, exc, STAGE)
                continue
            for key, request in requests:
                rid = request.event_id.encode()
                if rid in self.done or any(rid == h for _, h in handled):
                    self.meter.add("duplicate")
                    continue
                out.add(topics.PAYMENT_REQUESTS, key, request)
                handled.append((incoming.partition, rid))
                self.meter.add(request.kind)
        sent = len(out.items)
        await out.flush(self.ctx.app.producer)
        offsettrace.batch("bridge", events, f"sent={sent} dup={self.meter.counts.get('duplicate', 0)}")
        for partition, rid in handled:
            self.done.put(partition, rid, DONE)
        self.meter.maybe_log()


def register(ctx: StreamContext) -> Bridge:
    """The ``bridge_bookings`` agent, its table of handled requests and their purge timer."""
    app = ctx.app
    table = app.Table("bookings-handled", key_type=bytes, value_type=bytes,
                      partitions=ctx.settings.partitions, help="payment request id -> sent")
    done = ExpiringTable(table, ctx.settings.idempotency_ttl_s, "bookings-handled")
    register_purge(ctx, done)
    bridge = Bridge(ctx, done)
    source = app.topic(topics.BOOKING_EVENTS, key_type=bytes, value_type=bytes)

    @app.agent(source, name="bridge_bookings")
    async def bridge_bookings(stream: Any) -> None:
        async for events in stream.take_events(500, within=0.05):
            await bridge.process(events)

    return bridge
