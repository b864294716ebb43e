"""``/healthz`` (the process answers), ``/readyz`` (Kafka and PostgreSQL reachable), ``/metrics``."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from connectors.ingress.context import IngressContext

router = APIRouter(tags=["ops"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


async def _db_ok(ctx: IngressContext) -> bool:
    if ctx.engine is None:
        return False
    try:
        async with asyncio.timeout(2):
            async with ctx.engine.connect() as conn:
                await conn.execute(text("select 1"))
        return True
    except (TimeoutError, SQLAlchemyError, OSError):
        return False


@router.get("/readyz", summary="Readiness: Kafka producer connected and PostgreSQL reachable")
async def readyz(request: Request) -> JSONResponse:
    ctx: IngressContext = request.app.state.ctx
    kafka_ok, db_ok = await asyncio.gather(ctx.publisher.check(), _db_ok(ctx))
    ready = kafka_ok and db_ok
    return JSONResponse({"ready": ready, "kafka": kafka_ok, "database": db_ok},
                        status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    ctx: IngressContext = request.app.state.ctx
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)
