"""The runner that feeds a sink (:mod:`sinks.contract`) from Kafka.

:class:`SinkRunner` is a plain aiokafka consumer (its own group, auto-commit off):

- batches by size and by time: it flushes once ``batch_size`` records are buffered, or
  when the oldest buffered record has waited ``max_wait_s`` (so an idle stream's last
  record is written within about that time);
- commits offsets only after ``flush`` returned, i.e. after the write is durable; a crash
  between the two redelivers records the sink already wrote, which idempotent writes
  absorb (upsert by id, ``WHERE version < excluded.version``, ``ON CONFLICT DO NOTHING``);
- retries a failed write under ``POLICIES.sink_write`` (:mod:`trailpay.retry`): the same
  batch, until it is written or the runner is asked to stop;
- sends undecodable records to ``deadletters.v1`` with their original bytes, acknowledged
  by the broker before the offset moves on; routed by type
  (:func:`trailpay.retry.dead_letter_stage`): stage ``<sink>`` for a bad record,
  ``<sink>.bug`` (counted, logged with its traceback) for an exception that is no TrailPay
  error;
- keeps polling (paused) while it backs off, so a long outage does not cost its place in
  the consumer group, and resumes by itself;
- exports Prometheus metrics: lag per partition, batch size, write latency, records
  written / dead-lettered, retries.
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
from trailpay import topics
from trailpay.deadletters import dead_letter
from trailpay.domain.errors import TrailPayError, is_retriable
from trailpay.kafka import RecordProducer, bootstrap
from trailpay.retry import POLICIES, RetryPolicies, dead_letter_stage, retry
from trailpay.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunnerConfig:
    batch_size: int = 500
    #: Flush when the oldest buffered record has waited this long.
    max_wait_s: float = 0.5
    auto_offset_reset: str = "earliest"


class _Rebalance(ConsumerRebalanceListener):
    """Forget uncommitted offsets of revoked partitions: their next owner reads them again.

    Buffered rows are kept and written: a late write of a record someone else also wrote
    changes nothing, because every write is idempotent and version-guarded.
    """

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
        #: ``sink_write`` (a batch or a record through an outage), ``sink_dead_letter``.
        self.policies = policies
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: RecordProducer | None = None
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
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
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
        try:
            await self._retry_flush("retrying the same batch")
        except TrailPayError as exc:
            if is_retriable(exc):
                if self._stopping.is_set():
                    log.warning("%s: stopping with %d records unwritten (%s); they will be "
                                "read again", self.sink.name, len(self._batch), exc)
                    self.sink.discard()
                    self._batch.clear()
                    return False
                await self._dead_letter_batch(exc)  # only under a bounded policy
            else:
                log.error("%s: a batch of %d records cannot be written (%s); writing one by one",
                          self.sink.name, len(self._batch), exc)
                await self._write_one_by_one()
        except Exception as exc:  # noqa: BLE001 - a bug in the sink: find the records it hits
            log.error("%s: writing a batch of %d records raised %s (a bug); writing one by one",
                      self.sink.name, len(self._batch), type(exc).__name__)
            await self._write_one_by_one()
        metrics.WRITE_SECONDS.labels(self.sink.name).observe(time.perf_counter() - started)
        metrics.RECORDS.labels(self.sink.name, "written").inc(len(self._batch))
        self.records_written += len(self._batch)
        self._batch.clear()
        self._oldest = None
        return True

    async def _retry_flush(self, doing: str) -> None:
        """``sink.flush()`` under the write policy, waiting as a live group member."""
        def count(exc: BaseException, wait: float) -> None:
            metrics.RETRIES.labels(self.sink.name).inc()
            log.warning("%s: write of %d records failed (%s); %s in %.1fs",
                        self.sink.name, self.sink.pending, exc, doing, wait)

        await retry(self.sink.flush, self.policies.sink_write, what=f"{self.sink.name}: write",
                    sleep=self._idle, should_stop=self._stopping.is_set, on_retry=count,
                    log_retries=False)

    async def _dead_letter_batch(self, exc: BaseException) -> None:
        """The write policy gave up on the batch: every record of it is a dead letter."""
        self.sink.discard()
        for record in self._batch:
            await self._dead_letter(record, exc)
        self._batch.clear()

    async def _write_one_by_one(self) -> None:
        """Find the rows that can never be written, dead-letter them, write the rest."""
        self.sink.discard()
        survivors: list[SinkRecord] = []
        for record in self._batch:
            try:
                self.sink.add(record)
            except Exception as exc:  # noqa: BLE001 - routed by type: invalid or a bug
                if not await self._dead_letter(record, exc):
                    continue
            try:
                await self._retry_flush("retrying one record")
                survivors.append(record)
            except TrailPayError as exc:
                if is_retriable(exc) and self._stopping.is_set():
                    raise
                self.sink.discard()
                await self._dead_letter(record, exc)
            except Exception as exc:  # noqa: BLE001 - a bug: this record's dead letter says so
                self.sink.discard()
                await self._dead_letter(record, exc)
        self._batch[:] = survivors

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

    # ------------------------------------------------------------------ dead letters
    async def _dead_letter(self, record: SinkRecord, exc: BaseException) -> bool:
        """Dead-letter ``record``. True when the sink buffered the letter itself (a bad
        record of the dead-letter topic): it is then written and committed with the batch."""
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        letter = dead_letter(
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            exc=exc,
            stage=dead_letter_stage(self.sink.name, exc, where=where),
            reference=_reference_of(record, self.sink.logical_topic(record.topic)),
        )
        metrics.RECORDS.labels(self.sink.name, "dead_lettered").inc()
        log.warning("%s: dead-lettering %s[%d]@%d: %s", self.sink.name, record.topic,
                    record.partition, record.offset, letter.error_message[:300])
        if self.sink.logical_topic(record.topic) == topics.DEAD_LETTERS:
            if self.sink.add_dead_letter(letter):
                return True
            log.error("%s: undecodable dead letter %s[%d]@%d skipped (kept on the topic)",
                      self.sink.name, record.topic, record.partition, record.offset)
            return False
        if self._producer is None:
            self._producer = RecordProducer(self.settings)
            await self._producer.start()
        producer = self._producer
        await retry(lambda: producer.send(self.dead_letter_topic, record.topic, letter),
                    self.policies.sink_dead_letter,
                    what=f"{self.sink.name}: dead letter to {self.dead_letter_topic}")
        return False

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


def _reference_of(record: SinkRecord, logical: str) -> str | None:
    """The payment reference when the key is one (payment topics are keyed by it)."""
    key = record.key_text
    if key and logical in {topics.PAYMENT_STATE, topics.WEBHOOKS_RAW} and len(key) <= 64:
        return key
    return None


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
