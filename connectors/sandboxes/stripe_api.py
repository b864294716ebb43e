"""A Stripe API subset close enough to the wire format that the unchanged SDK works.

Customers (incl. search by metadata), payment methods (test tokens such as ``pm_card_visa``
become real ``pm_...`` objects on attach or use), PaymentIntents (create, confirm incl. 3-D
Secure and ``setup_future_usage``, cancel, retrieve, list), SetupIntents (``stripe_setup``),
refunds (full, partial, over-refund refused), Bearer ``sk_`` key auth, ``Idempotency-Key``
replay, Stripe's error JSON, and signed events POSTed to the configured webhook URL. As
strict as Stripe (:mod:`connectors.sandboxes.stripe_rules`): unknown parameters, amounts
outside Stripe's limits or not as Stripe counts the currency, and reasons outside Stripe's
lists are refused with Stripe's errors.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from connectors.providers.stripe_signature import signature_header
from connectors.sandboxes.callbacks import CallbackSender
from connectors.sandboxes.rules import CARDS, CardBehaviour
from connectors.sandboxes.stripe_rules import (
    CANCELLATION_REASONS,
    REFUND_REASONS,
    check_charge_amount,
    check_choice,
    check_params,
    future_usage,
)
from connectors.sandboxes.stripe_setup import SetupIntents, save_after_payment
from connectors.sandboxes.stripe_wire import (
    StripeHTTPError,
    as_bool,
    as_int,
    found,
    listing,
    missing,
    new_id,
    parse_form,
)

OPEN = ("requires_payment_method", "requires_confirmation", "requires_action", "processing",
        "requires_capture")


class StripeSandbox:
    def __init__(self, api_key: str, webhook_url: str, webhook_secret: str,
                 sender: CallbackSender) -> None:
        self.api_key = api_key
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.sender = sender
        self.customers: dict[str, dict[str, Any]] = {}
        self.methods: dict[str, dict[str, Any]] = {}
        self.behaviour: dict[str, CardBehaviour] = {}
        self.intents: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.idempotency: dict[str, tuple[str, int, bytes]] = {}
        self.events: list[dict[str, Any]] = []
        self.setups = SetupIntents(self)

    # ------------------------------------------------------------------ plumbing
    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route("/v1/{path:path}", self.handle, methods=["GET", "POST", "DELETE"])
        return router

    async def handle(self, path: str, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {self.api_key}":
            return StripeHTTPError(401, "invalid_request_error",
                                   "Invalid API Key provided: " + (auth[7:12] + "***" if auth else "none"),
                                   ).response()
        body = await request.body()
        params = parse_form(body) if request.method == "POST" else parse_form(request.url.query)
        key = request.headers.get("idempotency-key") if request.method == "POST" else None
        fingerprint = hashlib.sha256(request.method.encode() + path.encode() + body).hexdigest()
        if key:
            seen = self.idempotency.get(key)
            if seen is not None:
                if seen[0] != fingerprint:
                    return StripeHTTPError(
                        400, "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters "
                        "they were first used with.").response()
                return Response(seen[2], status_code=seen[1], media_type="application/json",
                                headers={"Idempotent-Replayed": "true", "Idempotency-Key": key})
        try:
            parts = path.strip("/").split("/")
            check_params(request.method, parts, params)
            status, result = self.route(request.method, parts, params)
        except StripeHTTPError as exc:
            status, result = exc.status, {"error": exc.body}
        raw = json.dumps(result).encode()
        if key and status < 500:
            self.idempotency[key] = (fingerprint, status, raw)
        headers = {"Request-Id": new_id("req", 14)}
        if key:
            headers["Idempotency-Key"] = key
        return Response(raw, status_code=status, media_type="application/json", headers=headers)

    def route(self, method: str, parts: list[str], p: dict[str, Any]) -> tuple[int, Any]:
        head, rest = parts[0], parts[1:]
        if head == "customers":
            if method == "POST" and not rest:
                return 200, self.create_customer(p)
            if method == "GET" and rest == ["search"]:
                return 200, self.search_customers(p)
            if method == "GET" and not rest:
                data = [c for c in self.customers.values() if not p.get("email") or c["email"] == p["email"]]
                return 200, listing("/v1/customers", data[::-1], as_int(p.get("limit", 10), "limit"))
            if method == "GET" and len(rest) == 1:
                return 200, self.customer(rest[0])
        if head == "payment_methods":
            if method == "GET" and not rest:
                return 200, self.list_methods(p)
            if method == "GET" and len(rest) == 1:
                return 200, self.method(rest[0])
            if method == "POST" and len(rest) == 2 and rest[1] == "attach":
                return 200, self.attach(rest[0], p)
            if method == "POST" and len(rest) == 2 and rest[1] == "detach":
                return 200, self.detach(rest[0])
        if head == "payment_intents":
            if method == "POST" and not rest:
                return self.create_intent(p)
            if method == "GET" and not rest:
                return 200, self.list_intents(p)
            if method == "GET" and len(rest) == 1:
                return 200, self.intent(rest[0])
            if method == "POST" and len(rest) == 2 and rest[1] == "confirm":
                return self.confirm(self.intent(rest[0]), p)
            if method == "POST" and len(rest) == 2 and rest[1] == "cancel":
                return 200, self.cancel(rest[0], p)
        if head == "setup_intents" and (answer := self.setups.route(method, rest, p)) is not None:
            return answer
        if head == "refunds":
            if method == "POST" and not rest:
                return 200, self.create_refund(p)
            if method == "GET" and len(rest) == 1:
                return 200, found(self.refunds, "refund", rest[0])
        raise StripeHTTPError(404, "invalid_request_error",
                              f"Unrecognized request URL ({method}: /v1/{'/'.join(parts)}).")

    def emit(self, event_type: str, obj: dict[str, Any], delay_s: float | None = None) -> None:
        event = {"id": new_id("evt"), "object": "event", "api_version": "2024-06-20",
                 "created": int(time.time()), "livemode": False, "pending_webhooks": 1,
                 "type": event_type, "data": {"object": json.loads(json.dumps(obj))}}
        self.events.append(event)
        secret = self.webhook_secret
        self.sender.schedule(self.webhook_url, json.dumps(event).encode(),
                             sign=lambda body: {"Stripe-Signature": signature_header([secret], body)},
                             delay_s=delay_s)

    # ------------------------------------------------------------------ customers
    def create_customer(self, p: dict[str, Any]) -> dict[str, Any]:
        cus: dict[str, Any] = {"id": new_id("cus", 14), "object": "customer", "email": p.get("email"),
               "name": p.get("name"), "metadata": p.get("metadata") or {},
               "created": int(time.time()), "livemode": False,
               "invoice_settings": {"default_payment_method": None}}
        self.customers[cus["id"]] = cus
        return cus

    def customer(self, ident: str) -> dict[str, Any]:
        return found(self.customers, "customer", ident)

    def search_customers(self, p: dict[str, Any]) -> dict[str, Any]:
        """Supports ``metadata['k']:'v'`` and ``email:'x'`` (what we use)."""
        query = str(p.get("query", ""))
        field, _, value = query.partition(":")
        value = value.strip().strip("'\"")
        field = field.strip()
        if field.startswith("metadata["):
            meta_key = field[len("metadata["):-1].strip("'\"")
            data = [c for c in self.customers.values() if c["metadata"].get(meta_key) == value]
        elif field == "email":
            data = [c for c in self.customers.values() if c["email"] == value]
        else:
            raise StripeHTTPError(400, "invalid_request_error", f"Unsupported query: {query}",
                                  param="query")
        return {"object": "search_result", "url": "/v1/customers/search", "has_more": False,
                "data": data[: as_int(p.get("limit", 10), "limit")], "next_page": None}

    # ------------------------------------------------------------------ payment methods
    def method(self, ident: str) -> dict[str, Any]:
        if ident in self.methods:
            return self.methods[ident]
        if ident in CARDS:
            return self.materialise(ident)
        raise missing("payment_method", ident)

    def materialise(self, token: str) -> dict[str, Any]:
        """A test token used once becomes a new PaymentMethod, as on Stripe."""
        card = CARDS[token]
        pm: dict[str, Any] = {"id": new_id("pm"), "object": "payment_method", "type": "card",
              "customer": None,
              "created": int(time.time()), "livemode": False, "metadata": {},
              "card": {"brand": card.brand, "last4": card.last4, "exp_month": 12,
                       "exp_year": 2034, "country": "US", "funding": "credit"},
              "billing_details": {"email": None, "name": None}}
        self.methods[pm["id"]] = pm
        self.behaviour[pm["id"]] = card
        return pm

    def list_methods(self, p: dict[str, Any]) -> dict[str, Any]:
        customer = p.get("customer")
        data = [m for m in self.methods.values() if m["customer"] == customer and customer]
        return listing("/v1/payment_methods", data, as_int(p.get("limit", 10), "limit"))

    def attach(self, ident: str, p: dict[str, Any]) -> dict[str, Any]:
        pm = self.method(ident)
        customer = self.customer(str(p.get("customer", "")))["id"]
        if pm["customer"] and pm["customer"] != customer:
            raise StripeHTTPError(400, "invalid_request_error",
                                  "The payment method you provided has already been attached to "
                                  "another customer.", code="payment_method_already_attached")
        pm["customer"] = customer
        return pm

    def detach(self, ident: str) -> dict[str, Any]:
        pm = self.method(ident)
        if not pm["customer"]:
            raise StripeHTTPError(400, "invalid_request_error",
                                  "The payment method you provided is not attached to a customer "
                                  "so detachment is impossible.", code="payment_method_unexpected_state")
        pm["customer"] = None
        return pm

    # ------------------------------------------------------------------ payment intents
    def intent(self, ident: str) -> dict[str, Any]:
        return found(self.intents, "payment_intent", ident)

    def list_intents(self, p: dict[str, Any]) -> dict[str, Any]:
        data = [pi for pi in self.intents.values()
                if not p.get("customer") or pi["customer"] == p["customer"]]
        return listing("/v1/payment_intents", data[::-1], as_int(p.get("limit", 10), "limit"))

    def create_intent(self, p: dict[str, Any]) -> tuple[int, Any]:
        if "amount" not in p:
            raise StripeHTTPError(400, "invalid_request_error", "Missing required param: amount.",
                                  code="parameter_missing", param="amount")
        amount = as_int(p["amount"], "amount")
        if not p.get("currency"):
            raise StripeHTTPError(400, "invalid_request_error", "Missing required param: currency.",
                                  code="parameter_missing", param="currency")
        check_charge_amount(amount, str(p["currency"]).lower())
        if p.get("return_url") and not as_bool(p.get("confirm", False)):
            raise StripeHTTPError(400, "invalid_request_error", "The parameter return_url can "
                                  "only be used with confirm=true.", param="return_url")
        if p.get("customer"):
            self.customer(str(p["customer"]))
        pi_id = new_id("pi")
        pi: dict[str, Any] = {
            "id": pi_id, "object": "payment_intent", "amount": amount,
            "amount_received": 0, "currency": str(p["currency"]).lower(),
            "customer": p.get("customer"), "description": p.get("description"),
            "metadata": p.get("metadata") or {}, "payment_method": None,
            "payment_method_types": p.get("payment_method_types") or ["card"],
            "status": "requires_payment_method", "client_secret": f"{pi_id}_secret_{new_id('s')[2:]}",
            "created": int(time.time()), "livemode": False, "last_payment_error": None,
            "next_action": None, "cancellation_reason": None, "latest_charge": None,
            "capture_method": "automatic", "confirmation_method": "automatic",
            "setup_future_usage": future_usage(p, None),
        }
        if p.get("payment_method"):
            pi["payment_method"] = self.method(str(p["payment_method"]))["id"]
            pi["status"] = "requires_confirmation"
        self.intents[pi_id] = pi
        self.emit("payment_intent.created", pi)
        if as_bool(p.get("confirm", False)):
            return self.confirm(pi, {k: v for k, v in p.items() if k == "return_url"})
        return 200, pi

    def confirm(self, pi: dict[str, Any], p: dict[str, Any]) -> tuple[int, Any]:
        if pi["status"] not in ("requires_payment_method", "requires_confirmation"):
            raise StripeHTTPError(
                400, "invalid_request_error",
                f"This PaymentIntent's status is {pi['status']}, so it cannot be confirmed.",
                code="payment_intent_unexpected_state", payment_intent=pi)
        pi["setup_future_usage"] = future_usage(p, pi["setup_future_usage"])
        if p.get("payment_method"):
            pi["payment_method"] = self.method(str(p["payment_method"]))["id"]
        if not pi["payment_method"]:
            raise StripeHTTPError(
                400, "invalid_request_error",
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
                code="payment_intent_unexpected_state", payment_intent=pi)
        card = self.behaviour[pi["payment_method"]]
        pi["last_payment_error"] = None
        if card.outcome == "succeed":
            self.succeed(pi)
            return 200, pi
        if card.outcome == "3ds":
            pi["status"] = "requires_action"
            pi["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {
                "type": "three_d_secure_redirect", "stripe_js": "sandbox"}}
            if p.get("return_url"):  # the redirect flow: back to return_url afterwards
                pi["next_action"] = {"type": "redirect_to_url", "redirect_to_url": {
                    "url": f"https://hooks.stripe.com/3d_secure_2/{pi['id']}",
                    "return_url": p["return_url"]}}
            self.emit("payment_intent.requires_action", pi)
            return 200, pi
        self.decline(pi, card.decline_code or "generic_decline", card.message or "Your card was declined.")
        err = StripeHTTPError(402, "card_error", pi["last_payment_error"]["message"],
                              code="card_declined", decline_code=card.decline_code,
                              payment_intent=pi, payment_method=self.methods[pi["payment_method"]])
        return err.status, {"error": err.body}

    def succeed(self, pi: dict[str, Any], webhook_delay_s: float | None = None) -> None:
        pi.update(status="succeeded", amount_received=pi["amount"], next_action=None,
                  latest_charge=new_id("ch"), amount_refunded=0)
        save_after_payment(self, pi)
        self.emit("payment_intent.succeeded", pi, webhook_delay_s)

    def decline(self, pi: dict[str, Any], decline_code: str, message: str,
                code: str = "card_declined") -> None:
        pi["status"] = "requires_payment_method"
        pi["next_action"] = None
        pi["last_payment_error"] = {"type": "card_error", "code": code,
                                    "decline_code": decline_code, "message": message,
                                    "payment_method": {"id": pi["payment_method"]}}
        self.emit("payment_intent.payment_failed", pi)

    def complete_3ds(self, ident: str, succeed: bool) -> dict[str, Any]:
        """Test hook: the customer passes or fails the 3-D Secure challenge."""
        pi = self.intent(ident)
        if pi["status"] != "requires_action":
            raise StripeHTTPError(400, "invalid_request_error",
                                  f"PaymentIntent is {pi['status']}, not requires_action",
                                  code="payment_intent_unexpected_state")
        if succeed:
            self.succeed(pi)
        else:
            self.decline(pi, "authentication_required",
                         "We are unable to authenticate your payment method.",
                         code="payment_intent_authentication_failure")
        return pi

    def pay_in_browser(self, ident: str, payment_method: str,
                       webhook_delay_s: float | None) -> dict[str, Any]:
        """Test hook: Stripe.js confirms with the client secret and the card pays; the
        ``payment_intent.succeeded`` webhook is held back ``webhook_delay_s``."""
        pi = self.intent(ident)
        if pi["status"] not in ("requires_payment_method", "requires_confirmation"):
            raise StripeHTTPError(400, "invalid_request_error", f"PaymentIntent is {pi['status']}",
                                  code="payment_intent_unexpected_state")
        pi["payment_method"] = self.method(payment_method)["id"]
        self.succeed(pi, webhook_delay_s)
        return pi

    def cancel(self, ident: str, p: dict[str, Any]) -> dict[str, Any]:
        check_choice(p, "cancellation_reason", CANCELLATION_REASONS)
        pi = self.intent(ident)
        if pi["status"] not in OPEN:
            raise StripeHTTPError(
                400, "invalid_request_error",
                f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}.",
                code="payment_intent_unexpected_state", payment_intent=pi)
        pi["status"] = "canceled"
        pi["next_action"] = None
        pi["cancellation_reason"] = p.get("cancellation_reason") or "requested_by_customer"
        self.emit("payment_intent.canceled", pi)
        return pi

    # ------------------------------------------------------------------ refunds
    def create_refund(self, p: dict[str, Any]) -> dict[str, Any]:
        ident = str(p.get("payment_intent") or "")
        if not ident:
            raise StripeHTTPError(400, "invalid_request_error",
                                  "One of the following params should be provided for this request: "
                                  "payment_intent or charge.", code="parameter_missing")
        check_choice(p, "reason", REFUND_REASONS)
        pi = self.intent(ident)
        if pi["status"] != "succeeded":
            raise StripeHTTPError(400, "invalid_request_error",
                                  f"This PaymentIntent ({ident}) does not have a successful "
                                  "charge to refund.",
                                  code="charge_not_refundable")
        remaining = pi["amount_received"] - pi.get("amount_refunded", 0)
        amount = as_int(p["amount"], "amount") if "amount" in p else remaining
        if amount < 1:
            raise StripeHTTPError(400, "invalid_request_error", "Refund amount must be positive.",
                                  code="amount_too_small", param="amount")
        if amount > remaining:
            raise StripeHTTPError(
                400, "invalid_request_error",
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
                code="amount_too_large", param="amount")
        pi["amount_refunded"] = pi.get("amount_refunded", 0) + amount
        refund = {"id": new_id("re"), "object": "refund", "amount": amount,
                  "currency": pi["currency"], "payment_intent": ident, "charge": pi["latest_charge"],
                  "status": "succeeded", "reason": p.get("reason"),
                  "metadata": p.get("metadata") or {}, "created": int(time.time())}
        self.refunds[refund["id"]] = refund
        self.emit("refund.created", refund)
        return refund

