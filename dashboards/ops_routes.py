"""Ops routes of the analytics process: ``/metrics``, ``/readyz`` and the ClickHouse replay
entry point.

chDB lets one process open its path, and the analytics process owns it; so a replay "into
the sinks" (``trailpay replay --into sinks``) hands its ClickHouse batches to this process,
which writes them through the same :class:`ClickHouseSink` class on the shared connection.
The route is only enabled for embedded chDB: against a ClickHouse server the replay
command writes directly, and the route answers 404.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import BaseModel, Field

from dashboards.access import Principal, writer
from sinks import health as sink_health
from sinks.clickhouse.sink import ClickHouseSink
from sinks.contract import SinkRecord
from trailpay.domain.errors import InvalidRecord, PermanentError, RetriableError

router = APIRouter(tags=["ops"])


@router.get("/metrics", summary="Prometheus metrics (ClickHouse sink)", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@router.get("/readyz", summary="Readiness: ClickHouse answers, its sink neither crash-loops nor lags")
async def readyz(request: Request) -> JSONResponse:
    ch = request.app.state.trailpay.get("ch")
    try:
        ok = ch is not None and (await ch.aquery("SELECT 1"))[1] == [(1,)]
    except Exception:  # noqa: BLE001 - not ready is the answer
        ok = False
    health = sink_health.current("sink-clickhouse")
    consumers = health.report() if health is not None else {"ready": True, "consumers": []}
    ready = ok and bool(consumers["ready"])
    return JSONResponse({"ready": ready, "clickhouse": ok, "consumers": consumers["consumers"]},
                        status_code=200 if ready else 503)


class WireRecord(BaseModel):
    topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = Field(default=None, description="base64")
    value: str = Field(description="base64")
    timestamp_ms: int | None = None


class ReplayBatch(BaseModel):
    records: list[WireRecord] = Field(max_length=20_000)


def _decode(index: int, name: str, text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(422, f"record {index}: {name} is not valid base64") from None


@router.post("/api/ops/replay/clickhouse", summary="Write replayed records through the ClickHouse sink "
             "(an admin token or the analytics service token)")
async def replay_clickhouse(batch: ReplayBatch, request: Request,
                            _who: Principal = Depends(writer)) -> dict[str, Any]:
    decoded = [(rec, None if rec.key is None else _decode(i, "key", rec.key),
                _decode(i, "value", rec.value)) for i, rec in enumerate(batch.records)]
    ch = request.app.state.trailpay.get("ch")
    if ch is None or not ch.embedded:
        raise HTTPException(404, "only for embedded chDB; write to the ClickHouse server directly")
    sink = ClickHouseSink(ch)
    refused: list[dict[str, Any]] = []
    for index, (rec, key, value) in enumerate(decoded):
        record = SinkRecord(rec.topic, rec.partition if rec.partition is not None else -1,
                            rec.offset if rec.offset is not None else -1,
                            key, value, rec.timestamp_ms)
        try:
            sink.add(record)
        except InvalidRecord as exc:
            refused.append({"index": index, "error": str(exc)[:500]})
    try:
        await sink.flush()
    except RetriableError as exc:
        raise HTTPException(503, f"ClickHouse busy: {exc}") from exc
    except PermanentError as exc:
        raise HTTPException(422, str(exc)) from exc
    return {"written": len(batch.records) - len(refused), "refused": refused}
