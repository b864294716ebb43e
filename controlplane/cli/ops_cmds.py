"""Operations commands: ``replay``, ``dlq``, ``payments check-pending``, ``providers``, ``lag``.

Each finds the stack through ``--data-dir``'s stack.json or the ``TRAILPAY_*`` variables,
shows a progress bar on long runs and ends with a summary.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from controlplane.cli.common import data_dir_option, friendly_errors, init_logging, settings_for
from trailpay import topics
from trailpay.domain.errors import ConfigurationError
from trailpay.settings import Settings

#: Wide enough for the summary tables when the output is a file or a pipe.
out = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 140)


def _when(_ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    from controlplane.ops.when import parse_when

    if value is None:
        return None
    try:
        return parse_when(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None


def _engine(settings: Settings) -> Any:
    from sqlalchemy.ext.asyncio import create_async_engine

    return create_async_engine(settings.sqlalchemy_async_url(), pool_size=2,
                               connect_args={"connect_timeout": 5})


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=False)


def _setup(data_dir: Path | None, service: str) -> Settings:
    settings = settings_for(data_dir)
    init_logging(settings.model_copy(update={"log_level": "WARNING"}), service)
    return settings


# =========================================================================== replay


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
@click.option("--from-time", "from_time", callback=_when, metavar="TIME",
              help="Start at the first record at or after TIME (ISO 8601, or 30m / 2h / 1d ago); "
              "with --from-archive: archived records since TIME")
@click.option("--to-offset", type=click.IntRange(0), default=None,
              help="Stop before this offset in every partition (default: the end when the replay starts)")
@click.option("--until", "until", callback=_when, metavar="TIME", help="Stop at records from TIME on")
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
@friendly_errors
def replay(data_dir: Path | None, topic_names: tuple[str, ...], target: str, from_offset: int | None,
           per_partition: dict[int, int] | None, from_time: datetime | None, to_offset: int | None,
           until: datetime | None, from_archive: bool, references: tuple[str, ...], sink_names: str,
           analytics_url: str | None, batch_size: int, dry_run: bool, verbose: bool) -> None:
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
    (after the in-memory broker restarted: replay the archive). Both are idempotent: a second
    run changes nothing. Times are resolved to offsets by binary search over record
    timestamps (right on tansu and Kafka).
    """
    from controlplane.ops.records import ARCHIVED, ReplayError
    from controlplane.ops.replay import Target, check_topic

    settings = _setup(data_dir, "replay")
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
                                      batch_size, dry_run, verbose))
    except ReplayError as exc:
        raise ConfigurationError(str(exc)) from exc
    _print_summary(summary, into, dry_run)


def _analytics_url(settings: Settings) -> str | None:
    from controlplane.stack.state import STACK_FILE, StackInfo

    if (settings.data_path / STACK_FILE).exists():
        return StackInfo.read(settings.data_path).dashboard_url
    return None


async def _replay(settings: Settings, names: tuple[str, ...], into: Any, from_offset: int | None,
                  per_partition: dict[int, int] | None, from_time: datetime | None,
                  to_offset: int | None, until: datetime | None, from_archive: bool,
                  references: tuple[str, ...], sink_names: tuple[str, ...], analytics: str | None,
                  batch_size: int, dry_run: bool, verbose: bool) -> Any:
    from controlplane.ops import records as rec
    from controlplane.ops.replay import Replayer, Target
    from controlplane.ops.sinkwriters import open_sinks
    from trailpay.kafka import bootstrap, make_producer

    engine = _engine(settings)
    sinks = [] if into is not Target.SINKS or dry_run else open_sinks(settings, sink_names, analytics)
    producer = None if into is not Target.PIPELINE or dry_run else make_producer(settings)
    run_id = f"replay-{uuid.uuid4().hex[:8]}"

    def note(record: rec.SourceRecord, what: str) -> None:
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
                flt = rec.ArchiveFilter(since=from_time, until=until, references=references)
                plans.append((name, await rec.count_archive(engine, name, flt),
                              rec.read_archive(engine, name, flt, batch_size=batch_size)))
            else:
                ranges = await rec.plan_ranges(bootstrap(settings), name,
                                               rec.StartAt(from_offset, per_partition, from_time),
                                               rec.EndAt(to_offset, until))
                _print_plan(name, ranges)
                plans.append((name, sum(r.count for r in ranges),
                              rec.read_ranges(bootstrap(settings), ranges, batch_size=batch_size)))
        with _progress() as progress:
            for name, total, batches in plans:
                task = progress.add_task(f"{name}{' (archive)' if from_archive else ''}", total=total)
                await replayer.feed_all(batches, functools.partial(progress.advance, task))
        if producer is not None:
            await producer.flush()
        return replayer.summary
    finally:
        if producer is not None:
            await producer.stop()
        for sink in sinks:
            await sink.close()
        await engine.dispose()


