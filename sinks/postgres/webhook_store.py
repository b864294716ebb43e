"""Reads and writes of the outgoing-webhook tables (:mod:`sinks.postgres.webhook_tables`).

Used by the admin API (endpoints), the deliverer (enqueue, claim, outcome) and
``trailpay webhooks`` (the log, redelivery). Times come from the database clock
(``now()``), so the deliverer and the tools agree on what is due.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from sinks.postgres.webhook_tables import SETTINGS_ENDPOINT_ID, webhook_deliveries, webhook_endpoints

E = webhook_endpoints
D = webhook_deliveries

#: Delivery statuses.
PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


@dataclass(frozen=True)
class Endpoint:
    id: str
    url: str
    secret: str | None
    previous_secret: str | None
    previous_secret_expires_at: datetime | None
    event_types: tuple[str, ...] | None
    description: str
    enabled: bool
    created_at: datetime

    def wants(self, event_type: str) -> bool:
        return self.event_types is None or event_type in self.event_types

    def public(self) -> dict[str, Any]:
        """The endpoint without its secrets (for lists and logs)."""
        return {"id": self.id, "url": self.url, "event_types": list(self.event_types or []) or None,
                "description": self.description, "enabled": self.enabled,
                "created_at": self.created_at.isoformat(),
                "rotating_until": (self.previous_secret_expires_at.isoformat()
                                   if self.previous_secret and self.previous_secret_expires_at else None)}


def _endpoint(row: Any) -> Endpoint:
    return Endpoint(row.id, row.url, row.secret, row.previous_secret, row.previous_secret_expires_at,
                    tuple(row.event_types) if row.event_types is not None else None,
                    row.description, row.enabled, row.created_at)


@dataclass(frozen=True)
class Due:
    """A delivery claimed for one attempt."""

    id: int
    endpoint_id: str
    event_id: str
    payload: str
    attempts: int
    age_s: float


# ----------------------------------------------------------------------------- endpoints


async def sync_settings_endpoint(engine: AsyncEngine, url: str | None) -> None:
    """Make the ``settings`` endpoint row match ``TRAILPAY_OUTBOUND_WEBHOOK_URL``."""
    async with engine.begin() as conn:
        if url is None:
            await conn.execute(update(E).where(E.c.id == SETTINGS_ENDPOINT_ID)
                               .values(enabled=False, updated_at=func.now()))
            return
        stmt = pg_insert(E).values(id=SETTINGS_ENDPOINT_ID, url=url, description="from the settings",
                                   created_by="settings")
        await conn.execute(stmt.on_conflict_do_update(
            index_elements=[E.c.id], set_={"url": url, "enabled": True, "updated_at": func.now()}))


async def create_endpoint(engine: AsyncEngine, *, endpoint_id: str, url: str, secret: str,
                          event_types: Sequence[str] | None, description: str,
                          created_by: str | None) -> Endpoint:
    async with engine.begin() as conn:
        row = (await conn.execute(insert(E).values(
            id=endpoint_id, url=url, secret=secret, description=description, created_by=created_by,
            event_types=list(event_types) if event_types else None).returning(*E.c))).one()
    return _endpoint(row)


async def list_endpoints(engine: AsyncEngine, *, enabled_only: bool = False) -> list[Endpoint]:
    query = select(E).order_by(E.c.created_at, E.c.id)
    if enabled_only:
        query = query.where(E.c.enabled)
    async with engine.connect() as conn:
        return [_endpoint(r) for r in (await conn.execute(query)).all()]


async def get_endpoint(engine: AsyncEngine, endpoint_id: str) -> Endpoint | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(E).where(E.c.id == endpoint_id))).one_or_none()
    return None if row is None else _endpoint(row)


async def disable_endpoint(engine: AsyncEngine, endpoint_id: str) -> Endpoint | None:
    async with engine.begin() as conn:
        row = (await conn.execute(update(E).where(E.c.id == endpoint_id)
                                  .values(enabled=False, updated_at=func.now())
                                  .returning(*E.c))).one_or_none()
    return None if row is None else _endpoint(row)


async def rotate_secret(engine: AsyncEngine, endpoint_id: str, new_secret: str,
                        grace_s: int) -> Endpoint | None:
    """Make ``new_secret`` the endpoint's secret; the old one signs too for ``grace_s``."""
    async with engine.begin() as conn:
        row = (await conn.execute(
            update(E).where(E.c.id == endpoint_id, E.c.secret.is_not(None))
            .values(previous_secret=E.c.secret, secret=new_secret,
                    previous_secret_expires_at=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, grace_s),
                    updated_at=func.now())
            .returning(*E.c))).one_or_none()
    return None if row is None else _endpoint(row)


