"""`trailpay up`'s own secrets: random per data directory, owner-only, reused across restarts."""

from __future__ import annotations

import stat

from controlplane.cli.stack_cmds import without_password
from controlplane.stack.stack_secrets import ensure_secrets
from controlplane.stack.state import StackInfo
from trailpay.settings import load_settings


def test_generated_once_private_and_reused(tmp_path):
    first = ensure_secrets(tmp_path)
    path = tmp_path / "secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert set(first) == {"mpesa_callback_token", "airtel_callback_token", "stripe_webhook_secrets",
                          "postgres_password", "analytics_service_token", "state_pii_keys"}
    assert first["stripe_webhook_secrets"].startswith("whsec_")
    assert all(len(v) >= 30 for v in first.values())
    assert "change-me" not in path.read_text() and "sandbox" not in path.read_text()
    path.chmod(0o644)
    assert ensure_secrets(tmp_path) == first  # a restart keeps them
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_two_data_directories_get_different_secrets(tmp_path):
    a, b = ensure_secrets(tmp_path / "a"), ensure_secrets(tmp_path / "b")
    assert all(a[name] != b[name] for name in a)


def test_the_settings_of_the_data_directory_read_them(tmp_path, monkeypatch):
    values = ensure_secrets(tmp_path)
    settings = load_settings(data_dir=tmp_path)
    assert settings.mpesa_callback_token.get_secret_value() == values["mpesa_callback_token"]
    assert settings.airtel_callback_token.get_secret_value() == values["airtel_callback_token"]
    assert [w.get_secret_value() for w in settings.stripe_webhook_secrets] == [values["stripe_webhook_secrets"]]
    assert settings.state_pii_keys is not None
    assert settings.state_pii_keys.get_secret_value() == values["state_pii_keys"]
    monkeypatch.setenv("TRAILPAY_DATA_DIR", str(tmp_path))
    assert load_settings().mpesa_callback_token.get_secret_value() == values["mpesa_callback_token"]
    monkeypatch.setenv("TRAILPAY_MPESA_CALLBACK_TOKEN", "the-operators-own")  # the environment wins
    assert load_settings().mpesa_callback_token.get_secret_value() == "the-operators-own"
    assert load_settings(data_dir=tmp_path / "other").airtel_callback_token.get_secret_value() == (
        "airtel-callback-token-change-me")


def test_stack_json_is_private(tmp_path):
    info = StackInfo(data_dir=str(tmp_path), started_at="2026-01-01T00:00:00Z", supervisor_pid=1,
                     kafka_bootstrap="127.0.0.1:9", database_url="postgresql+psycopg://postgres:pw@h:1/t",
                     clickhouse_dsn="chdb:///x", partitions=4)
    path = info.write(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the database URL has a password


def test_up_prints_the_database_url_without_its_password():
    assert without_password("postgresql+psycopg://postgres:Zq9-x_7Lm2@127.0.0.1:5432/trailpay") == (
        "postgresql+psycopg://postgres:***@127.0.0.1:5432/trailpay")
    assert without_password("postgresql+psycopg://postgres@127.0.0.1:5432/trailpay") == (
        "postgresql+psycopg://postgres@127.0.0.1:5432/trailpay")
