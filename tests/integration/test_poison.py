"""No poison record stops a consumer (issue 16): the harness of :mod:`poisonutil` against the
real broker, PostgreSQL and chDB, and the measured defects as regression tests.

The sink test writes to its own prefixed topics, consumer groups and database; the
regression tests go through the session stack's own ingress and sinks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import sinkdata as sd
from tests.integration import poisonutil as pu
from tests.integration.ingressutil import make_user
from tests.sinkdata import ch_query, drain_clickhouse, drain_postgres, fresh_database, pg_rows
from tests.stackutil import start_stack, stop_stack
from tests.support.analytics import service_headers
from tests.support.waits import wait_for
from trailpay import topics
from trailpay.deadletters import MAX_VALUE_BYTES
from trailpay.domain.references import booking_reference

pytestmark = pytest.mark.integration

PG_TOPICS = (topics.PAYMENT_STATE, topics.WEBHOOKS_RAW, topics.BOOKING_EVENTS)
CH_TOPICS = (topics.PAYMENT_STATE, topics.WEBHOOKS_RAW, topics.BOOKING_EVENTS,
             topics.PROVIDER_COMMANDS, topics.PROVIDER_EVENTS)
#: Where a good record of each topic lands, in PostgreSQL and in ClickHouse.
PG_TABLE = {topics.PAYMENT_STATE: "payments", topics.WEBHOOKS_RAW: "provider_callbacks",
            topics.BOOKING_EVENTS: "bookings"}
CH_TABLE = {topics.PAYMENT_STATE: "payments", topics.WEBHOOKS_RAW: "webhooks",
            topics.BOOKING_EVENTS: "bookings", topics.PROVIDER_COMMANDS: "provider_commands",
            topics.PROVIDER_EVENTS: "provider_events"}


def _landing_reference(topic: str, key: str) -> str:
    return booking_reference(key, 1) if topic == topics.BOOKING_EVENTS else key


def _stored(value: bytes) -> bytes:
    """What a dead letter keeps of ``value``."""
    return value[:MAX_VALUE_BYTES]


async def test_every_sink_stores_the_good_and_dead_letters_the_bad(stack, tmp_path: Path):
    settings = stack.settings
    prefix = sd.new_prefix()
    await sd.create_prefixed_topics(settings, prefix)
    produced: dict[str, tuple[list[pu.Poison], list[tuple[str, Any]]]] = {}
    for topic in CH_TOPICS:
        items, bad, fine = pu.interleave(topic)
        await sd.produce(settings, prefix + topic, items)
        produced[topic] = (bad, fine)
    await sd.produce(settings, prefix + topics.DEAD_LETTERS, [(None, pu.NESTED)])
    ch_dir = tmp_path / "ch"
    group = f"g{prefix}"
    with fresh_database(settings) as db:
        await drain_postgres(db, prefix, group)
        await drain_clickhouse(settings, ch_dir, prefix, f"c{prefix}")
        await drain_postgres(db, prefix, group)  # the ClickHouse sink's dead letters

        letters = {(t.removeprefix(prefix), stage, bytes(k) if k else None): bytes(v)
                   for t, stage, k, v in pg_rows(db, "select source_topic, stage, key, value "
                                                     "from dead_letters")}
        for topic in CH_TOPICS:
            bad, fine = produced[topic]
            sinks = ["sink-clickhouse"] + (["sink-postgres"] if topic in PG_TOPICS else [])
            for p in bad:
                for sink in sinks:
                    found = letters.get((topic, sink, p.key.encode()))
                    if p.kept:
                        assert found is None, f"{sink} dead-lettered the valid {p.name} of {topic}"
                    else:
                        assert found == _stored(p.value), (f"{sink}: no dead letter of {p.name} on {topic}", sorted((t, s, k) for t, s, k in letters if t == topic))
        assert letters[(topics.DEAD_LETTERS, "sink-postgres", None)] == pu.NESTED

        for topic in PG_TOPICS:
            bad, fine = produced[topic]
            wanted = {_landing_reference(topic, key) for key, _ in fine}
            wanted |= {p.lands_as for p in bad if p.kept and p.lands_as}
            found = {r for (r,) in pg_rows(db, f"select reference from {PG_TABLE[topic]} "
                                               "where reference = any(%s)", sorted(wanted))}
            assert found == wanted, f"missing in PostgreSQL {PG_TABLE[topic]}: {wanted - found}"

        kept = {p.name: p for p in produced[topics.PAYMENT_STATE][0]}
        [(description, email)] = pg_rows(db, "select description, email from payments where reference = %s",
                                         kept["kept_nul"].lands_as)
        assert (description, email) == ("Tent\\u0000 and \\u0000 safari", "a\\u0000@example.com")
        [(booking_id,)] = pg_rows(db, "select booking_id from payments where reference = %s",
                                  kept["kept_long"].lands_as)
        assert len(booking_id) == 100 and booking_id.startswith("B" * 91 + "~")
        [(size,)] = pg_rows(db, "select length(description) from payments where reference = %s",
                            kept["kept_huge"].lands_as)
        assert size == pu.HUGE
        hook = {p.name: p for p in produced[topics.WEBHOOKS_RAW][0]}["kept_nested_body"]
        [(body, code)] = pg_rows(db, "select body, provider_code from provider_callbacks where reference = %s",
                                 hook.lands_as)
        assert (bytes(body), code) == (b"[" * 2000 + b"]" * 2000, None)

    queries, expected = [], []
    for topic in CH_TOPICS:
        bad, fine = produced[topic]
        wanted = sorted({_landing_reference(topic, key) for key, _ in fine}
                        | {p.lands_as for p in bad if p.kept and p.lands_as})
        listed = ", ".join(f"'{r}'" for r in wanted)
        queries.append(f"SELECT DISTINCT reference FROM trailpay.{CH_TABLE[topic]} "
                       f"WHERE reference IN ({listed}) ORDER BY reference")
        expected.append(wanted)
    results = ch_query(settings, ch_dir, *queries)
    for topic, rows, wanted in zip(CH_TOPICS, results, expected, strict=True):
        assert [r["reference"] for r in rows] == wanted, f"ClickHouse {CH_TABLE[topic]}"


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=15) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _counts(stack: Any, prefix: str) -> dict[str, Any]:
    url = (f"{stack.dashboard_url}/api/sink/clickhouse/counts?"
           + urllib.parse.urlencode({"reference_prefix": prefix}))
    request = urllib.request.Request(url, headers=service_headers(stack.settings))
    with urllib.request.urlopen(request, timeout=10) as resp:
        return dict(json.loads(resp.read()))


async def test_a_nested_airtel_callback_stops_neither_sink(stack):
    """Measured: 2,000 nested arrays posted to the Airtel callback (403, recorded on
    webhooks.raw.v1) raised RecursionError in both sinks' row mapping, for ever."""
    settings = stack.settings
    probe = uuid.uuid4().hex
    status = _post(f"{stack.api_url}/api/payments/callback/airtel/?probe={probe}",
                   b"[" * 2000 + b"]" * 2000)
    assert 400 <= status < 500
    after = "TPAFTER" + uuid.uuid4().hex[:10].upper()
    await sd.produce(settings, topics.PAYMENT_STATE, [(after, c) for c in sd.payment_history(after)])
    await wait_for(lambda: pg_rows(settings, "select 1 from payments where reference = %s", after),
                   90, "the PostgreSQL sink writing the payment produced after the nested body")
    await wait_for(lambda: _counts(stack, after)["tables"]["payments"]["final"] == 1,
                   90, "the ClickHouse sink writing the payment produced after the nested body")
    recorded = pg_rows(settings, "select body from provider_callbacks where query->>'probe' = %s", probe)
    if status == 403:  # recorded for audit (an edge that refuses the body at once records nothing)
        assert [bytes(b) for (b,) in recorded] == [b"[" * 2000 + b"]" * 2000]


