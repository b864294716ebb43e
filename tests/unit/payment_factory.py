"""Builders for payment inputs, shared by the state-machine unit and property tests."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from tests.support.records import create_payment
from tests.support.records import status_event as provider_status_event
from trailpay.domain.events import (
    CancelPayment,
    CreatePayment,
    Money,
    Provider,
    ProviderEvent,
    ProviderEventKind,
    RefundPayment,
    RefundState,
)
from trailpay.domain.payment import Payment
from trailpay.domain.snapshot_update import revise
from trailpay.domain.state_machine import apply
from trailpay.domain.status import PaymentStatus

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
#: The reference the builders use unless told otherwise.
REF = "TPTEST0000000000000001"
_ids = itertools.count()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def create(reference: str = REF, *, provider: Provider = Provider.MPESA,
           amount: int = 1000, currency: str = "KES", seconds: float = 0, event_id: str | None = None,
           confirm: bool = False) -> CreatePayment:
    return create_payment(reference, at(seconds), provider=provider, amount=amount, currency=currency,
                          event_id=event_id, email="walker@example.com",
                          description="Kilimanjaro day hike", booking_id="bk-1", confirm=confirm)


def status_event(reference: str, status: PaymentStatus | None, *, seconds: float = 1,
                 event_id: str | None = None, provider: Provider = Provider.MPESA,
                 source: str = "webhook", **extra: object) -> ProviderEvent:
    """A provider status report. A success states the amount asked for by :func:`create`
    (KES 10.00) unless ``amount`` is given, as a genuine M-Pesa callback does."""
    if status is PaymentStatus.SUCCEEDED:
        extra.setdefault("amount", Money(amount=1000, currency="KES"))
    return provider_status_event(reference, status, at(seconds), event_id=event_id or f"ev-{next(_ids)}",
                                 provider=provider, source=source, **extra)


def refund_event(reference: str, refund_id: str, *, succeeded: bool = True, seconds: float = 20,
                 event_id: str | None = None, amount: int | None = None,
                 provider: Provider = Provider.MPESA) -> ProviderEvent:
    return ProviderEvent(
        event_id=event_id or f"refund-{refund_id}-{succeeded}",
        occurred_at=at(seconds),
        kind=ProviderEventKind.REFUND,
        reference=reference,
        provider=provider,
        refund_id=refund_id,
        refund_succeeded=succeeded,
        amount=None if amount is None else Money(amount=amount, currency="KES"),
        source="dispatcher",
    )


def refund(reference: str, refund_id: str, amount: int | None, *, seconds: float = 10,
           currency: str = "KES") -> RefundPayment:
    return RefundPayment(
        event_id=f"refund-req-{refund_id}",
        occurred_at=at(seconds),
        reference=reference,
        refund_id=refund_id,
        amount=None if amount is None else Money(amount=amount, currency=currency),
    )


def cancel(reference: str, seconds: float = 5) -> CancelPayment:
    return CancelPayment(event_id=f"cancel-{reference}-{seconds}", occurred_at=at(seconds),
                         reference=reference)


def created(reference: str = REF, **kwargs: object) -> Payment:
    outcome = apply(None, create(reference, **kwargs))  # type: ignore[arg-type]
    assert outcome.payment is not None
    return outcome.payment


def in_status(status: PaymentStatus, reference: str = REF,
              provider: Provider = Provider.MPESA) -> Payment:
    """A payment forced into ``status`` (with a refundable capture where that matters)."""
    payment = created(reference, provider=provider)
    snap = revise(payment.snapshot, {"status": status, "version": 5})
    refunded = {PaymentStatus.PARTIALLY_REFUNDED: 100, PaymentStatus.REFUNDED: snap.amount.amount}
    if status in refunded:
        done = RefundState(refund_id="rf-earlier", amount=Money(amount=refunded[status], currency="KES"),
                           reason="requested_by_customer", status="succeeded",
                           requested_at=T0, updated_at=T0)
        snap = revise(snap, {"refunded_amount": refunded[status], "refunds": (done,)})
    return Payment(snapshot=snap, applied=payment.applied)
