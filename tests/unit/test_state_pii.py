"""Issue 16 item 6 / issue 17: payments.state.v1 and what is made of it (the PostgreSQL
archive, ClickHouse) hold no full phone number or e-mail; the worker's restore agent still
gives a restored M-Pesa payment its number back, so it can be refunded to it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from sinks.clickhouse import rows as ch_rows
from sinks.postgres import rows as pg_rows
from streams.agents.common import Incoming
from streams.agents.packing import unpack_json
from streams.agents.payments import PaymentProcessor
from streams.agents.restore import restore
from tests.support.records import create_payment, status_event
from tests.unit.payment_factory import at
from tests.unit.stream_fakes import FakeTable, FaustProducer
from trailpay import codec, topics
from trailpay.domain.deadlines import DeadlinePolicy
from trailpay.domain.errors import ConfigurationError
from trailpay.domain.events import Money, ProviderCommandKind, RefundPayment
from trailpay.domain.state_machine import apply
from trailpay.domain.status import PaymentStatus
from trailpay.pii_crypto import ContactKeys, ContactUnreadable
from trailpay.settings import Settings

REF = "TPSTATEPII000000000001"
PHONE = "+254712345678"
EMAIL = "wanjiru.kamau@example.org"
#: Two keys, as TRAILPAY_STATE_PII_KEYS takes them (32 bytes in base64url each).
KEY_A = "qEZ0c2x0cm9uZy1lbm91Z2gtZm9yLWEtdGVzdC1rZXk"
KEY_B = "3q2-7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


def _machine(keys: str | None) -> tuple[PaymentProcessor, FaustProducer]:
    producer = FaustProducer()
    ctx = SimpleNamespace(app=SimpleNamespace(producer=producer), settings=Settings())
    machine = PaymentProcessor(ctx, FakeTable(), FakeTable(), DeadlinePolicy(),  # type: ignore[arg-type]
                               contact_keys=ContactKeys.parse(keys))
    return machine, producer


def _event(topic: str, record: object, offset: int) -> SimpleNamespace:
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=1, offset=offset,
                                                   key=REF.encode(), value=codec.encode(record)))  # type: ignore[arg-type]


async def _paid_mpesa(keys: str | None) -> tuple[PaymentProcessor, FaustProducer]:
    """An M-Pesa payment of +254712345678 (receipt to EMAIL) created and paid, by the worker."""
    machine, producer = _machine(keys)
    create = create_payment(REF, at(0), phone_number=PHONE, email=EMAIL, description="Safari deposit")
    paid = status_event(REF, PaymentStatus.SUCCEEDED, at(5), event_id="mpesa:ws_CO_1:0",
                        amount=Money(amount=1000, currency="KES"), provider_reference="ws_CO_1")
    await machine.process([_event(topics.PAYMENT_REQUESTS, create, 0), _event(topics.PROVIDER_EVENTS, paid, 1)])
    return machine, producer


def _sent(producer: FaustProducer, topic: str) -> list[bytes]:
    return [v for t, _, v in producer.sent if t == topic]


async def test_the_state_records_of_a_payment_hold_neither_its_phone_nor_its_email() -> None:
    machine, producer = await _paid_mpesa(KEY_A)
    states = _sent(producer, topics.PAYMENT_STATE)
    assert len(states) == 2
    for value in states:
        assert b"254712345678" not in value and b"wanjiru.kamau" not in value and b"kamau@" not in value
        change = codec.decode(topics.PAYMENT_STATE, value)
        assert (change.payment.phone_number, change.payment.email) == ("2547******78", "w***@example.org")
        assert change.sealed_contact.phone_prefix == "25471" and change.sealed_contact.sealed
    # ... and so neither do the archive, the read model or ClickHouse made of them
    change = codec.decode(topics.PAYMENT_STATE, states[-1])
    made = [pg_rows.event_row(change, 1, 2), pg_rows.payment_row(change), ch_rows.payment(change),
            ch_rows.payment_change(change)]
    for row in made:
        text = json.dumps(row, default=str)
        assert "254712345678" not in text and "wanjiru.kamau" not in text, text
    assert ch_rows.payment(change)[10] == "25471"  # the regional charts keep country and operator
    # where the number is needed, it is whole: the provider command and the worker's own table
    assert any(b"+254712345678" in v for v in _sent(producer, topics.PROVIDER_COMMANDS))
    table = json.loads(unpack_json(machine.payments.data[REF.encode()]))["snapshot"]
    assert (table["phone_number"], table["email"]) == (PHONE, EMAIL)


async def test_a_change_is_sealed_the_same_way_on_every_emission() -> None:
    _first, producer = await _paid_mpesa(KEY_A)
    again = await _paid_mpesa(KEY_A)
    assert _sent(producer, topics.PAYMENT_STATE) == _sent(again[1], topics.PAYMENT_STATE)


async def test_a_restored_mpesa_payment_is_refunded_to_its_whole_number() -> None:
    _first, producer = await _paid_mpesa(KEY_A)
    # after the data loss: the archived record (as the PostgreSQL sink keeps it) replayed
    archived = pg_rows.event_row(codec.decode(topics.PAYMENT_STATE, _sent(producer, topics.PAYMENT_STATE)[-1]), 1, 2)
    replayed = json.dumps(archived["record"]).encode()
    machine, out = _machine(f"{KEY_B},{KEY_A}")  # rotated since: KEY_A still opens
    assert await restore(machine, [Incoming(topics.PAYMENT_STATE, 1, 7, REF.encode(), replayed)]) == 1
    held = machine.load(REF.encode())
    assert held is not None and held.status is PaymentStatus.SUCCEEDED
    assert (held.snapshot.phone_number, held.snapshot.email) == (PHONE, EMAIL)

    refund = RefundPayment(event_id="refund-req-1", occurred_at=at(60), reference=REF, refund_id="rf-1",
                           amount=Money(amount=400, currency="KES"))
    await machine.process([_event(topics.PAYMENT_REQUESTS, refund, 8)])
    commands = [codec.decode(topics.PROVIDER_COMMANDS, v) for v in _sent(out, topics.PROVIDER_COMMANDS)]
    assert [(c.kind, c.phone_number, c.email) for c in commands] == [
        (ProviderCommandKind.REFUND, "+254712345678", "wanjiru.kamau@example.org")]
    # the state change of the refund is sealed under the new first key
    refunded = codec.decode(topics.PAYMENT_STATE, _sent(out, topics.PAYMENT_STATE)[-1])
    assert refunded.sealed_contact.key_id == ContactKeys.parse(KEY_B).sealing_key_id
    assert refunded.payment.phone_number == "2547******78"


@pytest.mark.parametrize("keys", [KEY_B, None])
async def test_a_change_that_does_not_open_is_a_dead_letter_not_a_crash(keys) -> None:
    _first, producer = await _paid_mpesa(KEY_A)
    value = _sent(producer, topics.PAYMENT_STATE)[-1]
    machine, out = _machine(keys)
    assert await restore(machine, [Incoming(topics.PAYMENT_STATE, 1, 7, REF.encode(), value)]) == 0
    assert machine.load(REF.encode()) is None
    (letter,) = out.dead_letters()
    assert (letter.stage, letter.error_type, letter.reference) == ("restore", "ContactUnreadable", REF)
    assert letter.value == value  # the original bytes, for a re-drive once the key is back


async def test_without_a_key_the_contact_is_masked_and_a_restore_refuses_it() -> None:
    _first, producer = await _paid_mpesa(None)
    value = _sent(producer, topics.PAYMENT_STATE)[-1]
    assert b"254712345678" not in value and b"wanjiru.kamau" not in value
    change = codec.decode(topics.PAYMENT_STATE, value)
    assert change.sealed_contact.sealed is None and change.sealed_contact.phone_prefix == "25471"
    with pytest.raises(ContactUnreadable, match="not sealed"):
        ContactKeys.parse(KEY_A).open(change)


def test_a_seal_copied_onto_another_payment_does_not_open() -> None:
    keys = ContactKeys.parse(KEY_A)
    change = apply(None, create_payment(REF, at(0), phone_number=PHONE, email=EMAIL)).change
    other = apply(None, create_payment("TPSTATEPII000000000002", at(0), phone_number="+254700000001")).change
    assert change is not None and other is not None
    sealed, other_sealed = keys.seal(change), keys.seal(other)
    assert sealed.sealed_contact != other_sealed.sealed_contact
    forged = other_sealed.model_copy(update={"sealed_contact": sealed.sealed_contact})
    with pytest.raises(ContactUnreadable, match="does not open"):
        keys.open(forged)
    assert keys.open(sealed).phone_number == PHONE


@pytest.mark.parametrize("text", ["not-base64!", "c2hvcnQ", f"{KEY_A},{KEY_A[:-2]}"])
def test_a_malformed_key_names_the_variable(text) -> None:
    with pytest.raises(ConfigurationError, match=r"^TRAILPAY_STATE_PII_KEYS: "):
        ContactKeys.parse(text)


def test_an_address_with_a_star_is_sealed_like_any_other() -> None:
    """``*`` is allowed in an address's local part: it does not make the e-mail look masked."""
    keys = ContactKeys.parse(KEY_A)
    change = apply(None, create_payment(REF, at(0), phone_number=PHONE, email="safari*deals@example.org")).change
    assert change is not None
    sealed = keys.seal(change)
    assert "safari" not in sealed.model_dump_json() and "254712345678" not in sealed.model_dump_json()
    assert keys.seal(sealed) == sealed
    assert keys.open(sealed).email == "safari*deals@example.org"
