"""Both sinks against the real broker, PostgreSQL and chDB: replay, totals, dead letters,
and the wiring of `trailpay up` (the stack runs both sinks on the real topics).

Each test writes to its own prefixed topics (``t1a2b3c4.payments.state.v1`` ...) and its
own consumer groups, so the stack's own sinks never see these records.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests import sinkdata as sd
from tests.sinkdata import (
    ch_query,
    dataset,
    drain_clickhouse,
    drain_postgres,
    fresh_database,
    pg_revenue,
    pg_rows,
)
from tests.support.analytics import service_headers
from tests.support.waits import wait_for
from trailpay import topics
from trailpay.domain.events import BookingEventKind
from trailpay.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- helpers


PG_TABLES = {
    "payments": "reference", "payment_events": "reference", "payment_intents": "reference",
    "refunds": "reference", "provider_callbacks": "reference",
}


def pg_dump(settings: Settings, prefix: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of our references, minus the column that records when it was written."""
    out = {}
    for table, col in PG_TABLES.items():
        # Sorted here: ``order by 1::text`` in SQL would sort by a constant, i.e. not at all.
        rows = pg_rows(settings, f"select to_jsonb(t) - 'recorded_at' from {table} t "
                                 f"where {col} like %s", prefix + "%")
        out[table] = sorted(json.dumps(r[0], sort_keys=True) for r in rows)
    return out


CH_TABLES = ("payments", "payment_changes", "refunds", "webhooks")


def ch_dump(settings: Settings, data_dir: Path) -> dict[str, Any]:
    queries = [f"SELECT * FROM trailpay.{table} FINAL ORDER BY ALL" for table in CH_TABLES]
    queries.append("SELECT * FROM trailpay.daily_revenue ORDER BY day, currency, provider")
    results = ch_query(settings, data_dir, *queries)
    return dict(zip([*CH_TABLES, "daily_revenue"], results, strict=True))


# ----------------------------------------------------------------------------- tests


async def test_replay_gives_identical_tables_and_equal_revenue(stack, tmp_path):
    settings = stack.settings
    prefix = sd.new_prefix()
    ref_prefix = "TP" + prefix[1:9].upper()
    await sd.create_prefixed_topics(settings, prefix)
    refs = [f"{ref_prefix}{i:06d}" for i in range(60)]
    items, expected = dataset(refs)
    await sd.produce(settings, prefix + topics.PAYMENT_STATE, items)
    await sd.produce(settings, prefix + topics.WEBHOOKS_RAW, [(r, sd.webhook(r)) for r in refs])

    ch_a, ch_b = tmp_path / "ch-a", tmp_path / "ch-b"
    with fresh_database(settings) as db_a, fresh_database(settings) as db_b:
        # Fresh sinks side by side (both PostgreSQL and ClickHouse): each joins its own group.
        await asyncio.gather(
            drain_postgres(db_a, prefix, f"ga{prefix}"), drain_postgres(db_b, prefix, f"gb{prefix}"),
            drain_clickhouse(settings, ch_a, prefix, f"ha{prefix}"),
            drain_clickhouse(settings, ch_b, prefix, f"hb{prefix}"),
        )
        first = pg_dump(db_a, ref_prefix)
        assert len(first["payments"]) == 60
        assert len(first["payment_events"]) == len(items)
        assert first == pg_dump(db_b, ref_prefix), "two fresh sinks disagree"
        dump = ch_dump(settings, ch_a)
        assert len(dump["payments"]) == 60 and len(dump["payment_changes"]) == len(items)
        assert dump == ch_dump(settings, ch_b), "two fresh ClickHouse sinks disagree"
        # The same topics again into the same sinks: nothing changes.
        await asyncio.gather(drain_postgres(db_a, prefix, f"gc{prefix}"),
                             drain_clickhouse(settings, ch_a, prefix, f"hc{prefix}"))
        assert pg_dump(db_a, ref_prefix) == first
        assert pg_revenue(db_a, ref_prefix) == expected
        assert ch_dump(settings, ch_a) == dump

    raw = ch_query(settings, ch_a, "SELECT count() AS n FROM trailpay.payment_changes")[0]["n"]
    assert raw >= len(items)  # duplicates may be stored; FINAL and the views fold them

    # ClickHouse revenue equals PostgreSQL's for the same events, both ways of asking.
    ch_final = ch_query(settings, ch_a, "SELECT currency, sum(amount_minor - refunded_minor) AS net "
                                        "FROM trailpay.payments FINAL WHERE status IN "
                                        "('succeeded', 'partially_refunded', 'refunded') GROUP BY currency")
    assert {r["currency"]: int(r["net"]) for r in ch_final} == expected
    view = ch_query(settings, ch_a, "SELECT currency, sum(net_minor) AS net FROM trailpay.daily_revenue "
                                    "GROUP BY currency")
    assert {r["currency"]: int(r["net"]) for r in view} == expected


