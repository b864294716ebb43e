"""The audit trail in PostgreSQL (``audit_log``): who did what, to what, why, from where.

Two ways to write one:

- :func:`record_audit` — one call, one finished row (``outcome`` ``ok``), for an act that is
  already done or that cannot fail after it is recorded;
- :func:`audited` — write ahead: the row is written ``pending`` *before* the act, then
  marked ``ok`` or ``failed``. An accepted act can then never be missing from the trail
  (the database down means the act is refused, not done unrecorded); a row left
  ``pending`` says the process died not knowing.

Both take an :class:`AuditEntry`. Its id derives from the action and the request id when
there is one, so a retried request (same Idempotency-Key, same request id) writes one row.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Row, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from sinks.postgres.schema import audit_log
from trailpay.domain.events import stable_id

log = logging.getLogger(__name__)
Outcome = Literal["pending", "ok", "failed"]
#: The role of a person at a shell running an ops command (not a token role).
OPS_ROLE = "ops"
MAX_LIST = 1000


def _clip(value: str | None, most: int) -> str | None:
    return value[:most] if value is not None else None


@dataclass(frozen=True)
class AuditEntry:
    """One act: ``actor`` (a user id, or the OS user of a command) with ``role`` did
    ``action`` (``payment.refund``, ``dlq.redrive``, ``webhook_endpoint.create`` ...) to
    ``target`` (a payment reference, a token or dead-letter id) for ``reason``."""

    actor: str
    role: str
    action: str
    target: str
    reason: str | None = None
    request_id: str | None = None
    source: str | None = None
    actor_email: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: The id when there is no request id (an ops command run).
    random_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def id(self) -> str:
        if self.request_id:
            return stable_id("audit", self.action, self.target, self.request_id)
        return self.random_id

    def values(self, outcome: Outcome) -> dict[str, Any]:
        """The ``audit_log`` row (columns bounded to their sizes)."""
        return {"id": self.id, "actor": _clip(self.actor, 200) or "unknown",
                "actor_email": _clip(self.actor_email, 320), "role": self.role[:16],
                "action": self.action[:64], "target": _clip(self.target, 200) or "-",
                "reason": self.reason, "request_id": _clip(self.request_id, 200),
                "source": _clip(self.source, 200), "outcome": outcome,
                "details": self.details}


async def _insert(engine: AsyncEngine, values: dict[str, Any]) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(audit_log).values(**values)
                           .on_conflict_do_nothing(index_elements=[audit_log.c.id]))


async def _mark(engine: AsyncEngine, audit_id: str, outcome: Outcome,
                details: dict[str, Any] | None = None) -> None:
    values: dict[str, Any] = {"outcome": outcome}
    if details:
        values["details"] = audit_log.c.details.op("||")(details)
    async with engine.begin() as conn:
        await conn.execute(update(audit_log).where(audit_log.c.id == audit_id).values(**values))


async def record_audit(engine: AsyncEngine, entry: AuditEntry, outcome: Outcome = "ok") -> str:
    """Write one audit row (once per id); returns its id. Raises SQLAlchemy's errors: a
    caller that must not act unrecorded lets them refuse the act."""
    values = entry.values(outcome)
    await _insert(engine, values)
    return str(values["id"])


@asynccontextmanager
async def audited(engine: AsyncEngine, entry: AuditEntry) -> AsyncIterator[dict[str, Any]]:
    """``async with audited(engine, entry) as extra: <the act>``: the row is written
    ``pending`` first (its failure propagates, so the act does not happen), then ``ok``, or
    ``failed`` (with the error's type) when the act raised. Keys put in ``extra`` during
    the act (what it did: counts, offsets) are merged into the row's details."""
    values = entry.values("pending")
    await _insert(engine, values)
    extra: dict[str, Any] = {}
    try:
        yield extra
    except BaseException as exc:
        await _mark_quietly(engine, values["id"], "failed", {**extra, "error": type(exc).__name__})
        raise
    await _mark_quietly(engine, values["id"], "ok", extra)


async def _mark_quietly(engine: AsyncEngine, audit_id: str, outcome: Outcome,
                        details: dict[str, Any]) -> None:
    """The act is done (or failed) whatever this write does: a row it cannot mark stays
    ``pending``, which the trail shows as "did not learn the end"."""
    try:
        await _mark(engine, audit_id, outcome, details)
    except SQLAlchemyError as exc:
        log.warning("audit %s: could not mark %s (%s); it stays pending", audit_id, outcome,
                    type(exc).__name__)


@dataclass(frozen=True)
class AuditFilter:
    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None  # a user id, an e-mail or an OS user
    target: str | None = None
    action: str | None = None
    limit: int = 100
    offset: int = 0


async def list_audit(engine: AsyncEngine, flt: AuditFilter) -> list[Row[Any]]:
    """Matching rows, newest first."""
    query = select(audit_log)
    if flt.since is not None:
        query = query.where(audit_log.c.at >= flt.since)
    if flt.until is not None:
        query = query.where(audit_log.c.at < flt.until)
    if flt.actor:
        query = query.where(or_(audit_log.c.actor == flt.actor,
                                audit_log.c.actor_email == flt.actor.strip().lower()))
    if flt.target:
        query = query.where(audit_log.c.target == flt.target)
    if flt.action:
        query = query.where(audit_log.c.action == flt.action)
    query = query.order_by(audit_log.c.at.desc(), audit_log.c.id)
    query = query.limit(min(max(flt.limit, 1), MAX_LIST)).offset(max(flt.offset, 0))
    async with engine.connect() as conn:
        return list((await conn.execute(query)).all())


def audit_json(row: Row[Any]) -> dict[str, Any]:
    """An audit row for the API and ``trailpay audit list --json``."""
    m = row._mapping
    return {"id": m["id"], "at": m["at"].isoformat(), "actor": m["actor"],
            "actor_email": m["actor_email"], "role": m["role"], "action": m["action"],
            "target": m["target"], "reason": m["reason"], "request_id": m["request_id"],
            "source": m["source"], "outcome": m["outcome"], "details": m["details"] or {}}