def _print_plan(topic: str, ranges: list[Any]) -> None:
    table = Table(title=f"{topic}: what will be read", title_justify="left")
    for col in ("partition", "from offset", "to offset (excl.)", "records"):
        table.add_column(col, justify="right")
    for r in ranges:
        table.add_row(str(r.partition), str(r.start), str(r.end), str(r.count))
    err.print(table)


def _print_summary(summary: Any, into: Any, dry_run: bool) -> None:
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


# =========================================================================== dead letters


@click.group("dlq")
def dlq_group() -> None:
    """Dead letters: list, show, re-drive (original or fixed bytes), purge."""


def _dlq_filters(fn: Any) -> Any:
    for option in reversed([
        click.option("--topic", default=None, help="Source topic"),
        click.option("--error-type", default=None, help="e.g. InvalidRecord, IllegalTransition"),
        click.option("--stage", default=None,
                     help="Consumer that gave up (payments, dedup, sink-postgres...)"),
        click.option("--since", callback=_when, metavar="TIME", help="Failed at or after TIME"),
        click.option("--until", callback=_when, metavar="TIME", help="Failed before TIME"),
        click.option("--reference", default=None, help="Payment reference (or record key)"),
        click.option("--include-purged", is_flag=True, help="Also purged letters"),
    ]):
        fn = option(fn)
    return fn


def _filter(topic: str | None, error_type: str | None, stage: str | None, since: datetime | None,
            until: datetime | None, reference: str | None, include_purged: bool, limit: int = 100) -> Any:
    from controlplane.ops.deadletters import DlqFilter

    return DlqFilter(topic=topic, error_type=error_type, since=since, until=until, reference=reference,
                     stage=stage, include_purged=include_purged, limit=limit)


@dlq_group.command("list")
@data_dir_option
@_dlq_filters
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line")
@friendly_errors
def dlq_list(data_dir: Path | None, limit: int, as_json: bool, **filters: Any) -> None:
    """List dead letters, newest first."""
    from controlplane.ops.deadletters import list_letters

    settings = _setup(data_dir, "dlq")
    flt = _filter(**filters, limit=limit)
    rows, total = asyncio.run(_with_engine(settings, lambda e: list_letters(e, flt)))
    if as_json:
        for row in rows:
            click.echo(json.dumps(_jsonable_letter(row), default=str))
        return
    table = Table(title=f"Dead letters: {len(rows)} of {total}", title_justify="left")
    for col in ("id", "failed at (UTC)", "source", "stage", "error", "reference", "redriven", "purged"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["event_id"][:12], f"{r['failed_at']:%Y-%m-%d %H:%M:%S}",
                      f"{r['source_topic']}[{r['partition']}]@{r['offset']}", r["stage"],
                      f"{r['error_type']}: {r['error_message'][:80]}", r["reference"] or "",
                      f"{r['redrive_count']}x" if r["redrive_count"] else "",
                      "yes" if r["purged_at"] else "")
    out.print(table)
    if total > len(rows):
        out.print(f"{total - len(rows)} more; narrow with filters or raise --limit.")
    if rows:
        out.print("Next: `trailpay dlq show <id>` for the reason and the original bytes.")


def _jsonable_letter(row: dict[str, Any]) -> dict[str, Any]:
    import base64

    data = dict(row)
    for name in ("key", "value"):
        if data.get(name) is not None:
            data[name] = base64.b64encode(bytes(data[name])).decode()
    return data


async def _with_engine(settings: Settings, fn: Any) -> Any:
    engine = _engine(settings)
    try:
        return await fn(engine)
    finally:
        await engine.dispose()


