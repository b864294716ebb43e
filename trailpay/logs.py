"""Logging set-up: plain or JSON lines, with every message scrubbed of personal data."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from trailpay.domain.masking import scrub


class ScrubFilter(logging.Filter):
    """Renders the message once, masks it, and freezes it on the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken log call must not break the caller
            message = str(record.msg)
        record.msg = scrub(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        if record.exc_text:
            payload["exc"] = record.exc_text
        return json.dumps(payload, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "plain", service: str = "trailpay") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ScrubFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s [{service}] %(name)s: %(message)s")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("aiokafka", "kafka", "httpx", "httpcore", "uvicorn.access", "stripe"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
