"""Diagnostics for lost events: logs what Faust's consumer delivers, acks and commits.

Installed by the worker when ``Settings.trace_offsets`` (``TRAILPAY_TRACE_OFFSETS=1``). Logs (logger
``trailpay.offsettrace``) only what is out of the ordinary per topic-partition, plus
every commit, so a run of a few thousand records stays readable:

* ``deliver-jump``: a record handed to the agents whose offset is not the one after the
  previous record of its partition (a skip, or a step back after a seek);
* ``ack-jump``: the same for the final acks (refcount 0) of the records;
* ``ack-stale``: an ack of a partition not in the assignment;
* ``ack-unprocessed``: an ack while flow control is suspended or of a message of an older
  consumer generation (Faust's stream skips such messages and acks them);
* ``gap``: Faust's ``_add_gap`` (offsets it treats as acked without a record);
* ``commit``: the offsets committed, with the consumer generation;
* ``revoked`` / ``assigned``: the rebalance callbacks, with the uncommitted acks dropped;
* with a stalled table recovery (:mod:`streams.recovery_watchdog`), :func:`describe_stall`.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from typing import Any

log = logging.getLogger("trailpay.offsettrace")

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    # Imported here: diagnostics only, patched into Faust when asked for.
    from faust.transport import consumer as fc

    base = fc.Consumer
    delivered: dict[Any, int] = {}
    acked: dict[Any, int] = {}

    original_ack = base.ack

    def ack(self: Any, message: Any) -> bool:
        result: bool = original_ack(self, message)
        app = self.app
        if (getattr(message, "generation_id", None) != app.consumer_generation_id
                or not app.flow_control.is_active()):
            log.info("ack-unprocessed %s:%s@%s gen %s/%s flow %s counted=%s", message.tp.topic,
                     message.tp.partition, message.offset, getattr(message, "generation_id", None),
                     app.consumer_generation_id, app.flow_control.is_active(), result)
        if result:
            tp = message.tp
            last = acked.get(tp)
            if last is not None and message.offset != last + 1:
                log.info("ack-jump %s:%s %s -> %s", tp.topic, tp.partition, last, message.offset)
            acked[tp] = message.offset
            try:
                assignment = self.assignment()
            except Exception:  # noqa: BLE001 - diagnostics only
                assignment = set()
            if tp not in assignment:
                log.info("ack-stale %s:%s@%s (not assigned)", tp.topic, tp.partition, message.offset)
        return result

    base.ack = ack  # type: ignore[method-assign]

    original_add_gap = base._add_gap

    async def _add_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
        log.info("gap %s:%s %s..%s (committed %s)", tp.topic, tp.partition, offset_from,
                 offset_to, self._committed_offset.get(tp))
        await original_add_gap(self, tp, offset_from, offset_to)

    base._add_gap = _add_gap  # type: ignore[method-assign]

    original_commit_offsets = base._commit_offsets

    async def _commit_offsets(self: Any, offsets: Any, start_new_transaction: bool = True) -> bool:
        gen = getattr(self.app, "consumer_generation_id", None)
        done: bool = await original_commit_offsets(self, offsets, start_new_transaction)
        log.info("commit gen=%s ok=%s %s", gen, done,
                 " ".join(f"{tp.topic}:{tp.partition}={o}" for tp, o in sorted(offsets.items())))
        return done

    base._commit_offsets = _commit_offsets  # type: ignore[method-assign]

    original_revoked = base.on_partitions_revoked

    async def on_partitions_revoked(self: Any, revoked: Any) -> None:
        dropped = {f"{tp.topic}:{tp.partition}": (min(v), max(v), len(v))
                   for tp, v in self._acked.items() if tp in revoked and v}
        log.info("revoked %d tps; uncommitted acks dropped %s", len(revoked), dropped)
        for tp in revoked:
            delivered.pop(tp, None)
            acked.pop(tp, None)
        await original_revoked(self, revoked)

    base.on_partitions_revoked = on_partitions_revoked  # type: ignore[method-assign]

    original_assigned = base.on_partitions_assigned

    async def on_partitions_assigned(self: Any, assigned: Any, generation_id: int = 0) -> None:
        log.info("assigned gen=%s %s", generation_id,
                 " ".join(sorted(f"{tp.topic}:{tp.partition}" for tp in assigned)))
        stale = {f"{tp.topic}:{tp.partition}": sorted(v)[:3] for tp, v in self._acked.items() if v}
        if stale:
            log.info("acks held at assignment %s", stale)
        await original_assigned(self, assigned, generation_id)

    base.on_partitions_assigned = on_partitions_assigned  # type: ignore[method-assign]

    original_perform_seek = base.perform_seek

    async def perform_seek(self: Any) -> None:
        await original_perform_seek(self)
        log.info("seek committed %s", " ".join(
            f"{tp.topic}:{tp.partition}={o}" for tp, o in sorted(self._committed_offset.items())))
        delivered.clear()
        for tp, committed in self._committed_offset.items():
            if committed is not None:
                delivered[tp] = committed - 1

    base.perform_seek = perform_seek  # type: ignore[method-assign]

    def wrap_callback(consumer: Any) -> None:
        callback = consumer.callback

        async def traced(message: Any) -> Any:
            tp = message.tp
            last = delivered.get(tp)
            if last is not None and message.offset != last + 1:
                log.info("deliver-jump %s:%s %s -> %s gen %s", tp.topic, tp.partition, last,
                         message.offset, consumer.app.consumer_generation_id)
            delivered[tp] = message.offset
            return await callback(message)

        consumer.callback = traced

    original_init = base.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        wrap_callback(self)

    base.__init__ = __init__  # type: ignore[method-assign]


def describe_stall(app: Any) -> str:
    """When tracing: the consumer's flow state, the changelog partitions' fetch state (Faust's
    and aiokafka's) and the stack of every task of the worker's loop and of the consumer
    thread's loop, to show what the drain loop waits on (an empty string otherwise)."""
    if not _installed:
        return ""
    try:
        return ":\n" + _dump(app)
    except Exception as exc:  # noqa: BLE001 - diagnostics only
        return f" (state not described: {exc!r})"


def _stacks(loop: Any) -> str:
    """Each task's chain of awaits, outermost first (``Task.get_stack`` shows only the
    outermost coroutine of a suspended task)."""
    out = io.StringIO()
    for task in list(asyncio.all_tasks(loop)):
        out.write(f"--- {task.get_name()}\n")
        awaited: Any = task.get_coro()
        for _ in range(30):
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None) \
                or getattr(awaited, "gi_frame", None)
            if frame is None:
                if awaited is not None:
                    out.write(f"    awaiting {type(awaited).__name__}\n")
                break
            out.write(f"    {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}\n")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None) \
                or getattr(awaited, "gi_yieldfrom", None)
    return out.getvalue()