@dlq_group.command("show")
@data_dir_option
@click.argument("letter_id")
@friendly_errors
def dlq_show(data_dir: Path | None, letter_id: str) -> None:
    """Show one dead letter: where it came from, why, and the original bytes."""
    from controlplane.ops.deadletters import get_letter, render_bytes

    settings = _setup(data_dir, "dlq")
    row = asyncio.run(_with_engine(settings, lambda e: get_letter(e, letter_id)))
    key = bytes(row["key"]).decode("utf-8", "replace") if row["key"] is not None else "(none)"
    out.print(f"[bold]dead letter[/bold] {row['event_id']}")
    out.print(f"  source     {row['source_topic']} partition {row['partition']} offset {row['offset']}")
    out.print(f"  key        {key}")
    out.print(f"  stage      {row['stage']}")
    out.print(f"  failed at  {row['failed_at']:%Y-%m-%d %H:%M:%S} UTC")
    out.print(f"  reference  {row['reference'] or '-'}")
    out.print(f"  re-driven  {row['redrive_count']} times"
              + (f", last {row['redriven_at']:%Y-%m-%d %H:%M:%S} UTC" if row["redriven_at"] else ""))
    if row["purged_at"]:
        out.print(f"  purged     {row['purged_at']:%Y-%m-%d %H:%M:%S} UTC")
    out.print(f"[bold]reason[/bold]\n  {row['error_type']}: {row['error_message']}", markup=True,
              highlight=False)
    kind, text = render_bytes(bytes(row["value"]))
    out.print(f"[bold]original bytes[/bold] ({len(row['value'])} bytes, {kind})")
    out.print(text, markup=False, highlight=False)
    if not row["purged_at"]:
        out.print(f"Next: save the JSON, fix it, then `trailpay dlq redrive {row['event_id'][:12]} "
                  "--value-file fixed.json` (or without --value-file to send the bytes as they were).",
                  markup=False)


@dlq_group.command("redrive")
@data_dir_option
@click.argument("letter_ids", nargs=-1, required=True)
@click.option("--value-file", type=click.File("rb"), default=None,
              help="Send these bytes instead of the original (a fixed record; - for stdin)")
@click.option("--key", "new_key", default=None, help="Send with this key instead of the original")
@click.option("--force", is_flag=True, help="Send even if the value does not match the topic's contract")
@friendly_errors
def dlq_redrive(data_dir: Path | None, letter_ids: tuple[str, ...], value_file: Any,
                new_key: str | None, force: bool) -> None:
    """Put dead letters back on their source topic (keyed as originally) and record it."""
    from controlplane.ops.deadletters import DeadLetterError, check_value, get_letter, redrive
    from trailpay.kafka import make_producer

    if value_file is not None and len(letter_ids) != 1:
        raise click.UsageError("--value-file fixes one dead letter at a time")
    settings = _setup(data_dir, "dlq")
    value = value_file.read() if value_file is not None else None

    async def run() -> list[Any]:
        engine = _engine(settings)
        producer = make_producer(settings)
        await producer.start()
        done = []
        try:
            for ident in letter_ids:
                letter = await get_letter(engine, ident)
                body = value if value is not None else bytes(letter["value"])
                problem = check_value(letter["source_topic"], body)
                if problem and not force:
                    raise DeadLetterError(f"{letter['event_id'][:12]}: the record would fail again: "
                                          f"{problem}. Fix it (`trailpay dlq show` prints it) and pass "
                                          "--value-file, or --force to send it anyway")
                done.append(await redrive(engine, producer, letter, value=value,
                                          key=new_key.encode() if new_key is not None else None))
        finally:
            await producer.stop()
            await engine.dispose()
        return done

    for r in asyncio.run(run()):
        out.print(f"re-driven {r.event_id[:12]} -> {r.topic}[{r.partition}]@{r.offset} "
                  f"(attempt {r.redrive_count})", highlight=False)


