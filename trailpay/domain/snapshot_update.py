"""Typed, validated changes to a :class:`PaymentSnapshot`.

``model_copy(update=...)`` does not validate: a misspelled key is dropped without a word and
a wrong type is stored. Every change to a snapshot therefore goes through :func:`revise`,
which is checked twice: by mypy against :class:`SnapshotUpdate` at each call site, and at
run time against ``PaymentSnapshot``'s own field definitions (types, constraints, aware
datetimes, ``ge=0``), strictly, so nothing is coerced.

Only the named fields are validated, not the whole snapshot: measured on this machine,
validating the whole snapshot on every step costs about 12 us (``apply`` itself is about
20 us an input), validating the changed fields about 2.5 us.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, create_model

from trailpay.domain.attempts import Attempt, CancelRequest, LateDecision
from trailpay.domain.events import PaymentSnapshot, RefundState
from trailpay.domain.status import PaymentStatus


class SnapshotUpdate(TypedDict, total=False):
    """The fields of a snapshot that applying an input may change. Who the payment is for,
    what it is for and how it is paid never change after the create."""

    version: int
    status: PaymentStatus
    provider_reference: str | None
    provider_status: str | None
    provider_code: str | None
    provider_message: str | None
    customer_id: str | None
    payment_method_id: str | None
    client_secret: str | None
    refunded_amount: int
    refunds: tuple[RefundState, ...]
    updated_at: datetime
    deadline_at: datetime | None
    settled_by: Literal["callback", "dispatcher", "sweep", "request"] | None
    attempts: tuple[Attempt, ...]
    cancel_request: CancelRequest | None
    late_from: PaymentStatus | None
    late_decision: LateDecision | None


def _field_checker() -> type[BaseModel]:
    """A model of the updatable fields, each defined exactly as on ``PaymentSnapshot``
    (annotation and constraints) and optional, refusing any other key."""
    fields: dict[str, Any] = {}
    for name in sorted(SnapshotUpdate.__optional_keys__):
        info = PaymentSnapshot.model_fields[name]
        kind = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
        fields[name] = (kind, None)
    return create_model(
        "SnapshotUpdateCheck",
        __config__=ConfigDict(extra="forbid", strict=True, frozen=True),
        **fields,
    )


_CHECK = _field_checker()


def revise(snapshot: PaymentSnapshot, updates: SnapshotUpdate) -> PaymentSnapshot:
    """``snapshot`` with ``updates`` applied, after checking them. A key that is not an
    updatable field, or a value of the wrong type, raises ``pydantic.ValidationError``:
    a bug in the caller, never a fact about the payment."""
    checked = _CHECK.model_validate(updates)
    return snapshot.model_copy(update={name: getattr(checked, name) for name in checked.model_fields_set})
