"""The payment aggregate and what applying one input to it can come to.

:func:`trailpay.domain.state_machine.apply` takes a :class:`Payment` (or None for a reference
not seen yet) and one :data:`PaymentInput` and answers with an :class:`Outcome`:

* ``APPLIED``: a new version of the payment plus the records to emit (one
  ``PaymentStateChanged``, maybe provider commands and notifications);
* ``DUPLICATE``: the record's effect is already in the state (a redelivery);
* ``STALE``: nothing to do (a late ``pending`` after ``succeeded``, a second cancel);
* ``PARK``: a provider event for a payment not created yet; the caller holds it a while;

or it raises ``IllegalTransition`` / :class:`RequestRefused` (dead-letter it), or
``Suspicious`` for a provider event that does not match the payment it names (dead-letter
it at the ``suspicious`` stage; never apply it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from trailpay.domain.errors import PermanentError
from trailpay.domain.events import (
    CancelPayment,
    ConfirmPayment,
    CreatePayment,
    ExpirePayment,
    Notification,
    PaymentSnapshot,
    PaymentStateChanged,
    ProviderCommand,
    ProviderEvent,
    RefundPayment,
    RetryPayment,
)
from trailpay.domain.status import PaymentStatus

#: How many applied input ids a payment remembers (a payment sees a handful of inputs).
MAX_APPLIED = 64

PaymentInput = (
    CreatePayment | CancelPayment | RefundPayment | ConfirmPayment | ExpirePayment | RetryPayment
    | ProviderEvent
)


class RequestRefused(PermanentError):
    """A payment request that cannot be carried out (over-refund, unknown payment, ...)."""

    def __init__(self, reference: str, reason: str) -> None:
        super().__init__(f"payment {reference}: {reason}")
        self.reference = reference
        self.reason = reason


class Verdict(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"
    PARK = "park"


class Payment(BaseModel):
    """One payment's whole state: the snapshot every state change carries, plus the ids of
    the inputs already applied (for idempotent re-processing)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    snapshot: PaymentSnapshot
    applied: tuple[str, ...] = ()

    @property
    def reference(self) -> str:
        return self.snapshot.reference

    @property
    def status(self) -> PaymentStatus:
        return self.snapshot.status

    @property
    def version(self) -> int:
        return self.snapshot.version

    def seen(self, event_id: str) -> bool:
        return event_id in self.applied

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Payment:
        return cls.model_validate_json(data)


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    payment: Payment | None
    change: PaymentStateChanged | None = None
    commands: tuple[ProviderCommand, ...] = ()
    notifications: tuple[Notification, ...] = ()
    reason: str = ""

    @property
    def applied(self) -> bool:
        return self.verdict is Verdict.APPLIED


def stale(payment: Payment, reason: str) -> Outcome:
    return Outcome(Verdict.STALE, payment, reason=reason)


def duplicate(payment: Payment, reason: str) -> Outcome:
    return Outcome(Verdict.DUPLICATE, payment, reason=reason)
