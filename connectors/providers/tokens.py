"""An OAuth access token cached until shortly before it expires (Daraja, Airtel)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


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
