"""``observe_pipeline``: Prometheus counters read off the topics the pipeline writes.

Counting where the records land, rather than inside each agent, keeps the agents free of
metrics code and counts every producer alike (state machine, sinks, dispatcher, ingress):

- payments.state.v1 -> ``trailpay_payment_transitions_total{from_status,to_status,provider}``
  (re-published replay copies carry the ``trailpay-replay`` header and are not counted);
- deadletters.v1 -> ``trailpay_dead_letters_total{source_topic,stage,error_type}``;
- provider.commands.v1 QUERY commands (``action="query"``) and state changes caused by the
  sweeper's expiry (``action="expired"``) -> ``trailpay_sweep_actions_total{provider,action}``.

Counters are at-least-once like everything else: a worker crash may count a few twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from streams.app import StreamContext
from trailpay import topics
from trailpay.metrics import DEAD_LETTERS, SWEEP_ACTIONS, TRANSITIONS

log = logging.getLogger(__name__)

BATCH_SIZE = 1000
BATCH_WITHIN_S = 0.2
WATCHED = (topics.PAYMENT_STATE, topics.DEAD_LETTERS, topics.PROVIDER_COMMANDS)


def _headers(message: Any) -> Iterable[tuple[str, Any]]:
    headers = getattr(message, "headers", None) or ()
    return headers.items() if isinstance(headers, dict) else headers


def is_replay(message: Any) -> bool:
    return any(name == topics.REPLAY_HEADER for name, _ in _headers(message))


def count(topic: str, value: bytes | None, replayed: bool = False) -> None:
    """Count one record of ``topic`` (undecodable records are the consumers' business)."""
    if not value:
        return
    if topic == topics.PROVIDER_COMMANDS and b'"query"' not in value:
        return
    try:
        data = json.loads(value)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
        return
    if not isinstance(data, dict):
        return
    if topic == topics.PAYMENT_STATE:
        if not replayed:
            provider = str((data.get("payment") or {}).get("provider", ""))
            TRANSITIONS.labels(data.get("from_status") or "none", str(data.get("to_status")),
                               provider).inc()
            if data.get("cause") == "expire":
                SWEEP_ACTIONS.labels(provider, "expired").inc()
            elif data.get("cause") == "retry_window":  # no retry came after a declined attempt
                SWEEP_ACTIONS.labels(provider, "retry_window_ended").inc()
    elif topic == topics.DEAD_LETTERS:
        DEAD_LETTERS.labels(str(data.get("source_topic")), str(data.get("stage")),
                            str(data.get("error_type"))).inc()
    elif topic == topics.PROVIDER_COMMANDS and data.get("kind") == "query":
        SWEEP_ACTIONS.labels(str(data.get("provider")), "query").inc()


def register(ctx: StreamContext) -> None:
    source = ctx.app.topic(*WATCHED, key_type=bytes, value_type=bytes)

    @ctx.app.agent(source, name="observe_pipeline")
    async def observe_pipeline(stream: Any) -> None:
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_S):
            for event in events:
                message = event.message
                try:
                    count(message.topic, message.value, is_replay(message))
                except Exception as exc:  # noqa: BLE001 - metrics only; the consumers dead-letter it
                    log.warning("observe: %s[%s]@%s not counted: %s: %s", message.topic,
                                message.partition, message.offset, type(exc).__name__,
                                str(exc)[:200])
