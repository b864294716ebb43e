"""Stripe webhooks: verify the signature, tell the payment reference, normalise.

PaymentIntent events carry our reference in ``metadata.trailpay_reference``; refund events
carry it (and our refund id) in the refund's metadata, which our client sets when it asks
for the refund. Event identity is ``stripe:<evt id>`` (the dedup key).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from connectors.providers._common import header, json_object
from connectors.providers.base import WebhookUnparseable
from connectors.providers.stripe_signature import verify_signature
from trailpay.domain.events import Provider, ProviderEvent, ProviderEventKind, RawWebhook
from trailpay.domain.money import Money, MoneyError
from trailpay.domain.provider_money import from_wire
from trailpay.domain.provider_status import STRIPE_EVENT_STATUS
from trailpay.domain.status import PaymentStatus
from trailpay.settings import Settings

log = logging.getLogger(__name__)

REFUND_EVENTS = frozenset({"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"})


def _money(obj: dict[str, Any]) -> Money | None:
    amount, currency = obj.get("amount"), obj.get("currency")
    if not isinstance(amount, int) or not isinstance(currency, str):
        return None
    try:  # Stripe's wire units (MGA is zero-decimal there) back to ISO minor units
        return from_wire(Provider.STRIPE, amount, currency)
    except (MoneyError, ValueError):
        return None


def _obj_of(event: dict[str, Any]) -> dict[str, Any]:
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise WebhookUnparseable("Stripe event without data.object")
    return obj


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _id_of(value: object) -> str | None:
    """An expandable field: either the id string or the expanded object."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    return None


class StripeWebhookHandler:
    provider = Provider.STRIPE

    def __init__(self, secrets: list[str], tolerance_s: int = 300) -> None:
        self._secrets = secrets
        self._tolerance_s = tolerance_s

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeWebhookHandler:
        return cls(
            [s.get_secret_value() for s in settings.stripe_webhook_secrets],
            settings.stripe_webhook_tolerance_s,
        )

    def verify(self, raw: RawWebhook) -> None:
        verify_signature(raw.body, header(raw.headers, "Stripe-Signature"),
                         self._secrets, self._tolerance_s)

    def reference_of(self, body: bytes, query: dict[str, str]) -> str | None:
        try:
            obj = _obj_of(json_object(body, "Stripe"))
        except WebhookUnparseable:
            return None
        ref = _metadata(obj).get("trailpay_reference")
        return ref if isinstance(ref, str) and ref else None

    def normalize(self, raw: RawWebhook) -> list[ProviderEvent]:
        event = json_object(raw.body, "Stripe")
        evt_id, evt_type = event.get("id"), event.get("type")
        if not isinstance(evt_id, str) or not isinstance(evt_type, str):
            raise WebhookUnparseable("Stripe event without id or type")
        obj = _obj_of(event)
        reference = _metadata(obj).get("trailpay_reference")
        if not isinstance(reference, str) or not reference:
            log.info("Stripe event %s (%s) carries no trailpay_reference; ignored", evt_id, evt_type)
            return []
        created = event.get("created")
        occurred = (datetime.fromtimestamp(created, UTC) if isinstance(created, int)
                    else raw.received_at)
        common: dict[str, Any] = {
            "event_id": f"stripe:{evt_id}",
            "occurred_at": occurred,
            "reference": reference,
            "provider": Provider.STRIPE,
            "source": "webhook",
        }
        if evt_type.startswith("payment_intent."):
            return self._intent_event(evt_type, obj, common)
        if evt_type in REFUND_EVENTS:
            return self._refund_event(obj, common)
        return []

    @staticmethod
    def _intent_event(evt_type: str, obj: dict[str, Any],
                      common: dict[str, Any]) -> list[ProviderEvent]:
        if evt_type not in STRIPE_EVENT_STATUS:
            return []
        target = STRIPE_EVENT_STATUS[evt_type]
        if target is None:
            return []
        status = obj.get("status") if isinstance(obj.get("status"), str) else None
        error = obj.get("last_payment_error")
        code = message = None
        if isinstance(error, dict):
            code = error.get("decline_code") or error.get("code")
            message = error.get("message")
        if target is PaymentStatus.FAILED:
            mapped_code, mapped_msg = code or "payment_failed", message or "The payment failed"
        else:
            mapped_code = status or evt_type
            mapped_msg = status.replace("_", " ") if status else evt_type
        if evt_type == "payment_intent.canceled" and obj.get("cancellation_reason"):
            mapped_msg = f"canceled: {obj['cancellation_reason']}"
        return [ProviderEvent(
            kind=ProviderEventKind.STATUS,
            status=target,
            provider_status=status,
            provider_code=mapped_code,
            provider_message=mapped_msg,
            provider_reference=_id_of(obj.get("id")),
            amount=_money(obj),
            customer_id=_id_of(obj.get("customer")),
            payment_method_id=_id_of(obj.get("payment_method")),
            **common,
        )]

    @staticmethod
    def _refund_event(obj: dict[str, Any], common: dict[str, Any]) -> list[ProviderEvent]:
        status = obj.get("status")
        if status not in ("succeeded", "failed", "canceled"):
            return []  # pending / requires_action: the outcome comes later
        refund_id = _metadata(obj).get("trailpay_refund_id") or _id_of(obj.get("id"))
        ok = status == "succeeded"
        return [ProviderEvent(
            kind=ProviderEventKind.REFUND,
            refund_id=str(refund_id) if refund_id else None,
            refund_succeeded=ok,
            amount=_money(obj),
            provider_status=str(status),
            provider_code=str(status) if ok else str(obj.get("failure_reason") or status),
            provider_message="refund succeeded" if ok else f"refund {status}",
            provider_reference=_id_of(obj.get("id")),
            **common,
        )]
