"""M-Pesa refunds: a Daraja B2C payment back to the customer's number, settled by its result.

Why B2C and not the Reversal API (docs/sandboxes.md, "M-Pesa refunds"): a reversal undoes a
whole transaction only, so a partial refund (a cancelled night of a booking) cannot be one;
B2C pays any whole-shilling amount to the number that paid, so one path serves partial and
whole refunds. Both are asynchronous with the same ``Result`` shape.

The request (``POST /mpesa/b2c/v3/paymentrequest``) is only *accepted* synchronously
(``ResponseCode: "0"`` with a ``ConversationID``): the command emits no event then, and the
refund stays ``requested``. Daraja then posts a ``Result`` to the ResultURL
(``Result.ResultCode`` 0: the money went out) or, when the request timed out in its queue,
a notice to the QueueTimeOutURL (not processed: the refund failed). Both URLs are ours,
carry the callback token, our payment reference and the refund id, and contain no
"mpesa"/"m-pesa"/"safaricom" (Daraja filters such URLs). They are taken by the ingress like
the STK callback: durable on ``webhooks.raw.v1`` before the 2xx, token-checked, dedup'd by
event id ``mpesa-payout:<refund id>:<ResultCode or queue_timeout>``.

Daraja has no idempotency key: we send our refund id as ``OriginatorConversationID`` (v3
takes one from the caller), so a result names the refund it settles, but a command the
dispatcher executes twice can pay twice (the same limit as the STK push; logged and counted
as ``repeated`` by the dispatcher).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

from connectors.providers._common import json_object
from connectors.providers.base import WebhookUnparseable
from connectors.providers.mobile import normalize_ke_msisdn, whole_units
from connectors.providers.outcomes import refused
from trailpay.domain.errors import ProviderRejected
from trailpay.domain.events import Provider, ProviderCommand, ProviderEvent, ProviderEventKind, RawWebhook
from trailpay.domain.masking import mask_phone
from trailpay.domain.payout_results import PayoutOutcome, map_daraja_payout_result, queue_timeout
from trailpay.settings import Settings

log = logging.getLogger(__name__)

B2C_PATH = "/mpesa/b2c/v3/paymentrequest"
#: The Reversal API (whole transactions only): served by the sandbox, not used for refunds.
REVERSAL_PATH = "/mpesa/reversal/v1/request"
#: Where Daraja posts the result, and the queue-timeout notice (no filtered word in either).
RESULT_PATH = "/api/payments/callback/payout-result/"
TIMEOUT_PATH = "/api/payments/callback/payout-timeout/"
#: ``event`` in the query of the two URLs (the path is not kept with the raw webhook).
RESULT_EVENT, TIMEOUT_EVENT = "result", "timeout"
COMMAND_ID = "BusinessPayment"
REMARKS_MAX = 100


class DarajaPoster(Protocol):
    async def post_json(self, path: str, payload: dict[str, Any], what: str) -> Any: ...


@dataclass(frozen=True)
class PayoutAccepted:
    conversation_id: str
    originator_conversation_id: str
    description: str


def payout_urls(settings: Settings, reference: str, refund_id: str) -> tuple[str, str]:
    """(ResultURL, QueueTimeOutURL) for one refund."""
    base = settings.callback_base_url
    common = {"token": settings.mpesa_callback_token.get_secret_value(), "reference": reference,
              "refund": refund_id}
    return (f"{base}{RESULT_PATH}?{urlencode({**common, 'event': RESULT_EVENT})}",
            f"{base}{TIMEOUT_PATH}?{urlencode({**common, 'event': TIMEOUT_EVENT})}")


def b2c_payload(settings: Settings, command: ProviderCommand) -> dict[str, Any]:
    """The B2C request for a refund command (InvalidPhoneNumber / InvalidAmount: refused)."""
    amount = whole_units(command.refund_amount or command.amount, "KES")
    result_url, timeout_url = payout_urls(settings, command.reference, command.refund_id or "")
    return {
        "OriginatorConversationID": command.refund_id,
        "InitiatorName": settings.mpesa_initiator_name.get_secret_value(),
        "SecurityCredential": settings.mpesa_security_credential.get_secret_value(),
        "CommandID": COMMAND_ID,
        "Amount": amount,
        "PartyA": settings.mpesa_b2c_shortcode or settings.mpesa_shortcode,
        "PartyB": normalize_ke_msisdn(command.phone_number),
        "Remarks": f"Refund of {command.reference}"[:REMARKS_MAX],
        "QueueTimeOutURL": timeout_url,
        "ResultURL": result_url,
        "Occasion": (command.reason or "refund")[:REMARKS_MAX],
    }


async def send_b2c(client: DarajaPoster, payload: dict[str, Any]) -> PayoutAccepted:
    log.info("B2C refund of %s KES to %s", payload["Amount"], mask_phone(str(payload["PartyB"])))
    body = await client.post_json(B2C_PATH, payload, "b2c payment")
    if str(body.get("ResponseCode")) != "0":
        raise ProviderRejected("mpesa", str(body.get("ResponseCode") or body.get("errorCode") or ""),
                               str(body.get("ResponseDescription") or body.get("errorMessage") or ""))
    return PayoutAccepted(str(body.get("ConversationID", "")),
                          str(body.get("OriginatorConversationID", "")),
                          str(body.get("ResponseDescription", "")))


async def request_refund(client: DarajaPoster, settings: Settings,
                         command: ProviderCommand) -> list[ProviderEvent]:
    """Send the B2C payment; nothing to emit until the result comes (the refund stays
    ``requested``). A refusal is raised and becomes the refund's failure."""
    if not command.refund_id:
        return [refused(command, "no_refund_id", "a refund command without a refund id")]
    accepted = await send_b2c(client, b2c_payload(settings, command))
    log.info("B2C refund %s for %s accepted (ConversationID %s)", command.refund_id,
             command.reference, accepted.conversation_id)
    return []


