"""A table recovery that receives nothing is restarted (issue 14, streams.recovery_watchdog).

Seen in the scale-out test next to a load job: a worker's recovery received no changelog
record for two and a half minutes, until the next rebalance; its payments waited all along. Here
a test fault (tests/support/hang_recovery/sitecustomize.py) holds the first changelog record
the restarted worker's consumer hands over, so Faust's drain loop waits on it as it did then.
Without the watchdog (``TRAILPAY_REBALANCE_GUARD=rewind,head,acks``) the payment made meanwhile
is never processed; with it the worker asks the group to rebalance after 15 s, the recovery
starts again and reads the changelogs, and the payment succeeds.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from tests.integration.ingressutil import make_user
from tests.integration.opsutil import create_mobile, wait_rows
from tests.stackutil import kafka_missing, keep_logs, stack_dir, start_stack, stop_stack
from tests.support.waits import wait_for_sync

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(kafka_missing() is not None, reason=kafka_missing() or "")]

FAULT = Path(__file__).resolve().parent.parent / "support" / "hang_recovery"
HELD = "test fault: changelog record"
ASKED = "table recovery received nothing for"


def _worker_log(data_dir: Path) -> str:
    path = data_dir / "logs" / "worker.log"
    return path.read_text(errors="replace") if path.exists() else ""


async def test_a_recovery_that_receives_nothing_is_started_again() -> None:
    data_dir = stack_dir("recovery-stall")
    env = {"TRAILPAY_TEST_HANG_RECOVERY": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(FAULT), os.environ.get("PYTHONPATH")) if p)}
    if os.environ.get("TRAILPAY_REBALANCE_GUARD"):  # to see it fail without the watchdog
        env["TRAILPAY_REBALANCE_GUARD"] = os.environ["TRAILPAY_REBALANCE_GUARD"]
    stack = start_stack(data_dir, env=env, broker="kafka")
    try:
        user = await make_user(stack.settings)
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
            first = await create_mobile(api, user, "mpesa", "0712345670")
            await wait_rows(stack.settings, [first], lambda r: r["status"] == "succeeded", timeout=90)
            assert HELD not in _worker_log(data_dir)  # the first start had no changelog to read

            # The restarted worker recovers its tables from the changelogs: the fault holds
            # the first record, and the recovery receives nothing more.
            old = stack.kill_service("worker")
            stack.wait_restarted("worker", old, timeout=60)
            wait_for_sync(lambda: HELD in _worker_log(data_dir) or None, 90, "the changelog record held")
            second = await create_mobile(api, user, "mpesa", "0712345670")
            settled = await wait_rows(stack.settings, [second], lambda r: r["status"] == "succeeded",
                                      timeout=150)
        assert settled[second]["status"] == "succeeded"
        log = _worker_log(data_dir)
        assert ASKED in log, "the payment succeeded without the watchdog: the fault did not hold"
        assert "asking the group to rebalance" in log
    finally:
        stop_stack(stack)
        keep_logs(data_dir, "recovery-stall")
        shutil.rmtree(data_dir, ignore_errors=True)
