"""The runner that feeds a sink (:mod:`sinks.contract`) from Kafka.

:class:`SinkRunner` is a plain aiokafka consumer (its own group, auto-commit off):

- batches by size and by time: it flushes once ``batch_size`` records are buffered, or
  when the oldest buffered record has waited ``max_wait_s`` (so an idle stream's last
  record is written within about that time);
- commits offsets only after ``flush`` returned, i.e. after the write is durable; a crash
  between the two redelivers records the sink already wrote, which idempotent writes
  absorb (upsert by id, ``WHERE version < excluded.version``, ``ON CONFLICT DO NOTHING``);
- retries the same batch under ``POLICIES.sink_write`` while the destination is away
  (fails its probe), polling paused to keep its place in the group; a batch refused while
  the destination answers is halved until the record at fault is alone, and that record
  is dead-lettered: no poison record stops the sink, none is retried for ever;
- dead-letters what it cannot map or write, with the original bytes (:mod:`sinks.letters`;
  stage ``<sink>``, or ``<sink>.bug`` for an exception that is no TrailPay error);
- exports Prometheus metrics: lag, batch size, write latency, records, retries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from sinks import metrics
from sinks.contract import Sink, SinkRecord
from sinks.letters import LetterBox
from trailpay import topics
from trailpay.domain.errors import PermanentError, TrailPayError, is_retriable
from trailpay.kafka import bootstrap
from trailpay.retry import POLICIES, RetryPolicies, retry
from trailpay.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunnerConfig:
    batch_size: int = 500
    #: Flush when the oldest buffered record has waited this long.
    max_wait_s: float = 0.5
    auto_offset_reset: str = "earliest"
    #: Failed writes of a batch, with the destination answering its probe, after which
    #: the batch is searched for the record at fault instead of retried as it is.
    suspect_after: int = 3


class RecordsRefused(PermanentError):
    """The destination answers but keeps refusing these records: they are at fault."""


class _Stopped(Exception):
    """Asked to stop while the destination was away; nothing of the batch is committed."""


class _Rebalance(ConsumerRebalanceListener):
    """Forget uncommitted offsets of revoked partitions: their next owner reads them again.
    Buffered rows are kept and written (every write is idempotent and version-guarded)."""

    def __init__(self, runner: SinkRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            self.runner._offsets.pop(tp, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.runner.last_record_at = time.monotonic()
        log.info("%s: assigned %d partitions", self.runner.sink.name, len(assigned))


class SinkRunner:
    """Feeds one sink from its topics with a plain aiokafka consumer."""

    def __init__(
        self,
        settings: Settings,
        sink: Sink,
        *,
        group_id: str | None = None,
        config: RunnerConfig | None = None,
        topic_names: Sequence[str] | None = None,
        dead_letter_topic: str = topics.DEAD_LETTERS,
        policies: RetryPolicies = POLICIES,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.group_id = group_id or f"trailpay-{sink.name}"
        self.config = config or RunnerConfig()
        self.topic_names = tuple(topic_names or sink.topics)
        self.dead_letter_topic = dead_letter_topic
        self.policies = policies  # sink_write (through an outage), sink_dead_letter
        self._consumer: AIOKafkaConsumer | None = None
        self._letters = LetterBox(settings, sink, dead_letter_topic, policies.sink_dead_letter)
        self._stopping = asyncio.Event()
        self._offsets: dict[TopicPartition, int] = {}
        self._batch: list[SinkRecord] = []
        self._oldest: float | None = None
        self._committed: dict[TopicPartition, int] = {}
        self.records_written = 0
        #: ``time.monotonic()`` of the last record fetched (for idle checks in tools).
        self.last_record_at = time.monotonic()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.sink.setup()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap(self.settings),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset=self.config.auto_offset_reset,
            max_poll_records=self.config.batch_size,
            max_poll_interval_ms=600_000,
            fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms,
            client_id=f"trailpay-{self.sink.name}",
        )
        self._consumer.subscribe(list(self.topic_names), listener=_Rebalance(self))
        await self._consumer.start()
        log.info("%s: consuming %s as group %s", self.sink.name, ", ".join(self.topic_names),
                 self.group_id)

    def stop(self) -> None:
        """Ask :meth:`run` to finish: it writes what is buffered and commits first."""
        self._stopping.set()

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        await self._letters.close()
        await self.sink.close()

    async def run(self) -> None:
        """Consume until :meth:`stop`; then write and commit what is buffered."""
        if self._consumer is None:
            await self.start()
        try:
            while not self._stopping.is_set():
                await self._poll_once()
                if self._due():
                    await self._flush_and_commit()
            if self._batch or self._offsets:
                await self._flush_and_commit()
        finally:
            await self.close()

    # ------------------------------------------------------------------ polling
    def _wait_ms(self) -> int:
        if self._oldest is None:
            return int(self.config.max_wait_s * 1000)
        left = self.config.max_wait_s - (time.monotonic() - self._oldest)
        return max(0, int(left * 1000))

    def _due(self) -> bool:
        if not self._batch:
            return False
        if len(self._batch) >= self.config.batch_size:
            return True
        return self._oldest is not None and time.monotonic() - self._oldest >= self.config.max_wait_s

    async def _poll_once(self) -> None:
        assert self._consumer is not None
        room = max(1, self.config.batch_size - len(self._batch))
        fetched = await self._consumer.getmany(timeout_ms=self._wait_ms(), max_records=room)
        for tp, records in fetched.items():
            self.last_record_at = time.monotonic()
            for rec in records:
                await self._take(SinkRecord(tp.topic, tp.partition, rec.offset, rec.key, rec.value,
                                            rec.timestamp))
                self._offsets[tp] = rec.offset + 1
        self._observe_lag()

    async def _take(self, record: SinkRecord) -> None:
        try:
            self.sink.add(record)
        except Exception as exc:  # noqa: BLE001 - routed by type: invalid or a bug
            if not await self._dead_letter(record, exc):
                return
        self._batch.append(record)
        if self._oldest is None:
            self._oldest = time.monotonic()

    # ------------------------------------------------------------------ writing
    async def _flush_and_commit(self) -> None:
        size = len(self._batch)
        if size:
            if not await self._write_batch():
                return
            metrics.BATCH_SIZE.labels(self.sink.name).observe(size)
        await self._commit()

    async def _write_batch(self) -> bool:
        """Write the batch, retrying it unchanged through outages (``policies.sink_write``).
        False only when asked to stop before it could be written (nothing is committed; it
        is read again)."""
        started = time.perf_counter()
        size = len(self._batch)
        try:
            written = await self._write(self._batch, buffered=True,
                                        suspect_after=self.config.suspect_after)
        except _Stopped as stopped:
            log.warning("%s: stopping with %d records unwritten (%s); they will be read again",
                        self.sink.name, size, stopped)
            self.sink.discard()
            self._batch.clear()
            return False
        metrics.WRITE_SECONDS.labels(self.sink.name).observe(time.perf_counter() - started)
        metrics.RECORDS.labels(self.sink.name, "written").inc(len(written))
        self.records_written += len(written)
        self._batch.clear()
        self._oldest = None
        return True

    async def _write(self, records: list[SinkRecord], *, buffered: bool,
                     suspect_after: int) -> list[SinkRecord]:
        """Write ``records`` (already in the sink's buffer when ``buffered``); returns those
        written. A group the destination refuses is halved until the record at fault is
        alone, and that record is dead-lettered: log2(n) writes per bad record, not n."""
        if not buffered:
            records = await self._buffer(records)
            if not records and not self.sink.pending:
                return []
        try:
            await self._retry_flush(suspect_after)
            return records
        except _Stopped:
            raise
        except TrailPayError as exc:
            if is_retriable(exc):  # a bounded write policy gave up: every record is a letter
                self.sink.discard()
                for record in records:
                    await self._dead_letter(record, exc, rebuffer=False)
                return []
            failure: BaseException = exc
        except Exception as exc:  # noqa: BLE001 - a bug in the sink: isolate the records it hits
            failure = exc
        self.sink.discard()
        if len(records) <= 1:
            for record in records:
                await self._dead_letter(record, failure, rebuffer=False)
            return []
        log.error("%s: a write of %d records failed (%s: %s); halving it to find the bad one",
                  self.sink.name, len(records), type(failure).__name__, str(failure)[:200])
        half = len(records) // 2
        # Once the destination has refused this group, a part that fails again after one
        # retry while the destination answers is the record's fault.
        first = await self._write(records[:half], buffered=False, suspect_after=2)
        return first + await self._write(records[half:], buffered=False, suspect_after=2)

    async def _buffer(self, records: list[SinkRecord]) -> list[SinkRecord]:
        """Add ``records`` to an emptied sink buffer; one that cannot be mapped is a letter."""
        self.sink.discard()
        kept: list[SinkRecord] = []
        for record in records:
            try:
                self.sink.add(record)
            except Exception as exc:  # noqa: BLE001 - routed by type: invalid or a bug
                if not await self._dead_letter(record, exc):
                    continue
            kept.append(record)
        return kept

    async def _retry_flush(self, suspect_after: int) -> None:
        """``sink.flush()`` under the write policy, waiting as a live group member.

        A retriable failure is backpressure (the destination is away) only while the
        destination fails its probe (:meth:`Sink.reachable`): after ``suspect_after``
        failures with the destination answering, the records are at fault
        (:class:`RecordsRefused`), never an endless retry of the same poison batch."""
        failures = 0

        async def attempt() -> None:
            nonlocal failures
            try:
                await self.sink.flush()
            except TrailPayError as exc:
                if not is_retriable(exc):
                    raise
                failures += 1
                if failures >= suspect_after and await self._reachable():
                    raise RecordsRefused(f"{exc} (while the destination answers)") from exc
                raise

        def count(exc: BaseException, wait: float) -> None:
            metrics.RETRIES.labels(self.sink.name).inc()
            log.warning("%s: write of %d records failed (%s); retrying the same batch in %.1fs",
                        self.sink.name, self.sink.pending, exc, wait)

        try:
            await retry(attempt, self.policies.sink_write, what=f"{self.sink.name}: write",
                        sleep=self._idle, should_stop=self._stopping.is_set, on_retry=count,
                        log_retries=False)
        except TrailPayError as exc:
            if is_retriable(exc) and self._stopping.is_set():
                raise _Stopped(str(exc)) from exc
            raise

    async def _reachable(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.sink.reachable(), 10))
        except Exception as exc:  # noqa: BLE001 - a failed probe means "away"
            log.info("%s: destination probe failed: %s", self.sink.name, exc)
            return False

    async def _idle(self, seconds: float) -> None:
        """Wait while staying a live group member: pause fetching and keep polling."""
        consumer = self._consumer
        if consumer is None:
            await asyncio.sleep(seconds)
            return
        assigned = list(consumer.assignment())
        consumer.pause(*assigned)
        try:
            deadline = time.monotonic() + seconds
            while not self._stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                await consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000))
        finally:
            consumer.resume(*[tp for tp in assigned if tp in consumer.assignment()])

    async def _commit(self) -> None:
        if self._consumer is None or not self._offsets:
            return
        assigned = self._consumer.assignment()
        offsets = {tp: off for tp, off in self._offsets.items() if tp in assigned}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The records are written; after the rebalance they come again and change nothing.
            log.warning("%s: offset commit failed (%s); records will be redelivered",
                        self.sink.name, exc)
            return
        self._committed.update(offsets)
        for tp in offsets:
            self._offsets.pop(tp, None)

    async def _dead_letter(self, record: SinkRecord, exc: BaseException, *,
                           rebuffer: bool = True) -> bool:
        return await self._letters.send(record, exc, rebuffer=rebuffer)

    # ------------------------------------------------------------------ metrics
    def _observe_lag(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            done = self._committed.get(tp)
            if high is None or done is None:
                continue
            metrics.LAG.labels(self.sink.name, tp.topic, str(tp.partition)).set(max(0, high - done))


async def run_until_signalled(runner: SinkRunner) -> None:
    """Run a sink until SIGTERM/SIGINT, then write what is buffered and exit."""
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.stop)
    await runner.run()


async def caught_up(runner: SinkRunner) -> bool:
    """Every assigned partition has been fetched, and read up to its high watermark.

    A quiet spell alone is not proof of a drained topic: a new consumer group on a busy
    machine can take seconds to resolve its start offsets before the first fetch."""
    consumer = runner._consumer
    if consumer is None or not consumer.assignment():
        return False
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is None:
            return False  # not fetched yet
        if await consumer.position(tp) < high:
            return False
    return True


async def stop_when_idle(runner: SinkRunner, idle_s: float) -> None:
    """Stop ``runner`` once it has caught up with every partition, nothing arrived for
    ``idle_s`` and nothing is left unwritten (tools and tests that drain a topic and exit)."""
    while not runner._stopping.is_set():
        await asyncio.sleep(min(0.2, idle_s))
        if runner._consumer is None or not runner._consumer.assignment():
            continue  # still joining the group
        quiet = time.monotonic() - runner.last_record_at >= idle_s
        if quiet and not runner._batch and not runner._offsets and await caught_up(runner):
            runner.stop()
