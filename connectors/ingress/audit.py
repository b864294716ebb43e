"""Audit records of what people do through the API (see :mod:`sinks.postgres.audit`).

A route that changes something calls, before it answers::

    await audit.record(ctx, request, user, "webhook_endpoint.create", endpoint_id,
                       reason=None, request_id=None, details={"url": url})

or, around an act that may still fail (publishing to Kafka), the write-ahead form::

    async with audit.audited(ctx, request, user, "payment.refund", reference, ...):
        await service.publish(...)

Either way the row is in PostgreSQL before the answer leaves; the database unreachable
answers 503 and the act is not done.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request

from connectors.ingress.auth import User
from connectors.ingress.context import IngressContext
from connectors.ingress.errors import unavailable
from sinks.postgres import audit as store
from sinks.postgres.audit import AuditEntry

#: Correlation headers kept with the record (printable ASCII, bounded).
CORRELATION_HEADERS = ("Idempotency-Key", "X-Request-Id")
_PRINTABLE = re.compile(r"[ -~]{1,200}")


def source_of(request: Request) -> str:
    """The client's address as the server saw it (the same one the failed-login limit uses)."""
    return request.client.host if request.client else "unknown"


def entry_for(request: Request, user: User, action: str, target: str, *,
              reason: str | None = None, request_id: str | None = None,
              details: dict[str, Any] | None = None) -> AuditEntry:
    """The audit entry of ``user`` doing ``action`` to ``target`` in ``request``."""
    extra = dict(details or {})
    for name in CORRELATION_HEADERS:
        value = (request.headers.get(name) or "").strip()
        if value and _PRINTABLE.fullmatch(value):
            extra[name.lower().replace("-", "_")] = value
    return AuditEntry(actor=user.id, actor_email=user.email, role=user.role, action=action,
                      target=target, reason=reason, request_id=request_id,
                      source=source_of(request), details=extra)


async def record(ctx: IngressContext, request: Request, user: User, action: str, target: str, *,
                 reason: str | None = None, request_id: str | None = None,
                 details: dict[str, Any] | None = None) -> str:
    """Write one finished audit row for an act done in ``request``; 503 if PostgreSQL
    cannot take it. Returns the row's id."""
    entry = entry_for(request, user, action, target, reason=reason, request_id=request_id,
                      details=details)
    try:
        return await store.record_audit(ctx.db(), entry)
    except SQLAlchemyError as exc:
        raise unavailable("the audit log is not reachable; nothing was done") from exc


@asynccontextmanager
async def audited(ctx: IngressContext, request: Request, user: User, action: str, target: str, *,
                  reason: str | None = None, request_id: str | None = None,
                  details: dict[str, Any] | None = None) -> AsyncIterator[dict[str, Any]]:
    """Write ahead (``pending``), run the act, mark ``ok`` or ``failed``. PostgreSQL down
    before the act: 503 and the act is not run."""
    entry = entry_for(request, user, action, target, reason=reason, request_id=request_id,
                      details=details)
    try:
        async with store.audited(ctx.db(), entry) as extra:
            yield extra
    except SQLAlchemyError as exc:
        raise unavailable("the audit log is not reachable; nothing was done") from exc
