"""The ingress app factory: ``create_app(settings)`` -> a FastAPI app ready for uvicorn."""

from __future__ import annotations

import gc
import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from connectors.ingress.auth import TokenCache
from connectors.ingress.context import IngressContext
from connectors.ingress.edge import EdgeGuard
from connectors.ingress.errors import install_handlers
from connectors.ingress.metrics import MetricsMiddleware
from connectors.ingress.openapi_doc import describe
from connectors.ingress.ratelimit import FailureLimiter
from connectors.ingress.routes import admin, bookings, ops, payments, stripe, webhook_endpoints, webhooks
from trailpay import __version__
from trailpay.settings import Settings

log = logging.getLogger(__name__)

DESCRIPTION = """TrailPay's HTTP API: payments (M-Pesa, Airtel Money, Stripe), provider webhooks
and booking events. Every endpoint except webhooks and health needs
`Authorization: Token <token>`; every POST accepts an `Idempotency-Key` header. Amounts are
decimal strings in major units (`"100.50"`), converted exactly to minor units."""


def create_app(settings: Settings, *, ctx: IngressContext | None = None) -> FastAPI:
    context = ctx or IngressContext.build(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await context.publisher.start()
        # Everything allocated so far (modules, schemas, routes) lives as long as the process;
        # keep it out of the collector's sight so full collections stay short (tail latency).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await context.aclose()

    options: dict[str, Any] = {}
    if "telemetry" in inspect.signature(FastAPI).parameters:
        # FastAPI's built-in OpenTelemetry probe costs ~40 µs per request even with nothing
        # configured; we export Prometheus metrics ourselves.
        options["telemetry"] = {"tracing": False, "metrics": False, "logs": False}
    app = FastAPI(title="TrailPay API", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan, **options)
    app.state.ctx = context
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override
    app.state.token_cache = TokenCache()
    app.state.auth_limiter = FailureLimiter(settings.auth_failure_burst, settings.auth_failure_per_s)
    install_handlers(app)
    # Webhooks first: the hot path should match early.
    app.include_router(webhooks.router)
    app.include_router(payments.router)
    app.include_router(stripe.router)
    app.include_router(bookings.router)
    app.include_router(admin.router)
    app.include_router(ops.router)
    app.include_router(webhook_endpoints.router)
    app.add_middleware(webhooks.WebhookFastPath)
    app.add_middleware(EdgeGuard)
    app.add_middleware(MetricsMiddleware, metrics=context.metrics)
    return app
