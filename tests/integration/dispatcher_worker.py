"""A Faust worker running only the dispatcher (``python -m tests.integration.dispatcher_worker``).

Used by test_dispatcher.py with its own broker, app id and sandbox; settings from TRAILPAY_*.
"""

from __future__ import annotations

import faust

from streams.app import build
from streams.worker import DISPATCHER, wire
from trailpay.logs import setup_logging
from trailpay.settings import load_settings

if __name__ == "__main__":
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format, "dispatcher-test")
    parts = wire(build(settings), [DISPATCHER])
    worker = faust.Worker(parts.app, loglevel="INFO", override_logging=False, redirect_stdouts=False,
                          quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()
