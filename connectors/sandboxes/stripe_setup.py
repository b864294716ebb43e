"""Saved cards in the Stripe sandbox: SetupIntents and ``setup_future_usage``.

As Stripe documents them (docs/sandboxes.md, "Stripe: saved cards"): a SetupIntent used with
a customer attaches the payment method it was confirmed with to that customer once it
succeeds; a PaymentIntent created or confirmed with ``setup_future_usage`` attaches its
payment method to its customer, if it has one, once it succeeds. A decline attaches
nothing. ``usage`` / ``setup_future_usage`` take only ``on_session`` or ``off_session``.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from connectors.sandboxes.rules import CardBehaviour
from connectors.sandboxes.stripe_rules import future_usage
from connectors.sandboxes.stripe_wire import StripeHTTPError, as_bool, found, new_id

CONFIRMABLE = ("requires_payment_method", "requires_confirmation")


class CardStore(Protocol):
    """What SetupIntents need of the sandbox: its customers, payment methods and events."""

    behaviour: dict[str, CardBehaviour]

    def customer(self, ident: str) -> dict[str, Any]: ...

    def method(self, ident: str) -> dict[str, Any]: ...

    def emit(self, event_type: str, obj: dict[str, Any], delay_s: float | None = None) -> None: ...


def attach_saved(store: CardStore, payment_method: str | None, customer: str | None) -> None:
    """Attach ``payment_method`` to ``customer`` after a successful setup or payment. Stripe
    refuses a method attached to another customer before it charges; so does
    :meth:`StripeSandbox.attach`, so here it only stays where it is."""
    if not payment_method or not customer:
        return
    pm = store.method(payment_method)
    if pm["customer"] is None:
        pm["customer"] = customer


def save_after_payment(store: CardStore, pi: dict[str, Any]) -> None:
    """A succeeded PaymentIntent's ``setup_future_usage``: its card joins its customer."""
    if pi.get("setup_future_usage"):
        attach_saved(store, pi.get("payment_method"), pi.get("customer"))


class SetupIntents:
    """``/v1/setup_intents``: create, confirm, retrieve."""

    def __init__(self, store: CardStore) -> None:
        self.store = store
        self.intents: dict[str, dict[str, Any]] = {}

    def route(self, method: str, rest: list[str], p: dict[str, Any]) -> tuple[int, Any] | None:
        if method == "POST" and not rest:
            return self.create(p)
        if method == "GET" and len(rest) == 1:
            return 200, found(self.intents, "setup_intent", rest[0])
        if method == "POST" and len(rest) == 2 and rest[1] == "confirm":
            return self.confirm(found(self.intents, "setup_intent", rest[0]), p)
        return None

    def create(self, p: dict[str, Any]) -> tuple[int, Any]:
        if p.get("return_url") and not as_bool(p.get("confirm", False)):
            raise StripeHTTPError(400, "invalid_request_error", "The parameter return_url can "
                                  "only be used with confirm=true.", param="return_url")
        customer = self.store.customer(str(p["customer"]))["id"] if p.get("customer") else None
        seti_id = new_id("seti")
        seti: dict[str, Any] = {
            "id": seti_id, "object": "setup_intent", "customer": customer,
            "client_secret": f"{seti_id}_secret_{new_id('s')[2:]}",
            "created": int(time.time()), "livemode": False, "description": p.get("description"),
            "metadata": p.get("metadata") or {}, "payment_method": None,
            "payment_method_types": p.get("payment_method_types") or ["card"],
            "status": "requires_payment_method", "usage": future_usage(p, "off_session", "usage"),
            "last_setup_error": None, "next_action": None, "cancellation_reason": None,
            "latest_attempt": None,
        }
        if p.get("payment_method"):
            seti["payment_method"] = self.store.method(str(p["payment_method"]))["id"]
            seti["status"] = "requires_confirmation"
        self.intents[seti_id] = seti
        self.store.emit("setup_intent.created", seti)
        if as_bool(p.get("confirm", False)):
            return self.confirm(seti, {k: v for k, v in p.items() if k == "return_url"})
        return 200, seti

    def confirm(self, seti: dict[str, Any], p: dict[str, Any]) -> tuple[int, Any]:
        if seti["status"] not in CONFIRMABLE:
            raise StripeHTTPError(
                400, "invalid_request_error",
                f"This SetupIntent's status is {seti['status']}, so it cannot be confirmed.",
                code="setup_intent_unexpected_state", setup_intent=seti)
        if p.get("payment_method"):
            seti["payment_method"] = self.store.method(str(p["payment_method"]))["id"]
        if not seti["payment_method"]:
            raise StripeHTTPError(
                400, "invalid_request_error",
                "You cannot confirm this SetupIntent because it's missing a payment method.",
                code="setup_intent_unexpected_state", setup_intent=seti)
        card = self.store.behaviour[seti["payment_method"]]
        seti.update(last_setup_error=None, next_action=None, latest_attempt=new_id("setatt"))
        if card.outcome == "succeed":
            seti["status"] = "succeeded"
            attach_saved(self.store, seti["payment_method"], seti["customer"])
            self.store.emit("setup_intent.succeeded", seti)
            return 200, seti
        if card.outcome == "3ds":
            seti["status"] = "requires_action"
            seti["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {
                "type": "three_d_secure_redirect", "stripe_js": "sandbox"}}
            self.store.emit("setup_intent.requires_action", seti)
            return 200, seti
        message = card.message or "Your card was declined."
        seti["status"] = "requires_payment_method"
        seti["last_setup_error"] = {"type": "card_error", "code": "card_declined",
                                    "decline_code": card.decline_code, "message": message,
                                    "payment_method": {"id": seti["payment_method"]}}
        self.store.emit("setup_intent.setup_failed", seti)
        err = StripeHTTPError(402, "card_error", message, code="card_declined",
                              decline_code=card.decline_code, setup_intent=seti)
        return err.status, {"error": err.body}
