"""Airtel Money (Africa): token, USSD push collection, status enquiry, refund; and the gateway.

Airtel's ``transaction.id`` is ours, one per attempt
(:func:`~trailpay.domain.attempts.attempt_transaction_id`): the payment reference for the
first, ``<reference>-A<n>`` for attempt n (a retry), carried by the command as its
``provider_reference``. A redelivered collection carries the same id (Airtel refuses a
duplicate id: the push was sent), a status enquiry asks about one attempt's id, and that id
is the provider reference of the attempt, of the events about it and of the refund (which
looks up its ``airtel_money_id``). Airtel answers many errors with HTTP 200 and
``status.success = false``: those are refusals with Airtel's ``response_code``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.providers.http import (
    check_response,
    pooled_transport,
    with_retries,
)
from connectors.providers.mobile import national_number, normalize_msisdn, whole_units
from connectors.providers.outcomes import ClientGateway, Handler, outcome, refused
from connectors.providers.tokens import ClientCredentialsToken
from trailpay.domain.attempts import split_transaction_id
from trailpay.domain.errors import ProviderRejected
from trailpay.domain.events import (
    Provider,
    ProviderCommand,
    ProviderCommandKind,
    ProviderEvent,
    ProviderEventKind,
)
from trailpay.domain.masking import mask_phone
from trailpay.domain.provider_status import map_airtel_status
from trailpay.domain.status import SETTLED, PaymentStatus
from trailpay.retry import POLICIES, RetryPolicy
from trailpay.settings import Settings

log = logging.getLogger(__name__)

PROVIDER = "airtel"
#: Airtel's response code for a transaction id it has already seen.
DUPLICATE_TRANSACTION = "DP00800001009"


def _describe(body: Any) -> tuple[str, str]:
    status = body.get("status") if isinstance(body, dict) else None
    if isinstance(status, dict):
        code = status.get("response_code") or status.get("result_code") or status.get("code") or ""
        return str(code), str(status.get("message") or "")
    if isinstance(body, dict) and "error" in body:
        return str(body.get("error")), str(body.get("error_description") or "")
    return "", ""


def _data_transaction(body: Any) -> dict[str, Any]:
    data = body.get("data") if isinstance(body, dict) else None
    txn = data.get("transaction") if isinstance(data, dict) else None
    return txn if isinstance(txn, dict) else {}


@dataclass(frozen=True)
class AirtelTransaction:
    id: str
    status: str  # TS / TF / TIP / TA / TE, or the collection's acknowledgement text
    message: str
    airtel_money_id: str | None = None


class AirtelClient:
    def __init__(self, base_url: str, client_id: str, client_secret: str, *, country: str = "KE",
                 currency: str = "KES", timeout_s: float = 30.0, policy: RetryPolicy | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s,
                                       transport=transport or pooled_transport())
        self._id, self._secret = client_id, client_secret
        self.country, self.currency = country, currency
        self.policy = policy or POLICIES.provider_http
        self.token = ClientCredentialsToken(
            PROVIDER,
            lambda: self._http.post("/auth/oauth2/token", json={
                "client_id": self._id, "client_secret": self._secret,
                "grant_type": "client_credentials"}),
            _describe, self.policy, default_lifetime_s=180)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> AirtelClient:
        base = settings.airtel_base_url or f"http://127.0.0.1:{settings.sandbox_port}/airtel"
        return cls(base, settings.airtel_client_id.get_secret_value(),
                   settings.airtel_client_secret.get_secret_value(),
                   country=settings.airtel_country, currency=settings.airtel_currency,
                   timeout_s=settings.payment_timeout_s, **kwargs)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, what: str,
                       payload: dict[str, Any] | None = None) -> Any:
        async def once() -> Any:
            resp = await self._http.request(method, path, json=payload, headers={
                **await self.token.bearer(), "X-Country": self.country,
                "X-Currency": self.currency, "Accept": "*/*"})
            self.token.check_refused(resp)
            body = check_response(PROVIDER, resp, _describe)
            status = body.get("status") if isinstance(body, dict) else None
            if isinstance(status, dict) and status.get("success") is False:
                code, message = _describe(body)
                raise ProviderRejected(PROVIDER, code, message)
            return body

        return await with_retries(PROVIDER, once, self.policy, what=what)

    async def collect(self, phone: str, amount: int, transaction_id: str,
                      reference: str = "Payment") -> AirtelTransaction:
        """USSD push: the customer gets a PIN prompt; the outcome comes by callback."""
        msisdn = national_number(normalize_msisdn(phone, self.country), self.country)
        log.info("Airtel collection %s from %s", transaction_id, mask_phone(msisdn))
        body = await self._request("POST", "/merchant/v1/payments/", "collection", {
            "reference": (reference or "Payment")[:64],
            "subscriber": {"country": self.country, "currency": self.currency, "msisdn": msisdn},
            "transaction": {"amount": amount, "country": self.country,
                            "currency": self.currency, "id": transaction_id},
        })
        txn = _data_transaction(body)
        return AirtelTransaction(str(txn.get("id") or transaction_id), str(txn.get("status", "")),
                                 _describe(body)[1])

    async def status(self, transaction_id: str) -> AirtelTransaction:
        body = await self._request("GET", f"/standard/v1/payments/{transaction_id}", "status")
        txn = _data_transaction(body)
        return AirtelTransaction(str(txn.get("id") or transaction_id), str(txn.get("status", "")),
                                 str(txn.get("message") or _describe(body)[1]),
                                 txn.get("airtel_money_id"))

    async def refund(self, airtel_money_id: str) -> AirtelTransaction:
        """Airtel refunds a whole transaction, named by its Airtel Money id."""
        body = await self._request("POST", "/standard/v1/payments/refund", "refund",
                                   {"transaction": {"airtel_money_id": airtel_money_id}})
        txn = _data_transaction(body)
        return AirtelTransaction(str(txn.get("id") or ""), str(txn.get("status", "")),
                                 _describe(body)[1], str(txn.get("airtel_money_id") or airtel_money_id))


def transaction_id_of(command: ProviderCommand) -> str:
    """The Airtel transaction id ``command`` is about: its ``provider_reference`` when that
    is one of this payment's ids, else the payment reference (the first attempt's id; a
    payment paid before retries existed carries Airtel's ``airtel_money_id`` there)."""
    named = command.provider_reference
    if named and split_transaction_id(named)[0] == command.reference:
        return named
    return command.reference


