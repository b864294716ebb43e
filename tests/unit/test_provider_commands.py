"""Provider commands: what they take from the payment, and their deterministic ids."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.unit.payment_factory import at, created
from trailpay.domain.commands import FROM_SNAPSHOT, make_command
from trailpay.domain.events import Money, Provider, ProviderCommandKind, stable_id
from trailpay.domain.snapshot_update import revise

REF = "TPTEST0000000000000001"


def test_a_command_takes_these_fields_from_the_payment():
    assert FROM_SNAPSHOT == ("reference", "provider", "amount", "user_id", "phone_number", "email",
                             "description", "booking_id", "provider_reference", "customer_id",
                             "payment_method_id", "return_url")


def test_command_carries_the_payment_and_its_options():
    snap = revise(created(REF, provider=Provider.STRIPE).snapshot,
                  {"payment_method_id": "pm_saved", "provider_reference": "pi_1"})
    confirm = make_command(snap, ProviderCommandKind.CONFIRM, at(3), payment_method_id=None,
                           return_url=None)
    assert (confirm.kind, confirm.reference, confirm.provider, confirm.amount.amount) == (
        ProviderCommandKind.CONFIRM, REF, Provider.STRIPE, 1000)
    assert (confirm.payment_method_id, confirm.provider_reference, confirm.return_url) == (
        "pm_saved", "pi_1", None)  # None keeps the payment's method
    assert (confirm.event_id, confirm.occurred_at) == (stable_id(REF, 1, "confirm"), at(3))
    other = make_command(snap, ProviderCommandKind.CONFIRM, at(3), payment_method_id="pm_new")
    assert other.payment_method_id == "pm_new"
    refund = make_command(snap, ProviderCommandKind.REFUND, at(4), refund_id="rf1",
                          refund_amount=Money(amount=100, currency="KES"), reason="duplicate")
    assert refund.event_id == stable_id(REF, 1, "refund", "rf1")
    assert (refund.refund_id, refund.refund_amount, refund.reason) == (
        "rf1", Money(amount=100, currency="KES"), "duplicate")


def test_unknown_command_option_is_refused():
    with pytest.raises(ValidationError, match="refnd_id"):
        make_command(created(REF).snapshot, ProviderCommandKind.REFUND, at(1), **{"refnd_id": "rf1"})  # type: ignore[call-arg]
