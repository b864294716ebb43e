"""Requests/s of one httpx client against a local server, by requests in flight: httpx's
own pool (httpcore) against the same client on aiohttp's pool (httpx-aiohttp), and plain
aiohttp as the floor. Client and server share one process and one core.

    python benchmarks/results/profiles/http_pool_bench.py
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import httpx
from aiohttp import web
from httpx_aiohttp import AiohttpTransport

REQUESTS = 3000


async def rate(call: object, in_flight: int) -> float:
    gate = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with gate:
            await call()  # type: ignore[operator]

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(REQUESTS)))
    return REQUESTS / (time.perf_counter() - started)


async def main() -> None:
    app = web.Application()

    async def answer(_: web.Request) -> web.Response:
        return web.json_response({"ok": 1})

    app.router.add_post("/x", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    limits = httpx.Limits(max_connections=64)
    print(f"{'in flight':>9} {'httpx (httpcore)':>17} {'httpx on aiohttp':>17} {'aiohttp':>9}")
    for in_flight in (1, 8, 32):
        async with httpx.AsyncClient(base_url=base, limits=limits) as plain, \
                httpx.AsyncClient(base_url=base, transport=AiohttpTransport(limits=limits)) as pooled, \
                aiohttp.ClientSession(base) as session:

            async def via_plain() -> None:
                (await plain.post("/x", json={"a": 1})).raise_for_status()

            async def via_pooled() -> None:
                (await pooled.post("/x", json={"a": 1})).raise_for_status()

            async def via_aiohttp() -> None:
                async with session.post("/x", json={"a": 1}) as resp:
                    await resp.read()

            print(f"{in_flight:>9} {await rate(via_plain, in_flight):>17,.0f} "
                  f"{await rate(via_pooled, in_flight):>17,.0f} {await rate(via_aiohttp, in_flight):>9,.0f}")
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
