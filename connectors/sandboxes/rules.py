"""The sandboxes' outcome rules, as data (documented in docs/sandboxes.md).

Mobile money (M-Pesa and Airtel): by the LAST DIGIT of the phone number.
Stripe: by payment method (the test tokens Stripe documents).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MobileOutcome:
    daraja_code: int | None  # None: no callback at all (the prompt times out)
    daraja_desc: str
    airtel_status: str  # TS / TF; TE for "no callback" (what the enquiry says afterwards)
    airtel_message: str
    callback: bool = True


SUCCESS = MobileOutcome(0, "The service request is processed successfully.", "TS",
                        "Transaction Success")

MOBILE_BY_LAST_DIGIT: dict[str, MobileOutcome] = {
    "0": SUCCESS,
    "1": MobileOutcome(1, "The balance is insufficient for the transaction.", "TF",
                       "Insufficient funds"),
    "2": MobileOutcome(1032, "Request cancelled by user", "TF", "Transaction cancelled by user"),
    "3": MobileOutcome(1037, "DS timeout user cannot be reached", "TE", "Transaction expired",
                       callback=False),
    "4": MobileOutcome(2001, "The initiator information is invalid.", "TF", "Incorrect PIN"),
    "5": MobileOutcome(1001, "Unable to lock subscriber, a transaction is already in process "
                       "for the current subscriber", "TF", "Another transaction is in progress"),
    "6": SUCCESS, "7": SUCCESS, "8": SUCCESS, "9": SUCCESS,
}


def mobile_outcome(phone: str) -> MobileOutcome:
    return MOBILE_BY_LAST_DIGIT[phone.strip()[-1]]


@dataclass(frozen=True)
class CardBehaviour:
    brand: str
    last4: str
    outcome: str  # "succeed" | "decline" | "3ds"
    decline_code: str | None = None
    message: str | None = None


CARDS: dict[str, CardBehaviour] = {
    "pm_card_visa": CardBehaviour("visa", "4242", "succeed"),
    "pm_card_mastercard": CardBehaviour("mastercard", "4444", "succeed"),
    "pm_card_chargeDeclined": CardBehaviour("visa", "0002", "decline", "generic_decline",
                                            "Your card was declined."),
    "pm_card_visa_chargeDeclinedInsufficientFunds": CardBehaviour(
        "visa", "9995", "decline", "insufficient_funds", "Your card has insufficient funds."),
    "pm_card_threeDSecure2Required": CardBehaviour("visa", "3220", "3ds"),
    "pm_card_authenticationRequired": CardBehaviour("visa", "3184", "3ds"),
}
