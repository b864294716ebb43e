"""Regression (issue 16): dead letters held full phone numbers (`trailpay dlq show` printed them)."""

from __future__ import annotations

import json

from trailpay.deadletters import dead_letter

CREATE = (b'{"kind":"create","reference":"TPX","phone_number":"260771234560",'
          b'"email":"jane.doe@example.org","amount":{"amount":"twenty","currency":"ZMW"}}')


def test_dead_letter_keeps_masked_numbers_and_a_scrubbed_reason():
    letter = dead_letter(source_topic="payments.requests.v1", partition=0, offset=7, key=b"TPX",
                         value=CREATE, exc=ValueError("bad record for +243812345678 / jane.doe@example.org"),
                         stage="payments")
    assert b"260771234560" not in letter.value
    assert json.loads(letter.value)["phone_number"] == "2607******60"
    assert json.loads(letter.value)["amount"] == {"amount": "twenty", "currency": "ZMW"}
    assert letter.error_message == "bad record for 2438******78 / j***@example.org"


def test_bytes_without_a_number_stay_exact():
    raw = b'{"not": "a command"}'
    letter = dead_letter(source_topic="provider.commands.v1", partition=0, offset=1, key=None, value=raw,
                         exc=ValueError("x"), stage="dispatcher")
    assert letter.value == raw
    garbage = b"\x00\xff\x80 not utf-8"
    assert dead_letter(source_topic="t", partition=0, offset=2, key=None, value=garbage,
                       exc=ValueError("x"), stage="s").value == garbage
