"""Cross-checks of a provider event against the payment it names (property 10).

A callback URL token or a payment reference in a URL is not authentication: anyone who has
seen one callback can write another. So before a provider event is applied:

1. it comes from the payment's provider (an Airtel ``TS`` naming an M-Pesa payment, a
   signed Stripe event for a mobile-money payment: refused);
2. its provider reference is the payment's, or one of its attempts' (an M-Pesa callback
   for our reference carrying another payment's CheckoutRequestID: refused). While the
   current attempt has no provider reference yet (the initiate's answer has not come
   back), an event may name it, unless an earlier attempt already carries it. A repeated
   initiation's reference (our dispatcher executed the same command twice) is the
   attempt's too (:mod:`~trailpay.domain.repeat_initiations`). Where the transaction id
   is ours (Airtel: :func:`~trailpay.domain.attempts.attempt_transaction_id`), every
   attempt's id is known before the provider answers: an id of ours naming an attempt the
   payment does not have, or any unknown reference once the payment has been retried, is
   refused even then (a lone first attempt still adopts one: events normalised before
   attempts had ids named Airtel's ``airtel_money_id``);
3. on success, its amount and currency are those asked for (``Amount: 1`` on a KES 100
   payment: refused). An unauthenticated success callback must state its amount (M-Pesa's
   ``CallbackMetadata``); signed or fetched answers (Stripe webhooks, our own calls to the
   provider) are checked when they carry one.

A mismatch raises :class:`~trailpay.domain.errors.Suspicious`; nothing is applied. Its
``detail`` quotes what the event said (unmasked: the phone rules live above the domain);
whoever logs or stores it scrubs it with :func:`trailpay.logs.scrub`.
"""

from __future__ import annotations

from trailpay.domain.attempts import attempt_of, attempt_transaction_id, split_transaction_id
from trailpay.domain.errors import Suspicious
from trailpay.domain.events import PaymentSnapshot, Provider, ProviderEvent
from trailpay.domain.status import PaymentStatus

#: Providers whose collections we name, one transaction id per attempt
#: (:func:`~trailpay.domain.attempts.attempt_transaction_id`): Airtel refuses an id twice.
OWN_TRANSACTION_IDS: frozenset[Provider] = frozenset({Provider.AIRTEL})
#: (provider, source) whose success events must carry the amount: callbacks anyone could
#: forge once they know the URL (M-Pesa's carry the amount in ``CallbackMetadata``).
AMOUNT_REQUIRED_ON_SUCCESS: frozenset[tuple[Provider, str]] = frozenset({(Provider.MPESA, "webhook")})


def known_references(snapshot: PaymentSnapshot) -> frozenset[str]:
    refs = {r for a in snapshot.attempts for r in a.references()}
    if snapshot.provider_reference:
        refs.add(snapshot.provider_reference)
    if snapshot.provider in OWN_TRANSACTION_IDS:
        refs.update(attempt_transaction_id(snapshot.reference, a.number) for a in snapshot.attempts)
    return frozenset(refs)


def _own_ids_only(snapshot: PaymentSnapshot, named: str) -> bool:
    """Whether only transaction ids of ours can be this payment's: ``named`` has the form
    of a later attempt's id, or the payment was retried (its attempts all have ids)."""
    return snapshot.provider in OWN_TRANSACTION_IDS and (
        split_transaction_id(named)[1] > 1 or len(snapshot.attempts) > 1)


def _suspicious(snapshot: PaymentSnapshot, event: ProviderEvent, reason: str, detail: str) -> Suspicious:
    return Suspicious(snapshot.reference, event.provider.value, reason, detail)


def check_reference(snapshot: PaymentSnapshot, event: ProviderEvent) -> None:
    """Rule 2 (status events only: a refund event's reference is the refund's)."""
    named = event.provider_reference
    if named is None or named in known_references(snapshot):
        return
    if (snapshot.provider_reference is None and attempt_of(snapshot.attempts, named) is None
            and not _own_ids_only(snapshot, named)):
        return  # the current attempt's reference, not known yet: adopted
    raise _suspicious(snapshot, event, "reference_mismatch",
                      f"provider reference {named[:80]!r} is not this payment's")


def check_provider_event(snapshot: PaymentSnapshot, event: ProviderEvent, *, status_event: bool) -> None:
    """Raise :class:`Suspicious` unless ``event`` may be applied to ``snapshot``."""
    if event.provider is not snapshot.provider:
        raise _suspicious(snapshot, event, "provider_mismatch",
                          f"{event.provider.value} event for a {snapshot.provider.value} payment")
    if event.amount is not None and event.amount.currency != snapshot.amount.currency:
        raise _suspicious(snapshot, event, "currency_mismatch",
                          f"{event.amount.currency} event for a {snapshot.amount.currency} payment")
    if not status_event:
        return
    check_reference(snapshot, event)
    if event.status is not PaymentStatus.SUCCEEDED:
        return
    if event.amount is None:
        if (event.provider, event.source) in AMOUNT_REQUIRED_ON_SUCCESS:
            raise _suspicious(snapshot, event, "amount_missing", "success without an amount")
        return
    if event.amount.amount != snapshot.amount.amount:
        raise _suspicious(snapshot, event, "amount_mismatch",
                          f"success for {event.amount} on a payment of {snapshot.amount}")
