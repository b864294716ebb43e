"""A payment's attempts, its pending cancel, and the late-payment decision, as values.

A payment is what the customer owes; an *attempt* is one try at the provider: one STK push
or Airtel collection request (each with its own provider reference), or one confirmation of
a Stripe PaymentIntent (all sharing the PaymentIntent id). A decline the provider can
recover from ends an attempt, not the payment (ARCHITECTURE.md property 9).

This module imports nothing else from the domain, so :mod:`trailpay.domain.events` can use
these models in the payment snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from trailpay.domain.times import UtcDatetime

#: How an attempt ended; ``superseded``: the customer asked for a new prompt before this
#: one answered (a success on it later is still applied: the money moved).
AttemptOutcome = Literal["open", "succeeded", "failed", "cancelled", "expired", "superseded"]


class Attempt(BaseModel):
    """One try at the provider."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    number: int = Field(ge=1)
    provider_reference: str | None = None
    method: str | None = Field(default=None, description="Stripe payment method id, or the "
                                                          "payment method kind")
    outcome: AttemptOutcome = "open"
    provider_code: str | None = None
    provider_message: str | None = None
    started_at: UtcDatetime
    ended_at: UtcDatetime | None = None
    #: The provider command that started it (INITIATE / CONFIRM), to tell whose answer an
    #: event is when the provider reference is not known yet.
    command_id: str | None = None
    #: Provider references of the same command executed again by our dispatcher (a worker
    #: died between the call and its record): the customer got more than one prompt for
    #: this attempt, and a callback for any of them is this attempt's.
    repeat_references: tuple[str, ...] = ()
    #: Of the attempt's references, those that took the customer's money after the payment
    #: had already been paid through another one: a double charge, to be refunded.
    double_charged: tuple[str, ...] = ()

    def references(self) -> tuple[str, ...]:
        """Every provider reference this attempt carries (its own first)."""
        own = (self.provider_reference,) if self.provider_reference else ()
        return (*own, *self.repeat_references)


class CancelRequest(BaseModel):
    """A cancel we asked for. With a provider that can cancel (Stripe) the payment stays
    open until the provider confirms; ``command_id`` is the CANCEL command asked for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requested_at: UtcDatetime
    reason: str
    for_booking: bool = Field(default=False, description="the booking was cancelled")
    command_id: str | None = None
    refused: bool = Field(default=False, description="the provider refused the cancel")


class LateDecision(StrEnum):
    """What to do with money that arrived on a payment we had given up on."""

    KEEP = "keep"
    REFUND = "refund"


def open_attempt(attempts: Sequence[Attempt]) -> Attempt | None:
    """The attempt still waiting for the provider's answer, if any (the last one)."""
    if attempts and attempts[-1].outcome == "open":
        return attempts[-1]
    return None


def attempt_of(attempts: Sequence[Attempt], reference: str | None) -> Attempt | None:
    """The attempt that carries ``reference``, as its own or as a repeat's (the newest one
    when several do)."""
    if reference is None:
        return None
    return next((a for a in reversed(attempts) if reference in a.references()), None)


def start_attempt(attempts: Sequence[Attempt], at: datetime, method: str | None,
                  provider_reference: str | None = None,
                  command_id: str | None = None) -> tuple[Attempt, ...]:
    """``attempts`` plus a new open one; a still open attempt is superseded."""
    ended = tuple(a.model_copy(update={"outcome": "superseded", "ended_at": at})
                  if a.outcome == "open" else a for a in attempts)
    new = Attempt(number=len(attempts) + 1, provider_reference=provider_reference, method=method,
                  started_at=at, command_id=command_id)
    return (*ended, new)


def end_attempt(attempts: Sequence[Attempt], target: Attempt, outcome: AttemptOutcome, at: datetime,
                code: str | None, message: str | None) -> tuple[Attempt, ...]:
    """``attempts`` with ``target`` ended as ``outcome``, keeping the provider's words."""
    done = target.model_copy(update={"outcome": outcome, "ended_at": at, "provider_code": code,
                                     "provider_message": message})
    return tuple(done if a.number == target.number else a for a in attempts)


def name_attempt(attempts: Sequence[Attempt], target: Attempt, reference: str) -> tuple[Attempt, ...]:
    """``attempts`` with the provider's reference of ``target`` filled in."""
    named = target.model_copy(update={"provider_reference": reference})
    return tuple(named if a.number == target.number else a for a in attempts)


def replace_attempt(attempts: Sequence[Attempt], target: Attempt, **updates: object) -> tuple[Attempt, ...]:
    """``attempts`` with ``target`` changed by ``updates`` (fields of :class:`Attempt`)."""
    changed = target.model_copy(update=updates)
    return tuple(changed if a.number == target.number else a for a in attempts)


# ----------------------------------------------------------------------------- transaction ids
#: Between a payment reference and the attempt number in a derived transaction id. Our
#: references never contain it (``TP`` + upper-case alphanumerics, ``TPB-`` + lower-case
#: hex), and Airtel takes hyphens in ``transaction.id`` (its own example is
#: ``random-unique-id``).
ATTEMPT_MARK = "-A"


def attempt_transaction_id(reference: str, number: int) -> str:
    """The transaction id of attempt ``number`` where the provider names a collection by an
    id of ours that it refuses to see twice (Airtel): the first attempt is the payment
    reference itself (payments, callbacks and enquiries from before retries keep working),
    attempt n > 1 is ``<reference>-A<n>`` (``TP…-A2``: at most 4 characters more)."""
    return reference if number <= 1 else f"{reference}{ATTEMPT_MARK}{number}"


def split_transaction_id(transaction_id: str) -> tuple[str, int]:
    """The payment reference and attempt number a transaction id names: the inverse of
    :func:`attempt_transaction_id` (an id without the mark, or with a number it would not
    make, is a payment reference: attempt 1)."""
    head, mark, tail = transaction_id.rpartition(ATTEMPT_MARK)
    if mark and head and tail.isdigit() and tail.isascii() and not tail.startswith("0") and int(tail) >= 2:
        return head, int(tail)
    return transaction_id, 1


def transaction_attempt(attempts: Sequence[Attempt], reference: str, named: str | None) -> Attempt | None:
    """The attempt of payment ``reference`` whose transaction id is ``named``, whether or not
    the attempt has its provider reference yet."""
    if named is None:
        return None
    owner, number = split_transaction_id(named)
    if owner != reference:
        return None
    return next((a for a in attempts if a.number == number), None)
