"""Dead letters in PostgreSQL: list, show, re-drive, purge.

The PostgreSQL sink copies every record of deadletters.v1 into ``dead_letters`` (reason,
coordinates and the original bytes). A re-drive produces the original bytes (or a fixed
version) onto the source topic, keyed as originally, with headers naming the dead letter
(``trailpay-redrive-of``) and the attempt (``trailpay-redrive-count``), and then stamps
the row (``redriven_at``, ``redrive_count``). Purging stamps ``purged_at`` and keeps the row
for audit; a purged letter is never re-driven.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from sinks.postgres.schema import dead_letters
from trailpay import codec, topics
from trailpay.domain.errors import InvalidRecord, RetriableError, TrailPayError

REDRIVE_HEADER = "trailpay-redrive-of"
REDRIVE_COUNT_HEADER = "trailpay-redrive-count"


class DeadLetterError(TrailPayError):
    """A dead letter cannot be found, shown or re-driven; the message says why."""


@dataclass(frozen=True)
class DlqFilter:
    topic: str | None = None
    error_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    reference: str | None = None
    stage: str | None = None
    include_purged: bool = False
    limit: int = 100


def _filtered(stmt: Select[Any], flt: DlqFilter) -> Select[Any]:
    t = dead_letters
    if flt.topic:
        stmt = stmt.where(t.c.source_topic == flt.topic)
    if flt.error_type:
        stmt = stmt.where(t.c.error_type == flt.error_type)
    if flt.stage:
        stmt = stmt.where(t.c.stage == flt.stage)
    if flt.since:
        stmt = stmt.where(t.c.failed_at >= flt.since)
    if flt.until:
        stmt = stmt.where(t.c.failed_at < flt.until)
    if flt.reference:
        stmt = stmt.where(or_(t.c.reference == flt.reference, t.c.key == flt.reference.encode()))
    if not flt.include_purged:
        stmt = stmt.where(t.c.purged_at.is_(None))
    return stmt


async def list_letters(engine: AsyncEngine, flt: DlqFilter) -> tuple[list[dict[str, Any]], int]:
    """(newest letters matching, how many match in all)."""
    t = dead_letters
    stmt = _filtered(select(t), flt).order_by(t.c.failed_at.desc(), t.c.event_id).limit(flt.limit)
    count = _filtered(select(func.count()).select_from(t), flt)
    async with engine.connect() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(stmt)]
        total = int((await conn.execute(count)).scalar_one())
    return rows, total


async def get_letter(engine: AsyncEngine, ident: str) -> dict[str, Any]:
    """One letter by event id or an unambiguous prefix of it (at least 6 characters)."""
    t = dead_letters
    async with engine.connect() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(select(t).where(t.c.event_id == ident))]
        if not rows and len(ident) >= 6:
            rows = [dict(r._mapping) for r in await conn.execute(
                select(t).where(t.c.event_id.startswith(ident, autoescape=True)).limit(2))]
    if not rows:
        raise DeadLetterError(f"no dead letter {ident!r}; `trailpay dlq list` shows their ids")
    if len(rows) > 1:
        raise DeadLetterError(f"{ident!r} matches several dead letters; give more of the id")
    return rows[0]


def render_bytes(data: bytes | None) -> tuple[str, str]:
    """(kind, text): pretty JSON when the bytes are JSON, else UTF-8 text, else hex + base64."""
    if data is None:
        return "none", ""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        hexed = binascii.hexlify(data, " ", -2).decode()
        return "binary", f"hex: {hexed}\nbase64: {base64.b64encode(data).decode()}"
    try:
        return "json", json.dumps(json.loads(text), indent=2, ensure_ascii=False, sort_keys=False)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
        return "text", text


def check_value(topic: str, value: bytes) -> str | None:
    """Why ``value`` would fail again on ``topic`` (its contract), or None when it decodes."""
    try:
        codec.decode(topic, value)
    except InvalidRecord as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - whatever stops it decoding would stop it again
        return f"{type(exc).__name__}: {exc}"
    return None


@dataclass(frozen=True)
class Redriven:
    event_id: str
    topic: str
    partition: int
    offset: int
    redrive_count: int


async def redrive(engine: AsyncEngine, producer: AIOKafkaProducer, letter: dict[str, Any], *,
                  value: bytes | None = None, key: bytes | None = None) -> Redriven:
    """Produce the letter's bytes (or ``value``) back onto its source topic and stamp it."""
    t = dead_letters
    if letter["purged_at"] is not None:
        raise DeadLetterError(f"dead letter {letter['event_id']} was purged at "
                              f"{letter['purged_at']:%Y-%m-%d %H:%M:%S}Z; purged letters are not "
                              "re-driven (produce a new record instead)")
    topic = letter["source_topic"]
    if topic == topics.DEAD_LETTERS or topic not in topics.BY_NAME:
        raise DeadLetterError(f"dead letter {letter['event_id']} came from {topic!r}, which is not a "
                              "topic it can go back to")
    count = int(letter["redrive_count"] or 0) + 1
    headers = [(REDRIVE_HEADER, letter["event_id"].encode()),
               (REDRIVE_COUNT_HEADER, str(count).encode())]
    try:
        meta = await producer.send_and_wait(
            topic, value if value is not None else bytes(letter["value"]),
            key=key if key is not None else (bytes(letter["key"]) if letter["key"] is not None else None),
            headers=headers)
    except Exception as exc:
        raise RetriableError(f"Kafka did not take the re-driven record: {exc}; try again") from exc
    async with engine.begin() as conn:
        await conn.execute(update(t).where(t.c.event_id == letter["event_id"]).values(
            redriven_at=func.now(), redrive_count=t.c.redrive_count + 1))
    return Redriven(letter["event_id"], topic, meta.partition, meta.offset, count)


async def purge(engine: AsyncEngine, event_ids: list[str]) -> int:
    """Mark letters purged (rows are kept for audit); returns how many were newly purged."""
    t = dead_letters
    async with engine.begin() as conn:
        result = await conn.execute(update(t).where(t.c.event_id.in_(event_ids), t.c.purged_at.is_(None))
                                    .values(purged_at=func.now()).returning(t.c.event_id))
        return len(result.all())
