"""``sweep_deadlines``: nothing stuck forever (property 5).

A timer over the open payments this worker owns. Past a payment's deadline it sends one
QUERY command (the dispatcher asks the provider: STK Push Query, PaymentIntent retrieve,
Airtel status) and, if the payment is still open a grace period later, an ExpirePayment
request through payments.requests.v1 so the state machine agent applies it like any other
input. A mobile-money payment waiting for a retry after a failed attempt (its retry window,
:func:`~trailpay.domain.deadlines.awaits_retry`) gets the ExpirePayment at once at its
deadline, no query: that attempt's answer is already final at the provider. Both records
are deterministic (:func:`query_command`, :func:`expire_request`):
sent twice (after a restart the sweeper forgets what it sent) they are the same record,
and the state machine treats the second as a duplicate or stale.
"""

from __future__ import annotations

import logging
from typing import Any

from streams.agents.common import Outbox
from streams.agents.payments import PaymentProcessor
from streams.app import StreamContext
from trailpay import topics
from trailpay.domain.commands import expire_request, query_command
from trailpay.domain.deadlines import awaits_retry
from trailpay.domain.events import utcnow
from trailpay.domain.status import OPEN
from trailpay.metrics import OVERDUE, PAST_DEADLINE

log = logging.getLogger(__name__)

#: Most commands or requests one tick sends (the rest wait for the next tick).
MAX_ACTIONS_PER_TICK = 2000


async def sweep(processor: PaymentProcessor, producer: Any, *,
                limit: int = MAX_ACTIONS_PER_TICK) -> dict[str, int]:
    """One pass: queries and expiries due now, sent through ``producer``. Returns what it sent."""
    sent = {"query": 0, "expire": 0}
    policy = processor.policy
    async with processor.open_payments() as open_payments:
        now = utcnow()
        out = Outbox()
        # Before this pass: an entry whose expiry an earlier pass requested is still open.
        PAST_DEADLINE.set(sum(1 for e in open_payments.entries.values() if e.deadline <= now))
        OVERDUE.set(sum(1 for e in open_payments.entries.values() if e.expired))
        for key, entry in list(open_payments.entries.items()):
            if sent["query"] + sent["expire"] >= limit:
                break
            if entry.deadline > now or (entry.queried and entry.expired):
                continue
            payment = open_payments.load(key)
            if payment is None or payment.status not in OPEN or payment.snapshot.deadline_at is None:
                open_payments.forget(key)
                continue
            if payment.snapshot.deadline_at != entry.deadline:
                entry.deadline, entry.queried, entry.expired = payment.snapshot.deadline_at, False, False
                if entry.deadline > now:
                    continue
            if awaits_retry(payment.snapshot):
                # the last attempt's answer is final at the provider: nothing to ask, no
                # grace; the request ends the payment as that attempt did
                out.add(topics.PAYMENT_REQUESTS, payment.reference, expire_request(payment, policy))
                entry.queried = entry.expired = True
                sent["expire"] += 1
                continue
            if not entry.queried:
                out.add(topics.PROVIDER_COMMANDS, payment.reference, query_command(payment))
                entry.queried = True
                sent["query"] += 1
            if not entry.expired and now >= entry.deadline + policy.grace(payment.status):
                out.add(topics.PAYMENT_REQUESTS, payment.reference, expire_request(payment, policy))
                entry.expired = True
                sent["expire"] += 1
        await out.flush(producer)
    if sent["query"] or sent["expire"]:
        log.info("deadline sweep: %d provider queries, %d expiries", sent["query"], sent["expire"])
    return sent


def register(ctx: StreamContext, processor: PaymentProcessor) -> None:
    """The ``sweep_deadlines`` timer over the open payments of ``processor``."""
    settings = ctx.settings
    interval = max(1.0, min(10.0, settings.pending_deadline_s / 4))

    @ctx.app.timer(interval=interval, name="sweep_deadlines")
    async def sweep_deadlines() -> Any:
        if ctx.app.rebalancing:
            return
        await sweep(processor, ctx.app.producer)