@dlq_group.command("purge")
@data_dir_option
@click.argument("letter_ids", nargs=-1)
@_dlq_filters
@click.option("--yes", is_flag=True, help="Do not ask for confirmation")
@friendly_errors
def dlq_purge(data_dir: Path | None, letter_ids: tuple[str, ...], yes: bool, **filters: Any) -> None:
    """Mark dead letters as purged (rows are kept for audit; purged ones are never re-driven).

    Give ids, or filters (at least one) to purge every letter they match.
    """
    from controlplane.ops.deadletters import get_letter, list_letters, purge

    settings = _setup(data_dir, "dlq")
    if not letter_ids and not any(v for k, v in filters.items() if k != "include_purged"):
        raise click.UsageError("give dead-letter ids or at least one filter (--topic, --since, ...)")

    async def ids() -> list[str]:
        engine = _engine(settings)
        try:
            if letter_ids:
                return [(await get_letter(engine, i))["event_id"] for i in letter_ids]
            rows, _ = await list_letters(engine, _filter(**filters, limit=100_000))
            return [r["event_id"] for r in rows]
        finally:
            await engine.dispose()

    chosen = asyncio.run(ids())
    if not chosen:
        out.print("nothing to purge")
        return
    if not yes:
        click.confirm(f"Purge {len(chosen)} dead letters?", abort=True)
    count = asyncio.run(_with_engine(settings, lambda e: purge(e, chosen)))
    out.print(f"purged {count} dead letters ({len(chosen) - count} were purged already)")


# =========================================================================== stuck payments


@click.group("payments")
def payments_group() -> None:
    """Payment operations."""


@payments_group.command("check-pending")
@data_dir_option
@click.option("--hours", type=click.FloatRange(0), default=24.0, show_default=True,
              help="Only payments created at least this many hours ago")
@click.option("--update", is_flag=True,
              help="Ask each provider and feed the answers in as provider events")
@click.option("--provider", type=click.Choice(["stripe", "mpesa", "airtel"]), default=None)
@click.option("--reference", "references", multiple=True, help="Only this payment (repeatable)")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--wait", type=click.FloatRange(0, 600), default=0.0,
              help="With --update: wait up to this many seconds for the payments to settle")
@friendly_errors
def check_pending(data_dir: Path | None, hours: float, update: bool, provider: str | None,
                  references: tuple[str, ...], limit: int, wait: float) -> None:
    """List payments still created/pending/processing after N hours; --update asks the providers.

    The stream worker's sweeper does this by itself at each state's deadline; this is the
    manual version. The answers go onto provider.events.v1 with the same ids the sweeper
    would use, so running it twice (or after the sweeper) changes nothing.
    """
    from controlplane.ops import pending

    settings = _setup(data_dir, "check-pending")
    now = datetime.now(UTC)
    found = asyncio.run(_with_engine(settings, lambda e: pending.find_open(
        e, timedelta(hours=hours), now, provider=provider, references=references, limit=limit)))
    if not found:
        out.print(f"No payment has been open for {hours:g} hours or more.")
        return
    answers = asyncio.run(_ask_providers(settings, found)) if update else None
    table = Table(title=f"{len(found)} payments open for {hours:g}h or more", title_justify="left")
    columns = ("reference", "provider", "status", "v", "amount", "age", "provider ref")
    for col in (*columns, *(("answer",) if update else ())):
        table.add_column(col, overflow="fold")
    for i, p in enumerate(found):
        row = [p.reference, p.provider, p.status, str(p.version), f"{p.amount_minor} {p.currency}",
               _age(p.age(now)), p.provider_reference or ""]
        if answers is not None:
            row.append(answers[i].verdict)
        table.add_row(*row)
    out.print(table)
    if answers is None:
        out.print("Next: --update asks each provider and feeds the answers in.")
        return
    sent = sum(len(a.events) for a in answers)
    failed = [a for a in answers if a.error]
    out.print(f"{sent} provider events sent to {topics.PROVIDER_EVENTS}; "
              f"{sum(1 for a in answers if not a.events and not a.error and not a.skipped)} still open "
              f"at the provider; {len(failed)} errors.")
    if wait and sent:
        refs = [a.payment.reference for a in answers if a.events]
        settled = asyncio.run(_wait_settled(settings, refs, wait))
        out.print(f"{len(settled)} of {len(refs)} settled within {wait:g}s: "
                  + ", ".join(f"{r}={s}" for r, s in sorted(settled.items())))
    if failed:
        sys.exit(1)


def _age(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f}h" if hours >= 1 else f"{delta.total_seconds() / 60:.0f}m"


