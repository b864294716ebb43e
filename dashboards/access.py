"""Who may read and who may write on the analytics service.

A caller proves who they are in one of two ways:

- ``Authorization: Token <token>`` (or ``Bearer``): an API token of a user (looked up by its
  sha256, as the ingress does), or the analytics service token TrailPay's own tools send
  (``analytics_service_token``, generated per data directory by ``trailpay up``);
- the ``trailpay_session`` cookie the dashboard page got by posting a token once to
  ``POST /api/session`` (see :mod:`dashboards.session`).

Reading figures (``/api/metrics*``) needs the role viewer, support or admin (or the service
token); the payment explorer shows customers' payments and needs support or admin; writes
(the ClickHouse replay entry point) need an admin token or the service token in the
``Authorization`` header: a browser session never writes.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from fastapi import HTTPException, Request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from connectors.ingress.api_tokens import hash_token
from connectors.ingress.auth import TokenCache
from connectors.ingress.ratelimit import FailureLimiter
from dashboards.session import COOKIE_NAME, SessionStore
from trailpay.settings import Settings

READER_ROLES = frozenset({"viewer", "support", "admin"})
EXPLORER_ROLES = frozenset({"support", "admin"})
SERVICE = "service"
CHALLENGE = {"WWW-Authenticate": "Token"}


@dataclass(frozen=True)
class Principal:
    user_id: str
    email: str
    role: str
    via: Literal["session", "token", "service"]


class Access:
    """The analytics process's sessions, token cache and failed-sign-in limiter."""

    def __init__(self, settings: Settings) -> None:
        self.sessions = SessionStore(timedelta(hours=settings.dashboard_session_hours))
        self.tokens = TokenCache()
        self.limiter = FailureLimiter(settings.auth_failure_burst, settings.auth_failure_per_s)
        secret = settings.analytics_service_token
        self.service_token = secret.get_secret_value() if secret is not None else None
        self.secure_cookie = settings.dashboard_cookie_secure
        self.lifetime = timedelta(hours=settings.dashboard_session_hours)


def access_of(request: Request) -> Access:
    access: Access = request.app.state.trailpay["access"]
    return access


def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine | None = request.app.state.trailpay.get("db")
    if engine is None:
        raise HTTPException(503, "no user database configured (TRAILPAY_DATABASE_URL): "
                                 "the analytics service cannot check tokens")
    return engine


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() not in ("token", "bearer") or not value.strip():
        raise HTTPException(401, "send Authorization: Token <token>", headers=CHALLENGE)
    return value.strip()


async def from_token(request: Request, token: str) -> Principal:
    """The owner of ``token``; 401 if it is unknown or revoked, 429 after many failures."""
    access = access_of(request)
    if access.service_token and hmac.compare_digest(token.encode(), access.service_token.encode()):
        return Principal(SERVICE, SERVICE, SERVICE, "service")
    address = request.client.host if request.client else "unknown"
    wait = access.limiter.retry_after(address)
    if wait is not None:
        raise HTTPException(429, f"too many failed sign-ins from this address; retry in {wait} s",
                            headers={"Retry-After": str(wait)})
    try:
        user = await access.tokens.lookup(_engine(request), hash_token(token))
    except SQLAlchemyError as exc:
        raise HTTPException(503, "the user database is not reachable") from exc
    if user is None:
        access.limiter.failed(address)
        raise HTTPException(401, "the token is unknown or revoked", headers=CHALLENGE)
    return Principal(user.id, user.email, user.role, "token")


async def principal(request: Request) -> Principal:
    """The caller, by token header first, else by session cookie; 401 when neither."""
    token = bearer(request)
    if token is not None:
        return await from_token(request, token)
    session = access_of(request).sessions.get(request.cookies.get(COOKIE_NAME))
    if session is None:
        reason = ("the dashboard session expired or ended; sign in again"
                  if request.cookies.get(COOKIE_NAME) else
                  "sign in on the dashboard page or send Authorization: Token <token>")
        raise HTTPException(401, reason, headers=CHALLENGE)
    return Principal(session.user_id, session.email, session.role, "session")


async def reader(request: Request) -> Principal:
    """Dependency: may read the figures (viewer, support, admin, or the service token)."""
    who = await principal(request)
    if who.role not in READER_ROLES and who.via != "service":
        raise HTTPException(403, "the dashboard is for viewer, support and admin users "
                                 f"(this token's user has the role {who.role})")
    return who


async def explorer_user(request: Request) -> Principal:
    """Dependency: may look at customers' payments (support or admin)."""
    who = await principal(request)
    if who.role not in EXPLORER_ROLES:
        raise HTTPException(403, "the payment explorer shows customers' payments: it is for "
                                 f"support and admin users (you are {who.role})")
    return who


async def writer(request: Request) -> Principal:
    """Dependency: may write figures (an admin token or the service token, in the header)."""
    token = bearer(request)
    if token is None:
        raise HTTPException(401, "writes need Authorization: Token <admin or service token> "
                                 "(a dashboard session cannot write)", headers=CHALLENGE)
    who = await from_token(request, token)
    if who.role != "admin" and who.via != "service":
        raise HTTPException(403, f"writes are for admin users and TrailPay's tools (you are {who.role})")
    return who
