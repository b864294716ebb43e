"""The one retry policy of TrailPay, and where a failure goes once it is not retried.

Every retry loop runs through :func:`retry`: the provider HTTP clients, the dispatcher, the
e-mail notifier and the sink runner (a batch write, a record write, a dead-letter send).
What each of them may do is written down once, in :data:`POLICIES`:

================  ==========  ====================  ===============================================
use               attempts    backoff caps          once exhausted
================  ==========  ====================  ===============================================
provider_http     4           0.2 s doubling to 5   ``ProviderUnavailable`` to the dispatcher
dispatcher        3           1 s doubling to 10    dead letter, stage ``dispatcher.exhausted``
notifications     5           0.5 s doubling to 4   dead letter, stage ``notifications.exhausted``
sink_write        until stop  0.5 s doubling to 10  never: an outage is waited out, the batch kept
sink_dead_letter  until stop  0.5 s doubling to 10  never: the offset waits for the dead letter
================  ==========  ====================  ===============================================

The sink policies have no bound on purpose: a database outage is not the records' fault, and
dead-lettering good records because PostgreSQL restarts would turn every outage into a
re-drive. They stop when the runner is asked to stop (``should_stop``).

Backoff is exponential with "equal jitter": retry ``n`` (0-based) waits a uniform time in
``[cap / 2, cap]``, ``cap = min(max_delay_s, base_delay_s * 2 ** n)``; never less than
half the cap (so five attempts really span the time they are meant to), never in lockstep
with the other callers. A ``retry_after`` the error carries raises the wait to it (bounded by
``max_delay_s``). ``max_elapsed_s`` bounds the total time.

Only errors that say so are retried: a :class:`~trailpay.domain.errors.TrailPayError` whose
class has ``retriable = True``. Anything else goes straight back to the caller. The caller
routes it with :func:`dead_letter_stage`:

- a permanent error (``retriable = False``): dead-lettered at once, under the consumer's stage;
- a retriable error that reached the consumer: the policy gave up, ``<stage>.exhausted``;
- any other exception is a bug: ``<stage>.bug``, counted in
  ``trailpay_unexpected_errors_total`` and logged with its traceback.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from trailpay.domain.errors import TrailPayError, is_retriable
from trailpay.metrics import UNEXPECTED_ERRORS

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Dead-letter stage suffixes (``<consumer stage>.<suffix>``).
EXHAUSTED = "exhausted"
BUG = "bug"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long one kind of call is retried."""

    #: Calls in all (the first one included); ``None``: until ``should_stop`` says so.
    attempts: int | None = 4
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0
    #: Give up once this much time has passed since the first call (``None``: no bound).
    max_elapsed_s: float | None = None

    def cap(self, retry: int) -> float:
        """The longest wait before retry ``retry`` (0-based)."""
        return min(self.max_delay_s, self.base_delay_s * (2 ** min(retry, 32)))

    def delay(self, retry: int, retry_after: float | None = None,
              rand: Callable[[], float] = random.random) -> float:
        """The wait before retry ``retry``: uniform in [cap/2, cap], at least ``retry_after``."""
        cap = self.cap(retry)
        wait = cap / 2 + cap / 2 * rand()  # jitter, not cryptography
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_delay_s))
        return wait

    def gives_up(self, calls: int, elapsed_s: float, next_wait_s: float) -> bool:
        """True when no further call is allowed after ``calls`` calls and ``elapsed_s``."""
        if self.attempts is not None and calls >= self.attempts:
            return True
        return self.max_elapsed_s is not None and elapsed_s + next_wait_s > self.max_elapsed_s


@dataclass(frozen=True)
class RetryPolicies:
    """Every retry policy of TrailPay, by use (see the module docstring)."""

    provider_http: RetryPolicy = RetryPolicy(attempts=4, base_delay_s=0.2, max_delay_s=5.0)
    dispatcher: RetryPolicy = RetryPolicy(attempts=3, base_delay_s=1.0, max_delay_s=10.0)
    notifications: RetryPolicy = RetryPolicy(attempts=5, base_delay_s=0.5, max_delay_s=4.0)
    sink_write: RetryPolicy = RetryPolicy(attempts=None, base_delay_s=0.5, max_delay_s=10.0)
    sink_dead_letter: RetryPolicy = RetryPolicy(attempts=None, base_delay_s=0.5, max_delay_s=10.0)


#: The policies the services run with.
POLICIES = RetryPolicies()

Sleep = Callable[[float], Awaitable[None]]


async def retry(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    what: str,
    sleep: Sleep = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    rand: Callable[[], float] = random.random,
    should_stop: Callable[[], bool] | None = None,
    on_retry: Callable[[BaseException, float], None] | None = None,
    log_retries: bool = True,
) -> T:
    """``await call()`` until it succeeds or raises an error that is not to be retried.

    A retriable error is retried after :meth:`RetryPolicy.delay` (``sleep`` waits it out)
    until the policy gives up or ``should_stop()`` is true; then that last error is raised
    as it is (its type still says what it was). Every other exception is raised at once.
    ``on_retry(error, wait)`` is called before each wait (metrics, or the caller's own log
    line with ``log_retries=False``).
    """
    started = clock()
    calls = 0
    while True:
        try:
            return await call()
        except TrailPayError as exc:
            if not is_retriable(exc):
                raise
            calls += 1
            wait = policy.delay(calls - 1, getattr(exc, "retry_after", None), rand)
            if policy.gives_up(calls, clock() - started, wait) or (should_stop is not None and should_stop()):
                raise
            if log_retries:
                of = "" if policy.attempts is None else f"/{policy.attempts - 1}"
                log.warning("%s failed (%s); retry %d%s in %.2fs", what, exc, calls, of, wait)
            if on_retry is not None:
                on_retry(exc, wait)
            await sleep(wait)


def dead_letter_stage(stage: str, exc: BaseException, *, where: str = "") -> str:
    """The dead-letter stage for ``exc`` given up on by the consumer ``stage``.

    A permanent error keeps ``stage``; a retriable one (the policy gave up) is
    ``<stage>.exhausted``; an exception that is no :class:`TrailPayError` is a bug:
    ``<stage>.bug``, counted and logged with its traceback (``where`` says which record).
    """
    if not isinstance(exc, TrailPayError):
        UNEXPECTED_ERRORS.labels(stage, type(exc).__name__).inc()
        log.exception("BUG in %s%s: unexpected %s, dead-lettered under %s.%s", stage,
                      f" ({where})" if where else "", type(exc).__name__, stage, BUG, exc_info=exc)
        return f"{stage}.{BUG}"
    if is_retriable(exc):
        return f"{stage}.{EXHAUSTED}"
    return stage
