"""Daraja STK Push callbacks.

Daraja does not sign callbacks, so we only accept them on a callback URL carrying a
per-deployment secret (``?token=...``) and our payment reference (``&reference=...``); both
are put in the ``CallBackURL`` we send with the STK Push. ``ResultCode`` is an integer here
(a string in query replies); ``CallbackMetadata`` is present only on success. Event identity
is ``mpesa:<CheckoutRequestID>:<ResultCode>``. The same handler takes the results of B2C
refunds (their URLs say ``event=result|timeout``): :mod:`connectors.providers.mpesa_refunds`.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.providers._common import check_token, json_object
from connectors.providers.base import WebhookUnparseable
from connectors.providers.mpesa_refunds import is_payout_notice, normalize_payout
from trailpay.domain.events import Provider, ProviderEvent, ProviderEventKind, RawWebhook
from trailpay.domain.money import Money, MoneyError
from trailpay.domain.provider_status import map_daraja_result
from trailpay.settings import Settings


def stk_callback(body: bytes) -> dict[str, Any]:
    data = json_object(body, "M-Pesa")
    inner = data.get("Body")
    cb = inner.get("stkCallback") if isinstance(inner, dict) else None
    if not isinstance(cb, dict):
        raise WebhookUnparseable("M-Pesa callback without Body.stkCallback")
    if not isinstance(cb.get("CheckoutRequestID"), str) or "ResultCode" not in cb:
        raise WebhookUnparseable("M-Pesa callback without CheckoutRequestID or ResultCode")
    return cb


def metadata_items(cb: dict[str, Any]) -> dict[str, Any]:
    """``CallbackMetadata.Item`` as a dict (absent unless the payment succeeded)."""
    meta = cb.get("CallbackMetadata")
    items = meta.get("Item") if isinstance(meta, dict) else None
    if not isinstance(items, list):
        return {}
    return {i["Name"]: i.get("Value") for i in items if isinstance(i, dict) and "Name" in i}


def kes_amount(value: object) -> Money | None:
    """Daraja amounts are whole shillings, sometimes written as ``1.00``."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return Money.of(Decimal(str(value)), "KES")
    except (InvalidOperation, MoneyError, ValueError):
        return None


class MpesaCallbackHandler:
    provider = Provider.MPESA

    def __init__(self, token: str) -> None:
        self._token = token

    @classmethod
    def from_settings(cls, settings: Settings) -> MpesaCallbackHandler:
        return cls(settings.mpesa_callback_token.get_secret_value())

    def verify(self, raw: RawWebhook) -> None:
        check_token(raw.query, self._token, "M-Pesa")

    def reference_of(self, body: bytes, query: dict[str, str]) -> str | None:
        return query.get("reference") or None

    def normalize(self, raw: RawWebhook) -> list[ProviderEvent]:
        if is_payout_notice(raw.body, raw.query):  # a B2C refund's result or queue timeout
            return normalize_payout(raw)
        reference = self.reference_of(raw.body, raw.query)
        if not reference:
            raise WebhookUnparseable("M-Pesa callback URL carries no reference")
        cb = stk_callback(raw.body)
        code = cb["ResultCode"]
        mapped = map_daraja_result(code, cb.get("ResultDesc"))
        items = metadata_items(cb)
        message = mapped.message
        if items.get("MpesaReceiptNumber"):
            message = f"{message} (receipt {items['MpesaReceiptNumber']})"
        return [ProviderEvent(
            event_id=f"mpesa:{cb['CheckoutRequestID']}:{mapped.code}",
            occurred_at=raw.received_at,
            kind=ProviderEventKind.STATUS,
            reference=reference,
            provider=Provider.MPESA,
            status=mapped.status,
            provider_status=mapped.code,
            provider_code=mapped.code,
            provider_message=message,
            provider_reference=cb["CheckoutRequestID"],
            amount=kes_amount(items.get("Amount")),
            source="webhook",
        )]