# ----------------------------------------------------------------------------- deliveries


async def enqueue(engine: AsyncEngine, rows: list[dict[str, Any]]) -> int:
    """Insert deliveries in the given order (which is their delivery order per key); one
    already there for the same endpoint and event is left as it is. Returns how many are new."""
    if not rows:
        return 0
    async with engine.begin() as conn:
        result = await conn.execute(pg_insert(D).values(rows).on_conflict_do_nothing(
            index_elements=[D.c.endpoint_id, D.c.event_id]).returning(D.c.id))
        return len(result.all())


CLAIM = text("""
WITH due AS (
    SELECT d.id FROM webhook_deliveries d
    JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.enabled
    WHERE d.status = 'pending' AND d.next_attempt_at <= now()
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries p
          WHERE p.endpoint_id = d.endpoint_id AND p.ordering_key = d.ordering_key
            AND p.status = 'pending' AND p.id < d.id)
    ORDER BY d.id
    LIMIT :limit
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries w
SET next_attempt_at = now() + make_interval(secs => :lease_s)
FROM due WHERE w.id = due.id
RETURNING w.id, w.endpoint_id, w.event_id, w.payload, w.attempts,
          extract(epoch FROM now() - w.window_started_at) AS age_s
""")


async def claim_due(engine: AsyncEngine, limit: int, lease_s: float) -> list[Due]:
    """Claim up to ``limit`` due deliveries, each the earliest pending one of its endpoint
    and booking, for ``lease_s`` seconds (another deliverer leaves them alone meanwhile)."""
    async with engine.begin() as conn:
        rows = (await conn.execute(CLAIM, {"limit": limit, "lease_s": lease_s})).all()
    return sorted((Due(r.id, r.endpoint_id, r.event_id, r.payload, r.attempts, float(r.age_s))
                   for r in rows), key=lambda d: d.id)


async def record_attempt(engine: AsyncEngine, delivery_id: int, *, status: str,
                         status_code: int | None, error: str | None,
                         retry_in_s: float | None) -> None:
    """One attempt's outcome: ``delivered``, ``dead``, or ``pending`` again in ``retry_in_s``."""
    values: dict[str, Any] = {"status": status, "attempts": D.c.attempts + 1,
                              "last_attempt_at": func.now(), "last_status_code": status_code,
                              "last_error": error}
    if status == DELIVERED:
        values["delivered_at"] = func.now()
    if retry_in_s is not None:
        values["next_attempt_at"] = func.now() + func.make_interval(0, 0, 0, 0, 0, 0, retry_in_s)
    async with engine.begin() as conn:
        await conn.execute(update(D).where(D.c.id == delivery_id).values(**values))


async def list_deliveries(engine: AsyncEngine, *, status: str | None = None,
                          endpoint_id: str | None = None, reference: str | None = None,
                          event_id: str | None = None, limit: int = 50) -> list[Any]:
    query = select(D).order_by(D.c.id.desc()).limit(limit)
    for column, value in ((D.c.status, status), (D.c.endpoint_id, endpoint_id),
                          (D.c.reference, reference), (D.c.event_id, event_id)):
        if value is not None:
            query = query.where(column == value)
    async with engine.connect() as conn:
        return list((await conn.execute(query)).all())


async def get_delivery(engine: AsyncEngine, delivery_id: int) -> Any | None:
    async with engine.connect() as conn:
        return (await conn.execute(select(D).where(D.c.id == delivery_id))).one_or_none()


async def redeliver(engine: AsyncEngine, delivery_id: int) -> Any | None:
    """Deliver again (delivered or dead): pending now, with a new retry window."""
    async with engine.begin() as conn:
        return (await conn.execute(
            update(D).where(D.c.id == delivery_id)
            .values(status=PENDING, next_attempt_at=func.now(), window_started_at=func.now(),
                    redeliveries=D.c.redeliveries + 1)
            .returning(*D.c))).one_or_none()
