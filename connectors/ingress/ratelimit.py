"""Failed authentication, rate-limited per client address: a token bucket in the process.

Each address may fail ``burst`` times at once; the bucket refills at ``per_second``. While
it is empty, every authenticated request from that address answers 429 with
``Retry-After`` before the token is even looked up, so guessing tokens costs the guesser
time and the database nothing. Only failures spend from the bucket: a client with a valid
token is never slowed by its own traffic. Per process (each ingress keeps its own); the
address is the TCP peer's (``request.client``), since no proxy in front of us is trusted to
set ``X-Forwarded-For``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Addresses remembered at most; beyond it the fullest buckets (those that forgot their
#: failures) are dropped first.
MAX_ADDRESSES = 50_000


@dataclass
class _Bucket:
    tokens: float
    at: float


class FailureLimiter:
    def __init__(self, burst: int, per_second: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = float(burst)
        self.per_second = per_second
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, address: str) -> _Bucket | None:
        bucket = self._buckets.get(address)
        if bucket is None:
            return None
        now = self._clock()
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.per_second)
        bucket.at = now
        return bucket

    def retry_after(self, address: str) -> int | None:
        """Whole seconds until ``address`` may try again, or None when it may now."""
        bucket = self._bucket(address)
        if bucket is None or bucket.tokens >= 1:
            return None
        return max(1, math.ceil((1 - bucket.tokens) / self.per_second))

    def failed(self, address: str) -> None:
        bucket = self._bucket(address)
        if bucket is None:
            if len(self._buckets) >= MAX_ADDRESSES:
                self._forget_full()
            bucket = self._buckets[address] = _Bucket(self.burst, self._clock())
        bucket.tokens = max(0.0, bucket.tokens - 1)

    def _forget_full(self) -> None:
        for address in [a for a in self._buckets if self._bucket(a) is not None
                        and self._buckets[a].tokens >= self.burst]:
            del self._buckets[address]
        if len(self._buckets) >= MAX_ADDRESSES:  # all of them failing: forget the oldest
            oldest = sorted(self._buckets, key=lambda a: self._buckets[a].at)
            for address in oldest[: MAX_ADDRESSES // 10]:
                del self._buckets[address]