async def _ask_providers(settings: Settings, found: list[Any]) -> list[Any]:
    from connectors.providers.registry import gateways
    from controlplane.ops import pending
    from trailpay.kafka import make_producer

    gws = gateways(settings)
    producer = make_producer(settings)
    try:
        with _progress() as progress:
            task = progress.add_task("asking providers", total=len(found))
            answers: list[Any] = []
            for chunk in (found[i:i + 50] for i in range(0, len(found), 50)):
                answers += await pending.ask_all(gws, chunk)
                progress.advance(task, len(chunk))
        await producer.start()
        await pending.feed(producer, answers)
        return answers
    finally:
        await producer.stop()
        for gw in gws.values():
            await gw.aclose()


async def _wait_settled(settings: Settings, refs: list[str], wait: float) -> dict[str, str]:
    from sqlalchemy import select

    from sinks.postgres.schema import payments as t
    from trailpay.domain.status import OPEN

    engine = _engine(settings)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    settled: dict[str, str] = {}
    try:
        while True:
            async with engine.connect() as conn:
                rows = await conn.execute(select(t.c.reference, t.c.status).where(t.c.reference.in_(refs)))
                settled = {r.reference: r.status for r in rows if r.status not in {s.value for s in OPEN}}
            if len(settled) == len(refs) or loop.time() >= deadline:
                return settled
            await asyncio.sleep(0.5)
    finally:
        await engine.dispose()


# =========================================================================== providers


@click.group("providers")
def providers_group() -> None:
    """Payment providers: set up the providers table from settings, list it."""


@providers_group.command("setup")
@data_dir_option
@friendly_errors
def providers_setup(data_dir: Path | None) -> None:
    """Create or update the providers table from settings (safe to run again)."""
    from controlplane.ops.providers import setup_providers

    settings = _setup(data_dir, "providers")
    result = asyncio.run(_with_engine(settings, lambda e: setup_providers(e, settings)))
    for code, what in result.items():
        out.print(f"{code:<8} {what}")


@providers_group.command("list")
@data_dir_option
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def providers_list(data_dir: Path | None, as_json: bool) -> None:
    """List the providers table."""
    from controlplane.ops.providers import list_providers

    settings = _setup(data_dir, "providers")
    rows = asyncio.run(_with_engine(settings, list_providers))
    if as_json:
        click.echo(json.dumps(rows, default=str, indent=2))
        return
    if not rows:
        out.print("The providers table is empty; run `trailpay providers setup`.")
        return
    table = Table(title="Providers", title_justify="left")
    for col in ("code", "name", "active", "methods", "currencies", "countries", "endpoint", "updated (UTC)"):
        table.add_column(col, overflow="fold")
    for r in rows:
        cfg = r["config"] or {}
        table.add_row(r["code"], r["name"], "yes" if r["active"] else "no", ",".join(r["methods"]),
                      _short_list(r["currencies"]), ",".join(r["countries"]) or "any",
                      str(cfg.get("base_url") or cfg.get("api_base") or ""),
                      f"{r['updated_at']:%Y-%m-%d %H:%M}")
    out.print(table)


def _short_list(items: list[str], most: int = 8) -> str:
    return ",".join(items) if len(items) <= most else ",".join(items[:most]) + f",… ({len(items)})"


# =========================================================================== lag


@click.command("lag")
@data_dir_option
@click.option("--json", "as_json", is_flag=True)
@click.option("--all", "show_all", is_flag=True, help="Also partitions without lag")
@friendly_errors
def lag(data_dir: Path | None, as_json: bool, show_all: bool) -> None:
    """Consumer lag per group, topic and partition (true log end minus committed offset)."""
    from trailpay.lag import measure

    settings = _setup(data_dir, "lag")
    rows = asyncio.run(measure(settings))
    if as_json:
        click.echo(json.dumps([{**r.__dict__, "lag": r.lag} for r in rows], indent=2))
        return
    table = Table(title="Consumer lag", title_justify="left")
    for col in ("group", "topic", "partition", "committed", "end", "lag"):
        table.add_column(col, justify="right" if col in ("partition", "committed", "end", "lag") else "left")
    totals: dict[str, int] = {}
    for r in rows:
        totals[r.group] = totals.get(r.group, 0) + r.lag
        if r.lag or show_all:
            done = "-" if r.committed is None else str(r.committed)
            table.add_row(r.group, r.topic, str(r.partition), done, str(r.end), str(r.lag))
    out.print(table)
    for group, total in totals.items():
        out.print(f"{group}: {total} records behind")
