"""tokens.ClientCredentialsToken: the OAuth part Daraja and Airtel share, over an in-memory transport."""

from __future__ import annotations

import httpx
import pytest

from connectors.providers.http import ProviderUnavailable, RetryPolicy
from connectors.providers.tokens import ClientCredentialsToken
from trailpay.domain.errors import ProviderRejected

NO_WAIT = RetryPolicy(attempts=2, base_delay_s=0.0, max_delay_s=0.0)


def _describe(body):
    return (str(body.get("error", "")), str(body.get("error_description", ""))) if isinstance(body, dict) else ("", "")


def _token(replies: list[httpx.Response], clock=lambda: 1000.0) -> tuple[ClientCredentialsToken, list[int]]:
    calls: list[int] = []

    async def request() -> httpx.Response:
        calls.append(1)
        return replies[min(len(calls), len(replies)) - 1]

    token = ClientCredentialsToken("mpesa", request, _describe, NO_WAIT, default_lifetime_s=3599)
    token._clock = clock
    return token, calls


async def test_reply_gives_the_bearer_header_and_is_cached():
    token, calls = _token([httpx.Response(200, json={"access_token": "abc", "expires_in": "3599"})])
    assert await token.bearer() == {"Authorization": "Bearer abc"}
    assert await token.bearer() == {"Authorization": "Bearer abc"}
    assert len(calls) == 1 and token.fetches == 1


async def test_missing_lifetime_uses_the_provider_default():
    now = [1000.0]
    token, calls = _token([httpx.Response(200, json={"access_token": "abc"})], clock=lambda: now[0])
    await token.get()
    now[0] = 1000.0 + 3599 - 61  # just before the 60 s refresh margin
    await token.get()
    assert len(calls) == 1
    now[0] = 1000.0 + 3599 - 59
    await token.get()
    assert len(calls) == 2


async def test_a_reply_without_a_token_is_retried_then_unavailable():
    token, calls = _token([httpx.Response(200, json={"token_type": "bearer"})])
    with pytest.raises(ProviderUnavailable, match="bad_token_reply"):
        await token.get()
    assert len(calls) == 2  # NO_WAIT allows two attempts


async def test_a_refused_credential_is_a_rejection_not_retried():
    token, calls = _token([httpx.Response(400, json={"error": "invalid_client", "error_description": "bad"})])
    with pytest.raises(ProviderRejected, match="invalid_client"):
        await token.get()
    assert len(calls) == 1


async def test_a_401_drops_the_token_and_is_retriable():
    token, calls = _token([httpx.Response(200, json={"access_token": "one"}),
                           httpx.Response(200, json={"access_token": "two"})])
    assert await token.get() == "one"
    token.check_refused(httpx.Response(200))  # not a 401: nothing happens
    with pytest.raises(ProviderUnavailable, match="401"):
        token.check_refused(httpx.Response(401))
    assert await token.get() == "two"
    assert len(calls) == 2
