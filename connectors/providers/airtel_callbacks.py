"""Airtel Money collection callbacks.

``transaction.id`` is the transaction id we sent: the payment reference for a first attempt,
``<reference>-A<n>`` for attempt n (:func:`~trailpay.domain.attempts.split_transaction_id`
maps it back). The event is about that payment, and names the id as its provider reference
(the attempt's). ``transaction.status_code`` is TS / TF / TA / TIP / TE. The callback URL carries a
per-deployment token (``?token=...``). When ``airtel_callback_secret`` is set, the body must
also carry ``hash``: base64 of HMAC-SHA256 under that secret over the compact JSON of the
``transaction`` object (``json.dumps(transaction, separators=(",", ":"))``, keys in the order
received). Event identity is ``airtel:<transaction id>:<status code>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from connectors.providers._common import check_token, json_object
from connectors.providers.base import WebhookRejected, WebhookUnparseable
from trailpay.domain.attempts import split_transaction_id
from trailpay.domain.events import Provider, ProviderEvent, ProviderEventKind, RawWebhook
from trailpay.domain.provider_status import map_airtel_status
from trailpay.settings import Settings


def callback_hash(secret: str, transaction: dict[str, Any]) -> str:
    canonical = json.dumps(transaction, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.b64encode(hmac.new(secret.encode(), canonical, hashlib.sha256).digest()).decode()


def transaction_of(body: bytes) -> dict[str, Any]:
    data = json_object(body, "Airtel")
    txn = data.get("transaction")
    if not isinstance(txn, dict) or not isinstance(txn.get("id"), str):
        raise WebhookUnparseable("Airtel callback without transaction.id")
    if not isinstance(txn.get("status_code"), str):
        raise WebhookUnparseable("Airtel callback without transaction.status_code")
    return txn


class AirtelCallbackHandler:
    provider = Provider.AIRTEL

    def __init__(self, token: str, secret: str | None = None) -> None:
        self._token = token
        self._secret = secret

    @classmethod
    def from_settings(cls, settings: Settings) -> AirtelCallbackHandler:
        secret = settings.airtel_callback_secret
        return cls(settings.airtel_callback_token.get_secret_value(),
                   secret.get_secret_value() if secret else None)

    def verify(self, raw: RawWebhook) -> None:
        check_token(raw.query, self._token, "Airtel")
        if self._secret is None:
            return
        try:
            data = json_object(raw.body, "Airtel")
        except WebhookUnparseable as exc:
            raise WebhookRejected(f"Airtel callback hash cannot be checked: {exc}") from exc
        given, txn = data.get("hash"), data.get("transaction")
        if not isinstance(given, str) or not isinstance(txn, dict):
            raise WebhookRejected("Airtel callback without hash while a callback secret is set")
        if not hmac.compare_digest(callback_hash(self._secret, txn).encode(), given.encode()):
            raise WebhookRejected("Airtel callback hash does not match")

    def reference_of(self, body: bytes, query: dict[str, str]) -> str | None:
        try:
            return split_transaction_id(str(transaction_of(body)["id"]))[0] or None
        except WebhookUnparseable:
            return None

    def normalize(self, raw: RawWebhook) -> list[ProviderEvent]:
        txn = transaction_of(raw.body)
        mapped = map_airtel_status(txn["status_code"], txn.get("message"))
        reference, _attempt = split_transaction_id(txn["id"])
        return [ProviderEvent(
            event_id=f"airtel:{txn['id']}:{mapped.code}",
            occurred_at=raw.received_at,
            kind=ProviderEventKind.STATUS,
            reference=reference,
            provider=Provider.AIRTEL,
            status=mapped.status,
            provider_status=mapped.code,
            provider_code=mapped.code,
            provider_message=mapped.message,
            provider_reference=txn["id"],
            source="webhook",
        )]
