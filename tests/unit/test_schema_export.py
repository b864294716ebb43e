"""``trailpay schema export`` writes the JSON Schemas the booking platform builds on."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from controlplane.cli.main import cli


def test_export_writes_both_schemas(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["schema", "export", "--out", str(tmp_path / "schemas")])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "schemas").iterdir())
    assert names == ["bookings.events.v1.schema.json", "payments.events.v1.schema.json"]
    public = json.loads((tmp_path / "schemas" / "payments.events.v1.schema.json").read_text())
    assert public["x-topic"] == "payments.events.v1" and public["title"] == "PublicPaymentEvent"
    assert set(public["required"]) >= {"event_id", "type", "occurred_at", "reference", "amount",
                                       "currency", "provider", "status", "attempts"}
    assert public["$defs"]["PublicEventType"]["enum"] == [
        "payment.created", "payment.succeeded", "payment.failed", "payment.expired",
        "payment.cancelled", "payment.refunded", "payment.partially_refunded",
        "payment.late_succeeded", "refund.failed"]
    for personal in ("phone_number", "email", "client_secret", "user_id"):
        assert personal not in public["properties"]
    booking = json.loads((tmp_path / "schemas" / "bookings.events.v1.schema.json").read_text())
    assert booking["title"] == "BookingEvent" and "booking_id" in booking["properties"]
