"""The log and topic scan of issue 16: after a three-provider run on an embedded stack of its
own, no log file of the stack and no record of any topic holds a full phone number (Kenyan,
Zambian, Congolese, Ugandan), a customer e-mail, a callback token, a webhook secret, an API
key, the database password or a card number, except the topics that need them to call a
provider or send an e-mail (the allowlists below, written out).

The run: an M-Pesa payment (KE), an Airtel payment in a Zambian deployment, a Stripe card
payment, each once succeeding and once failing; requests refused at the edge (a Ugandan
number for M-Pesa, a card number as a payment method); forged callbacks carrying Congolese
and Ugandan numbers with a wrong token (recorded for audit); a notification e-mail.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from controlplane.stack.stack_secrets import read_secrets
from tests.integration.ingressutil import ApiUser, make_user
from tests.stackutil import RunningStack, keep_logs, stack_dir, start_stack, stop_stack
from tests.support.waits import wait_caught_up, wait_for
from trailpay import topics

pytestmark = pytest.mark.integration

#: The full numbers of the run, in the forms they may be written (with and without +).
KE_OK, KE_FAIL = "254712345670", "254712345671"
ZM_OK, ZM_FAIL = "260771234560", "260771234561"
CD_FORGED, UG_FORGED, UG_REFUSED = "243812345678", "256772123456", "256701234560"
PHONES = (KE_OK, KE_FAIL, ZM_OK, ZM_FAIL, CD_FORGED, UG_FORGED, UG_REFUSED)
CUSTOMER_EMAIL = "wanjiru.kamau@example.org"
CARD_NUMBER = "4242424242424242"

#: Topics whose records carry the full phone number: what a provider call is made from
#: (the request, the provider command) and the state machine's own table.
PHONE_TOPICS = frozenset({"payments.requests.v1", "provider.commands.v1", "trailpay-payments-changelog"})
#: Topics whose records carry the customer's e-mail: the above and the e-mail to send.
EMAIL_TOPICS = PHONE_TOPICS | {"notifications.v1"}
#: The state changes: phone and e-mail masked, sealed beside them for the restore agent alone
#: (trailpay/pii_crypto.py). Scanned on their own below, with the PostgreSQL archive made of them.
SNAPSHOT_TOPIC = "payments.state.v1"


def _forms(number: str) -> list[str]:
    return [number, "+" + number]


@pytest.fixture(scope="module")
def stack() -> Iterator[RunningStack]:
    data_dir = stack_dir("noleaks")
    running = start_stack(data_dir, env={"TRAILPAY_LOG_LEVEL": "INFO", "TRAILPAY_AIRTEL_COUNTRY": "ZM",
                                         "TRAILPAY_AIRTEL_CURRENCY": "ZMW"})
    try:
        yield running
    finally:
        stop_stack(running)
        keep_logs(data_dir, "noleaks")
        shutil.rmtree(data_dir, ignore_errors=True)


def _secrets(stack: RunningStack) -> dict[str, str]:
    s = stack.settings
    found = {
        "mpesa callback token": s.mpesa_callback_token.get_secret_value(),
        "airtel callback token": s.airtel_callback_token.get_secret_value(),
        "stripe api key": s.stripe_api_key.get_secret_value(),
        "mpesa consumer secret": s.mpesa_consumer_secret.get_secret_value(),
        "mpesa passkey": s.mpesa_passkey.get_secret_value(),
        "airtel client secret": s.airtel_client_secret.get_secret_value(),
        "postgres password": read_secrets(stack.data_dir)["postgres_password"],
    }
    found.update({f"webhook secret {i}": w.get_secret_value() for i, w in enumerate(s.stripe_webhook_secrets)})
    return found


def _needles(stack: RunningStack) -> dict[str, list[str]]:
    """kind -> the literal strings that must not appear."""
    return {
        "phone": [form for number in PHONES for form in _forms(number)],
        "email": [CUSTOMER_EMAIL],
        "card": [CARD_NUMBER, "4242 4242 4242 4242"],
        "secret": list(_secrets(stack).values()),
    }


async def _done(api: httpx.AsyncClient, user: ApiUser, path: str, ok: bool) -> bool:
    """A payment meant to succeed has; one meant to fail has the provider's refusal (a
    decline the customer can recover from leaves it open for another attempt)."""
    resp = await api.get(path, headers=user.headers)
    if resp.status_code != 200:
        return False
    body = resp.json()
    if ok:
        return bool(body["status"] == "succeeded")
    return bool(body["provider_code"]) or body["status"] in {"failed", "cancelled", "expired"}


async def _drive(stack: RunningStack) -> None:
    user = await make_user(stack.settings)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
        refs = []
        for provider, currency, phone in (("mpesa", "KES", KE_OK), ("mpesa", "KES", KE_FAIL),
                                          ("airtel", "ZMW", "+" + ZM_OK), ("airtel", "ZMW", ZM_FAIL)):
            resp = await api.post("/api/payments/create/", headers=user.headers, json={
                "amount": "150", "currency": currency, "payment_method": "mobile_money",
                "provider": provider, "phone_number": phone, "email": CUSTOMER_EMAIL,
                "description": "Safari deposit"})
            assert resp.status_code == 201, resp.text
            refs.append((f"/api/payments/{resp.json()['reference']}/", phone.endswith("0")))
        for method in ("pm_card_visa", "pm_card_chargeDeclined"):
            resp = await api.post("/api/stripe/payment-intents/create/", headers=user.headers, json={
                "amount": "42.50", "currency": "USD", "payment_method": method, "confirm": True,
                "email": CUSTOMER_EMAIL})
            assert resp.status_code == 201, resp.text
            refs.append((f"/api/stripe/payment-intents/{resp.json()['reference']}/", method == "pm_card_visa"))
        # refused at the edge
        refused = await api.post("/api/payments/create/", headers=user.headers, json={
            "amount": "150", "currency": "KES", "payment_method": "mobile_money", "provider": "mpesa",
            "phone_number": "+" + UG_REFUSED, "email": CUSTOMER_EMAIL})
        assert 400 <= refused.status_code < 500, refused.text
        card = await api.post("/api/stripe/payment-intents/create/", headers=user.headers, json={
            "amount": "42.50", "currency": "USD", "payment_method": CARD_NUMBER, "confirm": True})
        assert card.status_code < 500, card.text
        # forged callbacks: a wrong token, recorded for audit
        forged = {"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_forged", "ResultCode": 0,
                                           "CallbackMetadata": {"Item": [
                                               {"Name": "PhoneNumber", "Value": int(CD_FORGED)}]}}}}
        resp = await api.post("/api/payments/callback/mpesa/", params={"token": "guessed"}, json=forged)
        assert resp.status_code == 403, resp.text
        resp = await api.post("/api/payments/callback/airtel/", params={"token": "guessed"}, json={
            "transaction": {"id": "forged", "msisdn": "+" + UG_FORGED, "status_code": "TS"}})
        assert resp.status_code == 403, resp.text

        async def settled() -> bool:
            return all([await _done(api, user, path, ok) for path, ok in refs])

        await wait_for(settled, 120, "every payment of the run settled", interval=1.0)
    await wait_caught_up(stack.settings, {topics.POSTGRES_SINK_GROUP: (topics.PAYMENT_STATE,)}, 90,
                         "the PostgreSQL sink")
    await _failed_statements(stack)


async def _failed_statements(stack: RunningStack) -> None:
    """Statements PostgreSQL refuses with the customer's e-mail in them (its log kept the
    ``DETAIL: Failing row contains (...)`` and the statement)."""
    url = (stack.settings.database_url or "").replace("postgresql+psycopg://", "postgresql://")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CREATE TEMP TABLE refused (email text CHECK (email NOT LIKE '%@%'))")
        for sql, args in (("INSERT INTO refused VALUES (%s)", (CUSTOMER_EMAIL,)),
                          (f"INSERT INTO refused VALUES ('{CUSTOMER_EMAIL}')", None),
                          ("SELECT %s::int", (CUSTOMER_EMAIL,))):
            with pytest.raises(psycopg.Error):
                await conn.execute(sql, args)


async def test_embedded_postgres_wants_its_password(stack):
    """Regression (issue 16): the embedded PostgreSQL took passwordless connections."""
    url = (stack.settings.database_url or "").replace("postgresql+psycopg://", "postgresql://")
    password = read_secrets(stack.data_dir)["postgres_password"]
    assert f":{password}@" in url
    for wrong in (url.replace(f":{password}@", "@"), url.replace(f":{password}@", ":postgres@")):
        with pytest.raises(psycopg.OperationalError):
            async with await psycopg.AsyncConnection.connect(wrong, connect_timeout=5):
                pass
    async with await psycopg.AsyncConnection.connect(url, connect_timeout=5) as conn:
        assert await (await conn.execute("select 1")).fetchone() == (1,)


async def _topic_names(bootstrap: str) -> list[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        return sorted(t for t in await consumer.topics() if not t.startswith("__"))
    finally:
        await consumer.stop()


async def _read_topic(bootstrap: str, topic: str) -> list[bytes]:
    """Every record of ``topic``: key, value and headers as one blob of bytes each."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[bytes] = []
    try:
        parts: set[TopicPartition] = await wait_for(lambda: consumer.assignment(), 30, f"{topic} assigned")
        ends = await consumer.end_offsets(list(parts))

        async def done() -> bool:
            return all([await consumer.position(tp) >= ends[tp] for tp in parts])

        while not await done():
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for r in records:
                    blob = (r.key or b"") + b"\n" + (r.value or b"")
                    blob += b"".join(k.encode() + b"=" + (v or b"") for k, v in (r.headers or ()))
                    out.append(blob)
    finally:
        await consumer.stop()
    return out


