from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trailpay import codec, topics
from trailpay.domain import events as ev
from trailpay.domain.errors import InvalidRecord
from trailpay.domain.money import CURRENCY_EXPONENTS, Money

aware = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=3)), timezone(timedelta(hours=-5))]),
)
ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=40)
money = st.builds(Money, amount=st.integers(0, 10**12), currency=st.sampled_from(sorted(CURRENCY_EXPONENTS)))


@given(
    event_id=ids, at=aware, ref=ids, user=ids, amount=money,
    provider=st.sampled_from(list(ev.Provider)), method=st.sampled_from(list(ev.PaymentMethod)),
    phone=st.none() | st.from_regex(r"2547\d{8}", fullmatch=True),
)
def test_create_payment_round_trips(event_id, at, ref, user, amount, provider, method, phone):
    record = ev.CreatePayment(event_id=event_id, occurred_at=at, reference=ref, user_id=user,
                              amount=amount, provider=provider, method=method, phone_number=phone)
    decoded = codec.decode(topics.PAYMENT_REQUESTS, codec.encode(record))
    assert decoded == record
    assert decoded.occurred_at.tzinfo == UTC
    assert decoded.occurred_at == at


@given(body=st.binary(max_size=2000), at=aware, headers=st.dictionaries(ids, st.text(max_size=50), max_size=5))
def test_raw_webhook_keeps_exact_bytes(body, at, headers):
    record = ev.RawWebhook(event_id="w1", occurred_at=at, provider=ev.Provider.STRIPE, body=body,
                           headers=headers, received_at=at)
    decoded = codec.decode(topics.WEBHOOKS_RAW, codec.encode(record))
    assert decoded.body == body
    assert decoded.headers == headers


@given(value=st.binary(max_size=500), offset=st.integers(0, 2**40))
def test_dead_letter_round_trips(value, offset):
    record = ev.DeadLetter(event_id="d", occurred_at=datetime.now(UTC), source_topic="x", partition=1,
                           offset=offset, value=value, error_type="InvalidRecord",
                           error_message="bad", stage="test")
    assert codec.decode(topics.DEAD_LETTERS, codec.encode(record)) == record


def test_every_topic_has_a_contract():
    assert set(codec.CONTRACTS) == {spec.name for spec in topics.TOPICS}


def test_naive_datetime_is_rejected_with_reason():
    bad = b'{"event_id":"e","occurred_at":"2026-01-01T00:00:00","kind":"cancel","reference":"r"}'
    with pytest.raises(InvalidRecord, match="occurred_at"):
        codec.decode(topics.PAYMENT_REQUESTS, bad)


def test_float_amount_and_unknown_currency_are_rejected():
    bad = (b'{"event_id":"e","occurred_at":"2026-01-01T00:00:00Z","kind":"create","reference":"r",'
           b'"user_id":"u","amount":{"amount":10.5,"currency":"XXX"},"provider":"mpesa",'
           b'"method":"mobile_money"}')
    with pytest.raises(InvalidRecord) as info:
        codec.decode(topics.PAYMENT_REQUESTS, bad)
    assert "amount.amount" in str(info.value)
    assert "amount.currency" in str(info.value)


@pytest.mark.parametrize("data", [b"", b"\xff\xfe garbage", b"[]", b'{"kind":"nope"}', None])
def test_garbage_is_invalid_record(data):
    with pytest.raises(InvalidRecord):
        codec.decode(topics.PAYMENT_REQUESTS, data)


def test_unknown_field_is_rejected():
    with pytest.raises(InvalidRecord, match="surprise"):
        codec.decode(topics.PAYMENT_REQUESTS,
                     b'{"event_id":"e","occurred_at":"2026-01-01T00:00:00Z","kind":"cancel",'
                     b'"reference":"r","surprise":1}')


def test_stable_id_is_deterministic():
    assert ev.stable_id("a", 1) == ev.stable_id("a", 1)
    assert ev.stable_id("a", 1) != ev.stable_id("a", 2)
