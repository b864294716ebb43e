"""Payment statuses and the allowed transitions between them, as data."""

from __future__ import annotations

from enum import StrEnum

from trailpay.domain.errors import IllegalTransition


class PaymentStatus(StrEnum):
    CREATED = "created"
    PENDING = "pending"  # sent to the provider
    PROCESSING = "processing"  # the customer is acting: STK prompt, 3-D Secure
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


S = PaymentStatus

#: Every allowed move. A provider may report a later status before an earlier one reached us
#: (a webhook can overtake the dispatcher's answer), so early states may jump forward.
TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    S.CREATED: frozenset({S.PENDING, S.PROCESSING, S.SUCCEEDED, S.FAILED, S.CANCELLED, S.EXPIRED}),
    S.PENDING: frozenset({S.PROCESSING, S.SUCCEEDED, S.FAILED, S.CANCELLED, S.EXPIRED}),
    S.PROCESSING: frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED, S.EXPIRED}),
    S.SUCCEEDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.PARTIALLY_REFUNDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
    S.REFUNDED: frozenset(),
}

#: How far along the lifecycle a status is; an event that would move a payment backwards
#: (a late ``pending`` after ``processing``) is stale, not illegal.
RANK: dict[PaymentStatus, int] = {
    S.CREATED: 0,
    S.PENDING: 1,
    S.PROCESSING: 2,
    S.SUCCEEDED: 3,
    S.FAILED: 3,
    S.CANCELLED: 3,
    S.EXPIRED: 3,
    S.PARTIALLY_REFUNDED: 4,
    S.REFUNDED: 5,
}

TERMINAL: frozenset[PaymentStatus] = frozenset(
    {S.FAILED, S.CANCELLED, S.EXPIRED, S.REFUNDED}
)
#: Settled statuses: no deadline, nothing more expected from the provider.
SETTLED: frozenset[PaymentStatus] = TERMINAL | {S.SUCCEEDED, S.PARTIALLY_REFUNDED}
#: Statuses in which a deadline runs (property 5: nothing stuck forever).
OPEN: frozenset[PaymentStatus] = frozenset({S.CREATED, S.PENDING, S.PROCESSING})
#: Statuses a customer or ops may still cancel.
CANCELLABLE: frozenset[PaymentStatus] = frozenset({S.CREATED, S.PENDING, S.PROCESSING})
#: Statuses in which a refund may be asked for.
REFUNDABLE: frozenset[PaymentStatus] = frozenset({S.SUCCEEDED, S.PARTIALLY_REFUNDED})


def can_transition(current: PaymentStatus, target: PaymentStatus) -> bool:
    return target in TRANSITIONS[current]


def transition(reference: str, current: PaymentStatus, target: PaymentStatus) -> PaymentStatus:
    """The one check of the transition table: ``target`` or :class:`IllegalTransition`."""
    if not can_transition(current, target):
        raise IllegalTransition(reference, current.value, target.value)
    return target
