"""Regression (issue 16): the admin API returned every user's Stripe client secret (in
``snapshot``), and the worker put it in every state snapshot."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from connectors.ingress.routes.admin import admin_payment
from tests.unit.payment_factory import REF, created, status_event
from trailpay.domain.events import Provider
from trailpay.domain.state_machine import apply
from trailpay.domain.status import PaymentStatus

SECRET = "pi_3Qa1_secret_Zx81kLm"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _row(snapshot: dict[str, object]) -> SimpleNamespace:
    mapping = {
        "reference": "TPADMIN1", "status": "pending", "amount_minor": 9999, "currency": "USD",
        "provider": "stripe", "method": "card", "country": None, "phone_masked": None,
        "description": "", "booking_id": None, "provider_reference": "pi_3Qa1",
        "provider_status": "requires_payment_method", "provider_code": None, "provider_message": None,
        "refunded_minor": 0, "created_at": NOW, "updated_at": NOW, "deadline_at": None,
        "user_id": "usr_1", "email": "a@example.org", "version": 2, "settled_by": None,
        "customer_id": "cus_1", "snapshot": snapshot, "client_secret": SECRET,
    }
    return SimpleNamespace(_mapping=mapping)


def test_admin_payment_never_carries_the_client_secret():
    out = admin_payment(_row({"reference": "TPADMIN1", "client_secret": SECRET, "status": "pending"}))
    assert SECRET not in repr(out)
    assert out["snapshot"] == {"reference": "TPADMIN1", "status": "pending"}
    assert out["customer_id"] == "cus_1"


def test_a_provider_event_with_a_client_secret_leaves_the_snapshot_without_it():
    payment = apply(created(REF, provider=Provider.STRIPE),
                    status_event(REF, PaymentStatus.PENDING, provider=Provider.STRIPE, source="dispatcher",
                                 provider_reference="pi_3Qa1", client_secret=SECRET)).payment
    assert payment is not None
    assert payment.snapshot.provider_reference == "pi_3Qa1"
    assert payment.snapshot.client_secret is None
    assert SECRET not in payment.snapshot.model_dump_json()