# ----------------------------------------------------------------------------- results


def result_of(body: bytes) -> dict[str, Any]:
    """``Result`` of a Daraja result body (B2C, reversal)."""
    data = json_object(body, "M-Pesa")
    result = data.get("Result")
    if not isinstance(result, dict) or "ResultCode" not in result:
        raise WebhookUnparseable("M-Pesa result without Result.ResultCode")
    return result


def result_parameters(result: dict[str, Any]) -> dict[str, Any]:
    """``ResultParameters.ResultParameter`` (a list, or one object) as Key -> Value."""
    params = result.get("ResultParameters")
    items = params.get("ResultParameter") if isinstance(params, dict) else None
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        return {}
    return {i["Key"]: i.get("Value") for i in items if isinstance(i, dict) and isinstance(i.get("Key"), str)}


def is_payout_notice(body: bytes, query: dict[str, str]) -> bool:
    """A result or queue-timeout notice (our URLs say so), not an STK callback."""
    return query.get("event") in (RESULT_EVENT, TIMEOUT_EVENT)


def normalize_payout(raw: RawWebhook) -> list[ProviderEvent]:
    """The refund outcome a verified result or queue-timeout notice reports."""
    reference, refund_id = raw.query.get("reference"), raw.query.get("refund")
    if not reference or not refund_id:
        raise WebhookUnparseable("M-Pesa result URL without reference or refund")
    provider_reference: str | None = None
    outcome: PayoutOutcome
    if raw.query.get("event") == TIMEOUT_EVENT:
        outcome = queue_timeout()
    else:
        result = result_of(raw.body)
        outcome = map_daraja_payout_result(result.get("ResultCode"), _text(result.get("ResultDesc")))
        params = result_parameters(result)
        provider_reference = _text(result.get("TransactionID")) or _text(params.get("TransactionReceipt"))
    # No amount on the event: a result settles a refund we asked for, at the amount we asked
    # (an amountless success for a refund id the payment does not have is stale), so a
    # forged result cannot invent a refund of its own.
    return [ProviderEvent(
        event_id=f"mpesa-payout:{refund_id}:{outcome.code}",
        occurred_at=raw.received_at,
        kind=ProviderEventKind.REFUND,
        reference=reference,
        provider=Provider.MPESA,
        refund_id=refund_id,
        refund_succeeded=outcome.succeeded,
        provider_status=outcome.code,
        provider_code=outcome.code,
        provider_message=outcome.message[:500],
        provider_reference=provider_reference,
        source="webhook",
    )]


def _text(value: object) -> str | None:
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) and str(value) else None
