"""Regression (issue 16): the published placeholder secrets worked against live providers."""

from __future__ import annotations

import pytest

from trailpay.domain.errors import ConfigurationError
from trailpay.settings import load_settings

LIVE_STRIPE = {"stripe_api_base": "https://api.stripe.com",
               "stripe_api_key": "sk_live_51Hx9RealKey", "stripe_webhook_secrets": "whsec_9f8e7d6c5b4a"}
LIVE_MPESA = {"mpesa_base_url": "https://api.safaricom.co.ke", "mpesa_consumer_key": "ck-8d7f6e",
              "mpesa_consumer_secret": "cs-1a2b3c", "mpesa_passkey": "pk-4d5e6f",
              "mpesa_callback_token": "cb-77aa88bb99cc", "mpesa_initiator_name": "tp-refunds-api",
              "mpesa_security_credential": "Zm9vYmFyZW5jcnlwdGVk"}
LIVE_AIRTEL = {"airtel_base_url": "https://openapi.airtel.africa", "airtel_client_id": "id-5a6b",
               "airtel_client_secret": "cs-7c8d", "airtel_callback_token": "cb-11dd22ee33ff",
               "airtel_callback_secret": "hmac-44gg55hh"}
#: The deployment's own key for the contact sealed on payments.state.v1 (trailpay.pii_crypto).
STATE_KEY = {"state_pii_keys": "3q2-7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}


def test_embedded_sandbox_runs_on_the_placeholders(tmp_path):
    s = load_settings(data_dir=tmp_path)
    assert s.mpesa_callback_token.get_secret_value() == "stk-callback-token-change-me"
    load_settings(stripe_api_base="http://127.0.0.1:8070/stripe", mpesa_base_url="http://127.0.0.1:8070/mpesa",
                  airtel_base_url="http://127.0.0.1:8070/airtel")
    load_settings(stripe_api_base="http://sandbox:8070/stripe", mpesa_base_url="http://sandbox:8070/mpesa",
                  airtel_base_url="http://sandbox:8070/airtel")  # docker-compose's sandbox service


def test_live_providers_with_real_secrets_start():
    s = load_settings(**LIVE_STRIPE, **LIVE_MPESA, **LIVE_AIRTEL, **STATE_KEY)
    assert s.airtel_callback_secret is not None


@pytest.mark.parametrize(("live", "field", "value"), [
    (LIVE_STRIPE, "stripe_api_key", "sk_test_trailpay_sandbox"),
    (LIVE_STRIPE, "stripe_webhook_secrets", "whsec_trailpay_sandbox"),
    (LIVE_STRIPE, "stripe_webhook_secrets", "whsec_9f8e7d6c5b4a,whsec_trailpay_sandbox"),
    (LIVE_MPESA, "mpesa_callback_token", "stk-callback-token-change-me"),
    (LIVE_MPESA, "mpesa_consumer_key", "sandbox-consumer-key"),
    (LIVE_MPESA, "mpesa_consumer_secret", "sandbox-consumer-secret"),
    (LIVE_MPESA, "mpesa_passkey", "sandbox-passkey"),
    (LIVE_MPESA, "mpesa_initiator_name", "sandbox-initiator"),
    (LIVE_MPESA, "mpesa_security_credential", "sandbox-security-credential"),
    (LIVE_AIRTEL, "airtel_callback_token", "airtel-callback-token-change-me"),
    (LIVE_AIRTEL, "airtel_client_id", "sandbox-client-id"),
    (LIVE_AIRTEL, "airtel_client_secret", "sandbox-client-secret"),
    (LIVE_AIRTEL, "airtel_callback_secret", ""),
])
def test_a_placeholder_against_a_live_provider_refuses_to_start(live, field, value):
    with pytest.raises(ConfigurationError) as info:
        load_settings(**{**live, field: value})
    message = str(info.value)
    assert message.startswith(f"TRAILPAY_{field.upper()}: ")
    assert "\n" not in message
    assert value.split(",")[-1] not in message or value == ""


def test_live_airtel_requires_the_callback_hmac():
    without = {k: v for k, v in LIVE_AIRTEL.items() if k != "airtel_callback_secret"}
    with pytest.raises(ConfigurationError) as info:
        load_settings(**without)
    assert str(info.value).startswith("TRAILPAY_AIRTEL_CALLBACK_SECRET: required")


def test_variables_from_the_environment_are_checked_too(monkeypatch):
    monkeypatch.setenv("TRAILPAY_MPESA_BASE_URL", "https://api.safaricom.co.ke")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert str(info.value).startswith("TRAILPAY_MPESA_CONSUMER_KEY: ")


@pytest.mark.parametrize("keys", [None, "", "state-pii-key-change-me", "3q2-7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA,placeholder"])
def test_a_live_provider_needs_a_real_key_for_the_state_topics_contact(keys):
    with pytest.raises(ConfigurationError) as info:
        load_settings(**LIVE_MPESA, **({} if keys is None else {"state_pii_keys": keys}))
    assert str(info.value).startswith("TRAILPAY_STATE_PII_KEYS: ")
    assert "\n" not in str(info.value)
