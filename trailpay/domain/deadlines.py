"""Deadlines per provider and open status (property 5: nothing stuck forever).

A payment in ``created``/``pending`` or ``processing`` has a deadline counted from the event
that moved it there. Past the deadline the sweeper asks the provider once (a QUERY command);
if the payment is still open a grace period later, it is expired (and a Stripe
PaymentIntent is cancelled).

The defaults, and why:

* **Mobile money** (M-Pesa, Airtel): ``pending`` 120 s, ``processing`` 600 s. The STK /
  USSD prompt on the phone lives about a minute (Daraja reports 1037 "DS timeout" when the
  customer does not answer), so a payment still waiting two minutes after the push is
  waiting for a callback that will not come; the query settles it.
* **Cards** (Stripe): ``pending`` 24 h, ``processing`` 1 h. A PaymentIntent in
  ``requires_payment_method`` is the customer typing card details, or choosing another
  card after a decline; Stripe never expires a PaymentIntent by itself and recommends one
  PaymentIntent per order, reused across retries ("How PaymentIntents work",
  https://docs.stripe.com/payments/paymentintents/lifecycle). Cancelling it after two
  minutes cancels a customer mid-checkout. 24 h is Stripe Checkout's own default session
  lifetime ("expires_at ... the default value is 24 hours after the current time",
  https://docs.stripe.com/payments/checkout/managing-limited-inventory). ``processing``
  (3-D Secure, ``requires_action``) gets an hour: the bank's challenge page is a few
  minutes, and an abandoned challenge falls back to ``requires_payment_method``.

* **The retry window** (mobile money): 180 s. A customer decline (wrong PIN, low balance,
  the prompt cancelled: :data:`~trailpay.domain.provider_status.MOBILE_CUSTOMER_DECLINES`)
  or a refused push ends the *attempt*; the payment stays ``pending`` with this deadline,
  counted from the failure, while attempts are left. A customer who tries again does so
  within a couple of minutes (top up, find the PIN, press "pay" again) or not at all, and
  the booking platform must hear the outcome quickly, so the window is short. When it
  passes with no retry, the payment ends as its last attempt did (``failed``, or
  ``cancelled`` after Daraja 1032) with that attempt's provider code and message, not
  ``expired``: no provider is asked (the attempt is already final there), and there is no
  grace (:func:`awaits_retry`, :meth:`DeadlinePolicy.expiry_grace`).

All seven are settings (``from_settings``); absent settings keep these defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from trailpay.domain.events import PaymentMethod, PaymentSnapshot, Provider
from trailpay.domain.status import OPEN, PaymentStatus

S = PaymentStatus

#: Shortest grace between the provider query and the expiry.
MIN_GRACE_S = 5
#: Providers whose payments are card PaymentIntents (the card windows apply).
CARD_PROVIDERS: frozenset[Provider] = frozenset({Provider.STRIPE})


@dataclass(frozen=True)
class DeadlinePolicy:
    """How long each open status may last per kind of provider, and the grace after the
    provider is asked."""

    pending_s: int = 120
    processing_s: int = 600
    card_pending_s: int = 86_400
    card_processing_s: int = 3_600
    retry_window_s: int = 180

    @classmethod
    def from_settings(cls, settings: object) -> DeadlinePolicy:
        """From ``Settings``: ``pending_deadline_s``, ``processing_deadline_s`` and, when the
        settings have them, ``card_pending_deadline_s``, ``card_processing_deadline_s``,
        ``mobile_retry_window_s``."""
        default = cls()
        return cls(
            pending_s=getattr(settings, "pending_deadline_s", default.pending_s),
            processing_s=getattr(settings, "processing_deadline_s", default.processing_s),
            card_pending_s=getattr(settings, "card_pending_deadline_s", default.card_pending_s),
            card_processing_s=getattr(settings, "card_processing_deadline_s",
                                      default.card_processing_s),
            retry_window_s=getattr(settings, "mobile_retry_window_s", default.retry_window_s),
        )

    def window(self, status: PaymentStatus, provider: Provider | None = None) -> timedelta | None:
        """How long ``status`` may last at ``provider``; None for settled statuses.
        ``provider`` None: the mobile-money windows."""
        card = provider in CARD_PROVIDERS
        if status in (S.CREATED, S.PENDING):
            return timedelta(seconds=self.card_pending_s if card else self.pending_s)
        if status is S.PROCESSING:
            return timedelta(seconds=self.card_processing_s if card else self.processing_s)
        return None

    def deadline(self, status: PaymentStatus, since: datetime,
                 provider: Provider | None = None) -> datetime | None:
        window = self.window(status, provider)
        return None if window is None else since + window

    def grace(self, status: PaymentStatus) -> timedelta:
        """Time between the provider query and the expiry: half the mobile-money window of
        ``status``, at least 5 s, so a query answer has time to come back through the
        dispatcher. The same for every provider: it is about our pipeline, not the
        customer (and the sweeper computes it without the payment's provider)."""
        window = self.window(status)
        seconds = 0.0 if window is None else window.total_seconds() / 2
        return timedelta(seconds=max(MIN_GRACE_S, seconds))

    def retry_deadline(self, since: datetime) -> datetime:
        """When a mobile-money payment whose attempt failed at ``since`` stops waiting for
        the customer's retry."""
        return since + timedelta(seconds=self.retry_window_s)

    def expiry_grace(self, snapshot: PaymentSnapshot) -> timedelta:
        """Time between the deadline and the expiry of ``snapshot``: none while it waits for
        a retry (nothing is asked of the provider), else :meth:`grace`."""
        return timedelta(0) if awaits_retry(snapshot) else self.grace(snapshot.status)


def awaits_retry(snapshot: PaymentSnapshot) -> bool:
    """Whether ``snapshot`` is a mobile-money payment still open after its last attempt
    failed (no prompt is open): it waits for the customer's retry until its deadline, then
    ends as that attempt did."""
    attempts = snapshot.attempts
    return (snapshot.method is PaymentMethod.MOBILE_MONEY and snapshot.status in OPEN
            and bool(attempts) and attempts[-1].outcome in ("failed", "cancelled"))


#: The policy when none is configured (``apply`` and ``expire_request`` default to it).
DEFAULT_POLICY = DeadlinePolicy()
