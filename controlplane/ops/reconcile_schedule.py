"""Reconcile on a schedule inside ``trailpay up`` (``TRAILPAY_RECONCILE_INTERVAL_S``, 0 = off).

The supervisor is the one long-running process of the stack that is neither on the payment
path nor scaled out (two workers would reconcile twice), so the schedule lives there: a
daemon thread that every interval checks the last ``TRAILPAY_RECONCILE_WINDOW_S`` (a day by
default) exactly as ``trailpay reconcile`` does, without ``--fix`` (fixing is a decision for
a person, or for the sweeper's own queries). Each mismatch is logged as a warning; the
metrics are served on a port of their own, recorded in stack.json as ``reconcile``:

- ``trailpay_reconcile_mismatches{provider,kind}``: mismatches found by the last run;
- ``trailpay_reconcile_runs_total{outcome}``: runs that found ``none``, ``mismatches``, or
  ended in an ``error``;
- ``trailpay_reconcile_last_run_timestamp_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from datetime import timedelta

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client import Counter as MetricCounter
from sqlalchemy.ext.asyncio import create_async_engine

from connectors.providers.lookup import ProviderLookup
from controlplane.ops.reconcile_run import Result, Window, run
from trailpay.metrics import serve_metrics
from trailpay.settings import Settings

log = logging.getLogger(__name__)


class ReconcileMetrics:
    """The schedule's series, on a registry of their own (the supervisor serves nothing else)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.mismatches = Gauge("trailpay_reconcile_mismatches",
                                "Payments on which TrailPay and the provider disagreed at the last "
                                "scheduled reconcile, by provider and kind",
                                ["provider", "kind"], registry=self.registry)
        self.runs = MetricCounter("trailpay_reconcile_runs_total",
                                  "Scheduled reconcile runs by outcome (none, mismatches, error)",
                                  ["outcome"], registry=self.registry)
        self.last_run = Gauge("trailpay_reconcile_last_run_timestamp_seconds",
                              "When the last scheduled reconcile ended", registry=self.registry)

    def record(self, result: Result | None) -> None:
        self.last_run.set(time.time())
        if result is None:
            self.runs.labels("error").inc()
            return
        self.runs.labels("mismatches" if result.mismatches else "none").inc()
        self.mismatches.clear()
        for (provider, kind), n in Counter(
                (m.recorded.provider.value, m.kind) for m in result.mismatches).items():
            self.mismatches.labels(provider, kind).set(n)


async def reconcile_once(settings: Settings) -> Result:
    """One check of the last window, as ``trailpay reconcile`` (no fix)."""
    engine = create_async_engine(settings.sqlalchemy_async_url(), pool_size=2,
                                 connect_args={"connect_timeout": 5})
    lookup = ProviderLookup.from_settings(settings)
    window = Window.last(timedelta(seconds=settings.reconcile_window_s),
                         min_age=timedelta(seconds=settings.reconcile_min_age_s))
    try:
        return await run(settings, engine, lookup, window, concurrency=settings.reconcile_concurrency)
    finally:
        await lookup.aclose()
        await engine.dispose()


def log_result(result: Result) -> None:
    for m in result.mismatches:
        r, a = m.recorded, m.answer
        log.warning("reconcile mismatch %s (%s): TrailPay says %s, provider says %s (%s), "
                    "amount asked %s, at provider %s", r.reference, r.provider.value, r.status.value,
                    a.says, m.kind, r.amount, a.amount or "-")
    for payment, error in result.errors:
        log.warning("reconcile could not check %s (%s): %s", payment.reference,
                    payment.provider.value, error)
    (log.warning if result.mismatches else log.info)("reconcile: %s", result.summary())


class ReconcileSchedule:
    """A daemon thread running :func:`reconcile_once` every ``reconcile_interval_s``."""

    def __init__(self, settings: Settings, metrics_port: int = 0) -> None:
        self.settings = settings
        self.metrics = ReconcileMetrics()
        self._port = metrics_port
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reconcile-schedule", daemon=True)
        self.metrics_url: str | None = None
        self.last: Result | None = None

    def start(self) -> ReconcileSchedule:
        server = serve_metrics(self._port, registry=self.metrics.registry)
        self.metrics_url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        self._server = server
        self._thread.start()
        log.info("reconcile every %ss over the last %ss; metrics on %s",
                 self.settings.reconcile_interval_s, self.settings.reconcile_window_s, self.metrics_url)
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.reconcile_interval_s):
            try:
                result: Result | None = asyncio.run(reconcile_once(self.settings))
            except Exception:
                log.warning("scheduled reconcile failed", exc_info=True)
                result = None
            if result is not None:
                self.last = result
                log_result(result)
            self.metrics.record(result)

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._thread.join(timeout=5)  # a run in progress ends with the process (daemon thread)


def start_schedule(settings: Settings) -> ReconcileSchedule | None:
    """The running schedule, or None when ``TRAILPAY_RECONCILE_INTERVAL_S`` is 0."""
    if settings.reconcile_interval_s <= 0:
        return None
    return ReconcileSchedule(settings).start()
