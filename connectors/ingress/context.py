"""What every route needs, built once per app: settings, database, Kafka, handlers, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from connectors.ingress.errors import unavailable
from connectors.ingress.metrics import Metrics
from connectors.ingress.publisher import Publisher
from connectors.providers.base import WebhookHandler
from connectors.providers.registry import webhook_handlers
from connectors.providers.stripe_client import StripeService
from trailpay.domain.events import Provider
from trailpay.settings import Settings


@dataclass
class IngressContext:
    settings: Settings
    publisher: Publisher
    engine: AsyncEngine | None
    handlers: dict[Provider, WebhookHandler]
    metrics: Metrics = field(default_factory=Metrics)
    _stripe: StripeService | None = None

    @classmethod
    def build(cls, settings: Settings, *, with_database: bool = True) -> IngressContext:
        engine = None
        if with_database and settings.database_url:
            engine = create_async_engine(settings.sqlalchemy_async_url(), pool_size=10,
                                         max_overflow=10, pool_pre_ping=True, pool_timeout=5)
        return cls(settings=settings, publisher=Publisher(settings), engine=engine,
                   handlers=webhook_handlers(settings))

    def stripe(self) -> StripeService:
        """The Stripe client (the sandbox in the embedded stack), made on first use."""
        if self._stripe is None:
            self._stripe = StripeService.from_settings(self.settings)
        return self._stripe

    async def aclose(self) -> None:
        await self.publisher.stop()
        if self._stripe is not None:
            await self._stripe.aclose()
        if self.engine is not None:
            await self.engine.dispose()

    def db(self) -> AsyncEngine:
        if self.engine is None:
            raise unavailable("no database is configured (TRAILPAY_DATABASE_URL)")
        return self.engine


def get_context(request: Request) -> IngressContext:
    ctx: IngressContext = request.app.state.ctx
    return ctx
