"""Background delivery of callbacks and webhooks from the sandboxes to TrailPay."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

from connectors.providers.http import pooled_transport
from trailpay.logs import scrub

log = logging.getLogger(__name__)


@dataclass
class Delivery:
    url: str
    body: bytes
    status: int | None = None
    attempts: int = 0
    error: str | None = None


@dataclass
class CallbackSender:
    """POSTs after a delay, retrying a few times (as providers do) if the receiver fails."""

    delay_s: float = 0.5
    attempts: int = 3
    deliveries: list[Delivery] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _client: httpx.AsyncClient | None = None

    def schedule(self, url: str, body: bytes, headers: dict[str, str] | None = None,
                 delay_s: float | None = None, sign: Any = None) -> Delivery:
        """``sign(body) -> headers`` is called at send time (Stripe signs with a fresh t=)."""
        delivery = Delivery(url, body)
        self.deliveries.append(delivery)
        task = asyncio.get_running_loop().create_task(
            self._deliver(delivery, headers or {}, self.delay_s if delay_s is None else delay_s, sign))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return delivery

    async def _deliver(self, delivery: Delivery, headers: dict[str, str], delay: float,
                       sign: Any) -> None:
        await asyncio.sleep(delay)
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=10, transport=pooled_transport())
        for attempt in range(self.attempts):
            delivery.attempts += 1
            try:
                extra = sign(delivery.body) if sign else {}
                resp = await self._client.post(
                    delivery.url, content=delivery.body,
                    headers={"Content-Type": "application/json", **headers, **extra})
                delivery.status = resp.status_code
                if resp.status_code < 500:
                    return
            except httpx.HTTPError as exc:
                delivery.error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.5 * (attempt + 1))
        log.warning("callback to %s not delivered (%s)", scrub(delivery.url.split("?")[0]),
                    delivery.error or delivery.status)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._client is not None:
            await self._client.aclose()
