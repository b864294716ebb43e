"""The analytics service: owns the ClickHouse connection (chDB allows one process per path),
runs the ClickHouse sink and serves the dashboards from that same process."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import create_async_engine

from dashboards.access import Access, reader
from dashboards.headers import install_security_headers
from dashboards.lag_cache import LagCache
from dashboards.ops_routes import router as ops_router
from dashboards.session_routes import router as session_router
from dashboards.web import router as web_router
from sinks.clickhouse.api import router as sink_router
from sinks.clickhouse.sink import attach as attach_clickhouse_sink
from trailpay.clickhouse import ClickHouse
from trailpay.settings import Settings

log = logging.getLogger(__name__)

#: Background parts that share the ClickHouse connection (the sink registers itself here).
Attachment = Callable[[Settings, ClickHouse], Awaitable[Callable[[], Awaitable[None]]]]
ATTACHMENTS: list[Attachment] = [attach_clickhouse_sink]


def create_app(settings: Settings) -> FastAPI:
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        ch = ClickHouse(settings)
        state["ch"] = ch
        if settings.database_url:
            state["db"] = create_async_engine(settings.sqlalchemy_async_url(), pool_size=4)
        stoppers = [await attach(settings, ch) for attach in ATTACHMENTS]
        lag = state["lag"] = LagCache.for_settings(settings)
        if settings.kafka_bootstrap:
            lag.start()
            stoppers.append(lag.stop)
        log.info("analytics service up; ClickHouse at %s", ch.dsn)
        try:
            yield
        finally:
            for stop in reversed(stoppers):
                await stop()
            ch.close()
            if "db" in state:
                await state["db"].dispose()

    app = FastAPI(title="TrailPay analytics", lifespan=lifespan)
    app.state.trailpay = state
    # The sink views show revenue per currency: readers only, like the figures.
    app.include_router(sink_router, dependencies=[Depends(reader)])
    app.include_router(web_router)
    app.include_router(ops_router)
    app.include_router(session_router)
    state["access"] = Access(settings)  # sessions, token cache, failed sign-ins
    install_security_headers(app)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        ch: ClickHouse = state["ch"]
        ok = (await ch.aquery("SELECT 1"))[1] == [(1,)]
        return JSONResponse({"clickhouse": ok}, status_code=200 if ok else 503)

    return app
