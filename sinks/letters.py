"""Where a sink runner's dead letters go: ``deadletters.v1`` (acknowledged by the broker
before the offset moves on), or, for a bad record of that topic itself, the sink's own
table (it cannot go back to the topic it came from: it would loop)."""

from __future__ import annotations

import logging

from sinks import metrics
from sinks.contract import Sink, SinkRecord
from trailpay import topics
from trailpay.deadletters import dead_letter
from trailpay.kafka import RecordProducer
from trailpay.retry import RetryPolicy, dead_letter_stage, retry
from trailpay.settings import Settings

log = logging.getLogger(__name__)


class LetterBox:
    def __init__(self, settings: Settings, sink: Sink, topic: str, policy: RetryPolicy) -> None:
        self.settings = settings
        self.sink = sink
        self.topic = topic
        self.policy = policy
        self._producer: RecordProducer | None = None

    async def send(self, record: SinkRecord, exc: BaseException, *, rebuffer: bool = True) -> bool:
        """Dead-letter ``record``. True when the sink buffered the letter itself (a bad
        record of the dead-letter topic): it is then written and committed with the batch.
        ``rebuffer=False``: that letter's own write failed, so it is skipped (logged)."""
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        logical = self.sink.logical_topic(record.topic)
        letter = dead_letter(
            source_topic=record.topic, partition=record.partition, offset=record.offset,
            key=record.key, value=record.value, exc=exc,
            stage=dead_letter_stage(self.sink.name, exc, where=where),
            reference=_reference_of(record, logical),
        )
        metrics.RECORDS.labels(self.sink.name, "dead_lettered").inc()
        log.warning("%s: dead-lettering %s: %s", self.sink.name, where, letter.error_message[:300])
        if logical == topics.DEAD_LETTERS:
            if rebuffer and self.sink.add_dead_letter(letter):
                return True
            log.error("%s: undecodable dead letter %s skipped (kept on the topic)",
                      self.sink.name, where)
            return False
        if self._producer is None:
            self._producer = RecordProducer(self.settings)
            await self._producer.start()
        producer = self._producer
        await retry(lambda: producer.send(self.topic, record.topic, letter), self.policy,
                    what=f"{self.sink.name}: dead letter to {self.topic}")
        return False

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def _reference_of(record: SinkRecord, logical: str) -> str | None:
    """The payment reference when the key is one (payment topics are keyed by it)."""
    key = record.key_text
    if key and logical in {topics.PAYMENT_STATE, topics.WEBHOOKS_RAW} and len(key) <= 64:
        return key
    return None
