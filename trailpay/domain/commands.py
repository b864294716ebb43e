"""Provider commands: what the dispatcher is asked to do, with a deterministic id.

A command's ``event_id`` doubles as its idempotency key at the provider, so it is a pure
function of the payment version and the command kind: ``stable_id(reference, version,
kind[, refund_id])``. Re-applying an input to the same state asks for the same command.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict, Unpack

from trailpay.domain.attempts import attempt_transaction_id
from trailpay.domain.card_saving import FutureUsage
from trailpay.domain.cross_checks import OWN_TRANSACTION_IDS
from trailpay.domain.deadlines import DEFAULT_POLICY, DeadlinePolicy, awaits_retry
from trailpay.domain.events import (
    ExpirePayment,
    Money,
    PaymentSnapshot,
    ProviderCommand,
    ProviderCommandKind,
    stable_id,
)
from trailpay.domain.payment import Payment


class CommandOptions(TypedDict, total=False):
    """What a command carries beyond the payment's own fields. ``payment_method_id``,
    ``return_url`` and ``provider_reference`` (a QUERY about one attempt) given as None keep
    the snapshot's; the others are taken as given.

    For a provider that names each attempt by a transaction id of ours (Airtel, see
    :data:`OWN_TRANSACTION_IDS`), ``provider_reference`` of an INITIATE is the new attempt's
    transaction id, and a QUERY without one asks about the current attempt's."""

    confirm: bool
    payment_method_id: str | None
    return_url: str | None
    refund_id: str
    refund_amount: Money
    reason: str | None
    provider_reference: str | None
    setup_future_usage: FutureUsage | None


#: What a command takes from the payment: every field the two contracts share (who pays,
#: how much, how to reach them, the provider's identity of the payment).
FROM_SNAPSHOT: tuple[str, ...] = tuple(
    name for name in ProviderCommand.model_fields if name in PaymentSnapshot.model_fields
)


def current_transaction_id(snapshot: PaymentSnapshot) -> str:
    """The transaction id of the payment's newest attempt (the first when it has none)."""
    number = snapshot.attempts[-1].number if snapshot.attempts else 1
    return attempt_transaction_id(snapshot.reference, number)


def command_id(reference: str, version: int, kind: ProviderCommandKind, refund_id: str | None = None) -> str:
    parts: list[object] = [reference, version, kind.value]
    if refund_id is not None:
        parts.append(refund_id)
    return stable_id(*parts)


def make_command(snapshot: PaymentSnapshot, kind: ProviderCommandKind, at: datetime,
                 **options: Unpack[CommandOptions]) -> ProviderCommand:
    """A provider command for the payment as of ``snapshot``, dated ``at`` (the input's
    time, never the wall clock)."""
    fields: dict[str, Any] = {name: getattr(snapshot, name) for name in FROM_SNAPSHOT}
    fields["kind"] = kind
    fields.update({k: v for k, v in options.items() if v is not None or k not in fields})
    if snapshot.provider in OWN_TRANSACTION_IDS and (
            kind is ProviderCommandKind.INITIATE
            or (kind is ProviderCommandKind.QUERY and fields.get("provider_reference") is None)):
        fields["provider_reference"] = current_transaction_id(snapshot)
    return ProviderCommand(
        event_id=command_id(snapshot.reference, snapshot.version, kind, options.get("refund_id")),
        occurred_at=at,
        **fields,
    )


def query_command(payment: Payment) -> ProviderCommand:
    """The sweeper's question to the provider once a deadline passed. Deterministic: one
    QUERY per (reference, version), dated at the deadline."""
    snap = payment.snapshot
    at = snap.deadline_at or snap.updated_at
    return make_command(snap, ProviderCommandKind.QUERY, at)


def expire_request(payment: Payment, policy: DeadlinePolicy = DEFAULT_POLICY) -> ExpirePayment:
    """The sweeper's expiry for a payment still open a grace period after its deadline."""
    snap = payment.snapshot
    deadline = snap.deadline_at or snap.updated_at
    grace = policy.expiry_grace(snap)  # none while the payment waits for a retry
    reason = (f"no retry within {policy.retry_window_s}s of the failed attempt" if awaits_retry(snap)
              else f"no provider answer {int(grace.total_seconds())}s after the {snap.status.value} deadline")
    return ExpirePayment(
        event_id=stable_id(snap.reference, snap.version, "expire"),
        occurred_at=deadline + grace,
        reference=snap.reference,
        reason=reason,
    )
