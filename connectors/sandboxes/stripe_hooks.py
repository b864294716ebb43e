"""Test hooks of the Stripe sandbox (under ``/_sandbox/stripe``): what the customer does in
the browser, and the events the sandbox sent."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from connectors.sandboxes.stripe_api import StripeSandbox
from connectors.sandboxes.stripe_wire import StripeHTTPError


def hook_routes(sandbox: StripeSandbox) -> APIRouter:
    router = APIRouter()

    @router.post("/payment_intents/{ident}/3ds")
    async def three_d_secure(ident: str, request: Request) -> Response:
        body = await request.json() if await request.body() else {}
        try:
            pi = sandbox.complete_3ds(ident, str(body.get("outcome", "succeed")) == "succeed")
        except StripeHTTPError as exc:
            return exc.response()
        return JSONResponse(pi)

    @router.post("/payment_intents/{ident}/pay")
    async def pay(ident: str, request: Request) -> Response:
        """``{"payment_method": "pm_card_visa", "webhook_delay_s": 30}``: Stripe.js pays."""
        body = await request.json() if await request.body() else {}
        delay = body.get("webhook_delay_s")
        try:
            pi = sandbox.pay_in_browser(ident, str(body.get("payment_method", "pm_card_visa")),
                                        float(delay) if delay is not None else None)
        except StripeHTTPError as exc:
            return exc.response()
        return JSONResponse(pi)

    @router.get("/events")
    async def events() -> Response:
        return JSONResponse(sandbox.events)

    return router
