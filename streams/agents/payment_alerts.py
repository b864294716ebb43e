"""What the payments agent reports besides its outputs: suspicious events, late payments.

Both are rare and both need a person's eyes, so each has a counter, a log line and, for a
suspicious event, a dead letter of its own stage:

- a provider event that does not match the payment it names (the domain raises
  :class:`~trailpay.domain.errors.Suspicious`, ARCHITECTURE.md property 10) is never applied:
  dead letter at stage ``suspicious`` with the reason,
  ``trailpay_suspicious_events_total{provider,reason}`` and a warning. The domain quotes
  what the event said unmasked (the phone rules live above it); the dead letter and the
  warning carry it scrubbed (:func:`trailpay.logs.scrub`);
- money the provider confirmed after we had given the payment up (property 9) is applied,
  marked late: ``trailpay_late_payments_total{provider,decision}`` and a warning.

Counted where the exception or the outcome is in hand rather than off the topics (as
:mod:`streams.agents.observe` does for transitions): the dead letter does not carry the
reason as a field, and a late payment is a change of the snapshot, not of the status.
At-least-once like the other counters: a redelivered batch may count one twice.
"""

from __future__ import annotations

import logging

from streams.agents.common import Incoming, Outbox
from trailpay.domain.errors import Suspicious
from trailpay.domain.payment import Outcome, Payment
from trailpay.logs import scrub
from trailpay.metrics import LATE_PAYMENTS, SUSPICIOUS_EVENTS

log = logging.getLogger(__name__)

#: The dead-letter stage of provider events that do not match their payment.
SUSPICIOUS_STAGE = "suspicious"


def masked(exc: Suspicious) -> Suspicious:
    """``exc`` with its detail scrubbed of phone numbers, card numbers and secrets."""
    return Suspicious(exc.reference, exc.provider, exc.reason, scrub(exc.detail))


def dead_letter_suspicious(out: Outbox, incoming: Incoming, exc: Suspicious) -> None:
    """Dead-letter a suspicious provider event (masked), count it and warn."""
    safe = masked(exc)
    SUSPICIOUS_EVENTS.labels(exc.provider, exc.reason).inc()
    log.warning("suspicious %s event for payment %s not applied (%s): %s",
                safe.provider, safe.reference, safe.reason, safe.detail)
    out.dead_letter(incoming, safe, SUSPICIOUS_STAGE, reference=exc.reference)


def note_late(before: Payment | None, outcome: Outcome) -> None:
    """Count and log ``outcome`` if it is the one that made the payment late."""
    after = outcome.payment
    if after is None or not after.snapshot.late or (before is not None and before.snapshot.late):
        return
    snap = after.snapshot
    decision = snap.late_decision.value if snap.late_decision is not None else "none"
    assert snap.late_from is not None
    LATE_PAYMENTS.labels(snap.provider.value, decision).inc()
    log.warning("late payment %s: %s confirmed %s after it was %s; decision: %s",
                snap.reference, snap.provider.value, snap.status.value, snap.late_from.value, decision)
