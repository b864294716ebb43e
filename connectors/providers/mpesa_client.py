"""M-Pesa Daraja: OAuth, STK Push, STK Push Query, and the gateway the dispatcher calls
(refunds: B2C payments, :mod:`connectors.providers.mpesa_refunds`).

Daraja has no idempotency key. A retried STK Push after an ambiguous failure (a timeout
after the request went out) can reach the customer twice; Daraja itself refuses a second
prompt while one is open for the subscriber (HTTP 500 ``500.001.1001`` "Unable to lock
subscriber"), and the callback/query of the first one settles the payment. That refusal is
not an outage: it fails the attempt at once with Daraja's words (the customer may retry),
instead of being retried as a 5xx. Queries and token fetches are safe to retry.

Token refusals are told by ``errorCode`` (:data:`DARAJA_TOKEN_CODES`), whatever the HTTP
status: Daraja answers an invalid or expired token with HTTP 404 ``404.001.03``.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx

from connectors.providers.http import (
    check_response,
    pooled_transport,
    with_retries,
)
from connectors.providers.mobile import normalize_ke_msisdn, whole_units
from connectors.providers.mpesa_refunds import request_refund
from connectors.providers.outcomes import (
    CommandGateway,
    Handler,
    outcome,
    refused,
)
from connectors.providers.tokens import ClientCredentialsToken
from trailpay.domain.errors import ProviderRejected
from trailpay.domain.events import (
    Provider,
    ProviderCommand,
    ProviderCommandKind,
    ProviderEvent,
    ProviderEventKind,
    utcnow,
)
from trailpay.domain.masking import mask_phone
from trailpay.domain.provider_status import DARAJA_QUERY_PENDING_CODES, map_daraja_result
from trailpay.domain.status import PaymentStatus
from trailpay.retry import POLICIES, RetryPolicy
from trailpay.settings import Settings

log = logging.getLogger(__name__)

NAIROBI = ZoneInfo("Africa/Nairobi")
PROVIDER = "mpesa"
#: Daraja error codes that mean "this access token is no good": ``404.001.03`` Invalid
#: Access Token, ``404.001.04`` Invalid Authentication Header (docs/sandboxes.md).
DARAJA_TOKEN_CODES = frozenset({"404.001.03", "404.001.04"})
#: An STK Push refused because the subscriber has an open prompt (not an outage).
PUSH_LOCKED = "500.001.1001"
#: Our callback path: Safaricom filters CallBackURLs containing "M-Pesa", "mpesa" or
#: "Safaricom" (the old ``/api/payments/callback/mpesa/`` stays served as an alias).
CALLBACK_PATH = "/api/payments/callback/stk/"
FILTERED_URL_WORDS = ("mpesa", "m-pesa", "safaricom")


def daraja_timestamp(now: datetime | None = None) -> str:
    """``YYYYMMDDHHMMSS`` in Nairobi time, as Daraja expects."""
    return (now or utcnow()).astimezone(NAIROBI).strftime("%Y%m%d%H%M%S")


def stk_password(shortcode: str, passkey: str, timestamp: str) -> str:
    return base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode()


def _describe(body: Any) -> tuple[str, str]:
    if isinstance(body, dict):
        code = body.get("errorCode") or body.get("ResponseCode") or ""
        message = body.get("errorMessage") or body.get("ResponseDescription") or ""
        return str(code), str(message)
    return "", ""


@dataclass(frozen=True)
class StkPushAccepted:
    merchant_request_id: str
    checkout_request_id: str
    customer_message: str


@dataclass(frozen=True)
class StkQueryResult:
    checkout_request_id: str
    result_code: str | None  # None = the customer has not finished yet
    result_desc: str

    @property
    def pending(self) -> bool:
        return self.result_code is None


class DarajaClient:
    def __init__(self, base_url: str, consumer_key: str, consumer_secret: str, shortcode: str,
                 passkey: str, *, timeout_s: float = 30.0, policy: RetryPolicy | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s,
                                       transport=transport or pooled_transport())
        self._key, self._secret = consumer_key, consumer_secret
        self.shortcode, self._passkey = shortcode, passkey
        self.policy = policy or POLICIES.provider_http
        self.token = ClientCredentialsToken(
            PROVIDER,
            lambda: self._http.get("/oauth/v1/generate", params={"grant_type": "client_credentials"},
                                   auth=(self._key, self._secret)),
            _describe, self.policy, default_lifetime_s=3599, refused_codes=DARAJA_TOKEN_CODES)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> DarajaClient:
        base = settings.mpesa_base_url or f"http://127.0.0.1:{settings.sandbox_port}/mpesa"
        return cls(base, settings.mpesa_consumer_key.get_secret_value(),
                   settings.mpesa_consumer_secret.get_secret_value(), settings.mpesa_shortcode,
                   settings.mpesa_passkey.get_secret_value(),
                   timeout_s=settings.payment_timeout_s, **kwargs)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(self, path: str, payload: dict[str, Any], what: str,
                    accept: frozenset[str] = frozenset()) -> Any:
        """POST with a bearer token; ``accept`` lists error codes returned as bodies."""

        async def once() -> Any:
            # a refused token is dropped and the call sent once more with a fresh one
            resp = await self.token.send(lambda headers: self._http.post(path, json=payload,
                                                                         headers=headers))
            if accept and not resp.is_success:
                try:
                    body = resp.json()
                except ValueError:
                    body = None
                if _describe(body)[0] in accept:
                    return body
            return check_response(PROVIDER, resp, _describe)

        return await with_retries(PROVIDER, once, self.policy, what=what)

    async def post_json(self, path: str, payload: dict[str, Any], what: str) -> Any:
        """A Daraja API call with the bearer token (B2C: :mod:`~connectors.providers.mpesa_refunds`)."""
        return await self._post(path, payload, what)

    async def stk_push(self, phone: str, amount_kes: int, account_reference: str,
                       callback_url: str, description: str = "Payment") -> StkPushAccepted:
        msisdn = normalize_ke_msisdn(phone)
        timestamp = daraja_timestamp()
        payload = {
            "BusinessShortCode": self.shortcode,
            "Password": stk_password(self.shortcode, self._passkey, timestamp),
            "Timestamp": timestamp,
            "TransactionType": "CustomerPayBillOnline",
            "Amount": amount_kes,
            "PartyA": msisdn,
            "PartyB": self.shortcode,
            "PhoneNumber": msisdn,
            "CallBackURL": callback_url,
            "AccountReference": account_reference[:12],
            "TransactionDesc": (description or "Payment")[:13],
        }
        log.info("STK push to %s for %d KES", mask_phone(msisdn), amount_kes)
        body = await self._post("/mpesa/stkpush/v1/processrequest", payload, "stk push",
                                accept=frozenset({PUSH_LOCKED}))
        if str(body.get("ResponseCode")) != "0":
            code, message = _describe(body)
            raise ProviderRejected(PROVIDER, code, message)
        return StkPushAccepted(str(body.get("MerchantRequestID", "")),
                               str(body["CheckoutRequestID"]),
                               str(body.get("CustomerMessage", "")))

    async def stk_query(self, checkout_request_id: str) -> StkQueryResult:
        timestamp = daraja_timestamp()
        payload = {
            "BusinessShortCode": self.shortcode,
            "Password": stk_password(self.shortcode, self._passkey, timestamp),
            "Timestamp": timestamp,
            "CheckoutRequestID": checkout_request_id,
        }
        body = await self._post("/mpesa/stkpushquery/v1/query", payload, "stk query",
                                accept=DARAJA_QUERY_PENDING_CODES)
        code, message = _describe(body)
        if code in DARAJA_QUERY_PENDING_CODES:
            return StkQueryResult(checkout_request_id, None, message)
        # ResultCode is a string in query replies.
        return StkQueryResult(checkout_request_id, str(body.get("ResultCode")),
                              str(body.get("ResultDesc", "")))


def mpesa_callback_url(settings: Settings, reference: str) -> str:
    query = urlencode({"token": settings.mpesa_callback_token.get_secret_value(),
                       "reference": reference})
    return f"{settings.callback_base_url}{CALLBACK_PATH}?{query}"


class MpesaGateway(CommandGateway):
    provider = Provider.MPESA

    def __init__(self, client: DarajaClient, settings: Settings) -> None:
        self.client = client
        self._settings = settings

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> MpesaGateway:
        # (the B2C ResultURL / QueueTimeOutURL carry the same base and token)
        url = mpesa_callback_url(settings, "TP").lower()
        if any(word in url for word in FILTERED_URL_WORDS):
            log.warning("the M-Pesa CallBackURL contains one of %s (TRAILPAY_PUBLIC_BASE_URL or "
                        "TRAILPAY_MPESA_CALLBACK_TOKEN): Daraja refuses or drops such callbacks",
                        ", ".join(FILTERED_URL_WORDS))
        return cls(DarajaClient.from_settings(settings, **kwargs), settings)

    async def aclose(self) -> None:
        await self.client.aclose()

    def handlers(self) -> Mapping[ProviderCommandKind, Handler]:
        return {ProviderCommandKind.INITIATE: self._initiate, ProviderCommandKind.QUERY: self._query,
                ProviderCommandKind.REFUND: self._refund}

    def unsupported_what(self, kind: ProviderCommandKind) -> str:
        return f"{kind} for STK Push"

    async def _refund(self, command: ProviderCommand) -> list[ProviderEvent]:
        """A B2C payment back to the payer; its result settles the refund (mpesa_refunds)."""
        return await request_refund(self.client, self._settings, command)

    async def _initiate(self, command: ProviderCommand) -> list[ProviderEvent]:
        amount = whole_units(command.amount, "KES")
        accepted = await self.client.stk_push(
            command.phone_number or "", amount, command.reference,
            mpesa_callback_url(self._settings, command.reference),
            command.description or "Payment",
        )
        return [outcome(command, ProviderEventKind.STATUS, status=PaymentStatus.PENDING,
                        provider_status="stk_push_sent", provider_code="0",
                        provider_message=accepted.customer_message or "STK push sent",
                        provider_reference=accepted.checkout_request_id)]

    async def _query(self, command: ProviderCommand) -> list[ProviderEvent]:
        if not command.provider_reference:
            return [refused(command, "not_sent", "no STK push was accepted for this payment")]
        result = await self.client.stk_query(command.provider_reference)
        if result.pending or result.result_code is None:
            return []
        mapped = map_daraja_result(result.result_code, result.result_desc or None)
        return [outcome(command, ProviderEventKind.STATUS, status=mapped.status,
                        provider_status=mapped.code, provider_code=mapped.code,
                        provider_message=mapped.message,
                        provider_reference=command.provider_reference)]
