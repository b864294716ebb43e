from __future__ import annotations

import pytest

from trailpay.domain.errors import ConfigurationError
from trailpay.settings import load_settings


def test_defaults_run_embedded(monkeypatch):
    for var in ("TRAILPAY_KAFKA_BOOTSTRAP", "TRAILPAY_DATABASE_URL", "TRAILPAY_CLICKHOUSE_URL"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings()
    assert s.kafka_bootstrap is None
    assert s.database_url is None
    assert s.clickhouse_dsn.startswith("chdb:///")
    assert s.clickhouse_dsn.endswith("/clickhouse")


def test_values_from_environment(monkeypatch):
    monkeypatch.setenv("TRAILPAY_KAFKA_BOOTSTRAP", "kafka:9092,kafka2:9092")
    monkeypatch.setenv("TRAILPAY_DATABASE_URL", "postgresql://u:p@db/trailpay")
    monkeypatch.setenv("TRAILPAY_CLICKHOUSE_URL", "http://ch:8123/trailpay")
    monkeypatch.setenv("TRAILPAY_STRIPE_WEBHOOK_SECRETS", "whsec_old, whsec_new")
    monkeypatch.setenv("TRAILPAY_PARTITIONS", "12")
    s = load_settings()
    assert s.kafka_bootstrap == "kafka:9092,kafka2:9092"
    assert s.sqlalchemy_async_url() == "postgresql+psycopg://u:p@db/trailpay"
    assert s.clickhouse_dsn == "http://ch:8123/trailpay"
    assert [x.get_secret_value() for x in s.stripe_webhook_secrets] == ["whsec_old", "whsec_new"]
    assert s.partitions == 12
    assert "whsec_old" not in repr(s)


@pytest.mark.parametrize(("var", "value", "expected"), [
    ("TRAILPAY_PARTITIONS", "zero", "TRAILPAY_PARTITIONS"),
    ("TRAILPAY_PARTITIONS", "0", "TRAILPAY_PARTITIONS"),
    ("TRAILPAY_DATABASE_URL", "mysql://x", "TRAILPAY_DATABASE_URL: Value error, must be a PostgreSQL"),
    ("TRAILPAY_CLICKHOUSE_URL", "tcp://x", "TRAILPAY_CLICKHOUSE_URL"),
    ("TRAILPAY_KAFKA_BOOTSTRAP", "nohostport", "TRAILPAY_KAFKA_BOOTSTRAP"),
    ("TRAILPAY_LOG_FORMAT", "xml", "TRAILPAY_LOG_FORMAT"),
])
def test_invalid_values_name_the_variable(monkeypatch, var, value, expected):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_secret_values_never_echoed(monkeypatch):
    monkeypatch.setenv("TRAILPAY_STRIPE_WEBHOOK_TOLERANCE_S", "-1")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert "-1" in str(info.value)
    monkeypatch.delenv("TRAILPAY_STRIPE_WEBHOOK_TOLERANCE_S")
    monkeypatch.setenv("TRAILPAY_MPESA_SHORTCODE", "x")
    assert load_settings().mpesa_shortcode == "x"


def test_missing_database_says_what_to_do(monkeypatch):
    monkeypatch.delenv("TRAILPAY_DATABASE_URL", raising=False)
    with pytest.raises(ConfigurationError, match="trailpay up"):
        load_settings().sqlalchemy_async_url()
