"""Users and API tokens: ``Authorization: Token <token>``, stored as sha256 hex only.

A token is shown once when issued (``trailpay tokens create``) and never stored in clear.
Lookups are cached for a few seconds so a burst of requests costs one query; a revoked token
stops working within :data:`CACHE_TTL_S`.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from connectors.ingress.api_tokens import hash_token, new_token
from connectors.ingress.context import IngressContext, get_context
from connectors.ingress.errors import ApiError, unavailable
from connectors.ingress.ratelimit import FailureLimiter
from sinks.postgres.schema import api_tokens, users
from trailpay.domain.errors import PermanentError

Role = Literal["user", "admin", "support", "viewer"]
#: Roles that may act on any payment (cancel, refund; with a reason) and read the back office.
STAFF_ROLES = frozenset({"admin", "support"})
CACHE_TTL_S = 5.0
TOUCH_EVERY_S = 60.0


@dataclass(frozen=True)
class User:
    id: str
    email: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_staff(self) -> bool:
        """Admin or support: may cancel and refund any payment, with a reason."""
        return self.role in STAFF_ROLES


class UserExists(PermanentError):
    """A user with that e-mail (or id) already exists."""


class NoSuchUser(PermanentError):
    """No user has that e-mail."""


def new_user_id() -> str:
    return "usr_" + secrets.token_hex(8)


async def create_user(engine: AsyncEngine, email: str, role: Role = "user",
                      user_id: str | None = None) -> User:
    user = User(id=user_id or new_user_id(), email=email.strip().lower(), role=role)
    async with engine.begin() as conn:
        row = (await conn.execute(
            insert(users).values(id=user.id, email=user.email, role=user.role)
            .on_conflict_do_nothing().returning(users.c.id)
        )).first()
    if row is None:
        raise UserExists(f"a user with e-mail {user.email} or id {user.id} already exists")
    return user


async def find_user(engine: AsyncEngine, email: str) -> User:
    async with engine.connect() as conn:
        row = (await conn.execute(
            select(users.c.id, users.c.email, users.c.role)
            .where(users.c.email == email.strip().lower())
        )).first()
    if row is None:
        raise NoSuchUser(f"no user with e-mail {email}; create one with `trailpay users create`")
    return User(id=row.id, email=row.email, role=row.role)


async def create_token(engine: AsyncEngine, email: str, name: str = "") -> tuple[str, User]:
    """Issue a token for the user with ``email``; returns the clear token (shown once)."""
    user = await find_user(engine, email)
    token = new_token()
    async with engine.begin() as conn:
        await conn.execute(api_tokens.insert().values(
            token_hash=hash_token(token), user_id=user.id, name=name))
    return token, user


async def revoke_token(engine: AsyncEngine, token: str) -> bool:
    async with engine.begin() as conn:
        result = await conn.execute(
            update(api_tokens).where(api_tokens.c.token_hash == hash_token(token))
            .values(revoked_at=func.now()))
    return bool(result.rowcount)


#: A token's id, as ``tokens list`` shows it: the first hex digits of its sha256 (which
#: says nothing of the token itself), enough to tell one from another.
TOKEN_ID_LEN = 12
MIN_TOKEN_ID_LEN = 6


@dataclass(frozen=True)
class TokenInfo:
    id: str
    user_id: str
    email: str
    role: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class NoSuchToken(PermanentError):
    """No token, or more than one, has that id."""


async def list_tokens(engine: AsyncEngine, email: str | None = None, *,
                      include_revoked: bool = False) -> list[TokenInfo]:
    """Every token (of ``email``'s user), oldest first; never the secret."""
    query = (select(api_tokens, users.c.email, users.c.role)
             .join(users, users.c.id == api_tokens.c.user_id)
             .order_by(api_tokens.c.created_at, api_tokens.c.token_hash))
    if email is not None:
        query = query.where(users.c.email == email.strip().lower())
    if not include_revoked:
        query = query.where(api_tokens.c.revoked_at.is_(None))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [TokenInfo(id=r.token_hash[:TOKEN_ID_LEN], user_id=r.user_id, email=r.email,
                      role=r.role, name=r.name, created_at=r.created_at,
                      last_used_at=r.last_used_at, revoked_at=r.revoked_at) for r in rows]


async def revoke_token_id(engine: AsyncEngine, token_id: str) -> TokenInfo:
    """Revoke the one live token whose id starts with ``token_id``; it stops working within
    :data:`CACHE_TTL_S` in every running ingress."""
    prefix = token_id.strip().lower()
    if len(prefix) < MIN_TOKEN_ID_LEN or any(c not in "0123456789abcdef" for c in prefix):
        raise NoSuchToken(f"a token id is at least {MIN_TOKEN_ID_LEN} hex digits "
                          "(see `trailpay tokens list`)")
    async with engine.begin() as conn:
        rows = (await conn.execute(
            select(api_tokens.c.token_hash).where(api_tokens.c.token_hash.startswith(prefix),
                                                  api_tokens.c.revoked_at.is_(None))
        )).all()
        if len(rows) != 1:
            raise NoSuchToken(f"{len(rows)} live tokens have an id starting {prefix!r}; "
                              "give one exactly (see `trailpay tokens list`)")
        await conn.execute(update(api_tokens).where(api_tokens.c.token_hash == rows[0].token_hash)
                           .values(revoked_at=func.now()))
    revoked = [t for t in await list_tokens(engine, include_revoked=True)
               if t.id == rows[0].token_hash[:TOKEN_ID_LEN]]
    return revoked[0]


class TokenCache:
    def __init__(self) -> None:
        self._users: dict[str, tuple[User | None, float]] = {}
        self._touched: dict[str, float] = {}

    async def lookup(self, engine: AsyncEngine, token_hash: str) -> User | None:
        now = time.monotonic()
        hit = self._users.get(token_hash)
        if hit is not None and hit[1] > now:
            return hit[0]
        async with engine.connect() as conn:
            row = (await conn.execute(
                select(users.c.id, users.c.email, users.c.role)
                .join(api_tokens, api_tokens.c.user_id == users.c.id)
                .where(api_tokens.c.token_hash == token_hash, api_tokens.c.revoked_at.is_(None))
            )).first()
        user = User(id=row.id, email=row.email, role=row.role) if row else None
        if len(self._users) > 10_000:
            self._users.clear()
        self._users[token_hash] = (user, now + CACHE_TTL_S)
        if user is not None and self._touched.get(token_hash, 0) < now - TOUCH_EVERY_S:
            self._touched[token_hash] = now
            async with engine.begin() as conn:
                await conn.execute(update(api_tokens)
                                   .where(api_tokens.c.token_hash == token_hash)
                                   .values(last_used_at=func.now()))
        return user


_scheme = APIKeyHeader(name="Authorization", auto_error=False,
                       description="`Token <token>` (issue one with `trailpay tokens create`)")


def _token_of(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() not in ("token", "bearer") or not value.strip():
        return None
    return value.strip()


async def current_user(request: Request, authorization: str | None = Depends(_scheme),
                       ctx: IngressContext = Depends(get_context)) -> User:
    token = _token_of(authorization)
    challenge = {"WWW-Authenticate": "Token"}
    if token is None:
        raise ApiError(401, "not_authenticated",
                       "send Authorization: Token <token>", headers=challenge)
    limiter: FailureLimiter = request.app.state.auth_limiter
    address = request.client.host if request.client else "unknown"
    wait = limiter.retry_after(address)
    if wait is not None:
        raise ApiError(429, "too_many_failed_logins",
                       f"too many failed authentications from this address; retry in {wait} s",
                       headers={"Retry-After": str(wait)})
    cache: TokenCache = request.app.state.token_cache
    try:
        user = await cache.lookup(ctx.db(), hash_token(token))
    except SQLAlchemyError as exc:
        raise unavailable("the user database is not reachable") from exc
    if user is None:
        limiter.failed(address)
        raise ApiError(401, "invalid_token", "the token is unknown or revoked", headers=challenge)
    if user.role == "viewer":  # an analyst's token reads the dashboard; it takes no payments
        raise ApiError(403, "forbidden", "the viewer role only reads the dashboard's figures; "
                                         "the payments API needs a user, support or admin token")
    return user


async def admin_user(user: User = Depends(current_user)) -> User:
    if not user.is_admin:
        raise ApiError(403, "forbidden", "this endpoint needs the admin role")
    return user


async def staff_user(user: User = Depends(current_user)) -> User:
    if not user.is_staff:
        raise ApiError(403, "forbidden", "this endpoint needs the support or admin role")
    return user
