"""Builds the Faust app for one worker process.

Configured to run on tansu (the embedded broker) and Apache Kafka alike: short session
timeout and heartbeat (tansu makes every rebalance wait for the session timeout), raw
bytes on every topic (our codec validates and dead-letters; a Faust codec error would drop
the record silently), no transactions, no ``auto_offset_reset=latest``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust

from trailpay import topics
from trailpay.kafka import bootstrap
from trailpay.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamContext:
    """What every agent module's ``register`` gets: the app, settings and topic handles.
    Whatever else an agent needs (another agent's processor, gateways, a mail sender) is
    an argument of its ``register``, passed by the worker (:func:`streams.worker.wire`)."""

    app: faust.App
    settings: Settings
    topics: dict[str, faust.TopicT]

    def topic(self, name: str) -> faust.TopicT:
        return self.topics[name]


def create_app(settings: Settings, *, app_id: str | None = None, **overrides: Any) -> faust.App:
    faust_dir = settings.data_path / "faust"
    conf: dict[str, Any] = {
        "broker": f"kafka://{bootstrap(settings)}",
        "store": "memory://",
        # Faust makes "<app id>-data" in the working directory unless told: keep it with the
        # rest of the stack's state (braces are Faust's own formatting, so they are escaped).
        "datadir": str(faust_dir).replace("{", "{{").replace("}", "}}") + "/{conf.name}",
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "topic_allow_declare": True,
        "broker_session_timeout": 6.0,
        "broker_heartbeat_interval": 1.0,
        "broker_request_timeout": 30.0,
        "broker_commit_every": 1000,
        "broker_commit_interval": 1.0,
        "broker_max_poll_records": 1000,
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "producer_linger": 0.01,
        # Faust's default is 1,200 s: one produce request the broker never answers would hold
        # every batch behind it (and a revoke's producer flush) for 20 minutes. A failed
        # send stops the batch before its commit, and the restart re-processes it.
        "producer_request_timeout": 30.0,
        "producer_max_batch_size": 1024 * 1024,
        "stream_buffer_maxsize": 4096,
        "stream_wait_empty": False,
        "web_enabled": False,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "table_standby_replicas": 0,
        "processing_guarantee": "at_least_once",
    }
    conf.update(overrides)
    return App(app_id or settings.worker_id, **conf)


class App(faust.App):
    """Faust's app, making the parents of its data directory at start (Faust makes only the
    last level, and the stack's data directory may be new)."""

    async def on_first_start(self) -> None:
        Path(self.conf.datadir).parent.mkdir(parents=True, exist_ok=True)
        await super().on_first_start()


def declare_topics(app: faust.App) -> dict[str, faust.TopicT]:
    """Faust handles for every registry topic (pre-created by `trailpay up` / `init`)."""
    return {
        spec.name: app.topic(spec.name, key_type=bytes, value_type=bytes, internal=False)
        for spec in topics.TOPICS
    }


def build(settings: Settings, **overrides: Any) -> StreamContext:
    """A new Faust app (``overrides``: Faust settings) with a handle for every topic."""
    app = create_app(settings, **overrides)
    return StreamContext(app=app, settings=settings, topics=declare_topics(app))
