"""An OAuth access token cached until shortly before it expires (Daraja, Airtel)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from connectors.providers.http import ProviderUnavailable, check_response, with_retries
from trailpay.retry import RetryPolicy


class CachedToken:
    """Fetches a token once and reuses it until ``refresh_margin_s`` before expiry.

    ``fetch`` returns ``(token, lifetime_seconds)``. Concurrent callers share one fetch.
    """

    def __init__(self, fetch: Callable[[], Awaitable[tuple[str, float]]], *,
                 refresh_margin_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._margin = refresh_margin_s
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0

    def _fresh(self) -> bool:
        return self._token is not None and self._clock() < self._expires_at

    async def get(self) -> str:
        if self._fresh():
            assert self._token is not None
            return self._token
        async with self._lock:
            if not self._fresh():
                token, lifetime = await self._fetch()
                self.fetches += 1
                self._token = token
                # Refresh before expiry; a very short lifetime is refreshed at half-life.
                margin = min(self._margin, lifetime / 2)
                self._expires_at = self._clock() + lifetime - margin
            assert self._token is not None
            return self._token

    def invalidate(self) -> None:
        self._token = None
        self._expires_at = 0.0


class ClientCredentialsToken(CachedToken):
    """A provider's OAuth client-credentials token (Daraja, Airtel), cached.

    ``request`` sends the provider's token request; the reply's ``access_token`` and
    ``expires_in`` (``default_lifetime_s`` when absent) are kept until shortly before expiry.
    The fetch retries under ``policy`` like any provider call.

    A call the provider refuses for its token (HTTP 401, or an error body whose code is one
    of ``refused_codes`` whatever the status: Daraja answers an invalid token with HTTP 404
    ``404.001.03``) drops the token and is sent once more with a fresh one
    (:meth:`send`); refused again, it raises :class:`ProviderUnavailable`.
    """

    def __init__(self, provider: str, request: Callable[[], Awaitable[httpx.Response]],
                 describe: Callable[[Any], tuple[str, str]], policy: RetryPolicy, *,
                 default_lifetime_s: float, refused_codes: frozenset[str] = frozenset()) -> None:
        super().__init__(self._fetch_with_retries)
        self.provider = provider
        self._request = request
        self._describe = describe
        self._policy = policy
        self._default_lifetime_s = default_lifetime_s
        self._refused_codes = refused_codes
        self.refusals = 0

    async def _fetch_once(self) -> tuple[str, float]:
        body = check_response(self.provider, await self._request(), self._describe)
        try:
            return str(body["access_token"]), float(body.get("expires_in", self._default_lifetime_s))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProviderUnavailable(self.provider, "bad_token_reply", "no access_token") from exc

    async def _fetch_with_retries(self) -> tuple[str, float]:
        return await with_retries(self.provider, self._fetch_once, self._policy, what="oauth")

    async def bearer(self) -> dict[str, str]:
        """The ``Authorization`` header for a call."""
        return {"Authorization": f"Bearer {await self.get()}"}

    def refusal_code(self, response: httpx.Response) -> str | None:
        """The code of a token refusal (``"401"`` for a bare 401), or None."""
        if response.is_success:
            return None
        if self._refused_codes:
            try:
                code = self._describe(response.json())[0]
            except ValueError:
                code = ""
            if code in self._refused_codes:
                return code
        return "401" if response.status_code == 401 else None

    def check_refused(self, response: httpx.Response) -> None:
        """On a token refusal (expired or revoked): forget it and raise a retriable error."""
        code = self.refusal_code(response)
        if code is not None:
            self.invalidate()
            self.refusals += 1
            raise ProviderUnavailable(self.provider, code, "access token refused")

    async def send(self, call: Callable[[dict[str, str]], Awaitable[httpx.Response]]) -> httpx.Response:
        """``call(headers)`` with the bearer header; a token refusal drops the token and
        calls once more with a fresh one (refused again: :class:`ProviderUnavailable`)."""
        response = await call(await self.bearer())
        if self.refusal_code(response) is None:
            return response
        self.invalidate()
        self.refusals += 1
        response = await call(await self.bearer())
        self.check_refused(response)
        return response
