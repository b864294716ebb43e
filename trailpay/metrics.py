"""Prometheus metrics of the stream worker, and the small HTTP server that exposes them.

The stream worker and the PostgreSQL sink have no web server of their own. Each serves
``/metrics`` (Prometheus text format), ``/healthz`` (the process answers) and ``/readyz``
(ready to work) from a daemon thread on the port the supervisor gives it
(``--metrics-port``; ``trailpay up`` records every service's metrics URL in stack.json).

Series (beside the ingress's ``trailpay_http_*`` / ``trailpay_webhooks_total`` and the
sinks' ``trailpay_sink_*``):

- ``trailpay_payment_transitions_total{from_status,to_status,provider}``
- ``trailpay_dead_letters_total{source_topic,stage,error_type}``
- ``trailpay_sweep_actions_total{provider,action}`` (``query`` sent / ``expired`` /
  ``retry_window_ended``: a declined mobile-money attempt not retried in time)
- ``trailpay_unexpected_errors_total{stage,error_type}`` (bugs: exceptions that are no
  TrailPay error, dead-lettered under ``<stage>.bug``; see :mod:`trailpay.retry`)
- ``trailpay_suspicious_events_total{provider,reason}`` (provider events that do not match
  their payment, dead-lettered at stage ``suspicious``; see :mod:`streams.agents.payment_alerts`)
- ``trailpay_late_payments_total{provider,decision}`` (money confirmed after the payment was
  failed, expired or cancelled; ``decision`` keep / refund)
- ``trailpay_consumer_lag_records{group,topic,partition}`` (see :mod:`trailpay.lag`)
- ``trailpay_payments_past_deadline`` and ``trailpay_payments_overdue`` (gauges the deadline
  sweeper sets each tick; see :mod:`streams.agents.sweeper`)
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

log = logging.getLogger(__name__)

TRANSITIONS = Counter(
    "trailpay_payment_transitions_total",
    "Payment state changes emitted by the state machine, by from/to status and provider",
    ["from_status", "to_status", "provider"],
)
DEAD_LETTERS = Counter(
    "trailpay_dead_letters_total",
    "Dead letters written to deadletters.v1, by source topic, stage and error type",
    ["source_topic", "stage", "error_type"],
)
SWEEP_ACTIONS = Counter(
    "trailpay_sweep_actions_total",
    "Deadline sweeper actions: provider queries sent, payments expired",
    ["provider", "action"],
)
UNEXPECTED_ERRORS = Counter(
    "trailpay_unexpected_errors_total",
    "Exceptions that are no TrailPay error (bugs), dead-lettered under <stage>.bug, by consumer stage",
    ["stage", "error_type"],
)

SUSPICIOUS_EVENTS = Counter(
    "trailpay_suspicious_events_total",
    "Provider events not applied because they do not match the payment they name, by provider and reason",
    ["provider", "reason"],
)
LATE_PAYMENTS = Counter(
    "trailpay_late_payments_total",
    "Provider-confirmed successes after the payment was failed, expired or cancelled, by provider and "
    "late-payment decision",
    ["provider", "decision"],
)
DOUBLE_CHARGES = Counter(
    "trailpay_double_charges_total",
    "Payments paid a second time through another provider reference (a command executed twice, or an "
    "older prompt after a retry's), flagged for refund, by provider",
    ["provider"],
)
PAST_DEADLINE = Gauge(
    "trailpay_payments_past_deadline",
    "Open payments this worker owns whose deadline has passed, at the last deadline sweep",
)
OVERDUE = Gauge(
    "trailpay_payments_overdue",
    "Open payments this worker owns still open after the sweeper requested their expiry at an "
    "earlier sweep (stuck past their deadline and grace), at the last deadline sweep",
)


class _Handler(BaseHTTPRequestHandler):
    registry: CollectorRegistry = REGISTRY
    ready: Callable[[], bool] = staticmethod(lambda: True)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._send(200, b'{"status": "ok"}', "application/json")
        elif path == "/readyz":
            try:
                ok = bool(type(self).ready())
            except Exception:  # noqa: BLE001 - a failing check means not ready
                ok = False
            self._send(200 if ok else 503, json.dumps({"ready": ok}).encode(), "application/json")
        else:
            self._send(404, b'{"error": "not_found"}', "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return  # no access log: scrapes every few seconds are noise


def serve_metrics(port: int, host: str = "127.0.0.1", *, ready: Callable[[], bool] | None = None,
                  registry: CollectorRegistry = REGISTRY) -> ThreadingHTTPServer:
    """Serve /metrics, /healthz and /readyz on ``host:port`` from a daemon thread."""
    handler = type("MetricsHandler", (_Handler,), {
        "registry": registry,
        "ready": staticmethod(ready or (lambda: True)),
    })
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    log.info("metrics on http://%s:%d/metrics", host, server.server_address[1])
    return server