async def _read_topics(bootstrap: str) -> dict[str, list[bytes]]:
    """Every record of every topic but Kafka's own (the state machine's changelogs included)."""
    return {name: await _read_topic(bootstrap, name) for name in await _topic_names(bootstrap)}


def _log_files(data_dir: Path) -> list[Path]:
    """The stack's log files: its services' logs, PostgreSQL's and the broker's, up.log;
    not the brokers' data segments (also named *.log) nor database files."""
    data = {data_dir / "kafka", data_dir / "postgres", data_dir / "clickhouse"}
    return sorted(p for p in data_dir.rglob("*.log")
                  if p.is_file() and not any(d in p.parents for d in data))


@pytest.fixture(scope="module")
def scanned(stack: RunningStack) -> dict[str, object]:
    asyncio.run(_drive(stack))
    return {"topics": asyncio.run(_read_topics(stack.settings.kafka_bootstrap or "")),
            "logs": {p.relative_to(stack.data_dir).as_posix(): p.read_bytes() for p in _log_files(stack.data_dir)}}


def _found(blob: bytes, needles: dict[str, list[str]], skip: frozenset[str] = frozenset()) -> list[str]:
    return [f"{kind} {needle[:6]}..." for kind, values in needles.items() if kind not in skip
            for needle in values if needle and needle.encode() in blob]


