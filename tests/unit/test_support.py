"""The shared test helpers (tests/support): waits and child environments."""

from __future__ import annotations

import pytest

from tests.support.processes import clean_env, trailpay_argv
from tests.support.waits import wait_for, wait_for_sync


async def test_wait_for_returns_the_first_truthy_value_of_a_plain_or_async_predicate() -> None:
    calls = iter([0, [], "ready"])
    assert await wait_for(lambda: next(calls), 5, "ready", interval=0) == "ready"

    async def answer() -> int:
        return 42

    assert await wait_for(answer, 5, "the answer", interval=0) == 42


async def test_wait_for_fails_with_what_it_waited_for_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"the rows: not reached in 0\.05s \(last: \[\]\)"):
        await wait_for(list, 0.05, "the rows", interval=0.01)


def test_wait_for_sync() -> None:
    calls = iter([None, None, 7])
    assert wait_for_sync(lambda: next(calls), 5, "seven", interval=0) == 7
    with pytest.raises(AssertionError, match=r"never: not reached in 0\.05s"):
        wait_for_sync(lambda: False, 0.05, "never", interval=0.01)


def test_clean_env_drops_every_trailpay_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAILPAY_DATABASE_URL", "postgresql://developer@laptop/db")
    monkeypatch.setenv("TRAILPAY_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("HOME_OF_TEST", "kept")
    env = clean_env(TRAILPAY_LOG_LEVEL="WARNING")
    assert {k: v for k, v in env.items() if k.startswith("TRAILPAY_")} == {
        "TRAILPAY_LOG_LEVEL": "WARNING", "TRAILPAY_MOBILE_RETRY_WINDOW_S": "4"}  # the test default
    assert clean_env(TRAILPAY_MOBILE_RETRY_WINDOW_S="20")["TRAILPAY_MOBILE_RETRY_WINDOW_S"] == "20"
    assert env["HOME_OF_TEST"] == "kept"


def test_trailpay_argv_runs_the_cli_module() -> None:
    assert trailpay_argv("lag", "--json")[1:] == ["-m", "controlplane.cli.main", "lag", "--json"]
