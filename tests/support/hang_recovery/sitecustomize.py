"""A test fault, loaded by Python at start-up from ``PYTHONPATH`` (nothing of it is in the
product): in a stream worker started with ``TRAILPAY_TEST_HANG_RECOVERY=1``, the first
changelog record the consumer hands over is never handed on. Faust's drain loop then waits on
it until the next rebalance releases it, and the table recovery receives nothing, which is the
stall seen in issue 14 (tests/integration/test_recovery_stall.py)."""

from __future__ import annotations

import os


def _in_a_worker() -> bool:
    try:
        with open("/proc/self/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return b"controlplane.cli.main" in argv and b"worker" in argv


def _install() -> None:
    import asyncio
    import sys
    from typing import Any

    from faust.transport import consumer as fc

    original_init = fc.Consumer.__init__
    held: list[Any] = []

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        callback = self.callback

        async def holding(message: Any) -> Any:
            if not held and message.topic.endswith("-changelog"):
                held.append(message)
                print(f"test fault: changelog record {message.topic}:{message.partition}@"
                      f"{message.offset} held; the drain loop waits on it", file=sys.stderr, flush=True)
                await asyncio.Event().wait()  # released only by the drain loop (a rebalance)
            return await callback(message)

        self.callback = holding

    fc.Consumer.__init__ = __init__  # type: ignore[method-assign]


if os.environ.get("TRAILPAY_TEST_HANG_RECOVERY") == "1" and _in_a_worker():
    _install()
