"""The secrets side of the settings: the data directory's generated secrets (a settings
source) and the refusal of published placeholder secrets beyond the embedded sandbox.

Kept apart from :mod:`trailpay.settings` so that module stays about what can be set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import SecretStr
from pydantic_settings import PydanticBaseSettingsSource

if TYPE_CHECKING:
    from trailpay.settings import Settings

#: ``DIR/secrets.json``: what ``trailpay up`` generated for a data directory (file mode 0600;
#: written by :mod:`controlplane.stack.stack_secrets`).
DATA_DIR_SECRETS_FILE = "secrets.json"
#: The settings a data directory's secrets file may give.
DATA_DIR_SECRET_FIELDS = ("mpesa_callback_token", "airtel_callback_token", "stripe_webhook_secrets",
                          "analytics_service_token", "state_pii_keys")


class DataDirSecrets(PydanticBaseSettingsSource):
    """The lowest-priority source: the callback tokens and webhook secret ``trailpay up``
    generated for the data directory, so every process of that stack (and every tool given
    ``--data-dir``) agrees on them. Arguments and ``TRAILPAY_*`` variables win."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the whole file

    def __call__(self) -> dict[str, Any]:
        data_dir = self.current_state.get("data_dir") or ".trailpay"
        try:
            stored = json.loads((Path(data_dir) / DATA_DIR_SECRETS_FILE).read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(stored, dict):
            return {}
        return {name: str(stored[name]) for name in DATA_DIR_SECRET_FIELDS if stored.get(name)}


#: Values published in this repository (defaults, README, docker-compose): never a secret.
PUBLISHED_SECRETS = frozenset({
    "sk_test_trailpay_sandbox", "whsec_trailpay_sandbox", "sandbox-consumer-key",
    "sandbox-consumer-secret", "sandbox-passkey", "stk-callback-token-change-me",
    "mpesa-callback-token-change-me",
    "sandbox-client-id", "sandbox-client-secret", "airtel-callback-token-change-me",
    "sandbox-initiator", "sandbox-security-credential",
})
_PLACEHOLDER_WORDS = ("change-me", "changeme", "change_me", "placeholder", "trailpay_sandbox")


def is_placeholder(value: str) -> bool:
    """A published or obviously made-up value (empty, ``...change-me``, ``sandbox-...``)."""
    text = value.strip().lower()
    return (not text or text in PUBLISHED_SECRETS or text.startswith("sandbox-")
            or any(word in text for word in _PLACEHOLDER_WORDS))


def is_embedded_sandbox(url: str | None, provider: str) -> bool:
    """True for the embedded provider sandbox: no URL (``trailpay up`` fills it in), a
    loopback host, or plain HTTP to the sandbox's ``/<provider>`` mount (the compose
    ``sandbox`` service). A live provider is HTTPS on its own host."""
    if url is None:
        return True
    parts = urlsplit(url)
    if parts.hostname in ("127.0.0.1", "localhost", "::1"):
        return True
    return parts.scheme == "http" and parts.path.rstrip("/").endswith(f"/{provider}")


#: Per provider: the URL setting, then the secrets that must be real beyond the sandbox.
_PROVIDER_SECRETS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("stripe", "stripe_api_base", ("stripe_api_key", "stripe_webhook_secrets")),
    ("mpesa", "mpesa_base_url",
     ("mpesa_consumer_key", "mpesa_consumer_secret", "mpesa_passkey", "mpesa_callback_token",
      "mpesa_initiator_name", "mpesa_security_credential")),
    ("airtel", "airtel_base_url",
     ("airtel_client_id", "airtel_client_secret", "airtel_callback_token",
      "airtel_callback_secret")),
)


def _secret_values(value: object) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [item.get_secret_value() if isinstance(item, SecretStr) else str(item or "")
            for item in items if item is not None] or [""]


def production_secret_problem(settings: Settings) -> str | None:
    """One line naming the first secret that is a placeholder (or missing) while its
    provider's URL is not the embedded sandbox; None when all is well."""
    return _provider_secret_problem(settings) or state_key_problem(settings)


def state_key_problem(settings: Settings) -> str | None:
    """Beyond the embedded sandboxes the phone numbers and e-mails on payments.state.v1 are
    sealed under a key of the deployment's own (:mod:`trailpay.pii_crypto`): one line when
    ``TRAILPAY_STATE_PII_KEYS`` is missing or holds a placeholder while a provider is live."""
    live = [url_field for provider, url_field, _ in _PROVIDER_SECRETS
            if not is_embedded_sandbox(getattr(settings, url_field), provider)]
    if not live:
        return None
    url_field = live[0]
    url = getattr(settings, url_field)
    keys = settings.state_pii_keys
    if keys is None or not keys.get_secret_value().strip():
        return (f"TRAILPAY_STATE_PII_KEYS: required when TRAILPAY_{url_field.upper()} is a live "
                f"provider ({url})")
    if any(is_placeholder(k) for k in keys.get_secret_value().split(",") if k.strip()):
        return (f"TRAILPAY_STATE_PII_KEYS: a placeholder while TRAILPAY_{url_field.upper()} is a "
                f"live provider ({url}); set a real one")
    return None


def _provider_secret_problem(settings: Settings) -> str | None:
    for provider, url_field, fields in _PROVIDER_SECRETS:
        url = getattr(settings, url_field)
        if is_embedded_sandbox(url, provider):
            continue
        for name in fields:
            value = getattr(settings, name)
            if value is None:
                return (f"TRAILPAY_{name.upper()}: required when TRAILPAY_{url_field.upper()} "
                        f"is a live provider ({url})")
            if any(is_placeholder(v) for v in _secret_values(value)):
                return (f"TRAILPAY_{name.upper()}: a placeholder or sandbox value while "
                        f"TRAILPAY_{url_field.upper()} is a live provider ({url}); set a real one")
    return None
