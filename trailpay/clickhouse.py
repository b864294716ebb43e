"""ClickHouse access through clickhouse-connect: chDB in the embedded default, a server
over HTTP in production. chDB has no async client and one process owns a path, so every
call goes through one worker thread of the owning process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import clickhouse_connect

from trailpay.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


class ClickHouse:
    """A clickhouse-connect client pinned to one thread."""

    def __init__(self, settings: Settings) -> None:
        self.dsn = settings.clickhouse_dsn
        if self.dsn.startswith("chdb://"):
            settings.chdb_path.mkdir(parents=True, exist_ok=True)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="clickhouse")
        self._client: Any = self._pool.submit(self._connect).result()

    def _connect(self) -> Any:
        return clickhouse_connect.get_client(dsn=self.dsn)

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb://")

    def call(self, fn: Callable[[Any], T]) -> T:
        return self._pool.submit(fn, self._client).result()

    async def acall(self, fn: Callable[[Any], T]) -> T:
        return await asyncio.wrap_future(self._pool.submit(fn, self._client))

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        return self.call(lambda c: c.command(sql, parameters=parameters))

    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return self.call(lambda c: list(c.query(sql, parameters=parameters).result_rows))

    async def aquery(
        self, sql: str, parameters: dict[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        def run(c: Any) -> tuple[list[str], list[tuple[Any, ...]]]:
            result = c.query(sql, parameters=parameters)
            return list(result.column_names), list(result.result_rows)

        return await self.acall(run)

    async def ainsert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        await self.acall(lambda c: c.insert(table, rows, column_names=list(columns)))

    def ping(self) -> bool:
        try:
            return self.query_rows("SELECT 1") == [(1,)]
        except Exception:
            log.warning("ClickHouse ping failed", exc_info=True)
            return False

    def close(self) -> None:
        try:
            self.call(lambda c: c.close())
        finally:
            self._pool.shutdown(wait=True)
