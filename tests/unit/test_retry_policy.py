"""The one retry policy (trailpay/retry.py): schedule bounds, who is retried, when it gives up.

Every wait goes through an injected sleep on a fake clock: nothing here really sleeps.
"""

from __future__ import annotations

import pytest

from trailpay.domain.errors import (
    ConfigurationError,
    IllegalTransition,
    InvalidRecord,
    PermanentError,
    ProviderRejected,
    RetriableError,
    TrailPayError,
    is_retriable,
)
from trailpay.retry import POLICIES, RetryPolicy, retry


class FakeTime:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


class Flaky:
    """Fails ``failures`` times with ``exc`` (a factory), then answers "ok"."""

    def __init__(self, failures: int, exc=lambda: RetriableError("down")) -> None:
        self.failures, self.exc, self.calls = failures, exc, 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc()
        return "ok"


# ----------------------------------------------------------------------------- the schedule


def test_caps_double_from_the_base_up_to_the_maximum():
    policy = RetryPolicy(attempts=8, base_delay_s=0.5, max_delay_s=4.0)
    assert [policy.cap(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]


def test_each_wait_lies_between_half_the_cap_and_the_cap():
    policy = RetryPolicy(attempts=8, base_delay_s=0.5, max_delay_s=4.0)
    assert [policy.delay(n, rand=lambda: 0.0) for n in range(5)] == [0.25, 0.5, 1.0, 2.0, 2.0]
    assert [policy.delay(n, rand=lambda: 1.0) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert [policy.delay(n, rand=lambda: 0.5) for n in range(5)] == [0.375, 0.75, 1.5, 3.0, 3.0]


def test_a_huge_retry_number_does_not_overflow_the_cap():
    assert RetryPolicy(attempts=None, base_delay_s=0.5, max_delay_s=10.0).cap(10_000) == 10.0


def test_retry_after_raises_the_wait_but_never_past_the_maximum():
    policy = RetryPolicy(attempts=4, base_delay_s=0.2, max_delay_s=5.0)
    assert policy.delay(0, retry_after=3.0, rand=lambda: 0.0) == 3.0
    assert policy.delay(0, retry_after=60.0, rand=lambda: 0.0) == 5.0
    assert policy.delay(0, retry_after=0.01, rand=lambda: 0.0) == 0.1  # the backoff is longer


def test_the_policies_of_every_use_are_the_documented_ones():
    assert (POLICIES.provider_http.attempts, POLICIES.provider_http.base_delay_s,
            POLICIES.provider_http.max_delay_s) == (4, 0.2, 5.0)
    assert (POLICIES.dispatcher.attempts, POLICIES.dispatcher.base_delay_s,
            POLICIES.dispatcher.max_delay_s) == (3, 1.0, 10.0)
    assert (POLICIES.notifications.attempts, POLICIES.notifications.base_delay_s,
            POLICIES.notifications.max_delay_s) == (5, 0.5, 4.0)
    # The sinks wait out an outage: no bound but the runner being stopped.
    assert (POLICIES.sink_write.attempts, POLICIES.sink_write.base_delay_s,
            POLICIES.sink_write.max_delay_s) == (None, 0.5, 10.0)
    assert (POLICIES.sink_dead_letter.attempts, POLICIES.sink_dead_letter.max_delay_s) == (None, 10.0)


# ----------------------------------------------------------------------------- retry()


async def test_retriable_failures_are_retried_on_the_schedule_until_success():
    time, call = FakeTime(), Flaky(4)
    policy = RetryPolicy(attempts=5, base_delay_s=0.5, max_delay_s=4.0)
    got = await retry(call, policy, what="t", sleep=time.sleep, clock=time.clock, rand=lambda: 1.0)
    assert got == "ok" and call.calls == 5
    assert time.waits == [0.5, 1.0, 2.0, 4.0]


async def test_exhausted_attempts_raise_the_last_retriable_error():
    time = FakeTime()
    errors = iter([RetriableError("first"), RetriableError("second"), RetriableError("third")])
    call = Flaky(99, exc=lambda: next(errors))
    policy = RetryPolicy(attempts=3, base_delay_s=1.0, max_delay_s=10.0)
    with pytest.raises(RetriableError, match="third"):
        await retry(call, policy, what="t", sleep=time.sleep, clock=time.clock, rand=lambda: 0.0)
    assert call.calls == 3 and time.waits == [0.5, 1.0]


@pytest.mark.parametrize("error", [
    PermanentError("no"), InvalidRecord("bad"), ProviderRejected("mpesa", "2001", "wrong pin"),
    IllegalTransition("TP1", "succeeded", "cancelled"), ConfigurationError("TRAILPAY_X missing"),
])
async def test_an_error_that_is_not_retriable_is_raised_at_once(error):
    time, call = FakeTime(), Flaky(99, exc=lambda: error)
    with pytest.raises(type(error)):
        await retry(call, RetryPolicy(attempts=5), what="t", sleep=time.sleep, clock=time.clock)
    assert call.calls == 1 and time.waits == []


async def test_an_exception_that_is_no_trailpay_error_is_not_retried():
    time, call = FakeTime(), Flaky(99, exc=lambda: KeyError("snapshot"))
    with pytest.raises(KeyError):
        await retry(call, RetryPolicy(attempts=5), what="t", sleep=time.sleep, clock=time.clock)
    assert call.calls == 1 and time.waits == []


async def test_retry_after_of_the_error_is_honoured():
    time = FakeTime()
    call = Flaky(1, exc=lambda: RetriableError("429", retry_after=2.5))
    policy = RetryPolicy(attempts=3, base_delay_s=0.2, max_delay_s=5.0)
    assert await retry(call, policy, what="t", sleep=time.sleep, clock=time.clock, rand=lambda: 0.0) == "ok"
    assert time.waits == [2.5]


async def test_the_time_bound_stops_retries_before_the_next_wait_would_pass_it():
    time, call = FakeTime(), Flaky(99)
    policy = RetryPolicy(attempts=None, base_delay_s=1.0, max_delay_s=1.0, max_elapsed_s=2.5)
    with pytest.raises(RetriableError):
        await retry(call, policy, what="t", sleep=time.sleep, clock=time.clock, rand=lambda: 1.0)
    assert call.calls == 3 and time.waits == [1.0, 1.0] and time.now == 1002.0


async def test_an_unbounded_policy_stops_when_asked_to():
    time, call = FakeTime(), Flaky(99)
    policy = RetryPolicy(attempts=None, base_delay_s=0.5, max_delay_s=10.0)
    with pytest.raises(RetriableError):
        await retry(call, policy, what="t", sleep=time.sleep, clock=time.clock, rand=lambda: 1.0,
                    should_stop=lambda: call.calls >= 4)
    assert call.calls == 4 and time.waits == [0.5, 1.0, 2.0]


async def test_on_retry_sees_every_error_and_wait():
    time, call, seen = FakeTime(), Flaky(2), []
    policy = RetryPolicy(attempts=3, base_delay_s=1.0, max_delay_s=10.0)
    await retry(call, policy, what="t", sleep=time.sleep, clock=time.clock, rand=lambda: 1.0,
                on_retry=lambda exc, wait: seen.append((str(exc), wait)), log_retries=False)
    assert seen == [("down", 1.0), ("down", 2.0)]


# ----------------------------------------------------------------------------- the errors


@pytest.mark.parametrize(("error", "retriable"), [
    (TrailPayError("x"), False), (ConfigurationError("x"), False), (RetriableError("x"), True),
    (PermanentError("x"), False), (InvalidRecord("x"), False),
    (IllegalTransition("TP1", "a", "b"), False), (ProviderRejected("p", "c", "m"), False),
    (KeyError("x"), False), (TimeoutError(), False),
])
def test_every_error_says_whether_it_is_retried(error, retriable):
    assert is_retriable(error) is retriable
