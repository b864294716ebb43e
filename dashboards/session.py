"""Dashboard sign-in sessions: a random id in an HttpOnly cookie, the rest kept server-side.

One analytics process serves the dashboard, so the store is that process's memory: a
restart signs everyone out, which is acceptable for a dashboard. The cookie carries 256
random bits and nothing else; the store keys sessions by the id's sha256, so a memory dump
or a log line of the store never holds a usable cookie. A session expires at a fixed time
after sign-in (no sliding renewal) and is dropped on sign-out.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

COOKIE_NAME = "trailpay_session"
#: Beyond this many live sessions the oldest are dropped (a flood of sign-ins cannot grow
#: the process without bound).
MAX_SESSIONS = 5_000


@dataclass(frozen=True)
class Session:
    user_id: str
    email: str
    role: str
    expires_at: datetime


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    """Sessions of one dashboard process, by the sha256 of their cookie value."""

    def __init__(self, lifetime: timedelta,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.lifetime = lifetime
        self._clock = clock
        self._sessions: dict[str, Session] = {}

    def create(self, user_id: str, email: str, role: str) -> tuple[str, Session]:
        """A new session; returns the cookie value (shown to the browser only)."""
        self._expire()
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.pop(next(iter(self._sessions)))
        session_id = secrets.token_urlsafe(32)
        session = Session(user_id, email, role, self._clock() + self.lifetime)
        self._sessions[_key(session_id)] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 100:
            return None
        key = _key(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        if session.expires_at <= self._clock():
            del self._sessions[key]
            return None
        return session

    def drop(self, session_id: str | None) -> bool:
        if not session_id:
            return False
        return self._sessions.pop(_key(session_id), None) is not None

    def drop_user(self, user_id: str) -> int:
        """Sign a user out everywhere (their token was revoked, say)."""
        keys = [k for k, s in self._sessions.items() if s.user_id == user_id]
        for key in keys:
            del self._sessions[key]
        return len(keys)

    def __len__(self) -> int:
        return len(self._sessions)

    def _expire(self) -> None:
        now = self._clock()
        for key in [k for k, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[key]
