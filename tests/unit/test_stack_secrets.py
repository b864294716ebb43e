"""`trailpay up`'s own secrets: random per data directory, owner-only, reused across restarts."""

from __future__ import annotations

import stat

from controlplane.stack.stack_secrets import ensure_secrets, settings_env, settings_overrides
from controlplane.stack.state import StackInfo


def test_generated_once_private_and_reused(tmp_path):
    first = ensure_secrets(tmp_path)
    path = tmp_path / "secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert set(first) == {"mpesa_callback_token", "airtel_callback_token", "stripe_webhook_secrets",
                          "postgres_password"}
    assert first["stripe_webhook_secrets"].startswith("whsec_")
    assert all(len(v) >= 30 for v in first.values())
    assert "change-me" not in path.read_text() and "sandbox" not in path.read_text()
    path.chmod(0o644)
    assert ensure_secrets(tmp_path) == first  # a restart keeps them
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_two_data_directories_get_different_secrets(tmp_path):
    a, b = ensure_secrets(tmp_path / "a"), ensure_secrets(tmp_path / "b")
    assert all(a[name] != b[name] for name in a)


def test_the_environment_wins_over_the_file(tmp_path):
    values = ensure_secrets(tmp_path)
    env = settings_env(values, {"TRAILPAY_MPESA_CALLBACK_TOKEN": "mine"})
    assert "TRAILPAY_MPESA_CALLBACK_TOKEN" not in env
    assert env["TRAILPAY_AIRTEL_CALLBACK_TOKEN"] == values["airtel_callback_token"]
    assert "TRAILPAY_POSTGRES_PASSWORD" not in env


def test_tools_reading_stack_json_get_the_stack_secrets(tmp_path):
    values = ensure_secrets(tmp_path)
    assert settings_overrides(tmp_path)["mpesa_callback_token"] == values["mpesa_callback_token"]
    info = StackInfo(data_dir=str(tmp_path), started_at="2026-01-01T00:00:00Z", supervisor_pid=1,
                     kafka_bootstrap="127.0.0.1:9", database_url="postgresql+psycopg://postgres:pw@h:1/t",
                     clickhouse_dsn="chdb:///x", partitions=4)
    path = info.write(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the database URL has a password
    assert info.settings_overrides()["stripe_webhook_secrets"] == values["stripe_webhook_secrets"]