async def test_a_paid_payment_with_nul_or_a_long_booking_id_reaches_postgresql(stack):
    """Measured: a description with \\u0000, or a booking_id over 100 characters, was paid
    but PostgreSQL refused the row (404 for the owner). The edge may refuse them now; the
    topic is the path that must stay safe, so they are produced onto it directly."""
    settings = stack.settings
    nul, long = ("TPNUL" + uuid.uuid4().hex[:10].upper(), "TPLONG" + uuid.uuid4().hex[:10].upper())
    items = []
    for ref, update in ((nul, {"description": "Lodge\x00night"}), (long, {"booking_id": "K" * 150})):
        for change in sd.payment_history(ref):
            items.append((ref, change.model_copy(update={
                "payment": change.payment.model_copy(update=update)})))
    await sd.produce(settings, topics.PAYMENT_STATE, items)

    def landed() -> list[tuple[Any, ...]] | None:
        rows = pg_rows(settings, "select reference, status, description, booking_id from payments "
                                 "where reference = any(%s) order by reference", [nul, long])
        return rows if len(rows) == 2 and all(r[1] == "succeeded" for r in rows) else None

    rows = await wait_for(landed, 90, "both paid payments in PostgreSQL")
    by_ref = {r[0]: r for r in rows}
    assert by_ref[nul][2] == "Lodge\\u0000night"
    assert by_ref[long][3] == "K" * 91 + "~" + by_ref[long][3][92:] and len(by_ref[long][3]) == 100
    assert pg_rows(settings, "select count(*) from dead_letters where reference = any(%s)",
                   [nul, long]) == [(0,)]


def _readyz(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read() or b"null")


