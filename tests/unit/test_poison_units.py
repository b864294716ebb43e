"""Poison records without a broker: row mapping, storable values, dead letters, the sink
runner's isolation of a record the destination refuses while it answers."""

from __future__ import annotations

from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, DataError

from sinks.clickhouse.sink import ClickHouseSink, storable_row
from sinks.contract import Sink, SinkBackpressure, SinkRecord
from sinks.postgres import rows as pg_rows
from sinks.postgres import schema
from sinks.postgres.storable import storable
from sinks.representable import TOO_DEEP, clean_json, clean_text
from sinks.runner import SinkRunner
from tests.sinkdata import payment_history
from trailpay import codec, topics
from trailpay.deadletters import dead_letter
from trailpay.domain.errors import PermanentError
from trailpay.domain.events import Provider
from trailpay.retry import RetryPolicies, RetryPolicy
from trailpay.settings import Settings

NESTED_2000 = b"[" * 2000 + b"]" * 2000
NESTED_5000 = b'{"transaction":' * 5000 + b"1" + b"}" * 5000


def test_a_deeply_nested_body_has_no_outcome_instead_of_a_recursion_error():
    for body in (NESTED_2000, NESTED_5000):
        for provider in Provider:
            assert pg_rows.provider_outcome(provider, body) == (None, None, None)


def test_a_container_where_a_code_belongs_is_no_code():
    body = b'{"transaction":{"status_code":' + b"[" * 900 + b"]" * 900 + b',"message":"m"}}'
    assert pg_rows.provider_outcome(Provider.AIRTEL, body) == ("transaction", None, "m")


def test_text_loses_nul_and_surrogates_and_keeps_within_its_column():
    assert clean_text("a\x00b") == ("a\\u0000b", ["nul"])
    assert clean_text("a\ud800b") == ("a\ufffdb", ["surrogate"])
    long_a, how = clean_text("B" * 150, 100)
    long_b, _ = clean_text("B" * 149 + "C", 100)
    assert how == ["truncated"] and len(long_a) == 100 and long_a.startswith("B" * 91 + "~")
    assert long_a != long_b
    assert clean_text("plain", 100) == ("plain", [])


def test_json_deeper_than_the_limit_becomes_a_marker():
    deep: Any = "x\x00"
    for _ in range(5000):
        deep = [deep]
    cleaned, hows = clean_json({"k\x00": deep}, 8)
    assert hows == ["nul", "too_deep"]
    level = cleaned["k\\u0000"]
    for _ in range(7):
        level = level[0]
    assert level == TOO_DEEP
    assert clean_json({"a": [1, "b"]}, 8) == ({"a": [1, "b"]}, [])


def test_a_paid_payment_with_nul_and_a_long_booking_id_becomes_a_storable_row():
    change = payment_history("TPPOISON1")[-1]
    change = change.model_copy(update={"payment": change.payment.model_copy(
        update={"description": "Safari\x00 tent", "booking_id": "b" * 150})})
    row = pg_rows.payment_row(change)
    [fixed] = storable(schema.payments, [row], "sink-postgres", 64)
    assert fixed["description"] == "Safari\\u0000 tent"
    assert len(fixed["booking_id"]) == 100 and fixed["booking_id"].startswith("b" * 91 + "~")
    assert fixed["snapshot"]["description"] == "Safari\\u0000 tent"
    assert fixed["reference"] == "TPPOISON1" and fixed["amount_minor"] == row["amount_minor"]


def test_clickhouse_rows_lose_only_lone_surrogates():
    row = ("TP1", 1, "succeeded", "u\ud800", "b\x00")
    fixed = storable_row("sink-clickhouse", "payments", row + (None,) * 14)
    assert fixed[:5] == ("TP1", 1, "succeeded", "u\ufffd", "b\x00")


def test_a_dead_letter_of_a_huge_record_fits_a_broker_message():
    value = b"x" * 1_100_000
    letter = dead_letter(source_topic=topics.PAYMENT_STATE, partition=0, offset=9, key=b"TP1",
                         value=value, exc=ValueError("bad\ud800"), stage="sink-postgres")
    assert len(letter.value) == 600_000 and letter.value == value[:600_000]
    assert letter.error_message.startswith("[original value 1100000 bytes, sha256 ")
    assert len(letter.model_dump_json()) < 1_000_000


class RefusingSink(Sink):
    """Refuses (retriably, like an unknown ClickHouse error) every flush holding ``bad``."""

    name = "fake"
    topics = (topics.PAYMENT_STATE,)

    def __init__(self, bad: set[int], up: bool = True, outage: int = 0) -> None:
        self.bad, self.up, self.outage = bad, up, outage
        self.buffer: list[int] = []
        self.written: list[int] = []

    def add(self, record: SinkRecord) -> None:
        self.buffer.append(record.offset)

    async def flush(self) -> None:
        if self.outage:
            self.outage -= 1
            raise SinkBackpressure("down")
        if self.bad & set(self.buffer):
            raise SinkBackpressure("insert failed: Code: 27. Cannot parse input")
        self.written += self.buffer
        self.buffer = []

    def discard(self) -> None:
        self.buffer = []

    @property
    def pending(self) -> int:
        return len(self.buffer)

    async def reachable(self) -> bool:
        return self.up and not self.outage


class Letters:
    def __init__(self) -> None:
        self.letters: list[Any] = []

    async def send(self, topic: str, key: str | None, record: Any) -> None:
        self.letters.append(record)


