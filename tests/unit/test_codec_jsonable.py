"""codec.jsonable / codec.dumps: one JSON form for values that are not JSON already."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from trailpay import codec
from trailpay.domain.events import Provider
from trailpay.domain.money import Money


def test_values_json_cannot_write_itself():
    assert codec.jsonable(datetime(2026, 12, 1, 7, 30, tzinfo=UTC)) == "2026-12-01T07:30:00+00:00"
    assert codec.jsonable(datetime(2026, 12, 1, 7, 30)) == "2026-12-01T07:30:00Z"  # ClickHouse: naive UTC
    assert codec.jsonable(date(2026, 12, 1)) == "2026-12-01"
    assert codec.jsonable(Decimal("99.990")) == "99.990"
    assert codec.jsonable(b"\x00\xffab") == "AP9hYg=="
    assert codec.jsonable(Provider.MPESA) == "mpesa"
    assert codec.jsonable(float("nan")) is None
    assert codec.jsonable(Money(amount=1050, currency="KES")) == {"amount": 1050, "currency": "KES"}


def test_containers_and_dumps():
    value = {"at": date(2026, 1, 2), "rows": [(1, Decimal("2.5")), {"b": b"x"}], 3: None}
    assert codec.jsonable(value) == {"at": "2026-01-02", "rows": [[1, "2.5"], {"b": "eA=="}], "3": None}
    assert codec.dumps({"n": "Zoë", "x": 1.5}, ensure_ascii=False) == '{"n": "Zoë", "x": 1.5}'
