"""``Idempotency-Key`` on every POST: replay the first response, refuse a different body.

The key is claimed with an insert before the work starts (``status_code`` NULL = in flight),
so two concurrent requests with one key cannot both run. A 4xx answer is stored and replayed
like a success; a 5xx (Kafka or the database unreachable) releases the key so the client can
retry. Keys live :data:`KEY_TTL` and are scoped per user.

A claim whose process died before answering (kill -9 mid-request) would hold the key for
ever; a claim older than :data:`IN_FLIGHT_LEASE` may therefore be taken over by a retry.
That is safe because the work derives its ids from the key (:func:`request_seed`: the
payment reference, the cancel, refund and confirm ids), so a second run emits the records
the first one may already have sent, which the state machine takes as duplicates.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request

from connectors.ingress.auth import User
from connectors.ingress.errors import ApiError, invalid, unavailable
from sinks.postgres.schema import idempotency_keys
from trailpay.domain.events import stable_id, utcnow

HEADER = "Idempotency-Key"
KEY_TTL = timedelta(hours=24)
#: Longer than a request can take (a 5 s database pool wait plus the Kafka acknowledgement,
#: ``webhook_ack_timeout_s``, 5 s by default); after it an unanswered claim may be retaken.
IN_FLIGHT_LEASE = timedelta(seconds=30)
MAX_KEY_LEN = 255
#: Printable ASCII only: a UUID or a client's own id fits; a NUL would reach PostgreSQL.
_KEY = re.compile(f"[ -~]{{1,{MAX_KEY_LEN}}}")

Handler = Callable[[], Awaitable[tuple[int, dict[str, Any]]]]


def request_hash(method: str, path: str, body: bytes) -> str:
    """Same JSON content (whatever the key order or spacing) -> same hash."""
    try:
        canonical = json.dumps(json.loads(body, parse_float=Decimal), sort_keys=True,
                               separators=(",", ":"), default=str).encode()
    except (ValueError, RecursionError):  # read_body refuses both first; kept as a safety net
        canonical = body
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


async def _claim(engine: AsyncEngine, user_id: str, key: str, digest: str) -> bool:
    async with engine.begin() as conn:
        row = (await conn.execute(
            insert(idempotency_keys).values(user_id=user_id, key=key, request_hash=digest)
            .on_conflict_do_nothing().returning(idempotency_keys.c.key)
        )).first()
    return row is not None


def request_seed(request: Request, user: User, body: bytes) -> str | None:
    """A stable seed for the ids a request makes, when it carries an ``Idempotency-Key``:
    the same user, key and request give the same seed (a key reused after :data:`KEY_TTL`
    for a different request gives another)."""
    key = (request.headers.get(HEADER) or "").strip()
    if not _KEY.fullmatch(key):
        return None
    return stable_id("idempotency", user.id, key, request_hash(request.method, request.url.path, body))


async def _take_over(engine: AsyncEngine, user_id: str, key: str, digest: str) -> bool:
    """Claim a key whose in-flight claim is older than the lease (its request died)."""
    async with engine.begin() as conn:
        row = (await conn.execute(
            update(idempotency_keys).where(
                idempotency_keys.c.user_id == user_id, idempotency_keys.c.key == key,
                idempotency_keys.c.request_hash == digest,
                idempotency_keys.c.status_code.is_(None),
                idempotency_keys.c.created_at < utcnow() - IN_FLIGHT_LEASE,
            ).values(created_at=utcnow()).returning(idempotency_keys.c.key)
        )).first()
    return row is not None


async def _release(engine: AsyncEngine, user_id: str, key: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(idempotency_keys).where(
            idempotency_keys.c.user_id == user_id, idempotency_keys.c.key == key))


async def _store(engine: AsyncEngine, user_id: str, key: str, status: int,
                 payload: dict[str, Any]) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(idempotency_keys).where(
            idempotency_keys.c.user_id == user_id, idempotency_keys.c.key == key,
        ).values(status_code=status, response_body=payload))


async def run(engine: AsyncEngine, request: Request, user: User, body: bytes,
              handler: Handler, *, headers: dict[str, str] | None = None) -> JSONResponse:
    """Run ``handler`` once per (user, Idempotency-Key), and replay its answer after; again
    only if the first run died unanswered (see :data:`IN_FLIGHT_LEASE`)."""
    key = request.headers.get(HEADER)
    if key is None:
        status, payload = await handler()
        return JSONResponse(payload, status_code=status, headers=headers)
    key = key.strip()
    if not _KEY.fullmatch(key):
        raise invalid({HEADER: f"must be 1 to {MAX_KEY_LEN} printable ASCII characters"})
    digest = request_hash(request.method, request.url.path, body)
    try:
        claimed = await _claim(engine, user.id, key, digest)
        if not claimed:
            replay = await _existing(engine, user.id, key, digest)
            if replay is not None:
                return replay
            claimed = await _claim(engine, user.id, key, digest) or \
                await _take_over(engine, user.id, key, digest)
            if not claimed:
                raise ApiError(409, "idempotency_in_progress",
                               "a request with this Idempotency-Key is being processed",
                               headers={"Retry-After": "1"})
    except SQLAlchemyError as exc:
        raise unavailable("the database is not reachable") from exc
    try:
        status, payload = await handler()
    except ApiError as exc:
        if exc.status >= 500:
            await _release(engine, user.id, key)
        else:
            await _store(engine, user.id, key, exc.status, exc.body())
        raise
    except BaseException:
        await _release(engine, user.id, key)
        raise
    await _store(engine, user.id, key, status, payload)
    return JSONResponse(payload, status_code=status, headers=headers)


async def _existing(engine: AsyncEngine, user_id: str, key: str, digest: str) -> JSONResponse | None:
    """The stored answer; None if the key expired (and was removed) so it can be claimed."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(idempotency_keys).where(
            idempotency_keys.c.user_id == user_id, idempotency_keys.c.key == key))).first()
    if row is None:
        return None
    if row.created_at < utcnow() - KEY_TTL:
        await _release(engine, user_id, key)
        return None
    if row.request_hash != digest:
        raise ApiError(409, "idempotency_key_reused",
                       "this Idempotency-Key was used with a different request body or endpoint")
    if row.status_code is None:
        if row.created_at < utcnow() - IN_FLIGHT_LEASE:
            return None  # its request died: the caller takes the claim over
        raise ApiError(409, "idempotency_in_progress",
                       "a request with this Idempotency-Key is being processed",
                       headers={"Retry-After": "1"})
    return JSONResponse(row.response_body, status_code=row.status_code,
                        headers={"Idempotent-Replayed": "true"})
