"""Test hooks shared by every sandbox: count requests and inject failures.

``POST /_sandbox/faults {"provider": "mpesa", "mode": "error"|"timeout", "count": N,
"status": 500, "delay_s": 5}`` makes the next N requests under ``/mpesa`` answer ``status``
(error) or hang ``delay_s`` before a 504 (timeout, longer than the client's timeout).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

PROVIDERS = ("stripe", "mpesa", "airtel")


@dataclass
class Fault:
    mode: str
    remaining: int
    status: int = 500
    delay_s: float = 5.0


class FaultBook:
    def __init__(self) -> None:
        self.faults: dict[str, Fault] = {}
        self.requests: Counter[str] = Counter()

    def reset(self) -> None:
        self.faults.clear()
        self.requests.clear()

    def take(self, provider: str) -> Fault | None:
        fault = self.faults.get(provider)
        if fault is None or fault.remaining <= 0:
            return None
        fault.remaining -= 1
        return fault


def provider_of(path: str) -> str | None:
    first = path.lstrip("/").split("/", 1)[0]
    return first if first in PROVIDERS else None


class FaultMiddleware(BaseHTTPMiddleware):
    def __init__(self, app: object, book: FaultBook) -> None:
        super().__init__(app)  # type: ignore[arg-type]
        self.book = book

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        provider = provider_of(request.url.path)
        if provider is None:
            return await call_next(request)
        self.book.requests[provider] += 1
        self.book.requests[f"{request.method} {request.url.path}"] += 1
        fault = self.book.take(provider)
        if fault is not None:
            if fault.mode == "timeout":
                await asyncio.sleep(fault.delay_s)
                return JSONResponse({"error": "sandbox timeout"}, status_code=504)
            return JSONResponse({"error": {"type": "api_error", "message": "sandbox injected failure"}},
                                status_code=fault.status)
        return await call_next(request)