def _runner(sink: Sink) -> tuple[SinkRunner, Letters]:
    fast = RetryPolicy(attempts=None, base_delay_s=0.0, max_delay_s=0.0)
    run = SinkRunner(Settings(), sink, policies=RetryPolicies(sink_write=fast, sink_dead_letter=fast))
    letters = Letters()
    run._letters._producer = letters  # type: ignore[assignment]
    return run, letters


async def test_a_batch_refused_while_the_destination_answers_is_searched_for_its_bad_record():
    sink = RefusingSink(bad={13})
    run, letters = _runner(sink)
    for offset in range(1, 21):
        await run._take(SinkRecord(topics.PAYMENT_STATE, 0, offset, b"TP1", b"{}"))
    assert await run._write_batch() is True
    assert sorted(sink.written) == [o for o in range(1, 21) if o != 13]
    assert [(d.offset, d.stage) for d in letters.letters] == [(13, "fake")]
    assert run.records_written == 19


async def test_an_outage_is_still_backpressure_and_loses_nothing():
    sink = RefusingSink(bad=set(), outage=6)
    run, letters = _runner(sink)
    for offset in (1, 2, 3):
        await run._take(SinkRecord(topics.PAYMENT_STATE, 0, offset, b"TP1", b"{}"))
    assert await run._write_batch() is True
    assert sink.written == [1, 2, 3] and letters.letters == []


# ----------------------------------------------------------------------------- replay


def _command(n: int) -> bytes:
    from datetime import UTC, datetime

    from trailpay import codec
    from trailpay.domain.events import ProviderCommand, ProviderCommandKind
    from trailpay.domain.money import Money

    return codec.encode(ProviderCommand(
        event_id=f"c-{n}", occurred_at=datetime(2026, 1, 5, tzinfo=UTC),
        kind=ProviderCommandKind.INITIATE, reference=f"TP{n}", provider=Provider.MPESA,
        amount=Money(amount=100, currency="KES"), user_id="u-1", phone_number="254712345678"))


class ReplaySink(Sink):
    """Raises RecursionError mapping ``unmappable``; refuses (for good) any flush with ``bad``."""

    topics = (topics.PROVIDER_COMMANDS,)

    def __init__(self, name: str, bad: set[int], unmappable: set[int]) -> None:
        self.name, self.bad, self.unmappable = name, bad, unmappable
        self.buffer: list[int] = []
        self.written: list[int] = []
        self.letters: list[Any] = []

    def add(self, record: SinkRecord) -> None:
        if record.offset in self.unmappable:
            raise RecursionError("maximum recursion depth exceeded")
        self.buffer.append(record.offset)

    def add_dead_letter(self, letter: Any) -> bool:
        self.letters.append(letter)
        return True

    async def flush(self) -> None:
        if self.bad & set(self.buffer):
            raise PermanentError("ClickHouse refused a row")
        self.written += self.buffer
        self.buffer = []

    def discard(self) -> None:
        self.buffer = []

    @property
    def pending(self) -> int:
        return len(self.buffer)


async def test_a_replay_writes_around_a_record_a_sink_refuses_or_cannot_map():
    from controlplane.ops.records import SourceRecord
    from controlplane.ops.replay import Replayer, Target

    clickhouse = ReplaySink("sink-clickhouse", bad={4}, unmappable={6})
    postgres = ReplaySink("sink-postgres", bad=set(), unmappable=set())
    postgres.topics = ()  # keeps only the dead letters here
    replayer = Replayer(Target.SINKS, engine=None, sinks=[clickhouse, postgres])  # type: ignore[arg-type]
    batch = [SourceRecord(topics.PROVIDER_COMMANDS, 0, n, f"TP{n}".encode(), _command(n)) for n in range(10)]
    batch[2] = SourceRecord(topics.PROVIDER_COMMANDS, 0, 2, b"TP2", b"\xff garbage")
    await replayer.feed(batch)
    assert sorted(clickhouse.written) == [0, 1, 3, 5, 7, 8, 9]
    assert sorted((d.offset, d.stage, d.error_type) for d in postgres.letters) == [
        (2, "sink-postgres", "InvalidRecord"), (4, "sink-clickhouse", "PermanentError"),
        (6, "sink-clickhouse.bug", "RecursionError")]
    assert replayer.summary.totals()["dead_lettered"] == 3
    assert replayer.summary.totals()["replayed"] == 7


# ----------------------------------------------------------------------------- ClickHouse


class FailingClickHouse:
    """Stands in for :class:`trailpay.clickhouse.ClickHouse`: every insert raises ``exc``."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    async def acall(self, fn: Any) -> Any:
        raise self.exc


async def test_clickhouse_data_errors_are_the_rows_fault_and_the_rest_backpressure():
    change = payment_history("TPCH1")[-1]
    record = SinkRecord(topics.PAYMENT_STATE, 0, 1, b"TPCH1", codec.encode(change))
    for exc, expected in ((DataError("Unable to create native array for column `amount_minor`"),
                           PermanentError),
                          (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
                           PermanentError),
                          (DatabaseError("Code: 252. DB::Exception: Too many parts"), SinkBackpressure)):
        sink = ClickHouseSink(FailingClickHouse(exc))  # type: ignore[arg-type]
        sink.add(record)
        with pytest.raises(expected):
            await sink.flush()
        assert await sink.reachable() is False
