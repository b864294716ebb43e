"""The poison harness: hostile records for every topic, between good ones.

For each topic :func:`poison` gives the records nobody planned for, each with the key it is
produced under and whether a consumer must *store* it (a valid record with hostile values:
NUL, over-long strings, a body nested 5,000 deep, a 1 MB description) or *dead-letter* it
(garbage bytes, JSON nested 5,000 deep, a wrong schema, 1 MB of junk). :func:`good` gives the
ordinary records they are produced between. Tests assert that every kept record lands and
every bad one is a dead letter carrying its original bytes (a letter keeps the first
:data:`trailpay.deadletters.MAX_VALUE_BYTES` of a longer record and names its size).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel

from tests import sinkdata as sd
from trailpay import codec, topics
from trailpay.domain.events import (
    BookingEventKind,
    Provider,
    ProviderCommand,
    ProviderCommandKind,
    ProviderEvent,
    ProviderEventKind,
)
from trailpay.domain.money import Money
from trailpay.domain.references import booking_reference
from trailpay.domain.status import PaymentStatus as S

NESTED = b"[" * 5000 + b"]" * 5000
#: At least 1 MB, below the broker's default maximum message size (1 MiB + 12 bytes).
HUGE = 1_000_000


@dataclass(frozen=True)
class Poison:
    name: str
    key: str
    value: bytes
    #: True: a valid record with hostile values, which must land; False: a dead letter.
    kept: bool
    #: The reference a kept record lands under (payments, callbacks) or its id (bookings...).
    lands_as: str | None = None


def _ref(tag: str) -> str:
    return f"TPX{tag}{uuid.uuid4().hex[:10].upper()}"


def bad_records(topic: str) -> list[Poison]:
    tag = topic.split(".")[0][:4].upper()
    wrong = b'{"event_id": "x", "occurred_at": "2026-03-01T08:00:00Z", "unexpected": [1, 2]}'
    return [
        Poison("garbage", _ref(tag), b"\xff\xfe\x00\x01garbage\x80", kept=False),
        Poison("nested", _ref(tag), NESTED, kept=False),
        Poison("wrong_schema", _ref(tag), wrong, kept=False),
        Poison("huge_junk", _ref(tag), b"{" + b"x" * HUGE, kept=False),
    ]


def _state_changes() -> list[Poison]:
    nul, long_booking, huge = _ref("NUL"), _ref("LONG"), _ref("HUGE")
    out = []
    for name, ref, update in (
            ("kept_nul", nul, {"description": "Tent\x00 and \x00 safari", "email": "a\x00@example.com"}),
            ("kept_long", long_booking, {"booking_id": "B" * 150}),
            ("kept_huge", huge, {"description": "d" * HUGE})):
        change = sd.payment_history(ref)[-1]
        change = change.model_copy(update={"payment": change.payment.model_copy(update=update)})
        out.append(Poison(name, ref, codec.encode(change), kept=True, lands_as=ref))
    return out


def _webhooks() -> list[Poison]:
    nested, nul = _ref("NEST"), _ref("NULH")
    body_nested = sd.webhook(nested, Provider.AIRTEL).model_copy(update={"body": b"[" * 2000 + b"]" * 2000})
    hook_nul = sd.webhook(nul).model_copy(update={"headers": {"x-note": "a\x00b"},
                                                   "verification_error": "bad\x00"})
    return [Poison("kept_nested_body", nested, codec.encode(body_nested), kept=True, lands_as=nested),
            Poison("kept_nul_header", nul, codec.encode(hook_nul), kept=True, lands_as=nul)]


def _bookings() -> list[Poison]:
    # 100 characters (the contract's limit): escaping the NUL makes it longer than the column.
    booking_id = "BKX" + uuid.uuid4().hex[:8] + "\x00" + "z" * 88
    event = sd.booking(booking_id)
    return [Poison("kept_nul_booking", booking_id[:11], codec.encode(event), kept=True,
                   lands_as=booking_reference(booking_id, 1))]


def poison(topic: str) -> list[Poison]:
    """The hostile records of ``topic``."""
    kept: list[Poison] = []
    if topic == topics.PAYMENT_STATE:
        kept = _state_changes()
    elif topic == topics.WEBHOOKS_RAW:
        kept = _webhooks()
    elif topic == topics.BOOKING_EVENTS:
        kept = _bookings()
    return bad_records(topic) + kept


def good(topic: str, count: int = 3) -> list[tuple[str, BaseModel]]:
    """Ordinary records of ``topic`` (key, record)."""
    out: list[tuple[str, BaseModel]] = []
    for _ in range(count):
        ref = _ref("GOOD")
        if topic == topics.PAYMENT_STATE:
            out += [(ref, change) for change in sd.payment_history(ref)]
        elif topic == topics.WEBHOOKS_RAW:
            out.append((ref, sd.webhook(ref)))
        elif topic == topics.BOOKING_EVENTS:
            out.append((ref, sd.booking(ref, BookingEventKind.CREATED)))
        elif topic == topics.PROVIDER_COMMANDS:
            out.append((ref, ProviderCommand(
                event_id=f"cmd-{ref}", occurred_at=datetime.now(UTC), kind=ProviderCommandKind.QUERY,
                reference=ref, provider=Provider.MPESA, amount=Money(amount=100, currency="KES"),
                user_id="u-1")))
        elif topic == topics.PROVIDER_EVENTS:
            out.append((ref, ProviderEvent(
                event_id=f"pe-{ref}", occurred_at=datetime.now(UTC), kind=ProviderEventKind.STATUS,
                reference=ref, provider=Provider.MPESA, status=S.SUCCEEDED)))
    return out


def interleave(topic: str) -> tuple[list[tuple[str | None, BaseModel | bytes]], list[Poison],
                                    list[tuple[str, BaseModel]]]:
    """(records to produce: a good one between every two hostile ones, the hostile ones,
    the good ones)."""
    bad = poison(topic)
    fine = good(topic, len(bad) + 1)
    items: list[tuple[str | None, BaseModel | bytes]] = []
    for i, item in enumerate(fine):
        items.append(item)
        if i < len(bad):
            items.append((bad[i].key, bad[i].value))
    return items, bad, fine


#: Every topic the stack consumes, and the consumers that must dead-letter a bad record of
#: it (the dead letter's stage). The observe and restore agents only skip what they cannot
#: read (metrics, and payments the state machine lost): the others dead-letter it.
STAGES: dict[str, tuple[str, ...]] = {
    topics.BOOKING_EVENTS: ("bookings", "sink-postgres", "sink-clickhouse"),
    topics.PAYMENT_REQUESTS: ("payments",),
    topics.WEBHOOKS_RAW: ("dedup", "sink-postgres", "sink-clickhouse"),
    topics.PROVIDER_EVENTS: ("payments", "sink-clickhouse"),
    topics.PROVIDER_COMMANDS: ("dispatcher", "sink-clickhouse"),
    topics.NOTIFICATIONS: ("notifications",),
    topics.PAYMENT_STATE: ("sink-postgres", "sink-clickhouse"),
}


def notification(n: int, email: str, tag: str) -> tuple[str, bytes]:
    """(key, bytes) of a payment-succeeded notification for ``TP<tag><n>``."""
    from trailpay.domain.events import Notification, NotificationTemplate

    ref = f"TP{tag}{n}"
    return ref, codec.encode(Notification(
        event_id=f"{ref}:payment_succeeded", occurred_at=datetime.now(UTC),
        template=NotificationTemplate.PAYMENT_SUCCEEDED, reference=ref, user_id="u-1", email=email,
        amount=Money(amount=125_000, currency="KES"), provider=Provider.MPESA))
