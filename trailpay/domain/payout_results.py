"""Daraja's asynchronous results (B2C payments, reversals) as refund outcomes.

A B2C payment or a reversal is accepted synchronously (``ResponseCode: "0"``) and settled
later by a ``Result`` posted to the ResultURL: ``ResultCode`` 0 is the money sent; any
other code is a failure with Daraja's own words (the table below gives the ones the
sandbox plays and the docs name). A notice on the QueueTimeOutURL means the request timed
out waiting in Daraja's queue and was not processed: the refund failed, and may be asked
for again. Sources: docs/sandboxes.md.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Daraja B2C / Reversal ResultCodes we know (others fail with Daraja's ResultDesc).
DARAJA_PAYOUT_RESULTS: dict[str, str] = {
    "0": "The service request is processed successfully.",
    "1": "The balance is insufficient for the transaction.",
    "2": "Declined due to limit rule: less than the minimum transaction amount.",
    "8": "Declined due to limit rule: would exceed the maximum balance.",
    "11": "The DebitParty is in an invalid state.",
    "21": "The initiator is not allowed to initiate this request.",
    "2001": "The initiator information is invalid.",
    "2006": "Declined due to account rule: the account status does not allow this transaction.",
    "2028": "The request is not permitted according to product assignment.",
    "2040": "Credit Party customer type (Unregistered or Registered Customer) can't be supported "
            "by the service.",
    "R000002": "The OriginalTransactionID is invalid.",
    "R000001": "The transaction has already been reversed.",
}
#: Our code for a request Daraja dropped from its queue (the QueueTimeOutURL notice).
QUEUE_TIMEOUT = "queue_timeout"
QUEUE_TIMEOUT_MESSAGE = "Daraja timed the request out in its queue; it was not processed"


@dataclass(frozen=True)
class PayoutOutcome:
    """A refund's outcome from a Daraja result: whether money went back, code and words."""

    succeeded: bool
    code: str
    message: str


def map_daraja_payout_result(code: int | str | None, description: str | None = None) -> PayoutOutcome:
    """``Result.ResultCode`` (an int, or a string such as ``"R000002"``) and ``ResultDesc``."""
    text = "" if code is None or isinstance(code, bool) else str(code).strip()
    if not text:
        return PayoutOutcome(False, "missing", description or "result without a ResultCode")
    if text.lstrip("-").isdigit():
        text = str(int(text))
    known = DARAJA_PAYOUT_RESULTS.get(text)
    return PayoutOutcome(text == "0", text, description or known or "Daraja refused the payout")


def queue_timeout(description: str | None = None) -> PayoutOutcome:
    return PayoutOutcome(False, QUEUE_TIMEOUT, description or QUEUE_TIMEOUT_MESSAGE)
