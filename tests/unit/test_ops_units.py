"""Unit tests of the ops building blocks that need no broker or database."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY

from controlplane.cli.main import cli
from controlplane.ops.deadletters import render_bytes
from controlplane.ops.records import ReplayError, SourceRecord
from controlplane.ops.replay import Replayer, Target, check_topic
from controlplane.ops.when import parse_when
from streams.agents import observe
from streams.agents.common import Incoming
from streams.agents.payments import PaymentProcessor
from streams.agents.restore import payment_from_change, restore
from tests.unit.payment_factory import create, status_event
from tests.unit.stream_fakes import FakeTable, FaustProducer
from trailpay import codec, topics
from trailpay.domain.deadlines import DeadlinePolicy
from trailpay.domain.state_machine import apply
from trailpay.domain.status import PaymentStatus
from trailpay.lag import LagRow
from trailpay.settings import Settings

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


# ----------------------------------------------------------------------------- times


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-26T10:00:00Z", datetime(2026, 11, 26, 10, tzinfo=UTC)),
    ("2026-11-26 10:00", datetime(2026, 11, 26, 10, tzinfo=UTC)),
    ("2026-11-26T13:00:00+03:00", datetime(2026, 11, 26, 10, tzinfo=UTC)),
    ("90m", NOW - timedelta(minutes=90)),
    ("2h", NOW - timedelta(hours=2)),
    ("1.5d", NOW - timedelta(days=1.5)),
    ("30s", NOW - timedelta(seconds=30)),
    ("now", NOW),
])
def test_parse_when(text: str, expected: datetime) -> None:
    assert parse_when(text, NOW) == expected


def test_parse_when_says_what_it_takes() -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_when("yesterday", NOW)


# ----------------------------------------------------------------------------- dead letters


def test_render_bytes_json_text_binary() -> None:
    kind, text = render_bytes(b'{"reference":"TP1","amount":{"amount":"x"}}')
    assert kind == "json" and '  "reference": "TP1"' in text
    assert render_bytes(b"not json") == ("text", "not json")
    kind, text = render_bytes(b"\xff\x00\x01")
    assert kind == "binary" and "hex: ff00 01" in text and "base64: /wAB" in text
    assert render_bytes(None) == ("none", "")


# ----------------------------------------------------------------------------- replay rules


def test_topics_that_would_call_providers_or_mail_again_are_refused_into_the_pipeline() -> None:
    for topic in (topics.PROVIDER_COMMANDS, topics.NOTIFICATIONS, topics.DEAD_LETTERS):
        with pytest.raises(ReplayError, match="cannot be replayed into the pipeline"):
            check_topic(topic, Target.PIPELINE)
        check_topic(topic, Target.SINKS)
    for topic in (topics.WEBHOOKS_RAW, topics.PROVIDER_EVENTS, topics.PAYMENT_STATE):
        check_topic(topic, Target.PIPELINE)
    with pytest.raises(KeyError, match="known topics"):
        check_topic("payments.v0", Target.SINKS)


@dataclass
class FakeProducer:
    sent: list[tuple[str, bytes | None, bytes | None, Any]] = field(default_factory=list)

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   headers: Any = None, *args: Any) -> Any:
        self.sent.append((topic, key, value, headers))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    async def flush(self) -> None:
        return None


class NoArchive(Replayer):
    async def _already(self, wanted: Any) -> dict[str, set[str]]:
        return {topics.PAYMENT_STATE: {"TPA:1"}}


def _change(reference: str) -> bytes:
    outcome = apply(None, create(reference))
    assert outcome.change is not None
    return codec.encode(outcome.change)


async def test_pipeline_replay_republishes_decodable_records_with_the_replay_header() -> None:
    producer = FakeProducer()
    replayer = NoArchive(Target.PIPELINE, engine=None, producer=producer,  # type: ignore[arg-type]
                         references=frozenset({"TPA"}), run_id="replay-test")
    batch = [
        SourceRecord(topics.PAYMENT_STATE, 1, 7, b"TPA", _change("TPA")),
        SourceRecord(topics.PAYMENT_STATE, 1, 8, b"TPB", _change("TPB")),  # other payment: filtered
        SourceRecord(topics.PAYMENT_STATE, 1, 9, b"TPA", b"{broken"),  # dead-lettered first time
    ]
    await replayer.feed(batch)
    assert [(t, k) for t, k, _, _ in producer.sent] == [(topics.PAYMENT_STATE, b"TPA")]
    assert producer.sent[0][2] == batch[0].value
    assert producer.sent[0][3] == [("trailpay-replay", b"replay-test topic payments.state.v1[1]@7")]
    s = replayer.summary
    assert (s.read[topics.PAYMENT_STATE], s.replayed[topics.PAYMENT_STATE], s.already[topics.PAYMENT_STATE],
            s.dead_lettered[topics.PAYMENT_STATE], s.filtered[topics.PAYMENT_STATE]) == (2, 1, 1, 1, 1)


async def test_dry_run_produces_nothing() -> None:
    producer = FakeProducer()
    replayer = NoArchive(Target.PIPELINE, engine=None, producer=producer, dry_run=True)  # type: ignore[arg-type]
    await replayer.feed([SourceRecord(topics.PAYMENT_STATE, 0, 0, b"TPA", _change("TPA"))])
    assert producer.sent == [] and replayer.summary.replayed[topics.PAYMENT_STATE] == 1


# ----------------------------------------------------------------------------- restore agent


def _machine() -> tuple[PaymentProcessor, FaustProducer]:
    producer = FaustProducer()
    ctx = SimpleNamespace(app=SimpleNamespace(producer=producer), settings=Settings())
    machine = PaymentProcessor(ctx, FakeTable(), FakeTable(), DeadlinePolicy())  # type: ignore[arg-type]
    return machine, producer


def _incoming(value: bytes, partition: int = 2, offset: int = 0) -> Incoming:
    return Incoming(topics.PAYMENT_STATE, partition, offset, b"TPR", value)


async def test_restore_writes_newer_payments_and_ignores_what_the_table_has() -> None:
    machine, producer = _machine()
    created = apply(None, create("TPR"))
    pending = apply(created.payment, status_event("TPR", PaymentStatus.PENDING, event_id="e-pending"))
    assert created.change and pending.change and pending.payment
    v1, v2 = codec.encode(created.change), codec.encode(pending.change)

    assert await restore(machine, [_incoming(v1), _incoming(v2, offset=1)]) == 1
    held = machine.load(b"TPR")
    assert held == payment_from_change(pending.change) and held.version == 2
    assert machine.payments.changelog[-1][0] == 2  # written to the partition the change came on
    assert machine.deadline_of(b"TPR") == pending.payment.snapshot.deadline_at

    # the machine's own output read back, or an older replayed change: no-op
    assert await restore(machine, [_incoming(v2), _incoming(v1)]) == 0
    assert len(machine.payments.changelog) == 1 and producer.sent == []

    # and the restored payment takes a late callback like any other
    late = apply(held, status_event("TPR", PaymentStatus.SUCCEEDED, event_id="mpesa:ws_1:0", seconds=30))
    assert late.applied and late.payment and late.payment.version == 3


async def test_restore_applies_events_that_were_parked_for_the_payment() -> None:
    machine, producer = _machine()
    created = apply(None, create("TPR"))
    assert created.change
    waiting = status_event("TPR", PaymentStatus.SUCCEEDED, event_id="mpesa:ws_9:0", seconds=20)
    await machine.process([SimpleNamespace(message=SimpleNamespace(
        topic=topics.PROVIDER_EVENTS, partition=2, offset=5, key=b"TPR", value=codec.encode(waiting)))])
    assert machine.parked.data.get(b"TPR")  # the event waits for its payment

    assert await restore(machine, [_incoming(codec.encode(created.change))]) == 1
    held = machine.load(b"TPR")
    assert held is not None and held.status is PaymentStatus.SUCCEEDED and held.version == 2
    assert [t for t, _, _ in producer.sent].count(topics.PAYMENT_STATE) == 1
    assert machine.parked.data.get(b"TPR") is None


# ----------------------------------------------------------------------------- observe agent


def _value(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_observe_counts_transitions_dead_letters_and_sweeps_but_not_replays() -> None:
    created = apply(None, create("TPOBSERVE", seconds=0))
    assert created.change
    labels = {"from_status": "none", "to_status": "created", "provider": "mpesa"}
    start = _value("trailpay_payment_transitions_total", labels)
    observe.count(topics.PAYMENT_STATE, codec.encode(created.change))
    observe.count(topics.PAYMENT_STATE, codec.encode(created.change), replayed=True)
    assert _value("trailpay_payment_transitions_total", labels) == start + 1

    dl = {"source_topic": "x.v1", "stage": "payments", "error_type": "InvalidRecord"}
    before = _value("trailpay_dead_letters_total", dl)
    observe.count(topics.DEAD_LETTERS, json.dumps({"source_topic": "x.v1", "stage": "payments",
                                                   "error_type": "InvalidRecord"}).encode())
    assert _value("trailpay_dead_letters_total", dl) == before + 1

    q = {"provider": "airtel", "action": "query"}
    before = _value("trailpay_sweep_actions_total", q)
    observe.count(topics.PROVIDER_COMMANDS, b'{"kind": "query", "provider": "airtel"}')
    observe.count(topics.PROVIDER_COMMANDS, b'{"kind": "initiate", "provider": "airtel"}')
    observe.count(topics.PROVIDER_COMMANDS, b"not json at all")
    assert _value("trailpay_sweep_actions_total", q) == before + 1

    ended = {"provider": "mpesa", "action": "retry_window_ended"}
    before = _value("trailpay_sweep_actions_total", ended)
    observe.count(topics.PAYMENT_STATE, json.dumps({
        "from_status": "pending", "to_status": "failed", "cause": "retry_window",
        "payment": {"provider": "mpesa"}}).encode())
    assert _value("trailpay_sweep_actions_total", ended) == before + 1


def test_is_replay_reads_faust_headers_as_list_or_dict() -> None:
    assert observe.is_replay(SimpleNamespace(headers=[("trailpay-replay", b"x")]))
    assert observe.is_replay(SimpleNamespace(headers={"trailpay-replay": b"x"}))
    assert not observe.is_replay(SimpleNamespace(headers=None))


# ----------------------------------------------------------------------------- lag, providers, CLI


def test_lag_counts_everything_in_the_log_when_nothing_was_committed() -> None:
    assert LagRow("g", "t", 0, committed=None, low=10, end=25).lag == 15
    assert LagRow("g", "t", 0, committed=20, low=10, end=25).lag == 5
    assert LagRow("g", "t", 0, committed=30, low=10, end=25).lag == 0


def test_provider_rows_hold_no_secret() -> None:
    from controlplane.ops.providers import provider_rows

    settings = Settings()
    rows = provider_rows(settings)
    assert [r["code"] for r in rows] == ["mpesa", "airtel", "stripe"]
    text = json.dumps(rows)
    for secret in (settings.stripe_api_key, settings.mpesa_consumer_secret, settings.mpesa_passkey,
                   settings.mpesa_callback_token, settings.airtel_client_secret, *settings.stripe_webhook_secrets):
        assert secret.get_secret_value() not in text


def test_wire_records_round_trip_base64() -> None:
    from controlplane.ops.sinkwriters import _wire
    from sinks.contract import SinkRecord

    wire = _wire(SinkRecord("t", 1, 2, b"k", b"\x00v", 5))
    assert base64.b64decode(wire["key"]) == b"k" and base64.b64decode(wire["value"]) == b"\x00v"


@pytest.mark.parametrize("args", [
    ["replay"], ["dlq"], ["dlq", "list"], ["dlq", "show"], ["dlq", "redrive"], ["dlq", "purge"],
    ["payments", "check-pending"], ["providers", "setup"], ["providers", "list"], ["lag"],
])
def test_every_ops_command_has_help(args: list[str]) -> None:
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


def test_replay_says_where_to_start(tmp_path: Any) -> None:
    result = CliRunner().invoke(cli, ["replay", "--into", "sinks", "-t", topics.PAYMENT_STATE,
                                      "--data-dir", str(tmp_path)])
    assert result.exit_code != 0
