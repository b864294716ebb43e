"""Changes to a payment snapshot are checked: a misspelled key or a wrong type is refused,
not silently dropped or stored (``model_copy(update=...)`` would do both)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import get_args

import pytest
from pydantic import ValidationError

from tests.unit.payment_factory import T0, at, created
from trailpay.domain.events import CreatePayment, PaymentSnapshot
from trailpay.domain.payment import PaymentInput
from trailpay.domain.snapshot_update import SnapshotUpdate, revise
from trailpay.domain.state_machine import DECIDERS
from trailpay.domain.status import PaymentStatus


def _snapshot() -> PaymentSnapshot:
    return created().snapshot


def test_update_is_applied_and_the_rest_kept():
    old = _snapshot()
    new = revise(old, {"provider_code": "0", "version": 2, "status": PaymentStatus.PENDING,
                       "updated_at": at(5)})
    assert (new.provider_code, new.version, new.status, new.updated_at) == ("0", 2, PaymentStatus.PENDING, at(5))
    assert new.model_dump(exclude={"provider_code", "version", "status", "updated_at"}) == \
        old.model_dump(exclude={"provider_code", "version", "status", "updated_at"})


@pytest.mark.parametrize("updates", [
    {"provider_refrence": "ws_CO_1"},  # misspelled
    {"reference": "TPOTHER"},  # a field that never changes after the create
    {"amount": 5},
])
def test_unknown_or_fixed_field_is_refused(updates):
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        revise(_snapshot(), updates)


@pytest.mark.parametrize(("updates", "error"), [
    ({"refunded_amount": "5"}, "int_type"),  # no coercion
    ({"refunded_amount": 12.0}, "int_type"),  # never a float for money
    ({"refunded_amount": -1}, "greater_than_equal"),
    ({"status": "succeeded"}, "is_instance_of"),  # the enum, not its value
    ({"updated_at": datetime(2025, 3, 1, 8, 0)}, "timezone_aware"),  # naive
    ({"settled_by": "carrier pigeon"}, "literal_error"),
    ({"refunds": [None]}, "tuple_type"),
    ({"provider_code": 1032}, "string_type"),
])
def test_wrong_type_is_refused(updates, error):
    with pytest.raises(ValidationError) as err:
        revise(_snapshot(), updates)
    assert [e["type"] for e in err.value.errors()] == [error]


def test_every_updatable_field_is_a_snapshot_field():
    assert SnapshotUpdate.__optional_keys__ <= set(PaymentSnapshot.model_fields)
    assert SnapshotUpdate.__required_keys__ == frozenset()


def test_aware_times_are_kept_in_utc():
    nairobi = T0.astimezone(timezone(timedelta(hours=3)))
    assert revise(_snapshot(), {"updated_at": nairobi}).updated_at.utcoffset() == timedelta(0)


def test_every_input_but_the_create_has_a_decision():
    assert set(DECIDERS) == set(get_args(PaymentInput)) - {CreatePayment}