async def test_a_crash_looping_consumer_is_reported_by_readyz_and_status(own_stack_dir):
    """Measured: both sinks restarted for ever while /readyz still said ready."""
    running = start_stack(own_stack_dir, env={"TRAILPAY_CONSUMER_MAX_RESTARTS": "2"})
    try:
        sink_ready = running.refresh().metrics_urls["sink-postgres"].rsplit("/", 1)[0] + "/readyz"
        assert _readyz(sink_ready)[0] == 200
        for _ in range(2):
            before = running.pid("sink-postgres")
            running.kill_service("sink-postgres")
            await wait_for(lambda b=before: (running.refresh().processes.get("sink-postgres") or b) != b,
                           60, "the supervisor restarting sink-postgres", interval=0.5)

        def answers() -> tuple[int, Any] | None:
            try:
                return _readyz(sink_ready)
            except OSError:
                return None

        status, body = await wait_for(answers, 60, "the restarted sink's /readyz", interval=0.5)
        assert (status, body) == (503, {"ready": False})
        report = subprocess.run([sys.executable, "-m", "controlplane.cli.main", "status", "--data-dir",
                                 str(own_stack_dir), "--json"], capture_output=True, text=True, timeout=90,
                                env={**os.environ, "TRAILPAY_CONSUMER_MAX_RESTARTS": "2"})
        assert report.returncode == 1, report.stdout + report.stderr
        parts = json.loads(report.stdout)
        assert parts["consumer sink-postgres"]["healthy"] is False
        assert parts["consumer sink-postgres"]["detail"].startswith("crash-looping: 2 restarts in the last")
    finally:
        stop_stack(running)


async def test_every_consumer_of_the_stack_dead_letters_poison_and_goes_on(stack):
    """Garbage, 5,000-deep JSON, wrong-schema and 1 MB records on every topic the stack
    consumes; every consumer dead-letters each with its bytes, and payments made afterwards
    still go through the whole pipeline (state machine, dispatcher, dedup, sinks, e-mail)."""
    settings = stack.settings
    bad: dict[str, list[pu.Poison]] = {topic: pu.bad_records(topic) for topic in pu.STAGES}
    for topic, records in bad.items():
        await sd.produce(settings, topic, [(p.key, p.value) for p in records])
    # Measured: an address with CR/LF stopped the notifier; the batch's other e-mails were lost.
    tag = uuid.uuid4().hex[:8].upper()
    mails = [pu.notification(1, "first@example.com", tag),
             pu.notification(2, "victim@example.com\r\nBcc: everyone@evil.example", tag),
             pu.notification(3, "third@example.com", tag)]
    await sd.produce(settings, topics.NOTIFICATIONS, list(mails))

    user = await make_user(settings)
    refs = []
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
        for _ in range(2):
            resp = await api.post("/api/payments/create/", headers=user.headers, json={
                "amount": "150", "currency": "KES", "payment_method": "mobile_money",
                "provider": "mpesa", "phone_number": "+254700000000", "description": "after poison"})
            assert resp.status_code == 201, resp.text
            refs.append(resp.json()["reference"])

        async def settled() -> bool:
            for ref in refs:
                body = (await api.get(f"/api/payments/{ref}/status/", headers=user.headers)).json()
                if body.get("status") != "succeeded":
                    return False
            return True

        await wait_for(settled, 120, "the payments made after the poison succeeding", interval=0.5)

    def letters() -> dict[tuple[str, str, bytes], bytes] | None:
        rows = pg_rows(settings, "select source_topic, stage, key, value from dead_letters "
                                 "where key = any(%s)",
                       [p.key.encode() for records in bad.values() for p in records]
                       + [key.encode() for key, _ in mails])
        found = {(t, s, bytes(k)): bytes(v) for t, s, k, v in rows}
        wanted = sum(len(records) * len(pu.STAGES[t]) for t, records in bad.items()) + 1
        return found if len(found) >= wanted else None

    found = await wait_for(letters, 120, "a dead letter from every consumer of every bad record",
                           interval=1)
    for topic, records in bad.items():
        for p in records:
            for stage in pu.STAGES[topic]:
                assert found.get((topic, stage, p.key.encode())) == _stored(p.value), (topic, stage, p.name)
    assert found[(topics.NOTIFICATIONS, "notifications", mails[1][0].encode())] == mails[1][1]

    outbox = Path(stack.data_dir) / "outbox"
    await wait_for(lambda: len(list(outbox.glob(f"TP{tag}*.eml"))) >= 2, 60,
                   "the two good e-mails of the batch", interval=0.5)
    sent = {p.name for p in outbox.glob(f"TP{tag}*.eml")}
    assert sent == {f"TP{tag}1:payment_succeeded.eml", f"TP{tag}3:payment_succeeded.eml"}