async def test_bad_records_reach_dead_letters_not_the_tables(stack):
    settings = stack.settings
    prefix = sd.new_prefix()
    await sd.create_prefixed_topics(settings, prefix)
    good, bad_json, bad_contract, too_long, too_big = (sd.new_reference() for _ in range(5))
    history = sd.payment_history(good)
    # valid JSON and contract, but a provider reference longer than the column: PostgreSQL
    # would refuse that row, so it is stored shortened (issue 16: a payment that moved money
    # is never lost for one value); the rest of its batch is written as it is.
    long_change = sd.payment_history(too_long)[0]
    long_change = long_change.model_copy(update={"payment": long_change.payment.model_copy(
        update={"provider_reference": "x" * 300})})
    # valid contract, but an amount beyond PostgreSQL's BIGINT: that row alone is refused,
    # the rest of its batch is written.
    big_change = sd.payment_history(too_big)[0]
    big_change = big_change.model_copy(update={"payment": big_change.payment.model_copy(
        update={"amount": big_change.payment.amount.model_copy(update={"amount": 10**20})})})
    wrong = json.loads(history[0].model_dump_json())
    wrong["payment"]["amount"]["currency"] = "XYZ"
    await sd.produce(settings, prefix + topics.PAYMENT_STATE, [
        (good, history[0]), (bad_json, b"{not json"), (bad_contract, json.dumps(wrong).encode()),
        (too_long, long_change), (too_big, big_change), (good, history[1]),
    ])
    await sd.produce(settings, prefix + topics.WEBHOOKS_RAW, [(good, b"\x00\x01binary")])
    await sd.produce(settings, prefix + topics.DEAD_LETTERS, [(None, b"not a dead letter either")])
    with fresh_database(settings) as db:
        await drain_postgres(db, prefix, f"g{prefix}")
        assert sorted(pg_rows(db, "select reference, version from payments")) == sorted(
            [(good, 2), (too_long, 1)])
        [(kept,)] = pg_rows(db, "select provider_reference from payments where reference = %s", too_long)
        assert len(kept) == 200 and kept.startswith("x" * 191 + "~")
        assert pg_rows(db, "select count(*) from provider_callbacks") == [(0,)]
        letters = pg_rows(db, "select source_topic, reference, error_type, error_message, value "
                              "from dead_letters order by source_topic, reference nulls first")
        by_ref = {(t.removeprefix(prefix), r): (et, msg, v) for t, r, et, msg, v in letters}
        assert set(by_ref) == {
            (topics.PAYMENT_STATE, bad_json), (topics.PAYMENT_STATE, bad_contract),
            (topics.PAYMENT_STATE, too_big), (topics.WEBHOOKS_RAW, good), (topics.DEAD_LETTERS, None),
        }
        assert by_ref[(topics.PAYMENT_STATE, too_big)][0] == "PermanentError"
        assert by_ref[(topics.PAYMENT_STATE, bad_json)][0] == "InvalidRecord"
        assert by_ref[(topics.PAYMENT_STATE, bad_json)][2] == b"{not json"
        assert "XYZ" in by_ref[(topics.PAYMENT_STATE, bad_contract)][1]
        assert by_ref[(topics.WEBHOOKS_RAW, good)][2] == b"\x00\x01binary"
        assert by_ref[(topics.DEAD_LETTERS, None)][2] == b"not a dead letter either"
        # A second pass (redelivery) stores each dead letter once.
        await drain_postgres(db, prefix, f"g2{prefix}")
        assert pg_rows(db, "select count(*) from dead_letters") == [(5,)]


def _http_json(url: str, headers: dict[str, str]) -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
        return json.loads(resp.read())


async def test_the_stack_runs_both_sinks_on_the_real_topics(stack):
    """`trailpay up` runs sink-postgres and, inside analytics, the ClickHouse sink."""
    settings = stack.settings
    ref_prefix = "TP" + uuid.uuid4().hex[:10].upper()
    refs = [f"{ref_prefix}{i:04d}" for i in range(3)]
    items, expected = dataset(refs)
    await sd.produce(settings, topics.PAYMENT_STATE, items)
    await sd.produce(settings, topics.BOOKING_EVENTS, [
        (f"BK{ref_prefix}", sd.booking(f"BK{ref_prefix}", BookingEventKind.CREATED))])
    url = (f"{stack.dashboard_url}/api/sink/clickhouse/counts?"
           + urllib.parse.urlencode({"reference_prefix": ref_prefix}))
    def in_both() -> dict[str, Any] | None:
        pg_count = pg_rows(settings, "select count(*) from payment_events where reference like %s",
                           ref_prefix + "%")[0][0]
        counts: dict[str, Any] = _http_json(url, service_headers(settings))
        return counts if (pg_count, counts["tables"]["payment_changes"]["final"]) == (len(items),) * 2 else None

    ch_counts = await wait_for(in_both, 90, "every state change in PostgreSQL and ClickHouse", interval=0.5)
    assert {c: v["net_minor"] for c, v in ch_counts["revenue"].items() if v["net_minor"]} == expected
    assert pg_revenue(settings, ref_prefix) == expected
    await wait_for(lambda: pg_rows(settings, "select status from bookings where booking_id = %s",
                                   f"BK{ref_prefix}"), 30, "the booking row", interval=0.5)
    assert pg_rows(settings, "select status from bookings where booking_id = %s",
                   f"BK{ref_prefix}") == [("created",)]
