"""Stripe through the official SDK (``StripeClient`` on its async httpx client).

:class:`StripeService` is the API surface (customers, PaymentIntents incl. 3-D Secure, saved
payment methods, refunds) used by the dispatcher's :class:`StripeGateway` and by the HTTP
ingress. Every POST carries an idempotency key; the SDK's own retries are off so one
policy (ours: retriable errors only, backoff with jitter) applies, and SDK errors are mapped
onto TrailPay's: connection problems, 409, 429 and 5xx are retriable; declines and invalid
requests are :class:`ProviderRejected` with Stripe's code and message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import stripe

from connectors.providers.http import ProviderUnavailable, with_retries
from connectors.providers.outcomes import ClientGateway, Handler, outcome, unsupported
from trailpay.domain.errors import ProviderRejected
from trailpay.domain.events import (
    Provider,
    ProviderCommand,
    ProviderCommandKind,
    ProviderEvent,
    ProviderEventKind,
)
from trailpay.domain.money import Money
from trailpay.domain.provider_money import from_wire, to_wire
from trailpay.domain.provider_status import map_stripe_intent
from trailpay.domain.status import SETTLED, PaymentStatus
from trailpay.retry import POLICIES, RetryPolicy
from trailpay.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
PROVIDER = "stripe"
CANCEL_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer", "abandoned"})
REFUND_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})


class StripeDeclined(ProviderRejected):
    """A card was declined (HTTP 402): ``code`` is the decline code."""

    def __init__(self, code: str, message: str, provider_reference: str | None) -> None:
        super().__init__(PROVIDER, code, message)
        self.provider_reference = provider_reference


def map_stripe_error(exc: stripe.StripeError) -> Exception:
    """The TrailPay error for an SDK error (retriable vs. permanent is in the type)."""
    message = getattr(exc, "user_message", None) or str(getattr(exc, "_message", "") or exc)
    status = exc.http_status
    if isinstance(exc, stripe.APIConnectionError):
        return ProviderUnavailable(PROVIDER, "connection", message)
    if isinstance(exc, stripe.RateLimitError) or status == 429:
        retry_after = exc.headers.get("retry-after") if exc.headers else None
        return ProviderUnavailable(PROVIDER, "rate_limit", message,
                                   retry_after=float(retry_after) if retry_after else None)
    if status is None or status >= 500 or status == 409:
        return ProviderUnavailable(PROVIDER, exc.code or str(status), message)
    err = exc.error
    if isinstance(exc, stripe.CardError):
        decline = (getattr(err, "decline_code", None) if err else None) or exc.code or "card_declined"
        pi = getattr(err, "payment_intent", None) if err else None
        pi_id = pi.get("id") if isinstance(pi, dict) else getattr(pi, "id", None)
        return StripeDeclined(str(decline), message, pi_id)
    return ProviderRejected(PROVIDER, exc.code or type(exc).__name__, message)


def customer_key(user_id: str, params: Mapping[str, Any]) -> str:
    """The idempotency key of a customer create: per user *and* per parameters sent (a hash
    of them), so a changed e-mail never reuses a key Stripe saw with other parameters
    (``idempotency_error``), while a retry or a racing second payment with the same ones
    replays the first create instead of making a second customer."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:32]
    return f"trailpay-customer-{user_id}-{digest}"


def _get(obj: Any, name: str) -> Any:
    """A field of an SDK object (a dict subclass) or of an expanded sub-object."""
    if obj is None:
        return None
    try:
        return obj[name]
    except (KeyError, TypeError):
        return getattr(obj, name, None)


def _id(obj: Any) -> str | None:
    if obj is None or isinstance(obj, str):
        return obj
    value = _get(obj, "id")
    return str(value) if value else None


