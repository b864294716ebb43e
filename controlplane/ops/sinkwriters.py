"""The sinks a replay "into the sinks" writes through: the same classes the sink services run.

- PostgreSQL: :class:`PostgresSink`, in this process (every write is an idempotent upsert
  or insert-if-absent, so writing beside the running sink service is safe);
- ClickHouse server (``TRAILPAY_CLICKHOUSE_URL``): :class:`ClickHouseSink`, in this process;
- embedded chDB: only the analytics process may open it, so :class:`RemoteClickHouseSink`
  hands each batch to that process (``POST /api/ops/replay/clickhouse``), which writes it
  through :class:`ClickHouseSink` on its own connection.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx

from controlplane.ops.records import ReplayError
from sinks.clickhouse.sink import CONSUMED, ClickHouseSink
from sinks.contract import Sink, SinkBackpressure, SinkRecord
from sinks.postgres.sink import PostgresSink
from trailpay.clickhouse import ClickHouse
from trailpay.domain.errors import PermanentError
from trailpay.settings import Settings

SINK_NAMES = ("postgres", "clickhouse")


class RemoteClickHouseSink(Sink):
    """Buffers records and writes them through the analytics process's ClickHouse sink."""

    name = "sink-clickhouse"

    def __init__(self, analytics_url: str, *, timeout_s: float = 120.0,
                 service_token: str | None = None) -> None:
        self.topics = CONSUMED
        self.url = analytics_url.rstrip("/")
        # the analytics process takes writes from an admin or its service token only
        headers = {"Authorization": f"Token {service_token}"} if service_token else {}
        self._client = httpx.AsyncClient(timeout=timeout_s, headers=headers)
        self._buffer: list[SinkRecord] = []

    async def setup(self) -> None:
        try:
            resp = await self._client.get(f"{self.url}/healthz")
        except httpx.HTTPError as exc:
            raise ReplayError(
                f"the analytics process (which owns chDB) does not answer at {self.url} ({exc}); "
                "start the stack with `trailpay up`, pass --analytics-url, or replay with "
                "--sinks postgres") from exc
        if resp.status_code != 200:
            raise ReplayError(f"the analytics process at {self.url} is not healthy "
                              f"(HTTP {resp.status_code}); see `trailpay status`")

    def add(self, record: SinkRecord) -> None:
        record.contract_value(record.topic)  # the sink's own check, so refusals are local
        self._buffer.append(record)

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def discard(self) -> None:
        self._buffer = []

    async def flush(self) -> None:
        if not self._buffer:
            return
        body = {"records": [_wire(r) for r in self._buffer]}
        try:
            resp = await self._client.post(f"{self.url}/api/ops/replay/clickhouse", json=body)
        except httpx.HTTPError as exc:
            raise SinkBackpressure(f"analytics process unreachable: {exc}") from exc
        if resp.status_code == 503:
            raise SinkBackpressure(f"ClickHouse busy: {resp.text[:300]}")
        if resp.status_code == 404:
            raise ReplayError("the analytics process does not take replays (ClickHouse is a server "
                              "there); set TRAILPAY_CLICKHOUSE_URL so the replay writes directly")
        if resp.status_code != 200:
            raise PermanentError(f"the analytics process refused the batch: HTTP {resp.status_code} "
                                 f"{resp.text[:300]}")
        refused = resp.json().get("refused") or []
        if refused:
            raise PermanentError(f"ClickHouse refused {len(refused)} records: {refused[0]['error']}")
        self._buffer = []

    async def close(self) -> None:
        await self._client.aclose()


def _wire(record: SinkRecord) -> dict[str, Any]:
    return {
        "topic": record.topic, "partition": record.partition, "offset": record.offset,
        "key": None if record.key is None else base64.b64encode(record.key).decode(),
        "value": base64.b64encode(record.value or b"").decode(), "timestamp_ms": record.timestamp_ms,
    }


class _OwnedClickHouseSink(Sink):
    """:class:`ClickHouseSink` plus the connection it owns (closed with it)."""

    name = "sink-clickhouse"

    def __init__(self, settings: Settings) -> None:
        self.topics = CONSUMED
        self.ch = ClickHouse(settings)
        self.inner = ClickHouseSink(self.ch)

    async def setup(self) -> None:
        await self.inner.setup()

    def add(self, record: SinkRecord) -> None:
        self.inner.add(record)

    async def flush(self) -> None:
        await self.inner.flush()

    def discard(self) -> None:
        self.inner.discard()

    @property
    def pending(self) -> int:
        return self.inner.pending

    async def close(self) -> None:
        await self.inner.close()
        self.ch.close()


def open_sinks(settings: Settings, names: tuple[str, ...], analytics_url: str | None) -> list[Sink]:
    """The sinks named (``postgres``, ``clickhouse``), not yet set up."""
    sinks: list[Sink] = []
    for name in names:
        if name == "postgres":
            sinks.append(PostgresSink(settings))
        elif name == "clickhouse":
            if settings.clickhouse_url:
                sinks.append(_OwnedClickHouseSink(settings))
            else:
                url = analytics_url or f"http://127.0.0.1:{settings.dashboard_port}"
                token = settings.analytics_service_token
                sinks.append(RemoteClickHouseSink(
                    url, service_token=token.get_secret_value() if token is not None else None))
        else:
            raise ReplayError(f"unknown sink {name!r}; choose from {', '.join(SINK_NAMES)}")
    return sinks
