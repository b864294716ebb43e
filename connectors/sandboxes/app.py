"""The sandbox process: ``/stripe``, ``/mpesa``, ``/airtel``, ``/healthz`` and test hooks.

Test hooks (under ``/_sandbox``): ``POST /faults`` (fail or hang the next N requests of a
provider), ``GET /requests`` (request counts), ``GET /deliveries`` (callbacks sent and how
they were answered), ``POST /reset``, ``POST /stripe/payment_intents/{id}/3ds`` with
``{"outcome": "succeed"|"fail"}`` (the customer's 3-D Secure challenge), ``GET /stripe/events``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from connectors.sandboxes.airtel_api import AirtelSandbox, airtel_callback_url
from connectors.sandboxes.callbacks import CallbackSender
from connectors.sandboxes.faults import PROVIDERS, Fault, FaultBook, FaultMiddleware
from connectors.sandboxes.mpesa_api import MpesaSandbox
from connectors.sandboxes.mpesa_payouts import PayoutBook
from connectors.sandboxes.stripe_api import StripeSandbox
from connectors.sandboxes.stripe_hooks import hook_routes
from trailpay.settings import Settings


def stripe_webhook_url(settings: Settings) -> str:
    return f"{settings.callback_base_url}/api/stripe/webhooks/stripe/"


def create_app(settings: Settings, *, callback_delay_s: float = 0.5,
               mpesa_token_ttl_s: int | None = None) -> FastAPI:
    sender = CallbackSender(delay_s=callback_delay_s)
    book = FaultBook()
    secrets_ = [s.get_secret_value() for s in settings.stripe_webhook_secrets]
    stripe_sb = StripeSandbox(settings.stripe_api_key.get_secret_value(), stripe_webhook_url(settings),
                              secrets_[0] if secrets_ else "", sender)
    mpesa_sb = MpesaSandbox(settings.mpesa_consumer_key.get_secret_value(),
                            settings.mpesa_consumer_secret.get_secret_value(),
                            settings.mpesa_shortcode, settings.mpesa_passkey.get_secret_value(),
                            sender, lock_subscriber=settings.sandbox_mpesa_lock_subscriber,
                            payouts=PayoutBook(settings.mpesa_initiator_name.get_secret_value(),
                                               settings.mpesa_security_credential.get_secret_value(),
                                               settings.mpesa_b2c_shortcode or settings.mpesa_shortcode,
                                               settings.mpesa_shortcode, sender),
                            **({"token_ttl_s": mpesa_token_ttl_s} if mpesa_token_ttl_s else {}))
    callback_secret = settings.airtel_callback_secret
    airtel_sb = AirtelSandbox(settings.airtel_client_id.get_secret_value(),
                              settings.airtel_client_secret.get_secret_value(),
                              airtel_callback_url(settings.callback_base_url,
                                                  settings.airtel_callback_token.get_secret_value()),
                              callback_secret.get_secret_value() if callback_secret else None,
                              sender)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await sender.aclose()

    app = FastAPI(title="TrailPay provider sandboxes", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.add_middleware(FaultMiddleware, book=book)
    app.include_router(stripe_sb.router(), prefix="/stripe")
    app.include_router(mpesa_sb.router(), prefix="/mpesa")
    app.include_router(airtel_sb.router(), prefix="/airtel")
    app.include_router(hook_routes(stripe_sb), prefix="/_sandbox/stripe")
    app.state.sandboxes = {"stripe": stripe_sb, "mpesa": mpesa_sb, "airtel": airtel_sb}
    app.state.sender = sender
    app.state.faults = book

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "sandboxes": list(PROVIDERS)}

    @app.post("/_sandbox/faults")
    async def faults(request: Request) -> JSONResponse:
        body = await request.json()
        try:
            book.faults[str(body.get("provider"))] = Fault.from_request(body)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"ok": True})

    @app.get("/_sandbox/requests")
    async def requests() -> dict[str, int]:
        return dict(book.requests)

    @app.get("/_sandbox/deliveries")
    async def deliveries() -> list[dict[str, Any]]:
        return [{"url": d.url.split("?")[0], "status": d.status, "attempts": d.attempts,
                 "error": d.error} for d in sender.deliveries]

    @app.post("/_sandbox/reset")
    async def reset() -> dict[str, bool]:
        book.reset()
        return {"ok": True}

    return app