def _dump(app: Any) -> str:
    consumer = app.consumer
    lines = [f"at {time.time():.3f} flow_active={consumer.flow_active} "
             f"suspend_flow={consumer.suspend_flow.is_set()} "
             f"flow_control={app.flow_control.is_active()} rebalancing={app.rebalancing}"]
    changelogs = set(app.tables.changelog_topics)
    active = consumer._get_active_partitions()
    paused = consumer._paused_partitions
    thread = getattr(consumer, "_thread", None)
    aio = getattr(thread, "_consumer", None)
    for tp in sorted(t for t in consumer.assignment() if t.topic in changelogs):
        line = (f"  {tp.topic}:{tp.partition} active={tp in active} paused={tp in paused} "
                f"read={consumer._read_offset.get(tp)}")
        if aio is not None:
            try:
                state = aio._subscription.subscription.assignment.state_value(tp)
                line += (f" aiokafka position={state._position} paused={state._paused} "
                         f"status={state._status} buffered={tp in aio._fetcher._records}")
            except Exception as exc:  # noqa: BLE001 - diagnostics only
                line += f" aiokafka ?({exc!r})"
        lines.append(line)
    lines.append("main loop tasks:")
    lines.append(_stacks(asyncio.get_running_loop()))
    thread_loop = getattr(thread, "thread_loop", None) or getattr(thread, "loop", None)
    if thread_loop is not None and thread_loop is not asyncio.get_running_loop():
        lines.append("consumer thread tasks:")
        lines.append(_stacks(thread_loop))
    return "\n".join(lines)


def batch(agent: str, events: list[Any], note: str = "") -> None:
    """Log the offsets of one agent batch (per partition: first..last and count)."""
    if not _installed:
        return
    spans: dict[str, list[int]] = {}
    for event in events:
        message = event.message
        spans.setdefault(f"{message.topic}:{message.partition}", []).append(message.offset)
    log.info("batch %s %s %s", agent, " ".join(
        f"{tp}={min(v)}..{max(v)}/{len(v)}" for tp, v in sorted(spans.items())), note)