class AirtelGateway(ClientGateway[AirtelClient]):
    provider = Provider.AIRTEL

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> AirtelGateway:
        return cls(AirtelClient.from_settings(settings, **kwargs))

    def handlers(self) -> Mapping[ProviderCommandKind, Handler]:
        return {
            ProviderCommandKind.INITIATE: self._initiate,
            ProviderCommandKind.QUERY: self._query,
            ProviderCommandKind.REFUND: self._refund,
        }

    def unsupported_what(self, kind: ProviderCommandKind) -> str:
        return f"{kind} for a USSD push"

    async def _initiate(self, command: ProviderCommand) -> list[ProviderEvent]:
        amount = whole_units(command.amount, self.client.currency)
        txn_id = transaction_id_of(command)
        try:
            await self.client.collect(command.phone_number or "", amount, txn_id,
                                      command.description or "Payment")
        except ProviderRejected as exc:
            if exc.code != DUPLICATE_TRANSACTION:
                raise
            log.info("Airtel already has transaction %s; the push was sent", txn_id)
        # The attempt's provider reference is its transaction id (ours): the callback and
        # the enquiry name it too. Airtel's own reference for the money (airtel_money_id)
        # is looked up by it when a refund needs it.
        return [outcome(command, ProviderEventKind.STATUS, status=PaymentStatus.PENDING,
                        provider_status="ussd_push_sent", provider_code="DP00800001006",
                        provider_message="USSD push sent", provider_reference=txn_id)]

    async def _query(self, command: ProviderCommand) -> list[ProviderEvent]:
        txn_id = transaction_id_of(command)
        txn = await self.client.status(txn_id)
        mapped = map_airtel_status(txn.status, txn.message or None)
        if mapped.status not in SETTLED:
            return []  # TIP / TA: the customer has not finished; ask again later
        return [outcome(command, ProviderEventKind.STATUS, status=mapped.status,
                        provider_status=mapped.code, provider_code=mapped.code,
                        provider_message=mapped.message, provider_reference=txn_id)]

    async def _refund(self, command: ProviderCommand) -> list[ProviderEvent]:
        if command.refund_amount is not None and command.refund_amount.amount != command.amount.amount:
            return [refused(command, "partial_refund_unsupported",
                            "Airtel Money refunds the whole transaction only")]
        airtel_id = command.provider_reference
        if not airtel_id or split_transaction_id(airtel_id)[0] == command.reference:
            # the paid attempt's transaction id: Airtel refunds by its airtel_money_id
            airtel_id = (await self.client.status(transaction_id_of(command))).airtel_money_id
        if not airtel_id:
            return [refused(command, "not_paid", "Airtel has no completed transaction to refund")]
        txn = await self.client.refund(airtel_id)
        ok = txn.status.upper() in ("SUCCESS", "TS")
        return [outcome(command, ProviderEventKind.REFUND, refund_id=command.refund_id,
                        refund_succeeded=ok, amount=command.refund_amount or command.amount,
                        provider_status=txn.status, provider_code=txn.status,
                        provider_message=txn.message or ("refund succeeded" if ok else "refund failed"),
                        provider_reference=txn.airtel_money_id)]
