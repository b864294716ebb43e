"""Each provider client against its sandbox over real HTTP, with callbacks received locally:
the harness the ``test_provider_clients_*`` modules share.

The sandbox app and a small callback receiver run in-process under uvicorn on free ports.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from connectors.providers.http import RetryPolicy
from connectors.sandboxes.app import create_app
from controlplane.stack.processes import free_port
from trailpay.domain.events import (
    Money,
    Provider,
    ProviderCommand,
    ProviderCommandKind,
    RawWebhook,
    stable_id,
)
from trailpay.settings import Settings, load_settings

__all__ = ["FAST", "KES", "USD", "Env", "Receiver", "command", "free_port", "provider_env", "serve",
           "unique"]

FAST = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05)


async def serve(app: Any, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    task = asyncio.get_running_loop().create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    return server, task


@dataclass
class Receiver:
    """Records every callback/webhook TrailPay would receive."""

    received: list[tuple[str, bytes, dict[str, str], dict[str, str]]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/{path:path}")
        async def receive(path: str, request: Request) -> JSONResponse:
            self.received.append(("/" + path, await request.body(), dict(request.headers),
                                  dict(request.query_params)))
            self.arrived.set()
            return JSONResponse({"ok": True})

        return app

    def raw(self, provider: Provider, item: tuple[str, bytes, dict[str, str], dict[str, str]]) -> RawWebhook:
        now = datetime.now(UTC)
        return RawWebhook(event_id="r", occurred_at=now, provider=provider, body=item[1],
                          headers=item[2], query=item[3], received_at=now)

    async def wait_for(self, predicate: Any, timeout: float = 5.0) -> list[Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            hits = [r for r in self.received if predicate(r)]
            if hits:
                return hits
            if asyncio.get_running_loop().time() > deadline:
                return []
            await asyncio.sleep(0.05)


@dataclass
class Env:
    settings: Settings
    sandbox_url: str
    receiver: Receiver
    http: httpx.AsyncClient

    async def fault(self, provider: str, mode: str = "error", count: int = 1, **extra: Any) -> None:
        r = await self.http.post(f"{self.sandbox_url}/_sandbox/faults",
                                 json={"provider": provider, "mode": mode, "count": count, **extra})
        assert r.status_code == 200

    async def requests(self) -> dict[str, int]:
        return (await self.http.get(f"{self.sandbox_url}/_sandbox/requests")).json()


@contextlib.asynccontextmanager
async def provider_env() -> AsyncIterator[Env]:
    """The sandboxes and a callback receiver on free ports, and settings pointing at them
    (each test module opens one through the module-scoped ``env`` fixture in conftest.py)."""
    receiver = Receiver()
    rport, sport = free_port(), free_port()
    sandbox = f"http://127.0.0.1:{sport}"
    settings = load_settings(
        public_base_url=f"http://127.0.0.1:{rport}", sandbox_port=sport,
        stripe_api_base=f"{sandbox}/stripe", mpesa_base_url=f"{sandbox}/mpesa",
        airtel_base_url=f"{sandbox}/airtel", payment_timeout_s=1,
        stripe_webhook_secrets="whsec_current,whsec_previous",
        airtel_callback_secret=SecretStr("airtel-hash-secret"),
    )
    servers = [await serve(receiver.app(), rport),
               await serve(create_app(settings, callback_delay_s=0.2, mpesa_token_ttl_s=3), sport)]
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            yield Env(settings, sandbox, receiver, http)
    finally:
        for server, task in servers:
            server.should_exit = True
            await task


def command(kind: ProviderCommandKind, provider: Provider, ref: str, amount: Money, **kw: Any) -> ProviderCommand:
    return ProviderCommand(event_id=stable_id(ref, kind, kw.get("refund_id")), occurred_at=datetime.now(UTC),
                           kind=kind, reference=ref, provider=provider, amount=amount, user_id="u-1", **kw)


def unique(prefix: str = "TP") -> str:
    return prefix + stable_id(datetime.now(UTC).isoformat(), id(object()))[:20].upper()


KES = Money(amount=10_000, currency="KES")  # 100 shillings
USD = Money(amount=12_500, currency="USD")
