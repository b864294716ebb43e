"""Test hooks shared by every sandbox: count requests and inject failures.

``POST /_sandbox/faults {"provider": "mpesa", "mode": "error"|"timeout", "count": N,
"status": 500, "delay_s": 5}`` makes the next N requests under ``/mpesa`` answer ``status``
(error) or hang ``delay_s`` before a 504 (timeout, longer than the client's timeout).
Optional: ``"path": "/stkpush/"`` counts only requests whose path contains it (the token
requests in between pass), and ``"body": {...}`` is the error answered instead of the
generic one (a provider's own error, e.g. Daraja's ``500.001.1001`` on an STK Push).

``"mode": "outcome", "outcome": "3"`` does not answer for the sandbox: the next N matching
requests go through, and a mobile-money sandbox that reads it (Airtel's collection, Daraja's
STK Push) settles
them by the rule of that last digit instead of the phone's. So one customer's first push can
go unanswered and the retry on the same phone pay. The Daraja sandbox's B2C reads it too
(``"path": "/b2c/"``): the next refund settles by that digit's payout rule (mpesa_payouts.py).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

PROVIDERS = ("stripe", "mpesa", "airtel")
MODES = ("error", "timeout", "outcome")
#: Where the middleware leaves an ``outcome`` fault's digit for the sandbox to read.
OUTCOME_STATE = "sandbox_outcome"
GENERIC_ERROR: dict[str, Any] = {"error": {"type": "api_error", "message": "sandbox injected failure"}}


@dataclass
class Fault:
    mode: str
    remaining: int
    status: int = 500
    delay_s: float = 5.0
    path: str | None = None
    body: dict[str, Any] | None = None
    outcome: str | None = None

    @classmethod
    def from_request(cls, request: dict[str, Any]) -> Fault:
        """The fault a ``POST /_sandbox/faults`` body asks for (ValueError: a bad one)."""
        mode = str(request.get("mode", "error"))
        if str(request.get("provider", "")) not in PROVIDERS or mode not in MODES:
            raise ValueError(f"provider must be one of {PROVIDERS}, mode error|timeout|outcome")
        body = request.get("body")
        if body is not None and not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        path = request.get("path")
        outcome = request.get("outcome")
        if mode == "outcome" and not (isinstance(outcome, str) and len(outcome) == 1 and outcome.isdigit()):
            raise ValueError("an outcome fault needs \"outcome\": one last digit, \"0\" to \"9\"")
        return cls(mode, int(request.get("count", 1)), int(request.get("status", 500)),
                   float(request.get("delay_s", 5.0)), str(path) if path else None, body,
                   outcome if mode == "outcome" else None)

    def applies_to(self, path: str) -> bool:
        return self.remaining > 0 and (self.path is None or self.path in path)


class FaultBook:
    def __init__(self) -> None:
        self.faults: dict[str, Fault] = {}
        self.requests: Counter[str] = Counter()

    def reset(self) -> None:
        self.faults.clear()
        self.requests.clear()

    def take(self, provider: str, path: str = "") -> Fault | None:
        fault = self.faults.get(provider)
        if fault is None or not fault.applies_to(path):
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
        fault = self.book.take(provider, request.url.path)
        if fault is not None and fault.outcome is not None:
            request.scope.setdefault("state", {})[OUTCOME_STATE] = fault.outcome
            return await call_next(request)
        if fault is not None:
            if fault.mode == "timeout":
                await asyncio.sleep(fault.delay_s)
                return JSONResponse({"error": "sandbox timeout"}, status_code=504)
            return JSONResponse(fault.body or GENERIC_ERROR, status_code=fault.status)
        return await call_next(request)
