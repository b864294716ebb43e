"""A provider command our dispatcher executed twice, and the money it may take twice.

The dispatcher records a command as done only once the provider answered and the answer is
on the broker. A worker that dies in between leaves the command to the partition's next
owner, which executes it again: it cannot know whether the first call went out. Where the
provider has an idempotency key (Stripe) or takes our id as its own (Airtel's transaction
id) the second call is answered as the first; Daraja has neither, so a re-executed STK push
is a second prompt with a CheckoutRequestID of its own. The dispatcher gives a
re-execution's events ids of their own (``cmd:<command id>:repeat-<n>``, source
``dispatcher``: only our dispatcher writes those), so the state machine sees both answers,
and here:

1. **the answer of a re-execution** naming another reference than the attempt's is recorded
   as one of the attempt's ``repeat_references``: a callback for that prompt is then this
   attempt's, not a ``reference_mismatch``. A re-execution the provider refused (no
   reference) changes nothing: the first prompt is out;
2. **an unpaid report on a repeat reference** (failed, cancelled, expired) changes nothing:
   the attempt's first prompt still decides (Daraja refuses a second prompt while one is
   open for the subscriber, 1001);
3. **a success on a repeat reference first** makes it the attempt's and the payment's
   reference, so refunds and queries go to the prompt that holds the money;
4. **a success on another of the payment's references once it is paid**: the customer paid
   twice (two prompts of one attempt, or an older prompt after a retry's). It is neither
   dropped as stale nor a second ``succeeded``: the reference is flagged on its attempt
   (``double_charged``) in a state change of its own (cause ``double_charge``, status
   unchanged), which the worker logs and counts for a refund. M-Pesa returns money by its
   reversal process (no refund API), so the flag is the refund request.

Every event is cross-checked first (amount, currency, provider), as any status report.
"""

from __future__ import annotations

from trailpay.domain.attempts import Attempt, attempt_of, replace_attempt
from trailpay.domain.cross_checks import check_provider_event, known_references
from trailpay.domain.events import ProviderEvent, ProviderEventKind
from trailpay.domain.payment import Outcome, Payment, stale
from trailpay.domain.provider_events import ONE_REFERENCE, PAID, UNPAID_ENDS, decide_provider_status
from trailpay.domain.rules import PaymentRules
from trailpay.domain.status import PaymentStatus
from trailpay.domain.step import Step

S = PaymentStatus
#: The cause of the state change that flags a double charge.
DOUBLE_CHARGE = "double_charge"
#: The cause of the state change that records a re-executed initiation's reference.
REPEAT_INITIATION = "repeat_initiation"


def _started_by(payment: Payment, event: ProviderEvent) -> Attempt | None:
    """The attempt whose command our dispatcher answered with ``event``, if it named one."""
    if event.source != "dispatcher" or not event.command_id:
        return None
    return next((a for a in payment.snapshot.attempts if a.command_id == event.command_id), None)


def decide_repeat(payment: Payment, event: ProviderEvent, rules: PaymentRules) -> Step | Outcome | None:
    """What ``event`` does if it is about a repeated initiation or a double charge; ``None``:
    it is not, decide it as any status report."""
    snap = payment.snapshot
    if event.status is None and event.kind is not ProviderEventKind.COMMAND_FAILED:
        return None
    named = event.provider_reference
    started = _started_by(payment, event)
    if started is not None and started.provider_reference and snap.provider not in ONE_REFERENCE:
        if named is None and event.kind is ProviderEventKind.COMMAND_FAILED:
            check_provider_event(snap, event, status_event=True)
            return stale(payment, f"a repeated initiation of attempt {started.number} was refused; "
                                  "its first prompt is out")
        if named is not None and named not in known_references(snap):
            check_provider_event(snap, event, status_event=False)
            attempts = replace_attempt(snap.attempts, started,
                                       repeat_references=(*started.repeat_references, named))
            return Step(snap.status, REPEAT_INITIATION, {"attempts": attempts})
    attempt = attempt_of(snap.attempts, named)
    if named is None or attempt is None:
        return None
    if event.status in UNPAID_ENDS and named in attempt.repeat_references:
        check_provider_event(snap, event, status_event=True)
        return stale(payment, f"{event.status.value} of a repeated prompt of attempt {attempt.number}; "
                              "its first prompt decides")
    if event.status is not S.SUCCEEDED:
        return None
    if snap.status in PAID:
        return _double_charge(payment, event, attempt, named)
    if named in attempt.repeat_references:
        return _paid_through_repeat(payment, event, attempt, named, rules)
    return None


def _double_charge(payment: Payment, event: ProviderEvent, attempt: Attempt,
                   named: str) -> Step | Outcome | None:
    snap = payment.snapshot
    if named == snap.provider_reference:
        return None  # the success it was paid through, reported again: stale as ever
    check_provider_event(snap, event, status_event=True)
    if named in attempt.double_charged:
        return stale(payment, f"double charge through {named} already flagged")
    attempts = replace_attempt(snap.attempts, attempt, double_charged=(*attempt.double_charged, named))
    return Step(snap.status, DOUBLE_CHARGE, {"attempts": attempts},
                detail=f"paid again through {named} after {snap.provider_reference}")


def _paid_through_repeat(payment: Payment, event: ProviderEvent, attempt: Attempt, named: str,
                         rules: PaymentRules) -> Step | Outcome:
    """The repeat prompt's success came first: it becomes the attempt's own reference."""
    snap = payment.snapshot
    others = tuple(r for r in attempt.references() if r != named)
    attempts = replace_attempt(snap.attempts, attempt, provider_reference=named, repeat_references=others)
    current = snap.provider_reference
    reference = named if current in (None, attempt.provider_reference) else current
    swapped = payment.model_copy(update={"snapshot": snap.model_copy(
        update={"attempts": attempts, "provider_reference": reference})})
    decided = decide_provider_status(swapped, event, rules)
    if isinstance(decided, Outcome):
        return Outcome(decided.verdict, payment, reason=decided.reason)
    decided.updates = {"attempts": attempts, "provider_reference": reference, **decided.updates}
    return decided
