"""Prometheus metrics: requests by route and status, webhooks by provider and outcome.

Each app has its own registry (several apps may live in one test process). The middleware
is plain ASGI (no per-request task or body copy) to keep the webhook path fast.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "trailpay_http_requests_total", "HTTP requests by route template, method and status",
            ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram(
            "trailpay_http_request_seconds", "HTTP request latency by route template",
            ["route"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.webhooks = Counter(
            "trailpay_webhooks_total",
            "Webhooks and callbacks by provider, verification result and outcome",
            ["provider", "verification", "outcome"], registry=self.registry)
        self.published = Counter(
            "trailpay_ingress_published_total", "Records produced by the ingress, by topic",
            ["topic"], registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            self.metrics.requests.labels(template, scope["method"], str(status)).inc()
            self.metrics.latency.labels(template).observe(time.perf_counter() - start)
