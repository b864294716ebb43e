"""When a failed webhook delivery is tried again: exponential backoff with full jitter.

After the ``n``-th failed attempt (1-based) the next one waits a uniform time in
``[0, min(cap_s, base_s * 2 ** (n - 1))]`` ("full jitter": receivers that came back after an
outage are not hit by every delivery at once). A delivery whose next attempt would fall
beyond ``max_age_s`` after its retry window opened (72 h by default) is not tried again: it
is dead, and ``trailpay webhooks redeliver`` opens a new window for it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from trailpay.retry import RetryPolicy
from trailpay.settings import Settings


@dataclass(frozen=True)
class Backoff:
    base_s: float = 5.0
    cap_s: float = 3600.0
    max_age_s: float = 72 * 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Backoff:
        return cls(settings.outbound_webhook_backoff_base_s, settings.outbound_webhook_backoff_cap_s,
                   float(settings.outbound_webhook_max_age_s))

    @property
    def policy(self) -> RetryPolicy:
        return RetryPolicy(attempts=None, base_delay_s=self.base_s, max_delay_s=self.cap_s,
                           max_elapsed_s=self.max_age_s)

    def bound(self, failures: int) -> float:
        """The longest wait after ``failures`` failed attempts (``failures`` >= 1)."""
        return self.policy.cap(max(failures, 1) - 1)

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """The wait after ``failures`` failed attempts: uniform in ``[0, bound]``."""
        return self.bound(failures) * rand()  # jitter, not cryptography

    def gives_up(self, age_s: float, next_wait_s: float) -> bool:
        """True when the next attempt would come after the retry window closes."""
        return self.policy.gives_up(0, age_s, next_wait_s)
