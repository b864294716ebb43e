"""Payment input records as the pipeline receives them: a create request, a provider status
event, an M-Pesa STK callback.

One set of builders for the state-machine unit tests, the stream-worker tests and the stream
benchmark; each passes its own identities, times and values (the defaults are the unit tests').
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from trailpay.domain.events import (
    CreatePayment,
    Money,
    PaymentMethod,
    Provider,
    ProviderEvent,
    ProviderEventKind,
    RawWebhook,
)
from trailpay.domain.status import PaymentStatus


def create_payment(reference: str, occurred_at: datetime, *, provider: Provider = Provider.MPESA,
                   amount: int = 1000, currency: str = "KES", user_id: str = "user-1",
                   phone_number: str = "254700000010", event_id: str | None = None,
                   **fields: Any) -> CreatePayment:
    """A create request: mobile money from ``phone_number``, or a card when the provider is Stripe."""
    mobile = provider is not Provider.STRIPE
    return CreatePayment(
        event_id=event_id or f"create-{reference}",
        occurred_at=occurred_at,
        reference=reference,
        user_id=user_id,
        amount=Money(amount=amount, currency=currency),
        provider=provider,
        method=PaymentMethod.MOBILE_MONEY if mobile else PaymentMethod.CARD,
        phone_number=phone_number if mobile else None,
        **fields,
    )


def status_event(reference: str, status: PaymentStatus | None, occurred_at: datetime, *, event_id: str,
                 provider: Provider = Provider.MPESA, source: str = "webhook",
                 **fields: Any) -> ProviderEvent:
    """A provider's word on a payment's status (``fields``: provider codes, references...)."""
    return ProviderEvent(
        event_id=event_id,
        occurred_at=occurred_at,
        kind=ProviderEventKind.STATUS,
        reference=reference,
        provider=provider,
        status=status,
        source=source,  # type: ignore[arg-type]
        **fields,
    )


def mpesa_callback(reference: str, result_code: int, result_desc: str, *, token: str, event_id: str,
                   occurred_at: datetime, received_at: datetime, merchant_request_id: str,
                   shillings: int | None = None, checkout: str | None = None,
                   verified: bool | None = None) -> RawWebhook:
    """Daraja's STK Push callback for ``reference`` (checkout id ``ws_CO_<reference>`` unless
    ``checkout`` names another), as the ingress hands it on: the callback token and our
    reference in the query string. A success (code 0) carries ``CallbackMetadata`` as Daraja's
    does: the amount in whole ``shillings`` (the state machine refuses a success without it as
    suspicious), the receipt and the phone."""
    callback: dict[str, Any] = {
        "MerchantRequestID": merchant_request_id, "CheckoutRequestID": checkout or f"ws_CO_{reference}",
        "ResultCode": result_code, "ResultDesc": result_desc,
    }
    if result_code == 0 and shillings is not None:
        callback["CallbackMetadata"] = {"Item": [
            {"Name": "Amount", "Value": shillings},
            {"Name": "MpesaReceiptNumber", "Value": f"R{reference[-8:].upper()}"},
            {"Name": "PhoneNumber", "Value": 254700000000},
        ]}
    body = {"Body": {"stkCallback": callback}}
    return RawWebhook(
        event_id=event_id, occurred_at=occurred_at, provider=Provider.MPESA,
        body=json.dumps(body).encode(), received_at=received_at,
        query={"token": token, "reference": reference}, reference=reference, verified=verified,
    )
