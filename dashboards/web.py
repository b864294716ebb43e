"""The built-in dashboard page and its JSON/CSV API, served by the analytics service.

Every figure needs a signed-in session or a token (:mod:`dashboards.access`); the page
itself and its static files are public, and hold no data.

Charts are drawn by plotly.js, served from the installed ``plotly`` Python package, so the
page works offline (nothing is fetched from a CDN).
"""

from __future__ import annotations

import importlib.resources
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from dashboards import explorer, metrics_api
from dashboards.access import Principal, explorer_user, reader
from dashboards.headlines import exponents, headlines
from trailpay.clickhouse import ClickHouse

STATIC = Path(__file__).resolve().parent / "static"
router = APIRouter(tags=["dashboards"])


def _plotly_js() -> Path:
    try:
        path = Path(str(importlib.resources.files("plotly") / "package_data" / "plotly.min.js"))
    except ModuleNotFoundError:
        raise HTTPException(503, "plotly is not installed: pip install plotly") from None
    if not path.exists():
        raise HTTPException(503, f"plotly.min.js missing at {path}")
    return path


def _ch(request: Request) -> ClickHouse:
    ch: ClickHouse = request.app.state.trailpay["ch"]
    return ch


def _db(request: Request) -> AsyncEngine:
    engine: AsyncEngine | None = request.app.state.trailpay.get("db")
    if engine is None:
        raise HTTPException(503, "no PostgreSQL configured for the explorer (TRAILPAY_DATABASE_URL)")
    return engine


def _range(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    until = until or datetime.now(UTC) + timedelta(minutes=1)
    since = since or until - timedelta(days=30)
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    if until <= since:
        raise HTTPException(422, "until must be after since")
    return since, until


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse((STATIC / "index.html").read_text())


@router.get("/static/plotly.min.js", include_in_schema=False)
async def plotly_js() -> FileResponse:
    return FileResponse(_plotly_js(), media_type="application/javascript")


@router.get("/static/{name}", include_in_schema=False)
async def static(name: str) -> FileResponse:
    path = (STATIC / name).resolve()
    if path.parent != STATIC or not path.is_file():
        raise HTTPException(404, "no such file")
    return FileResponse(path)


Since = Query(default=None, description="UTC, inclusive (default: 30 days ago)")
Until = Query(default=None, description="UTC, exclusive (default: now)")
CurrencyQuery = Query(default=None, min_length=3, max_length=3, pattern="^[A-Za-z]{3}$")


@router.get("/api/metrics")
async def list_metrics(_who: Principal = Depends(reader)) -> list[dict[str, Any]]:
    return metrics_api.describe()


@router.get("/api/metrics/headlines", summary="The headline tiles")
async def get_headlines(request: Request, since: datetime | None = Since, until: datetime | None = Until,
                        currency: str | None = CurrencyQuery,
                        _who: Principal = Depends(reader)) -> dict[str, Any]:
    start, end = _range(since, until)
    found = await headlines(_ch(request), request.app.state.trailpay.get("db"), start, end, currency)
    lag = request.app.state.trailpay.get("lag")
    found["consumer_lag"] = lag.snapshot() if lag is not None else None
    return found


@router.get("/api/metrics/{name}", response_model=None)
async def get_metric(
    request: Request, name: str,
    since: datetime | None = Since, until: datetime | None = Until,
    currency: str | None = CurrencyQuery,
    format: str = Query(default="json", pattern="^(json|csv)$"),
    bucket: str = Query(default="day", pattern="^(day|week|month)$"),
    _who: Principal = Depends(reader),
) -> JSONResponse | PlainTextResponse:
    start, end = _range(since, until)
    try:
        result = await metrics_api.run_metric(_ch(request), name, start, end, currency, bucket)
    except metrics_api.UnknownMetric as exc:
        raise HTTPException(404, str(exc)) from None
    if format == "csv":
        return PlainTextResponse(
            metrics_api.to_csv(result), media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    return JSONResponse(result)


@router.get("/api/explorer/search")
async def explorer_search(request: Request, q: str | None = Query(default=None, min_length=1, max_length=200),
                          reached: str | None = Query(default=None, pattern="^[a-z_]{1,32}$"),
                          since: datetime | None = None, until: datetime | None = None,
                          currency: str | None = CurrencyQuery,
                          provider: str | None = Query(default=None, pattern="^[a-z_]{1,16}$"),
                          _who: Principal = Depends(explorer_user)) -> dict[str, Any]:
    """By id (``q``), or the drill-down: payments that ``reached`` a status in the range."""
    if q is None and reached is None:
        raise HTTPException(422, "give q (an id) or reached (a status) with since and until")
    drill = None
    if reached is not None:
        if since is None or until is None:
            raise HTTPException(422, "reached needs since and until")
        start, end = _range(since, until)
        drill = explorer.Reached(reached, start, end, currency, provider)
    results = await explorer.search(_db(request), q.strip() if q else None,
                                    limit=200 if drill else 20, reached=drill)
    return {"results": results, "exponents": exponents([str(r["currency"]) for r in results])}


@router.get("/api/explorer/payments/{reference}")
async def explorer_history(request: Request, reference: str,
                           _who: Principal = Depends(explorer_user)) -> dict[str, Any]:
    found = await explorer.history(_db(request), reference[:64])
    if found is None:
        raise HTTPException(404, f"no payment {reference}")
    return {**found, "exponents": exponents([str(found["payment"]["currency"])])}