class StripeService:
    """Stripe operations with TrailPay's retry policy and error types."""

    def __init__(self, api_key: str, api_base: str, *, timeout_s: float = 30.0,
                 policy: RetryPolicy | None = None) -> None:
        self._http = stripe.HTTPXClient(timeout=timeout_s)
        self.client = stripe.StripeClient(api_key, base_addresses={"api": api_base.rstrip("/")},
                                          http_client=self._http, max_network_retries=0)
        self.policy = policy or POLICIES.provider_http

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> StripeService:
        base = settings.stripe_api_base or f"http://127.0.0.1:{settings.sandbox_port}/stripe"
        return cls(settings.stripe_api_key.get_secret_value(), base,
                   timeout_s=settings.payment_timeout_s, **kwargs)

    async def aclose(self) -> None:
        await self._http.close_async()

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        async def once() -> T:
            try:
                return await fn()
            except stripe.StripeError as exc:
                raise map_stripe_error(exc) from exc

        return await with_retries(PROVIDER, once, self.policy, what=what)

    @staticmethod
    def _opts(idempotency_key: str | None) -> dict[str, Any]:
        # A fresh key per logical call when the caller has none: the same key is used on
        # every retry of that call, so a retried POST never acts twice.
        return {"idempotency_key": idempotency_key or f"trailpay-{uuid.uuid4()}"}

    # ------------------------------------------------------------------ customers
    async def get_or_create_customer(self, user_id: str, email: str | None = None) -> str:
        """The Stripe customer of ``user_id`` when TrailPay has none stored: Stripe's search
        first (it is rate-limited and eventually consistent, so callers pass the stored id
        whenever there is one), then a create whose idempotency key cannot collide."""
        query = f"metadata['trailpay_user_id']:'{user_id}'"
        found = await self._call("customer search", lambda: self.client.v1.customers.search_async(
            {"query": query, "limit": 1}))
        if found.data:
            return str(found.data[0].id)
        params: dict[str, Any] = {"metadata": {"trailpay_user_id": user_id}}
        if email:
            params["email"] = email
        customer = await self._call("customer create", lambda: self.client.v1.customers.create_async(
            params, self._opts(customer_key(user_id, params))))  # type: ignore[arg-type]
        return str(customer.id)

    # ------------------------------------------------------------------ payment intents
    async def create_intent(self, *, amount: Money, customer: str | None, reference: str,
                            user_id: str, booking_id: str | None = None,
                            payment_method: str | None = None, confirm: bool = False,
                            return_url: str | None = None, description: str = "",
                            setup_future_usage: str | None = None,
                            idempotency_key: str | None = None) -> stripe.PaymentIntent:
        """``setup_future_usage`` saves the card to ``customer`` once the payment succeeds
        (Stripe attaches it); it is sent only with a customer, as saving needs one."""
        metadata = {"trailpay_reference": reference, "user_id": user_id,
                    "booking_id": booking_id or ""}
        params: dict[str, Any] = {"amount": to_wire(Provider.STRIPE, amount),
                                  "currency": amount.currency.lower(),
                                  "metadata": metadata, "payment_method_types": ["card"]}
        if customer:
            params["customer"] = customer
        if description:
            params["description"] = description[:1000]
        if payment_method:
            params["payment_method"] = payment_method
        if setup_future_usage and customer:
            params["setup_future_usage"] = setup_future_usage
        if confirm:
            params["confirm"] = True
            if return_url:
                params["return_url"] = return_url
        return await self._call("intent create", lambda: self.client.v1.payment_intents.create_async(
            params, self._opts(idempotency_key)))  # type: ignore[arg-type]

    async def confirm_intent(self, intent_id: str, *, payment_method: str | None = None,
                             return_url: str | None = None,
                             idempotency_key: str | None = None) -> stripe.PaymentIntent:
        params: dict[str, Any] = {}
        if payment_method:
            params["payment_method"] = payment_method
        if return_url:
            params["return_url"] = return_url
        return await self._call("intent confirm", lambda: self.client.v1.payment_intents.confirm_async(
            intent_id, params, self._opts(idempotency_key)))  # type: ignore[arg-type]

    async def cancel_intent(self, intent_id: str, reason: str | None = None,
                            idempotency_key: str | None = None) -> stripe.PaymentIntent:
        why = reason if reason in CANCEL_REASONS else "requested_by_customer"
        return await self._call("intent cancel", lambda: self.client.v1.payment_intents.cancel_async(
            intent_id, {"cancellation_reason": why}, self._opts(idempotency_key)))  # type: ignore[arg-type]

    async def retrieve_intent(self, intent_id: str) -> stripe.PaymentIntent:
        return await self._call("intent retrieve",
                                lambda: self.client.v1.payment_intents.retrieve_async(intent_id))

    async def list_intents(self, customer: str | None = None,
                           limit: int = 10) -> list[stripe.PaymentIntent]:
        params: dict[str, Any] = {"limit": limit}
        if customer:
            params["customer"] = customer
        page = await self._call("intent list", lambda: self.client.v1.payment_intents.list_async(
            params))  # type: ignore[arg-type]
        return list(page.data)

    # ------------------------------------------------------------------ payment methods
    async def list_payment_methods(self, customer: str) -> list[stripe.PaymentMethod]:
        page = await self._call("payment method list",
                                lambda: self.client.v1.payment_methods.list_async(
                                    {"customer": customer, "type": "card"}))
        return list(page.data)

    async def attach_payment_method(self, payment_method: str, customer: str,
                                    idempotency_key: str | None = None) -> stripe.PaymentMethod:
        return await self._call("payment method attach",
                                lambda: self.client.v1.payment_methods.attach_async(
                                    payment_method, {"customer": customer},
                                    self._opts(idempotency_key)))  # type: ignore[arg-type]

    async def detach_payment_method(self, payment_method: str,
                                    idempotency_key: str | None = None) -> stripe.PaymentMethod:
        return await self._call("payment method detach",
                                lambda: self.client.v1.payment_methods.detach_async(
                                    payment_method, {}, self._opts(idempotency_key)))  # type: ignore[arg-type]

    async def create_setup_intent(self, *, customer: str, user_id: str, usage: str,
                                  idempotency_key: str | None = None) -> stripe.SetupIntent:
        """A SetupIntent saving a card to ``customer``: Stripe attaches the payment method
        it is confirmed with once it succeeds."""
        params = {"customer": customer, "usage": usage, "payment_method_types": ["card"],
                  "metadata": {"user_id": user_id}}
        return await self._call("setup intent create", lambda: self.client.v1.setup_intents.create_async(
            params, self._opts(idempotency_key)))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ refunds
    async def refund(self, intent_id: str, *, amount: Money | None, reason: str | None,
                     reference: str, refund_id: str | None,
                     idempotency_key: str | None = None) -> stripe.Refund:
        params: dict[str, Any] = {
            "payment_intent": intent_id,
            "metadata": {"trailpay_reference": reference, "trailpay_refund_id": refund_id or ""},
        }
        if amount is not None:
            params["amount"] = to_wire(Provider.STRIPE, amount)
        if reason in REFUND_REASONS:
            params["reason"] = reason
        return await self._call("refund", lambda: self.client.v1.refunds.create_async(
            params, self._opts(idempotency_key)))  # type: ignore[arg-type]


