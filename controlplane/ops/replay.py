"""Replay records into the sinks only, or back through dedup and the state machine.

Two targets, chosen per run:

``sinks`` (``--into sinks``)
    The replay writes each record through the sink classes themselves (PostgreSQL, and
    ClickHouse directly or through the analytics process that owns chDB; see
    :mod:`controlplane.ops.sinkwriters`). Nothing is produced to Kafka, so no agent and no
    consumer group sees the records: re-publishing onto the topics the sinks read would
    also feed dedup, the state machine and the dispatcher, which read most of those topics.
    The sinks upsert by id with ``WHERE version < excluded.version`` or insert if absent,
    so a replayed record that is already there changes nothing (property 2).

``pipeline`` (``--into pipeline``)
    Each record is produced again, same key and bytes, onto the topic the pipeline reads
    it from, with a ``trailpay-replay`` header: webhooks.raw.v1 -> dedup -> provider.events.v1
    -> state machine; payments.requests.v1 / provider.events.v1 -> state machine;
    bookings.events.v1 -> the booking bridge; payments.state.v1 -> the sinks and the restore
    agent, which gives the state machine back payments it no longer knows (after the
    in-memory broker restarted). Dedup by event id, versions and applied ids make a second
    pass a no-op. provider.commands.v1, notifications.v1 and deadletters.v1 are refused:
    they would call providers or send e-mails again, and dead letters have ``trailpay dlq
    redrive``.

Either way, a record that does not decode is not replayed: it was dead-lettered on the
first pass (``trailpay dlq list``), and in ``sinks`` mode its dead letter is written again
with the first pass's id, which changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from controlplane.ops.records import ReplayError, SourceRecord
from sinks.contract import Sink, SinkRecord
from sinks.postgres import schema
from trailpay import codec, topics
from trailpay.deadletters import dead_letter
from trailpay.domain.errors import InvalidRecord, RetriableError, TrailPayError

log = logging.getLogger(__name__)


class Target(StrEnum):
    SINKS = "sinks"
    PIPELINE = "pipeline"


#: Topics that may go back through the pipeline, and why the others may not.
PIPELINE_TOPICS = frozenset({topics.WEBHOOKS_RAW, topics.PROVIDER_EVENTS, topics.PAYMENT_REQUESTS,
                             topics.PAYMENT_STATE, topics.BOOKING_EVENTS})
NOT_INTO_PIPELINE = {
    topics.PROVIDER_COMMANDS: "it would call the providers again (Daraja has no idempotency key)",
    topics.NOTIFICATIONS: "it would send the e-mails again",
    topics.DEAD_LETTERS: "re-drive dead letters with `trailpay dlq redrive`",
}


def check_topic(topic: str, target: Target) -> None:
    topics.spec(topic)  # unknown topic -> KeyError naming the known ones
    if target is Target.PIPELINE and topic not in PIPELINE_TOPICS:
        reason = NOT_INTO_PIPELINE.get(topic, "nothing in the pipeline reads it")
        raise ReplayError(f"{topic} cannot be replayed into the pipeline: {reason}. "
                          f"Replay it --into sinks instead.")


@dataclass
class Summary:
    """What a replay did, per topic: read, replayed, already applied, dead-lettered."""

    read: Counter[str] = field(default_factory=Counter)
    replayed: Counter[str] = field(default_factory=Counter)
    already: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[str] = field(default_factory=Counter)
    filtered: Counter[str] = field(default_factory=Counter)

    def totals(self) -> dict[str, int]:
        return {name: sum(getattr(self, name).values())
                for name in ("read", "replayed", "already", "dead_lettered", "filtered")}

    def topics(self) -> list[str]:
        return sorted(set(self.read) | set(self.filtered))


#: Where "already applied" is looked up: topic -> (table, id column) of the PostgreSQL archive.
def _archive_tables() -> dict[str, Any]:
    return {
        topics.PAYMENT_STATE: schema.payment_events.c.event_id,
        topics.WEBHOOKS_RAW: schema.provider_callbacks.c.event_id,
        topics.DEAD_LETTERS: schema.dead_letters.c.event_id,
    }


@dataclass
class Prepared:
    """A decoded batch: the records to replay (with their decoded values) and the records
    whose dead letter is to be written again."""

    wanted: list[tuple[SourceRecord, Any]] = field(default_factory=list)
    refused: list[tuple[SourceRecord, str]] = field(default_factory=list)


class Replayer:
    """Feeds batches of :class:`SourceRecord` to the target and keeps the summary."""

    def __init__(self, target: Target, *, engine: AsyncEngine, sinks: list[Sink] | None = None,
                 producer: AIOKafkaProducer | None = None, references: frozenset[str] = frozenset(),
                 dry_run: bool = False, run_id: str = "replay",
                 on_record: Callable[[SourceRecord, str], None] | None = None) -> None:
        self.target = target
        self.engine = engine
        self.sinks = sinks or []
        self.producer = producer
        self.references = references
        self.dry_run = dry_run
        self.run_id = run_id
        self.on_record = on_record
        self.summary = Summary()
        self._archive = _archive_tables()

    # ------------------------------------------------------------------ per batch
    async def feed(self, batch: list[SourceRecord]) -> None:
        """Replay one batch: :meth:`prepare` it, then :meth:`write` it."""
        await self.write(await self.prepare(batch))

    async def feed_all(self, batches: AsyncIterator[list[SourceRecord]],
                       advance: Callable[[int], None] = lambda n: None) -> None:
        """Replay every batch, preparing the next while the previous one is written.

        Decoding is CPU work in this process; writing mostly waits for PostgreSQL and
        ClickHouse, in their own processes. Writes stay one at a time and in order.
        """
        writing: asyncio.Task[None] | None = None
        try:
            async for batch in batches:
                prepared = await self.prepare(batch)
                if writing is not None:
                    await writing
                writing = asyncio.create_task(self.write(prepared))
                advance(len(batch))
            if writing is not None:
                await writing
        finally:
            if writing is not None and not writing.done():
                writing.cancel()

    async def prepare(self, batch: list[SourceRecord]) -> Prepared:
        """Decode and filter a batch and count it in the summary; touches no sink."""
        prepared = Prepared()
        wanted = prepared.wanted
        for rec in batch:
            self.summary.read[rec.topic] += 1
            decoded, error = self._decode(rec)
            if self.references and not self._matches(rec, decoded):
                self.summary.filtered[rec.topic] += 1
                self.summary.read[rec.topic] -= 1
                continue
            if error is not None:
                self.summary.dead_lettered[rec.topic] += 1
                log.warning("not replayed: %s (%s)", rec.where, error)
                if self.target is Target.SINKS and not self.dry_run and rec.origin == "topic":
                    prepared.refused.append((rec, error))
                self._note(rec, "dead-lettered")
                continue
            wanted.append((rec, decoded))
        if not wanted:
            return prepared
        known = await self._already(wanted)
        for rec, decoded in wanted:
            ident = getattr(decoded, "event_id", None)
            if ident in known.get(rec.topic, set()):
                self.summary.already[rec.topic] += 1
            self.summary.replayed[rec.topic] += 1
            self._note(rec, "already" if ident in known.get(rec.topic, set()) else "replay")
        return prepared

    async def write(self, prepared: Prepared) -> None:
        """Write a prepared batch through the sinks, or publish it (``--into pipeline``)."""
        if self.dry_run:
            return
        for rec, error in prepared.refused:
            self._dead_letter_again(rec, error)
        if self.target is Target.SINKS:
            refused = {id(rec): self._add_to_sinks(rec, decoded) for rec, decoded in prepared.wanted}
            failed = await self._flush_sinks()
            for sink in failed:
                await self._isolate(sink, [(r, d) for r, d in prepared.wanted
                                           if r.topic in sink.topics and sink.name not in refused[id(r)]])
            if failed:
                await self._flush_letters()
        elif prepared.wanted:
            await self._publish([rec for rec, _ in prepared.wanted])

    def _note(self, rec: SourceRecord, what: str) -> None:
        if self.on_record is not None:
            self.on_record(rec, what)

    @staticmethod
    def _decode(rec: SourceRecord) -> tuple[Any, str | None]:
        if rec.error is not None:
            return None, rec.error
        try:
            return codec.decode(rec.topic, rec.value), None
        except Exception as exc:  # noqa: BLE001 - any record that does not decode is not replayed
            return None, f"{type(exc).__name__}: {exc}" if not isinstance(exc, InvalidRecord) else str(exc)

    def _matches(self, rec: SourceRecord, decoded: Any) -> bool:
        if rec.key is not None and rec.key.decode("utf-8", "replace") in self.references:
            return True
        return decoded is not None and getattr(decoded, "reference", None) in self.references

    async def _already(self, wanted: list[tuple[SourceRecord, Any]]) -> dict[str, set[str]]:
        """Event ids of ``wanted`` that the PostgreSQL archive holds already."""
        ids: dict[str, set[str]] = {}
        for rec, decoded in wanted:
            if rec.topic in self._archive:
                ids.setdefault(rec.topic, set()).add(decoded.event_id)
        found: dict[str, set[str]] = {}
        if not ids:
            return found
        async with self.engine.connect() as conn:
            for topic, wanted_ids in ids.items():
                column = self._archive[topic]
                rows = await conn.execute(select(column).where(column.in_(sorted(wanted_ids))))
                found[topic] = {r[0] for r in rows}
        return found

    # ------------------------------------------------------------------ sinks
    def _sink_record(self, rec: SourceRecord, decoded: Any = None) -> SinkRecord:
        return SinkRecord(rec.topic, rec.partition if rec.partition is not None else -1,
                          rec.offset if rec.offset is not None else -1, rec.key, rec.value,
                          rec.timestamp_ms, decoded=decoded)

    def _add_to_sinks(self, rec: SourceRecord, decoded: Any = None,
                      only: Sink | None = None) -> set[str]:
        """Add one record to every sink that keeps its topic (or to ``only``); returns the
        sinks that could not map it (its dead letter is written again)."""
        record = self._sink_record(rec, decoded)
        refused: set[str] = set()
        for sink in self.sinks:
            if rec.topic not in sink.topics or (only is not None and sink is not only):
                continue
            try:
                sink.add(record)
            except Exception as exc:  # noqa: BLE001 - e.g. a snapshot that does not match its change
                refused.add(sink.name)
                self._dead_letter_again(rec, str(exc), stage=_stage(sink.name, exc), exc=exc)
        if refused:
            self._count_refused(rec)
        return refused

    def _count_refused(self, rec: SourceRecord) -> None:
        self.summary.dead_lettered[rec.topic] += 1
        self.summary.replayed[rec.topic] -= 1

    def _dead_letter_again(self, rec: SourceRecord, reason: str, *, stage: str | None = None,
                           exc: BaseException | None = None) -> None:
        """Write the dead letter the first pass wrote (same id, so a no-op if it is there)."""
        pg = next((s for s in self.sinks if s.name == "sink-postgres"), None)
        if pg is None:
            return
        letter = dead_letter(source_topic=rec.topic, partition=rec.partition, offset=rec.offset,
                             key=rec.key, value=rec.value, exc=exc or InvalidRecord(reason),
                             stage=stage or pg.name)
        pg.add_dead_letter(letter)

    async def _flush_sinks(self, attempts: int = 5) -> list[Sink]:
        """Write every sink's batch, the sinks side by side (PostgreSQL and ClickHouse do
        their part in their own processes, so the writes overlap). Both are waited for;
        then the first outage, if any, is raised. Returns the sinks that refused their
        batch for good: :meth:`_isolate` finds the records at fault."""
        pending = [sink for sink in self.sinks if sink.pending]
        results = await asyncio.gather(*(self._flush_sink(sink, attempts) for sink in pending),
                                       return_exceptions=True)
        failed: list[Sink] = []
        for sink, result in zip(pending, results, strict=True):
            if isinstance(result, RetriableError):
                raise result
            if isinstance(result, Exception):
                log.error("%s refused a replayed batch (%s: %s); finding the record at fault",
                          sink.name, type(result).__name__, str(result)[:200])
                failed.append(sink)
            elif isinstance(result, BaseException):
                raise result
        return failed

    async def _isolate(self, sink: Sink, items: list[tuple[SourceRecord, Any]]) -> None:
        """Write ``items`` to ``sink`` in halves until each record that the sink refuses
        is alone; that one's dead letter is written again, the others are replayed."""
        sink.discard()
        if not items:
            return
        mapped = [(rec, decoded) for rec, decoded in items
                  if not self._add_to_sinks(rec, decoded, only=sink)]
        try:
            await self._flush_sink(sink, 5)
            return
        except RetriableError:
            raise
        except Exception as exc:  # noqa: BLE001 - the refused record's dead letter says why
            sink.discard()
            if len(mapped) > 1:
                half = len(mapped) // 2
                await self._isolate(sink, mapped[:half])
                await self._isolate(sink, mapped[half:])
                return
            for rec, _ in mapped:
                self._count_refused(rec)
                self._dead_letter_again(rec, str(exc), stage=_stage(sink.name, exc), exc=exc)
            await self._flush_letters()

    async def _flush_letters(self) -> None:
        """Write the dead letters buffered in the PostgreSQL sink now."""
        pg = next((s for s in self.sinks if s.name == "sink-postgres"), None)
        if pg is not None and pg.pending:
            await self._flush_sink(pg, 5)

    @staticmethod
    async def _flush_sink(sink: Sink, attempts: int) -> None:
        """One sink's flush, retried through a short outage; a refusal discards the batch."""
        delay = 0.5
        for attempt in range(attempts):
            try:
                await sink.flush()
                return
            except RetriableError as exc:
                if attempt + 1 == attempts:
                    raise
                log.warning("%s: %s; retrying the batch in %.1fs", sink.name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
            except Exception:
                sink.discard()
                raise

    # ------------------------------------------------------------------ pipeline
    async def _publish(self, records: list[SourceRecord]) -> None:
        assert self.producer is not None
        futures = []
        for rec in records:
            header = f"{self.run_id} {rec.origin} {rec.where}".encode()
            futures.append(await self.producer.send(rec.topic, rec.value, key=rec.key,
                                                    headers=[(topics.REPLAY_HEADER, header)]))
        try:
            await asyncio.gather(*futures)
        except Exception as exc:
            raise RetriableError(f"Kafka did not take the replayed records: {exc}; run the replay "
                                 "again (it is idempotent)") from exc


def _stage(sink: str, exc: BaseException) -> str:
    """The dead-letter stage, as the sink's own runner would name it."""
    return sink if isinstance(exc, TrailPayError) else f"{sink}.bug"
