"""The pipelined batches of the stream agents: state is written only after the outputs are
acknowledged, batch by batch in order, and inputs are acknowledged to Faust only after that."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from streams.agents.common import Pipeline


class FakeMessage:
    def __init__(self) -> None:
        self.refcount = 1  # the conductor's reference, released by take_events
        self.final_acks = 0

    def incref(self) -> None:
        self.refcount += 1

    def release(self) -> None:
        self.refcount -= 1
        if self.refcount == 0:
            self.final_acks += 1


def events(n: int) -> list[Any]:
    out = []
    for _ in range(n):
        message = FakeMessage()
        out.append(SimpleNamespace(message=message, ack=message.release))
    return out


async def test_commits_wait_for_acks_and_run_in_order_then_inputs_are_acked() -> None:
    pipeline = Pipeline("test")
    log: list[str] = []
    first, second = asyncio.get_running_loop().create_future(), asyncio.get_running_loop().create_future()
    batch1, batch2 = events(2), events(1)
    await pipeline.submit([first], lambda: log.append("commit 1"), batch1)
    await pipeline.submit([second], lambda: log.append("commit 2"), batch2)
    for event in batch1 + batch2:
        event.message.release()  # take_events' own ack: not final
    second.set_result(None)  # the later batch is acknowledged first: it still waits
    await asyncio.sleep(0.01)
    assert log == [] and all(e.message.final_acks == 0 for e in batch1 + batch2)
    first.set_result(None)
    await pipeline.drain()
    assert log == ["commit 1", "commit 2"]
    assert all(e.message.final_acks == 1 for e in batch1 + batch2)


async def test_a_failed_output_stops_every_later_commit_and_ack() -> None:
    crashed: list[BaseException] = []

    async def on_failure(exc: BaseException) -> None:
        crashed.append(exc)

    pipeline = Pipeline("test", on_failure=on_failure)
    log: list[str] = []
    failing = asyncio.get_running_loop().create_future()
    batch1, batch2 = events(1), events(1)
    await pipeline.submit([failing], lambda: log.append("commit 1"), batch1)
    await pipeline.submit([], lambda: log.append("commit 2"), batch2)
    failing.set_exception(RuntimeError("broker gone"))
    with pytest.raises(RuntimeError):
        await pipeline.drain()
    assert log == [] and len(crashed) == 1
    assert all(e.message.final_acks == 0 for e in batch1 + batch2)  # redelivered after restart
    with pytest.raises(RuntimeError):
        await pipeline.submit([], lambda: log.append("commit 3"), [])


async def test_submit_waits_when_too_many_batches_are_in_flight() -> None:
    pipeline = Pipeline("test", max_in_flight=1)
    gate = asyncio.get_running_loop().create_future()
    await pipeline.submit([gate], lambda: None, [])
    blocked = asyncio.ensure_future(pipeline.submit([], lambda: None, []))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    gate.set_result(None)
    await asyncio.wait_for(blocked, 1)
    await pipeline.drain()