def intent_event_fields(pi: Any, *, after_attempt: bool) -> dict[str, Any]:
    """ProviderEvent fields for a PaymentIntent: mapped status plus Stripe's own words."""
    error = _get(pi, "last_payment_error")
    decline = (_get(error, "decline_code") or _get(error, "code")) if error else None
    mapped = map_stripe_intent(str(pi["status"]), decline_code=decline,
                               decline_message=_get(error, "message") if error else None,
                               after_attempt=after_attempt and bool(error))
    wire, currency = _get(pi, "amount"), _get(pi, "currency")
    return {
        "amount": from_wire(Provider.STRIPE, wire, str(currency))
        if isinstance(wire, int) and isinstance(currency, str) else None,
        "status": mapped.status,
        "provider_status": str(pi["status"]),
        "provider_code": mapped.code,
        "provider_message": mapped.message,
        "provider_reference": str(pi["id"]),
        "client_secret": _get(pi, "client_secret"),
        "customer_id": _id(_get(pi, "customer")),
        "payment_method_id": _id(_get(pi, "payment_method")),
    }


class StripeGateway(ClientGateway[StripeService]):
    provider = Provider.STRIPE

    @property
    def service(self) -> StripeService:
        """The Stripe API surface this gateway drives (its client)."""
        return self.client

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> StripeGateway:
        return cls(StripeService.from_settings(settings, **kwargs))

    def handlers(self) -> Mapping[ProviderCommandKind, Handler]:
        return {
            ProviderCommandKind.INITIATE: self._initiate,
            ProviderCommandKind.CONFIRM: self._confirm,
            ProviderCommandKind.CANCEL: self._cancel,
            ProviderCommandKind.QUERY: self._query,
            ProviderCommandKind.REFUND: self._refund,
        }

    def _status(self, command: ProviderCommand, pi: Any, *, after_attempt: bool) -> ProviderEvent:
        return outcome(command, ProviderEventKind.STATUS,
                       **intent_event_fields(pi, after_attempt=after_attempt))

    async def _initiate(self, command: ProviderCommand) -> list[ProviderEvent]:
        """Create (and maybe confirm) the PaymentIntent for the user's Stripe customer: the
        stored one the command carries, else Stripe's search or a new customer. A stored
        customer Stripe no longer has (deleted in the dashboard) is looked up again once."""
        stored = command.customer_id
        customer = stored or await self.service.get_or_create_customer(command.user_id, command.email)
        try:
            pi = await self._create_intent(command, customer)
        except ProviderRejected as exc:
            if not stored or exc.code != "resource_missing" or "customer" not in exc.provider_message:
                raise
            log.warning("stored Stripe customer %s of user %s is missing at Stripe; looking "
                        "it up again", stored, command.user_id)
            customer = await self.service.get_or_create_customer(command.user_id, command.email)
            pi = await self._create_intent(command, customer, retry="new-customer")
        return [self._status(command, pi, after_attempt=command.confirm)]

    async def _create_intent(self, command: ProviderCommand, customer: str,
                             retry: str = "") -> stripe.PaymentIntent:
        key = command.idempotency_key + (f"-{retry}" if retry else "")
        return await self.service.create_intent(
            amount=command.amount, customer=customer, reference=command.reference,
            user_id=command.user_id, booking_id=command.booking_id,
            payment_method=command.payment_method_id, confirm=command.confirm,
            return_url=command.return_url, description=command.description,
            setup_future_usage=command.setup_future_usage, idempotency_key=key)

    async def _confirm(self, command: ProviderCommand) -> list[ProviderEvent]:
        if not command.provider_reference:
            return [unsupported(command, "confirming a payment that has no PaymentIntent yet")]
        pi = await self.service.confirm_intent(
            command.provider_reference, payment_method=command.payment_method_id,
            return_url=command.return_url, idempotency_key=command.idempotency_key)
        return [self._status(command, pi, after_attempt=True)]

    async def _cancel(self, command: ProviderCommand) -> list[ProviderEvent]:
        if not command.provider_reference:
            return [outcome(command, ProviderEventKind.STATUS, status=PaymentStatus.CANCELLED,
                            provider_status="canceled", provider_code="canceled",
                            provider_message="cancelled before reaching Stripe")]
        pi = await self.service.cancel_intent(command.provider_reference, command.reason,
                                              idempotency_key=command.idempotency_key)
        return [self._status(command, pi, after_attempt=False)]

    async def _query(self, command: ProviderCommand) -> list[ProviderEvent]:
        if not command.provider_reference:
            return []
        pi = await self.service.retrieve_intent(command.provider_reference)
        event = self._status(command, pi, after_attempt=True)
        return [event] if event.status in SETTLED else []

    async def _refund(self, command: ProviderCommand) -> list[ProviderEvent]:
        if not command.provider_reference:
            return [unsupported(command, "refunding a payment that has no PaymentIntent")]
        refund = await self.service.refund(
            command.provider_reference, amount=command.refund_amount, reason=command.reason,
            reference=command.reference, refund_id=command.refund_id,
            idempotency_key=command.idempotency_key)
        status = str(refund["status"])
        if status in ("pending", "requires_action"):
            return []  # the refund.updated webhook tells the outcome
        ok = status == "succeeded"
        amount = from_wire(Provider.STRIPE, int(refund["amount"]), str(refund["currency"]))
        return [outcome(command, ProviderEventKind.REFUND, refund_id=command.refund_id,
                        refund_succeeded=ok, amount=amount, provider_status=status,
                        provider_code=status if ok else str(_get(refund, "failure_reason") or status),
                        provider_message="refund succeeded" if ok else f"refund {status}",
                        provider_reference=str(refund["id"]))]
