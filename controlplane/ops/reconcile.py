"""Reconciliation: what TrailPay recorded against what the provider says (``trailpay reconcile``).

The provider is the source of truth. Each payment is put in one of three places on each
side: *paid* (money moved: succeeded, partially refunded, refunded), *unpaid* (failed,
expired, cancelled) or *open* (still waiting). :func:`compare` says whether the two sides
disagree, and how:

=====================  ==================  ====================  ==========
TrailPay says          provider says       kind                  ``--fix``
=====================  ==================  ====================  ==========
open or unpaid         paid                ``paid_at_provider``  yes
open                   unpaid              ``unpaid_at_provider``  yes
paid                   open or unpaid      ``unpaid_at_provider``  no
paid                   unknown             ``unknown_at_provider``  no
paid                   paid, other amount  ``amount``            no
=====================  ==================  ====================  ==========

Everything else agrees: both unpaid (an expired payment Stripe keeps open for another card,
a failed one whose prompt Daraja calls a timeout) moved no money; open at both is in
progress; a payment the provider does not know that is not paid is not a mismatch (an STK
push that never got through). Amounts are compared when the provider's answer carries one
(Stripe's does; Daraja's STK Query and Airtel's enquiry do not). Refund amounts are not
compared: a refunded payment counts as paid.

``--fix`` can only feed the provider's answer into the state machine, which moves a payment
forward (an open one to its outcome, an unpaid one to a late success) and never takes
money back: the other kinds need a person.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from connectors.providers.lookup import ProviderAnswer
from trailpay.domain.events import Money, Provider, ProviderEvent, ProviderEventKind, stable_id
from trailpay.domain.status import OPEN, PaymentStatus

S = PaymentStatus
PAID: frozenset[PaymentStatus] = frozenset({S.SUCCEEDED, S.PARTIALLY_REFUNDED, S.REFUNDED})
UNPAID: frozenset[PaymentStatus] = frozenset({S.FAILED, S.EXPIRED, S.CANCELLED})

MismatchKind = Literal["paid_at_provider", "unpaid_at_provider", "unknown_at_provider", "amount"]
FIXABLE: frozenset[str] = frozenset({"paid_at_provider"})


@dataclass(frozen=True)
class Recorded:
    """What TrailPay says of one payment (its ``payments`` row)."""

    reference: str
    provider: Provider
    status: PaymentStatus
    version: int
    amount: Money
    provider_reference: str | None
    created_at: datetime
    updated_at: datetime
    #: Every attempt's provider reference, oldest first (the snapshot's attempts, else the
    #: payment's own provider reference).
    provider_references: tuple[str, ...] = ()

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Recorded:
        snapshot = row.get("snapshot") or {}
        refs = [a.get("provider_reference") for a in snapshot.get("attempts") or ()]
        ordered = [r for r in refs if r]
        own = row.get("provider_reference")
        if own and own not in ordered:
            ordered.append(own)
        return cls(reference=row["reference"], provider=Provider(row["provider"]),
                   status=PaymentStatus(row["status"]), version=int(row["version"]),
                   amount=Money(amount=int(row["amount_minor"]), currency=str(row["currency"])),
                   provider_reference=own, created_at=row["created_at"], updated_at=row["updated_at"],
                   provider_references=tuple(dict.fromkeys(ordered)))


@dataclass(frozen=True)
class Mismatch:
    """One payment on which TrailPay and its provider disagree."""

    recorded: Recorded
    answer: ProviderAnswer
    kind: MismatchKind

    @property
    def fixable(self) -> bool:
        """Whether feeding the provider's answer in can make the two agree."""
        if self.kind == "unpaid_at_provider":
            return self.recorded.status in OPEN
        return self.kind in FIXABLE

    def as_dict(self) -> dict[str, Any]:
        r, a = self.recorded, self.answer
        return {
            "reference": r.reference, "provider": r.provider.value, "kind": self.kind,
            "trailpay_says": r.status.value, "provider_says": a.says,
            "provider_status": a.provider_status, "provider_code": a.provider_code,
            "provider_reference": a.provider_reference or r.provider_reference,
            "amount_asked": {"amount": r.amount.amount, "currency": r.amount.currency},
            "amount_at_provider": ({"amount": a.amount.amount, "currency": a.amount.currency}
                                   if a.amount else None),
            "fixable": self.fixable,
        }


def side_of(status: PaymentStatus) -> str:
    if status in PAID:
        return "paid"
    if status in UNPAID:
        return "unpaid"
    return "open"


def provider_side(answer: ProviderAnswer) -> str:
    if not answer.known:
        return "unknown"
    if answer.open or answer.status is None:
        return "open"
    return side_of(answer.status)


def compare(recorded: Recorded, answer: ProviderAnswer) -> Mismatch | None:
    """The mismatch between what TrailPay recorded and the provider's answer, if any."""
    ours, theirs = side_of(recorded.status), provider_side(answer)
    if theirs == "paid":
        if ours != "paid":
            return Mismatch(recorded, answer, "paid_at_provider")
        if answer.amount is not None and answer.amount != recorded.amount:
            return Mismatch(recorded, answer, "amount")
        return None
    if ours == "paid":
        kind: MismatchKind = "unknown_at_provider" if theirs == "unknown" else "unpaid_at_provider"
        return Mismatch(recorded, answer, kind)
    if ours == "open" and theirs == "unpaid":
        return Mismatch(recorded, answer, "unpaid_at_provider")
    return None


def fix_event(mismatch: Mismatch, now: datetime) -> ProviderEvent | None:
    """The provider's answer as a provider event (source ``reconcile``), or None when
    feeding it in cannot help. The id names the provider fact (payment, provider reference,
    provider status), so a second run sends the same event and the state machine, which
    remembers the ids it applied, does nothing more."""
    if not mismatch.fixable:
        return None
    r, a = mismatch.recorded, mismatch.answer
    if a.status is None:
        return None
    return ProviderEvent(
        event_id=f"reconcile:{r.reference}:{stable_id(a.provider_reference, a.provider_status, a.status)}",
        occurred_at=now, kind=ProviderEventKind.STATUS, reference=r.reference, provider=r.provider,
        status=a.status, provider_status=a.provider_status, provider_code=a.provider_code,
        provider_message=a.provider_message, provider_reference=a.provider_reference,
        amount=a.amount, source="reconcile")
