"""Every provider status mapped onto :class:`PaymentStatus`, keeping the provider's own words.

The mapping is data, so tests can walk it and ops can read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from trailpay.domain.events import Provider, ProviderEvent, ProviderEventKind
from trailpay.domain.status import PaymentStatus

S = PaymentStatus


@dataclass(frozen=True)
class MappedStatus:
    """Our status for a provider answer, with the provider's code and text kept."""

    status: PaymentStatus
    code: str
    message: str


# ----------------------------------------------------------------------------- Stripe
#: PaymentIntent.status -> ours. ``requires_payment_method`` after a confirm attempt means
#: the card was declined (``last_payment_error`` says why); before it, the intent waits.
STRIPE_INTENT_STATUS: dict[str, PaymentStatus] = {
    "requires_payment_method": S.PENDING,
    "requires_confirmation": S.PENDING,
    "requires_action": S.PROCESSING,  # 3-D Secure: the customer is acting
    "processing": S.PROCESSING,
    "requires_capture": S.PROCESSING,
    "succeeded": S.SUCCEEDED,
    "canceled": S.CANCELLED,
}

#: Stripe webhook event types -> ours (None: not a status change we act on).
STRIPE_EVENT_STATUS: dict[str, PaymentStatus | None] = {
    "payment_intent.created": S.PENDING,
    "payment_intent.requires_action": S.PROCESSING,
    "payment_intent.processing": S.PROCESSING,
    "payment_intent.amount_capturable_updated": S.PROCESSING,
    "payment_intent.succeeded": S.SUCCEEDED,
    "payment_intent.payment_failed": S.FAILED,
    "payment_intent.canceled": S.CANCELLED,
    "charge.refunded": None,  # refunds are their own event kind
    "charge.refund.updated": None,
    "refund.updated": None,
    "refund.failed": None,
}


def map_stripe_intent(status: str, *, decline_code: str | None = None,
                      decline_message: str | None = None, after_attempt: bool = False) -> MappedStatus:
    """Map a PaymentIntent status; a ``requires_payment_method`` after an attempt is a failure."""
    if status == "requires_payment_method" and (after_attempt or decline_code):
        return MappedStatus(S.FAILED, decline_code or "card_declined",
                            decline_message or "The payment method was declined")
    try:
        ours = STRIPE_INTENT_STATUS[status]
    except KeyError:
        raise ValueError(f"unknown Stripe PaymentIntent status {status!r}") from None
    return MappedStatus(ours, status, status.replace("_", " "))


# ----------------------------------------------------------------------------- M-Pesa Daraja
#: STK Push ResultCode -> ours, with Daraja's meaning. Anything else fails with its code.
DARAJA_RESULT: dict[int, tuple[PaymentStatus, str]] = {
    0: (S.SUCCEEDED, "The service request is processed successfully."),
    1: (S.FAILED, "The balance is insufficient for the transaction."),
    1001: (S.FAILED, "Unable to lock subscriber, a transaction is already in process."),
    1019: (S.EXPIRED, "Transaction has expired."),
    1025: (S.FAILED, "An error occurred while sending a push request."),
    1032: (S.CANCELLED, "Request cancelled by user."),
    1037: (S.EXPIRED, "DS timeout user cannot be reached."),
    2001: (S.FAILED, "The initiator information is invalid."),
    9999: (S.FAILED, "An error occurred while sending a push request."),
}

#: STK Push Query answers while the customer has not finished yet.
DARAJA_QUERY_PENDING_CODES = frozenset({"500.001.1001"})


def map_daraja_result(code: int | str, description: str | None = None) -> MappedStatus:
    """Daraja ResultCode: an int in callbacks, a string in query replies."""
    try:
        number = int(code)
    except (TypeError, ValueError):
        return MappedStatus(S.FAILED, str(code), description or "unrecognised result code")
    status, text = DARAJA_RESULT.get(number, (S.FAILED, "Payment failed at the provider"))
    return MappedStatus(status, str(number), description or text)


# ----------------------------------------------------------------------------- Airtel Money
#: Airtel transaction status -> ours.
AIRTEL_STATUS: dict[str, tuple[PaymentStatus, str]] = {
    "TS": (S.SUCCEEDED, "Transaction Success"),
    "TF": (S.FAILED, "Transaction Failed"),
    "TIP": (S.PROCESSING, "Transaction in Progress"),
    "TA": (S.PROCESSING, "Transaction Ambiguous"),  # confirm by status enquiry
    "TE": (S.EXPIRED, "Transaction Expired"),
}


def map_airtel_status(code: str, message: str | None = None) -> MappedStatus:
    upper = code.upper()
    try:
        status, text = AIRTEL_STATUS[upper]
    except KeyError:
        return MappedStatus(S.FAILED, upper, message or "unrecognised Airtel status")
    return MappedStatus(status, upper, message or text)


