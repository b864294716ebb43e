"""Outgoing webhooks without a network: the signature header, its verification, rotation,
the backoff schedule and which endpoints get which event."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.outbound.backoff import Backoff
from connectors.outbound.deliverer import delivery_rows, settings_secret, signing_secrets
from connectors.outbound.signing import signature_header, verify
from sinks.postgres.webhook_store import Endpoint
from trailpay.domain.errors import ConfigurationError
from trailpay.domain.public_events import PublicPaymentEvent
from trailpay.settings import Settings

BODY = b'{"type":"payment.succeeded","amount":1000}'
T = 1_764_590_400  # 2025-12-01T12:00:00Z


def test_header_format_and_value() -> None:
    # Expected value computed independently: printf '1764590400.{body}' | openssl dgst -sha256 -hmac whsec_a
    header = signature_header(BODY, ["whsec_a"], T)
    assert header == ("t=1764590400,"
                      "v1=3028faad7c3f71e0340b553c9ad2d5aa55b85cb9ee0d111fc996fbedc682badf")


def test_verify_checks_secret_body_and_age() -> None:
    header = signature_header(BODY, ["whsec_a"], T)
    assert verify(BODY, header, "whsec_a", now=T + 10)
    assert not verify(BODY, header, "whsec_b", now=T + 10)
    assert not verify(BODY + b" ", header, "whsec_a", now=T + 10)
    assert not verify(BODY, header, "whsec_a", now=T + 301)
    assert not verify(BODY, "v1=abc", "whsec_a", now=T)
    assert not verify(BODY, "t=x,v1=abc", "whsec_a", now=T)


def test_rotation_signs_with_both_secrets() -> None:
    header = signature_header(BODY, ["whsec_new", "whsec_old"], T)
    assert header.count("v1=") == 2 and header.startswith("t=1764590400,v1=")
    assert verify(BODY, header, "whsec_new", now=T)
    assert verify(BODY, header, "whsec_old", now=T)
    assert not verify(BODY, header, "whsec_other", now=T)


def _endpoint(**kw: object) -> Endpoint:
    fields: dict[str, object] = dict(id="we_1", url="http://127.0.0.1:9/hook", secret="whsec_new",
                                     previous_secret=None, previous_secret_expires_at=None,
                                     event_types=None, description="", enabled=True,
                                     created_at=datetime(2025, 1, 1, tzinfo=UTC))
    fields.update(kw)
    return Endpoint(**fields)  # type: ignore[arg-type]


def test_old_secret_signs_only_during_its_grace() -> None:
    now = datetime(2025, 12, 1, 12, tzinfo=UTC)
    rotating = _endpoint(previous_secret="whsec_old", previous_secret_expires_at=now + timedelta(hours=1))
    assert signing_secrets(rotating, None, now) == ["whsec_new", "whsec_old"]
    expired = _endpoint(previous_secret="whsec_old", previous_secret_expires_at=now - timedelta(seconds=1))
    assert signing_secrets(expired, None, now) == ["whsec_new"]
    from_settings = _endpoint(id="settings", secret=None)
    assert signing_secrets(from_settings, "whsec_s", now) == ["whsec_s"]


def test_backoff_schedule_bounds() -> None:
    backoff = Backoff(base_s=5.0, cap_s=3600.0, max_age_s=72 * 3600.0)
    assert [backoff.bound(n) for n in range(1, 13)] == [
        5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0, 1280.0, 2560.0, 3600.0, 3600.0]
    assert backoff.delay(3, rand=lambda: 0.0) == 0.0  # full jitter: from nothing ...
    assert backoff.delay(3, rand=lambda: 0.5) == 10.0
    assert backoff.delay(3, rand=lambda: 0.999999) == pytest.approx(20.0, abs=1e-4)  # ... to the bound
    assert not backoff.gives_up(0.0, 3600.0)
    assert not backoff.gives_up(259_000.0, 200.0)  # 259,200 s = 72 h
    assert backoff.gives_up(259_000.0, 201.0)


def test_default_settings_schedule() -> None:
    backoff = Backoff.from_settings(Settings())
    assert (backoff.base_s, backoff.cap_s, backoff.max_age_s) == (5.0, 3600.0, 259_200.0)


def test_settings_endpoint_needs_a_real_secret() -> None:
    assert settings_secret(Settings()) is None
    with pytest.raises(ConfigurationError, match="TRAILPAY_OUTBOUND_WEBHOOK_SECRET"):
        settings_secret(Settings(outbound_webhook_url="https://platform.example/hooks"))
    with pytest.raises(ConfigurationError):
        settings_secret(Settings(outbound_webhook_url="https://platform.example/hooks",
                                 outbound_webhook_secret="change-me"))
    assert settings_secret(Settings(outbound_webhook_url="https://platform.example/hooks",
                                    outbound_webhook_secret="s3cr3t-4f9a")) == "s3cr3t-4f9a"


def test_event_type_filter_and_ordering_key() -> None:
    event = PublicPaymentEvent(
        event_id="e" * 32, type="payment.failed", occurred_at=datetime(2025, 12, 1, tzinfo=UTC),
        reference="TP1", booking_id=None, amount=1000, currency="KES", provider="mpesa",
        method="mobile_money", status="failed", attempts=1, payment_version=3)
    endpoints = [_endpoint(id="all"), _endpoint(id="succ", event_types=("payment.succeeded",)),
                 _endpoint(id="fail", event_types=("payment.failed", "refund.failed")),
                 _endpoint(id="off", enabled=False)]
    rows = delivery_rows(event, endpoints)
    assert [r["endpoint_id"] for r in rows] == ["all", "fail"]
    assert rows[0]["ordering_key"] == "TP1" and rows[0]["event_type"] == "payment.failed"


def test_the_readme_snippet_verifies_what_the_deliverer_signs() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Verifying a signature (Python)", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    scope: dict[str, object] = {}
    exec(code.group(1), scope)  # the README's own snippet, run as the platform would
    readme_verify = scope["verify"]
    now = int(time.time())
    header = signature_header(BODY, ["whsec_new", "whsec_old"], now)
    assert readme_verify(BODY, header, "whsec_new") and readme_verify(BODY, header, "whsec_old")  # type: ignore[operator]
    assert not readme_verify(BODY, header, "whsec_x")  # type: ignore[operator]
    assert not readme_verify(BODY, signature_header(BODY, ["whsec_new"], now - 301), "whsec_new")  # type: ignore[operator]
