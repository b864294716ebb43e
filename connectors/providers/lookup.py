"""Ask a provider what it knows of one payment (``trailpay reconcile``).

The gateways answer the dispatcher's and the sweeper's commands; a reconciliation needs
more than they return: whether the provider knows the payment at all, whether it is still
open there, and the amount it holds. :class:`ProviderLookup` asks through the same clients
(their retry policy and error types):

* Stripe: PaymentIntent retrieve; the amount is ``amount_received`` once succeeded.
* M-Pesa: STK Push Query of every attempt's CheckoutRequestID, newest first (a success on
  an earlier prompt is still money); Daraja's query answer carries no amount.
* Airtel: transaction enquiry of every attempt's transaction id (ours: the reference, then
  ``<reference>-A<n>``), newest first like M-Pesa's; no amount either.

A refusal that means "no such payment" (:func:`not_found`) is an answer, ``known=False``;
any other refusal raises :class:`~trailpay.domain.errors.ProviderRejected`, and a provider
that stays unavailable after the retries
:class:`~connectors.providers.http.ProviderUnavailable`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from connectors.providers.airtel_client import AirtelClient
from connectors.providers.mpesa_client import DarajaClient
from connectors.providers.stripe_client import StripeService, intent_event_fields
from trailpay.domain.attempts import split_transaction_id
from trailpay.domain.errors import ProviderRejected
from trailpay.domain.events import Provider
from trailpay.domain.money import Money
from trailpay.domain.provider_money import from_wire
from trailpay.domain.provider_status import map_airtel_status, map_daraja_result
from trailpay.domain.status import PaymentStatus
from trailpay.settings import Settings

#: PaymentIntent statuses in which Stripe is still waiting (a decline leaves the intent in
#: ``requires_payment_method``: the customer may pay with another card).
STRIPE_OPEN = frozenset({"requires_payment_method", "requires_confirmation", "requires_action",
                         "processing", "requires_capture"})
#: Airtel statuses still in progress.
AIRTEL_OPEN = frozenset({"TIP", "TA"})
#: Airtel's code for a transaction id it has never seen.
AIRTEL_NOT_FOUND = "DP00800001010"


def not_found(provider: Provider, exc: ProviderRejected) -> bool:
    """Whether a refusal means "no such payment here". Any other refusal (credentials, a bad
    request) is no answer at all: it must not pass for an unknown payment."""
    text = exc.provider_message.lower()
    if provider is Provider.STRIPE:
        return exc.code == "resource_missing"
    if provider is Provider.MPESA:
        return exc.code == "400.002.02" and "checkoutrequestid" in text
    return exc.code in (AIRTEL_NOT_FOUND, "404") or "not found" in text


@dataclass(frozen=True)
class ProviderAnswer:
    """The provider's view of one payment.

    ``status`` is the mapped TrailPay status when the provider has concluded (``None`` while
    it is still open or when it does not know the payment); ``amount`` is what it holds, when
    its API says.
    """

    provider: Provider
    known: bool
    open: bool = False
    status: PaymentStatus | None = None
    provider_status: str | None = None
    provider_code: str | None = None
    provider_message: str | None = None
    provider_reference: str | None = None
    amount: Money | None = None

    @property
    def says(self) -> str:
        """One word for the table: the mapped status, ``open`` or ``unknown``."""
        if not self.known:
            return "unknown"
        if self.open or self.status is None:
            return "open"
        return self.status.value


def unknown(provider: Provider, exc: ProviderRejected | None = None, reference: str | None = None
            ) -> ProviderAnswer:
    return ProviderAnswer(provider, known=False, provider_reference=reference,
                          provider_code=exc.code if exc else None,
                          provider_message=exc.provider_message if exc else "no provider reference")


def stripe_answer(pi: Any) -> ProviderAnswer:
    """A retrieved PaymentIntent as an answer (once succeeded, the amount received)."""
    fields = intent_event_fields(pi, after_attempt=False)
    wire_status = str(fields["provider_status"])
    amount: Money | None = fields["amount"]
    received, currency = _field(pi, "amount_received"), _field(pi, "currency")
    if wire_status == "succeeded" and isinstance(received, int) and isinstance(currency, str):
        amount = from_wire(Provider.STRIPE, received, currency)
    is_open = wire_status in STRIPE_OPEN
    return ProviderAnswer(Provider.STRIPE, known=True, open=is_open,
                          status=None if is_open else fields["status"], provider_status=wire_status,
                          provider_code=fields["provider_code"], provider_message=fields["provider_message"],
                          provider_reference=fields["provider_reference"], amount=amount)


def _field(obj: Any, name: str) -> Any:
    try:
        return obj[name]
    except (KeyError, TypeError):
        return None


class ProviderLookup:
    """The three providers' clients, for lookups only; ``aclose`` when done."""

    def __init__(self, stripe: StripeService, daraja: DarajaClient, airtel: AirtelClient) -> None:
        self.stripe, self.daraja, self.airtel = stripe, daraja, airtel

    @classmethod
    def from_settings(cls, settings: Settings) -> ProviderLookup:
        return cls(StripeService.from_settings(settings), DarajaClient.from_settings(settings),
                   AirtelClient.from_settings(settings))

    async def aclose(self) -> None:
        await asyncio.gather(self.stripe.aclose(), self.daraja.aclose(), self.airtel.aclose())

    async def ask(self, provider: Provider, reference: str, provider_references: Sequence[str]
                  ) -> ProviderAnswer:
        """What ``provider`` says of our payment ``reference`` whose provider references
        (attempts, oldest first) are ``provider_references``."""
        if provider is Provider.STRIPE:
            return await self.ask_stripe(provider_references[-1] if provider_references else None)
        if provider is Provider.MPESA:
            return await self.ask_mpesa(provider_references)
        return await self.ask_airtel(reference, provider_references)

    async def ask_stripe(self, intent_id: str | None) -> ProviderAnswer:
        if not intent_id:
            return unknown(Provider.STRIPE)
        try:
            pi = await self.stripe.retrieve_intent(intent_id)
        except ProviderRejected as exc:
            if not not_found(Provider.STRIPE, exc):
                raise
            return unknown(Provider.STRIPE, exc, intent_id)
        return stripe_answer(pi)

    async def ask_mpesa(self, checkout_ids: Sequence[str]) -> ProviderAnswer:
        """Every prompt, newest first; the first success wins, else the newest answer."""
        answers: list[ProviderAnswer] = []
        for checkout_id in reversed(checkout_ids):
            answer = await self._query_one(checkout_id)
            if answer.status is PaymentStatus.SUCCEEDED:
                return answer
            answers.append(answer)
        known = [a for a in answers if a.known]
        if known:
            return known[0]
        return answers[0] if answers else unknown(Provider.MPESA)

    async def _query_one(self, checkout_id: str) -> ProviderAnswer:
        try:
            result = await self.daraja.stk_query(checkout_id)
        except ProviderRejected as exc:
            if not not_found(Provider.MPESA, exc):
                raise
            return unknown(Provider.MPESA, exc, checkout_id)
        if result.pending or result.result_code is None:
            return ProviderAnswer(Provider.MPESA, known=True, open=True, provider_status="pending",
                                  provider_message=result.result_desc, provider_reference=checkout_id)
        mapped = map_daraja_result(result.result_code, result.result_desc or None)
        return ProviderAnswer(Provider.MPESA, known=True, status=mapped.status, provider_status=mapped.code,
                              provider_code=mapped.code, provider_message=mapped.message,
                              provider_reference=checkout_id)

    async def ask_airtel(self, reference: str, provider_references: Sequence[str] = ()) -> ProviderAnswer:
        """Every attempt's transaction id, newest first; the first success wins, else the
        newest answer. The first attempt's id is the reference, asked about whatever was
        recorded (a payment paid before retries existed names Airtel's ``airtel_money_id``)."""
        ids = [reference, *(r for r in provider_references if split_transaction_id(r)[0] == reference)]
        answers: list[ProviderAnswer] = []
        for txn_id in reversed(list(dict.fromkeys(ids))):
            answer = await self._enquire(txn_id)
            if answer.status is PaymentStatus.SUCCEEDED:
                return answer
            answers.append(answer)
        known = [a for a in answers if a.known]
        return known[0] if known else answers[0]

    async def _enquire(self, txn_id: str) -> ProviderAnswer:
        try:
            txn = await self.airtel.status(txn_id)
        except ProviderRejected as exc:
            if not not_found(Provider.AIRTEL, exc):
                raise
            return unknown(Provider.AIRTEL, exc, txn_id)
        mapped = map_airtel_status(txn.status, txn.message or None)
        is_open = txn.status.upper() in AIRTEL_OPEN
        return ProviderAnswer(Provider.AIRTEL, known=True, open=is_open,
                              status=None if is_open else mapped.status, provider_status=mapped.code,
                              provider_code=mapped.code, provider_message=mapped.message,
                              provider_reference=txn_id)
