"""A booking platform's webhook receiver for the tests: an aiohttp server on a free port
that records every request and answers as scripted (a list of statuses per path, then 200)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from controlplane.stack.processes import free_port


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    answered: int


@dataclass
class Receiver:
    port: int
    received: list[Received] = field(default_factory=list)
    #: event id (``TrailPay-Event-Id``) or path -> statuses to answer, one per request,
    #: before answering 200; a negative number is a hang of that many seconds (a timeout
    #: for the sender), then 200.
    script: dict[str, list[int]] = field(default_factory=dict)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        event_id = request.headers.get("TrailPay-Event-Id", "")
        planned = self.script.get(event_id) or self.script.get(request.path) or []
        status = planned.pop(0) if planned else 200
        if status < 0:
            await asyncio.sleep(-status)
            status = 200
        self.received.append(Received(request.path, dict(request.headers), body, time.time(), status))
        return web.Response(status=status, text="ok" if status < 300 else "not now")


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    recv = Receiver(free_port())
    app = web.Application()
    app.router.add_post("/{tail:.*}", recv.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", recv.port)
    await site.start()
    try:
        yield recv
    finally:
        await runner.cleanup()