# ----------------------------------------------------------------------------- attempts
#: Mobile-money push refusals that end the attempt, not the payment: the prompt never
#: reached the customer, who may retry once the other prompt is closed. Daraja's
#: ``500.001.1001`` on an STK Push is "Unable to lock subscriber, a transaction is already
#: in process for the current subscriber" (on an STK Query the same code means "still
#: being processed": see DARAJA_QUERY_PENDING_CODES).
PUSH_REFUSED_RETRYABLE: dict[Provider, frozenset[str]] = {
    Provider.MPESA: frozenset({"500.001.1001"}),
}
#: Mobile-money failures the *customer* caused, after which they may try again on the same
#: payment (a new prompt: ``POST /api/payments/<ref>/retry/``): each ends the attempt, not
#: the payment, while attempts are left (``TRAILPAY_MAX_ATTEMPTS``); the payment then waits
#: ``TRAILPAY_MOBILE_RETRY_WINDOW_S`` for the retry (:mod:`trailpay.domain.deadlines`).
#: Codes as the provider events carry them (``provider_code``); the sources are cited in
#: docs/sandboxes.md ("Customer declines").
#:
#: * Daraja STK Push callback ``ResultCode``: ``1`` "The balance is insufficient for the
#:   transaction", ``1032`` "Request cancelled by user", ``2001`` "The initiator information
#:   is invalid" (on an STK Push: the customer's wrong M-Pesa PIN). Not here: ``1037`` (no
#:   answer: the deadline and the query settle it), ``1019``/``1025``/``9999`` (Safaricom's
#:   side), ``1001`` (another session open on the phone: the callback form of the lock;
#:   left final as before, see the README retry row).
#: * Airtel: the transaction status ``TF`` (Transaction Failed) is all a callback or a
#:   status enquiry says, and it is what a wrong PIN, a low balance or a refused prompt
#:   reports; the Collection API's response codes for the same customer-side causes
#:   (``DP00800001002`` incorrect PIN, ``DP00800001007`` not enough balance,
#:   ``DP00800001008`` refused by the customer) are listed for a payment API that returns
#:   them in place of ``TF``.
MOBILE_CUSTOMER_DECLINES: dict[Provider, frozenset[str]] = {
    Provider.MPESA: frozenset({"1", "1032", "2001"}),
    Provider.AIRTEL: frozenset({"TF", "DP00800001002", "DP00800001007", "DP00800001008"}),
}
#: Our statuses a customer decline may map to (Daraja 1032 is ``cancelled``).
DECLINE_STATUSES: frozenset[PaymentStatus] = frozenset({S.FAILED, S.CANCELLED})


def customer_may_retry(event: ProviderEvent) -> bool:
    """Whether ``event`` reports a mobile-money failure the customer caused and may undo by
    trying again (:data:`MOBILE_CUSTOMER_DECLINES`): a failed attempt, not a failed payment."""
    codes = MOBILE_CUSTOMER_DECLINES.get(event.provider)
    return (codes is not None and event.status in DECLINE_STATUSES
            and event.provider_code is not None and event.provider_code.upper() in codes)


#: Stripe statuses in which a failed PaymentIntent is still open for another payment method
#: (a decline or a failed 3-D Secure sends it back to ``requires_payment_method``).
STRIPE_OPEN_AFTER_FAILURE: frozenset[str] = frozenset({"requires_payment_method"})


def keeps_payment_open(event: ProviderEvent) -> bool:
    """Whether the failure ``event`` reports leaves the payment open at the provider, so it
    is a failed *attempt*: the customer may try again on the same payment.

    Stripe: the PaymentIntent in ``requires_payment_method`` after a decline, or a refused
    confirm that names the PaymentIntent (the decline of an existing intent; a refusal
    before any intent existed, e.g. ``amount_too_small``, names none). M-Pesa and Airtel:
    each STK push or collection request is final at the provider, but the payment is not:
    a new attempt is a new push, started by a retry request while the payment is still
    open. That holds after a push the provider refused before it reached the phone
    (:data:`PUSH_REFUSED_RETRYABLE`) and after a decline the customer caused
    (:func:`customer_may_retry`); any other mobile-money failure ends the payment.
    """
    if event.provider is not Provider.STRIPE:
        refused = (event.kind is ProviderEventKind.COMMAND_FAILED
                   and event.provider_code in PUSH_REFUSED_RETRYABLE.get(event.provider, frozenset()))
        return refused or customer_may_retry(event)
    if event.provider_status in STRIPE_OPEN_AFTER_FAILURE:
        return True
    return event.kind is ProviderEventKind.COMMAND_FAILED and event.provider_reference is not None
