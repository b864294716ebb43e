"""Read-only HTTP views of the ClickHouse sink's tables, for ops and tests.

Mounted by the analytics service (``dashboards/server.py``) behind its reader check (a
viewer, support or admin session or token, or the service token): they expose no personal
data (the fact tables hold none) but they do show revenue.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from sinks.clickhouse import schema
from trailpay.clickhouse import ClickHouse

router = APIRouter(prefix="/api/sink/clickhouse", tags=["sink"])


def _ch(request: Request) -> ClickHouse:
    ch: ClickHouse = request.app.state.trailpay["ch"]
    return ch


@router.get("/counts")
async def counts(request: Request, reference_prefix: str | None = Query(default=None, max_length=64)
                 ) -> dict[str, Any]:
    """Rows per table, after duplicates collapse (FINAL) and as stored (raw).

    With ``reference_prefix``, only rows of payments whose reference starts with it, and
    the revenue of those payments (gross, refunded, net per currency).
    """
    ch = _ch(request)
    where = ""
    params: dict[str, Any] = {}
    if reference_prefix:
        where = " WHERE startsWith(reference, {p:String})"
        params["p"] = reference_prefix
    out: dict[str, Any] = {"tables": {}}
    for table in schema.TABLES:
        if reference_prefix and "reference" not in schema.COLUMNS[table]:
            continue
        _, rows = await ch.aquery(
            f"SELECT (SELECT count() FROM {schema.D}.{table} FINAL{where}),"
            f" (SELECT count() FROM {schema.D}.{table}{where})", params)
        out["tables"][table] = {"final": rows[0][0], "raw": rows[0][1]}
    _, revenue = await ch.aquery(
        f"SELECT currency, sumIf(amount_minor, status IN {schema.PAID}), sum(refunded_minor)"
        f" FROM {schema.D}.payments FINAL{where} GROUP BY currency ORDER BY currency", params)
    out["revenue"] = {
        cur: {"gross_minor": gross, "refunded_minor": refunded, "net_minor": gross - refunded}
        for cur, gross, refunded in revenue
    }
    return out
