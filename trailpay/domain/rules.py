"""The payment rules a deployment chooses: attempts per payment and the late-payment policy.

Passed to :func:`trailpay.domain.state_machine.apply` like the deadline policy, so the
domain reads no settings. A *late* payment is money the provider confirms after we had
concluded ``failed``, ``expired`` or ``cancelled`` (or while our cancel was pending): the
provider is the source of truth (ARCHITECTURE.md property 9), so the payment becomes
``succeeded``, marked late, and the policy decides:

* ``keep``: the customer paid; keep the money (tell them it arrived after all);
* ``refund``: refund it at once (the state machine asks for the refund itself);
* ``auto`` (default): refund when a cancel was asked for (by the customer or ops, or
  because the booking was cancelled; recorded as the payment's ``cancel_request`` even
  when it had already failed or expired): the customer no longer wants what they paid
  for; keep otherwise (a payment that failed or expired on our side, or that the customer
  cancelled on the phone, and went through after all is still wanted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from trailpay.domain.attempts import LateDecision
from trailpay.domain.events import PaymentSnapshot, Provider

LatePaymentMode = Literal["keep", "refund", "auto"]

#: Providers that can cancel a payment: a cancel there waits for the provider's word.
#: (An STK push or Airtel prompt cannot be withdrawn: a mobile-money cancel is local.)
CANCELS_AT_PROVIDER: frozenset[Provider] = frozenset({Provider.STRIPE})


@dataclass(frozen=True)
class PaymentRules:
    """``max_attempts``: attempts per payment, the first included (a recoverable decline
    leaves the payment open only while another attempt may be started)."""

    max_attempts: int = 3
    late_payment: LatePaymentMode = "auto"
    #: Providers whose success *callbacks* (unauthenticated: anyone who knows the URL can
    #: write one) are confirmed by asking the provider before they are applied: the
    #: callback becomes a QUERY, and the query's answer is what is applied.
    confirm_by_query: frozenset[Provider] = frozenset()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def late_decision(self, snapshot: PaymentSnapshot) -> LateDecision:
        """Keep or refund money that arrived after we had given the payment up."""
        if self.late_payment != "auto":
            return LateDecision(self.late_payment)
        if snapshot.cancel_request is not None:
            return LateDecision.REFUND  # cancelled on request, or the booking was cancelled
        return LateDecision.KEEP


DEFAULT_RULES = PaymentRules()