def test_the_run_reached_every_topic_and_log(scanned):
    topics_read: dict[str, list[bytes]] = scanned["topics"]  # type: ignore[assignment]
    logs: dict[str, bytes] = scanned["logs"]  # type: ignore[assignment]
    for name in ("payments.requests.v1", "provider.commands.v1", "webhooks.raw.v1", "provider.events.v1",
                 "payments.state.v1", "notifications.v1"):
        assert topics_read.get(name), f"nothing read from {name}"
    assert {"logs/ingress.log", "logs/worker.log", "logs/postgres.log", "logs/sandbox.log"} <= set(logs), sorted(logs)
    # the phones did reach the pipeline where they are needed (so their absence elsewhere means something)
    assert any(KE_OK.encode() in r for r in topics_read["provider.commands.v1"])
    assert any(ZM_OK.encode() in r for r in topics_read["provider.commands.v1"])


def test_no_log_file_holds_a_secret_or_personal_data(stack, scanned):
    logs: dict[str, bytes] = scanned["logs"]  # type: ignore[assignment]
    needles = _needles(stack)
    leaks = {name: found for name, blob in logs.items() if (found := _found(blob, needles))}
    assert leaks == {}


def test_no_topic_holds_what_it_need_not(stack, scanned):
    topics_read: dict[str, list[bytes]] = scanned["topics"]  # type: ignore[assignment]
    needles = _needles(stack)
    leaks: dict[str, set[str]] = {}
    for name, records in topics_read.items():
        skip = frozenset({"phone"} if name in PHONE_TOPICS else ()) | frozenset(
            {"email"} if name in EMAIL_TOPICS else ())
        for blob in records:
            if found := _found(blob, needles, skip):
                leaks.setdefault(name, set()).update(found)
    assert leaks == {}


def test_no_topic_holds_a_secret_or_card_number(stack, scanned):
    """Not even the allowlisted topics: no callback token, webhook secret, key or card."""
    topics_read: dict[str, list[bytes]] = scanned["topics"]  # type: ignore[assignment]
    needles = {k: v for k, v in _needles(stack).items() if k in ("secret", "card")}
    leaks = {name: found for name, records in topics_read.items()
             if (found := sorted({f for blob in records for f in _found(blob, needles)}))}
    assert leaks == {}


def test_state_changes_hold_no_full_phone_or_email(stack, scanned):
    records = scanned["topics"][SNAPSHOT_TOPIC]  # type: ignore[index]
    needles = {k: v for k, v in _needles(stack).items() if k in ("phone", "email")}
    assert [f for blob in records for f in _found(blob, needles)] == []
    assert all(b'"sealed_contact":{"key_id":"' in blob for blob in records if b'"phone_number":"' in blob)


def test_the_payment_tables_hold_no_full_phone_or_email(stack, scanned):
    """The archive of state changes (payment_events.record), the payments read model and the
    Stripe customers: every row as text."""
    needles = {k: v for k, v in _needles(stack).items() if k in ("phone", "email")}
    url = (stack.settings.database_url or "").replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        rows = {table: [r[0].encode() for r in conn.execute(f"SELECT t::text FROM {table} t")]
                for table in ("payment_events", "payments", "customers")}
    assert len(rows["payment_events"]) >= 12 and len(rows["payments"]) >= 6
    leaks = {table: found for table, blobs in rows.items()
             if (found := sorted({f for blob in blobs for f in _found(blob, needles)}))}
    assert leaks == {}
