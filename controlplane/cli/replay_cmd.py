"""``trailpay replay``: topics again from an offset, a time, or the PostgreSQL archive.

The ``controlplane.ops`` modules are imported inside the functions: they load SQLAlchemy,
which would almost double every `trailpay` start (see :func:`ops_common.engine_for`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from controlplane.cli.audit_cmd import ops_audited, reason_option
from controlplane.cli.common import data_dir_option, friendly_errors
from controlplane.cli.ops_common import engine_for, err, out, progress_bar, setup, when_option
from controlplane.stack.state import STACK_FILE, StackInfo
from trailpay.domain.errors import ConfigurationError
from trailpay.kafka import bootstrap, make_producer
from trailpay.settings import Settings

if TYPE_CHECKING:
    from controlplane.ops.records import PartitionRange, SourceRecord
    from controlplane.ops.replay import Summary, Target


def _offset_pair(_ctx: click.Context, param: click.Parameter,
                 values: tuple[str, ...]) -> dict[int, int] | None:
    if not values:
        return None
    pairs: dict[int, int] = {}
    for value in values:
        part, sep, off = value.partition(":")
        if not sep or not part.isdigit() or not off.isdigit():
            raise click.BadParameter(f"{value!r} is not PARTITION:OFFSET (e.g. 2:1500)", param=param)
        pairs[int(part)] = int(off)
    return pairs


@click.command("replay")
@data_dir_option
@click.option("--topic", "-t", "topic_names", multiple=True, metavar="TOPIC",
              help="Topic to replay (repeatable). Default with --from-archive: both archived topics.")
@click.option("--into", "target", type=click.Choice(["sinks", "pipeline"]), required=True,
              help="sinks: write through the sink classes only; pipeline: produce again onto the "
              "topic, back through dedup and the state machine")
@click.option("--from-offset", type=click.IntRange(0), default=None,
              help="Start at this offset in every partition (0 = the beginning)")
@click.option("--offset", "per_partition", multiple=True, callback=_offset_pair, metavar="P:N",
              help="Start partition P at offset N (repeatable; only those partitions)")
@click.option("--from-time", "from_time", callback=when_option, metavar="TIME",
              help="Start at the first record at or after TIME (ISO 8601, or 30m / 2h / 1d ago); "
              "with --from-archive: archived records since TIME")
@click.option("--to-offset", type=click.IntRange(0), default=None,
              help="Stop before this offset in every partition (default: the end when the replay starts)")
@click.option("--until", "until", callback=when_option, metavar="TIME", help="Stop at records from TIME on")
@click.option("--from-archive", is_flag=True,
              help="Read the PostgreSQL archive (payment_events, provider_callbacks) instead of the broker")
@click.option("--reference", "references", multiple=True,
              help="Only records of this payment reference (repeatable)")
@click.option("--sinks", "sink_names", default="postgres,clickhouse", show_default=True,
              help="With --into sinks: which sinks to write")
@click.option("--analytics-url", default=None,
              help="Analytics process URL (embedded chDB writes go through it). Default: from stack.json")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=500, show_default=True)
@click.option("--dry-run", is_flag=True, help="Read and count; write and produce nothing")
@click.option("--verbose", "-v", is_flag=True, help="Print one line per record")
@reason_option
@friendly_errors
def replay(data_dir: Path | None, topic_names: tuple[str, ...], target: str, from_offset: int | None,
           per_partition: dict[int, int] | None, from_time: datetime | None, to_offset: int | None,
           until: datetime | None, from_archive: bool, references: tuple[str, ...], sink_names: str,
           analytics_url: str | None, batch_size: int, dry_run: bool, verbose: bool,
           reason: str | None) -> None:
    """Replay topics from an offset, a time, or the PostgreSQL archive.

    \b
    Examples:
      trailpay replay -t payments.state.v1 --from-offset 0 --into sinks
      trailpay replay -t webhooks.raw.v1 --from-time 2h --into pipeline --dry-run
      trailpay replay --from-archive -t payments.state.v1 --into pipeline

    --into sinks writes each record through the sink classes (PostgreSQL in this process;
    ClickHouse directly, or through the analytics process that owns embedded chDB). Nothing is
    produced to Kafka: re-publishing onto the topics the sinks read would also feed dedup, the
    state machine and the dispatcher. --into pipeline produces each record again (same key and
    bytes, header trailpay-replay) onto its topic, so dedup and the state machine see it again;
    payments.state.v1 replayed this way also gives the state machine back payments it lost
    (after the in-memory broker restarted: replay the archive; from the archive, each selected
    payment's newest change alone, so no older state is decided on). Both are idempotent: a second
    run changes nothing. Times are resolved to offsets by binary search over record
    timestamps (right on tansu and Kafka).
    """
    from controlplane.ops.records import ARCHIVED, ReplayError
    from controlplane.ops.replay import Target, check_topic

    settings = setup(data_dir, "replay")
    into = Target(target)
    names = topic_names or (ARCHIVED if from_archive else ())
    if not names:
        raise click.UsageError("name the topics to replay with --topic (see `trailpay topics list`)")
    starts = [from_offset is not None, per_partition is not None, from_time is not None and not from_archive]
    if from_archive and (from_offset is not None or per_partition or to_offset is not None):
        raise click.UsageError("--from-archive selects by time (--from-time/--until) and --reference, "
                               "not by offset")
    if not from_archive and sum(starts) != 1:
        raise click.UsageError("say where to start: one of --from-offset N, --offset P:N, --from-time "
                               "TIME, or --from-archive")
    try:
        for name in names:
            check_topic(name, into)
    except KeyError as exc:
        raise click.BadParameter(str(exc.args[0]), param_hint="--topic") from None
    analytics = analytics_url or _analytics_url(settings)
    sinks = tuple(s.strip() for s in sink_names.split(",") if s.strip())
    try:
        summary = asyncio.run(_replay(settings, names, into, from_offset, per_partition, from_time,
                                      to_offset, until, from_archive, references, sinks, analytics,
                                      batch_size, dry_run, verbose, reason))
    except ReplayError as exc:
        raise ConfigurationError(str(exc)) from exc
    _print_summary(summary, into, dry_run)


def _analytics_url(settings: Settings) -> str | None:
    if (settings.data_path / STACK_FILE).exists():
        return StackInfo.read(settings.data_path).dashboard_url
    return None


async def _replay(settings: Settings, names: tuple[str, ...], into: Target, from_offset: int | None,
                  per_partition: dict[int, int] | None, from_time: datetime | None,
                  to_offset: int | None, until: datetime | None, from_archive: bool,
                  references: tuple[str, ...], sink_names: tuple[str, ...], analytics: str | None,
                  batch_size: int, dry_run: bool, verbose: bool, reason: str | None) -> Summary:
    from controlplane.ops import records as rec
    from controlplane.ops.replay import Replayer, Target
    from controlplane.ops.sinkwriters import open_sinks

    engine = engine_for(settings)
    sinks = [] if into is not Target.SINKS or dry_run else open_sinks(settings, sink_names, analytics)
    producer = None if into is not Target.PIPELINE or dry_run else make_producer(settings)
    run_id = f"replay-{uuid.uuid4().hex[:8]}"

    def note(record: SourceRecord, what: str) -> None:
        if verbose:
            key = record.key.decode(errors="replace") if record.key else "-"
            err.print(f"{what:<13} {record.where:<36} key={key}")

    replayer = Replayer(into, engine=engine, sinks=sinks, producer=producer,
                        references=frozenset(references),
                        dry_run=dry_run, run_id=run_id, on_record=note)
    try:
        for sink in sinks:
            await sink.setup()
        if producer is not None:
            await producer.start()
        plans: list[tuple[str, int, Any]] = []
        for name in names:
            if from_archive:
                flt = rec.ArchiveFilter(since=from_time, until=until, references=references,
                                        latest=into is Target.PIPELINE and rec.latest_for_pipeline(name))
                plans.append((name, await rec.count_archive(engine, name, flt),
                              rec.read_archive(engine, name, flt, batch_size=batch_size)))
            else:
                ranges = await rec.plan_ranges(bootstrap(settings), name,
                                               rec.StartAt(from_offset, per_partition, from_time),
                                               rec.EndAt(to_offset, until))
                _print_plan(name, ranges)
                plans.append((name, sum(r.count for r in ranges),
                              rec.read_ranges(bootstrap(settings), ranges, batch_size=batch_size)))
        async with contextlib.AsyncExitStack() as stack:
            if not dry_run:  # a dry run changes nothing: not an act to audit
                extra = await stack.enter_async_context(ops_audited(
                    engine, "replay", ",".join(names), reason=reason, request_id=run_id,
                    details={"into": into.value, "from_archive": from_archive,
                             "from_offset": from_offset, "from_time": str(from_time or ""),
                             "references": list(references)[:100]}))
            with progress_bar() as progress:
                for name, total, batches in plans:
                    task = progress.add_task(f"{name}{' (archive)' if from_archive else ''}", total=total)
                    await replayer.feed_all(batches, functools.partial(progress.advance, task))
            if producer is not None:
                await producer.flush()
            if not dry_run:
                extra.update(replayer.summary.totals())
        return replayer.summary
    finally:
        if producer is not None:
            await producer.stop()
        for sink in sinks:
            await sink.close()
        await engine.dispose()


def _print_plan(topic: str, ranges: list[PartitionRange]) -> None:
    table = Table(title=f"{topic}: what will be read", title_justify="left")
    for col in ("partition", "from offset", "to offset (excl.)", "records"):
        table.add_column(col, justify="right")
    for r in ranges:
        table.add_row(str(r.partition), str(r.start), str(r.end), str(r.count))
    err.print(table)


def _print_summary(summary: Summary, into: Target, dry_run: bool) -> None:
    verb = "would replay" if dry_run else ("written to sinks" if into.value == "sinks" else "re-published")
    table = Table(title=f"Replay {'(dry run) ' if dry_run else ''}into {into.value}", title_justify="left")
    for col in ("topic", "read", verb, "already applied", "dead-lettered", "filtered out"):
        table.add_column(col, justify="right" if col != "topic" else "left")
    for name in summary.topics():
        table.add_row(name, str(summary.read[name]), str(summary.replayed[name]),
                      str(summary.already[name]), str(summary.dead_lettered[name]),
                      str(summary.filtered[name]))
    totals = summary.totals()
    table.add_row("total", str(totals["read"]), str(totals["replayed"]), str(totals["already"]),
                  str(totals["dead_lettered"]), str(totals["filtered"]), style="bold")
    out.print(table)
    out.print("already applied = already in the PostgreSQL archive before the replay (state changes, "
              "webhooks, dead letters); replaying them changes nothing.")
    if totals["dead_lettered"]:
        out.print("dead-lettered = records that do not decode; they were dead-lettered on the first "
                  "pass: `trailpay dlq list` shows them, `trailpay dlq redrive` re-drives a fixed one.")
    if dry_run:
        out.print("Dry run: nothing was written or produced. Run again without --dry-run to replay.")
