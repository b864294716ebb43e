"""``trailpay dlq``: list, show, re-drive (original or fixed bytes) and purge dead letters.

:mod:`controlplane.ops.deadletters` is imported inside the commands: it loads SQLAlchemy,
which would almost double every `trailpay` start (see :func:`ops_common.engine_for`).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import click
from rich.table import Table

from controlplane.cli.audit_cmd import ops_audited, reason_option
from controlplane.cli.common import data_dir_option, friendly_errors
from controlplane.cli.ops_common import engine_for, out, setup, when_option, with_engine
from trailpay.kafka import make_producer
from trailpay.logs import scrub

if TYPE_CHECKING:
    from controlplane.ops.deadletters import DlqFilter, Redriven


@click.group("dlq")
def dlq_group() -> None:
    """Dead letters: list, show, re-drive (original or fixed bytes), purge."""


def _dlq_filters(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("--topic", default=None, help="Source topic"),
        click.option("--error-type", default=None, help="e.g. InvalidRecord, IllegalTransition"),
        click.option("--stage", default=None,
                     help="Consumer that gave up (payments, dedup, sink-postgres...)"),
        click.option("--since", callback=when_option, metavar="TIME", help="Failed at or after TIME"),
        click.option("--until", callback=when_option, metavar="TIME", help="Failed before TIME"),
        click.option("--reference", default=None, help="Payment reference (or record key)"),
        click.option("--include-purged", is_flag=True, help="Also purged letters"),
    ]):
        fn = option(fn)
    return fn


def _filter(topic: str | None, error_type: str | None, stage: str | None, since: datetime | None,
            until: datetime | None, reference: str | None, include_purged: bool,
            limit: int = 100) -> DlqFilter:
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

    settings = setup(data_dir, "dlq")
    flt = _filter(**filters, limit=limit)
    rows, total = asyncio.run(with_engine(settings, lambda e: list_letters(e, flt)))
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
                      f"{r['error_type']}: {scrub(r['error_message'])[:80]}", r["reference"] or "",
                      f"{r['redrive_count']}x" if r["redrive_count"] else "",
                      "yes" if r["purged_at"] else "")
    out.print(table)
    if total > len(rows):
        out.print(f"{total - len(rows)} more; narrow with filters or raise --limit.")
    if rows:
        out.print("Next: `trailpay dlq show <id>` for the reason and the original bytes.")


def masked(data: bytes) -> bytes:
    """``data`` with phone numbers, e-mails, card numbers and secrets masked for display
    (dead letters are stored with phone numbers masked already; older ones may not be)."""
    try:
        return scrub(data.decode("utf-8")).encode()
    except UnicodeDecodeError:
        return data


def _jsonable_letter(row: dict[str, Any]) -> dict[str, Any]:
    data = dict(row)
    for name in ("key", "value"):
        if data.get(name) is not None:
            data[name] = base64.b64encode(masked(bytes(data[name]))).decode()
    if data.get("error_message"):
        data["error_message"] = scrub(str(data["error_message"]))
    return data


@dlq_group.command("show")
@data_dir_option
@click.argument("letter_id")
@friendly_errors
def dlq_show(data_dir: Path | None, letter_id: str) -> None:
    """Show one dead letter: where it came from, why, and the original bytes."""
    from controlplane.ops.deadletters import get_letter, render_bytes

    settings = setup(data_dir, "dlq")
    row = asyncio.run(with_engine(settings, lambda e: get_letter(e, letter_id)))
    key = scrub(bytes(row["key"]).decode("utf-8", "replace")) if row["key"] is not None else "(none)"
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
    out.print(f"[bold]reason[/bold]\n  {row['error_type']}: {scrub(row['error_message'])}",
              markup=True, highlight=False)
    original = bytes(row["value"])
    kind, text = render_bytes(masked(original))
    note = "" if masked(original) == original else "; personal data masked for display"
    out.print(f"[bold]original bytes[/bold] ({len(row['value'])} bytes, {kind}{note})")
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
@reason_option
@friendly_errors
def dlq_redrive(data_dir: Path | None, letter_ids: tuple[str, ...], value_file: BinaryIO | None,
                new_key: str | None, force: bool, reason: str | None) -> None:
    """Put dead letters back on their source topic (keyed as originally) and record it."""
    from controlplane.ops.deadletters import DeadLetterError, check_value, get_letter, redrive

    if value_file is not None and len(letter_ids) != 1:
        raise click.UsageError("--value-file fixes one dead letter at a time")
    settings = setup(data_dir, "dlq")
    value = value_file.read() if value_file is not None else None

    async def run() -> list[Redriven]:
        engine = engine_for(settings)
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
                async with ops_audited(engine, "dlq.redrive", letter["event_id"], reason=reason,
                                       details={"fixed_value": value is not None,
                                                "new_key": new_key is not None,
                                                "forced": bool(problem)}) as extra:
                    sent = await redrive(engine, producer, letter, value=value,
                                         key=new_key.encode() if new_key is not None else None)
                    extra.update(topic=sent.topic, partition=sent.partition, offset=sent.offset)
                done.append(sent)
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
@reason_option
@friendly_errors
def dlq_purge(data_dir: Path | None, letter_ids: tuple[str, ...], yes: bool, reason: str | None,
              **filters: Any) -> None:
    """Mark dead letters as purged (rows are kept for audit; purged ones are never re-driven).

    Give ids, or filters (at least one) to purge every letter they match.
    """
    from controlplane.ops.deadletters import get_letter, list_letters, purge

    settings = setup(data_dir, "dlq")
    if not letter_ids and not any(v for k, v in filters.items() if k != "include_purged"):
        raise click.UsageError("give dead-letter ids or at least one filter (--topic, --since, ...)")

    async def ids() -> list[str]:
        engine = engine_for(settings)
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
    async def purged(engine: Any) -> int:
        target = chosen[0] if len(chosen) == 1 else f"{len(chosen)} dead letters"
        shown = {k: str(v) for k, v in filters.items() if v}
        async with ops_audited(engine, "dlq.purge", target, reason=reason,
                               details={"ids": chosen[:100], "filters": shown}) as extra:
            extra["purged"] = await purge(engine, chosen)
        return int(extra["purged"])

    count = asyncio.run(with_engine(settings, purged))
    out.print(f"purged {count} dead letters ({len(chosen) - count} were purged already)")
