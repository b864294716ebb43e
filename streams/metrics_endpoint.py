"""The stream worker's metrics server: counters, consumer lag, health and readiness."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from trailpay.lag import ConsumerHealth, LagCollector
from trailpay.metrics import serve_metrics
from trailpay.settings import Settings

_lag: LagCollector | None = None


def start(settings: Settings, app: Any, port: int, host: str = "127.0.0.1") -> None:
    """Serve the worker's metrics; ready once the Faust app runs and is not rebalancing."""
    global _lag
    if _lag is None:
        _lag = LagCollector(settings)
        REGISTRY.register(_lag)
        _lag.start()

    workers = ["worker", *(f"worker-{i}" for i in range(2, settings.workers + 1))]
    health = ConsumerHealth(settings, workers, _lag, groups=(settings.worker_id,))

    def ready() -> bool:
        """Running, not rebalancing, not crash-looping and not lagging (issue 16)."""
        return bool(getattr(app, "started", False)) and not app.rebalancing and health.ready()

    serve_metrics(port, host, ready=ready)
