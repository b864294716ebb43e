"""``DIR/stack.json``: how tools and tests find a running stack."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from trailpay.domain.errors import ConfigurationError
from trailpay.settings import Settings, load_settings

STACK_FILE = "stack.json"


class BrokerInfo(BaseModel):
    """What the embedded broker is: ``apache-kafka`` (records kept) or ``tansu`` (in memory)."""

    kind: Literal["apache-kafka", "tansu"]
    version: str
    persistent: bool
    #: Nodes of the broker: 1, or 3 for the embedded KRaft cluster (absent in older files: 1).
    nodes: int = 1

    def summary(self) -> str:
        """One line for people: ``apache-kafka 3.9.2, 1 node, persistent``."""
        nodes = f"{self.nodes} node{'s' if self.nodes != 1 else ''}"
        kept = "persistent" if self.persistent else "in memory"
        return f"{self.kind} {self.version}, {nodes}, {kept}"


class StackInfo(BaseModel):
    data_dir: str
    started_at: datetime
    supervisor_pid: int
    kafka_bootstrap: str
    database_url: str
    clickhouse_dsn: str
    api_url: str | None = None
    dashboard_url: str | None = None
    sandbox_url: str | None = None
    partitions: int
    processes: dict[str, int | None] = Field(default_factory=dict)
    broker: BrokerInfo | None = None
    #: Same as ``broker.persistent`` (kept for readers of older stack.json files).
    broker_persistent: bool = False
    #: Prometheus endpoint of each service (``trailpay up`` picks the ports).
    metrics_urls: dict[str, str] = Field(default_factory=dict)

    def write(self, data_dir: Path) -> Path:
        """Written readable by its owner only: the database URL carries a password."""
        path = data_dir / STACK_FILE
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self.model_dump_json(indent=2))
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, data_dir: Path) -> StackInfo:
        path = data_dir / STACK_FILE
        try:
            return cls.model_validate_json(path.read_text())
        except FileNotFoundError:
            raise ConfigurationError(
                f"no running stack found ({path} is missing); start one with "
                f"`trailpay up --data-dir {data_dir}` or set the TRAILPAY_* variables"
            ) from None

    def settings_overrides(self) -> dict[str, Any]:
        overrides: dict[str, Any] = {
            "kafka_bootstrap": self.kafka_bootstrap,
            "database_url": self.database_url,
            "partitions": self.partitions,
        }
        if self.broker is not None:
            overrides["broker_kind"] = self.broker.kind
        if self.clickhouse_dsn.startswith("http"):
            overrides["clickhouse_url"] = self.clickhouse_dsn
        for key, url in (("api", self.api_url), ("dashboard", self.dashboard_url)):
            if url:
                overrides[f"{key}_port"] = int(url.rsplit(":", 1)[1].split("/")[0])
        if self.sandbox_url:
            overrides["sandbox_port"] = int(self.sandbox_url.rsplit(":", 1)[1].split("/")[0])
        return overrides


def stack_settings(data_dir: Path | None = None) -> Settings:
    """Settings for a command talking to a running stack.

    The ``TRAILPAY_*`` variables win; what they leave unset comes from ``DIR/stack.json``.
    """
    base = load_settings(**({"data_dir": data_dir} if data_dir else {}))
    path = base.data_path / STACK_FILE
    if base.kafka_bootstrap and base.database_url:
        return base
    if not path.exists():
        raise ConfigurationError(
            f"no running stack at {base.data_path} and TRAILPAY_KAFKA_BOOTSTRAP / "
            "TRAILPAY_DATABASE_URL are not set; run `trailpay up` first or set them"
        )
    info = StackInfo.read(base.data_path)
    overrides = {
        key: value
        for key, value in info.settings_overrides().items()
        if key not in base.model_fields_set
    }
    return load_settings(**overrides, data_dir=base.data_dir)


def read_json(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))
