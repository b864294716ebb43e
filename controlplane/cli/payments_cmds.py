"""``trailpay payments check-pending``: payments left open for hours; ``--update`` asks the providers.

:mod:`controlplane.ops.pending` and the table schema are imported inside the functions: they
load SQLAlchemy, which would almost double every `trailpay` start (see
:func:`ops_common.engine_for`).
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from connectors.providers.registry import gateways
from controlplane.cli.common import data_dir_option, friendly_errors
from controlplane.cli.ops_common import engine_for, out, progress_bar, setup, with_engine
from trailpay import topics
from trailpay.domain.status import OPEN
from trailpay.kafka import make_producer
from trailpay.settings import Settings

if TYPE_CHECKING:
    from controlplane.ops.pending import Answer, OpenPayment


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
    from controlplane.ops.pending import find_open

    settings = setup(data_dir, "check-pending")
    now = datetime.now(UTC)
    found = asyncio.run(with_engine(settings, lambda e: find_open(
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


async def _ask_providers(settings: Settings, found: list[OpenPayment]) -> list[Answer]:
    from controlplane.ops.pending import ask_all, feed

    gws = gateways(settings)
    producer = make_producer(settings)
    try:
        with progress_bar() as progress:
            task = progress.add_task("asking providers", total=len(found))
            answers: list[Answer] = []
            for chunk in (found[i:i + 50] for i in range(0, len(found), 50)):
                answers += await ask_all(gws, chunk)
                progress.advance(task, len(chunk))
        await producer.start()
        await feed(producer, answers)
        return answers
    finally:
        await producer.stop()
        for gw in gws.values():
            await gw.aclose()


async def _wait_settled(settings: Settings, refs: list[str], wait: float) -> dict[str, str]:
    from sqlalchemy import select

    from sinks.postgres.schema import payments as t

    engine = engine_for(settings)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    settled: dict[str, str] = {}
    open_statuses = {s.value for s in OPEN}
    try:
        while True:
            async with engine.connect() as conn:
                rows = await conn.execute(select(t.c.reference, t.c.status).where(t.c.reference.in_(refs)))
                settled = {r.reference: r.status for r in rows if r.status not in open_statuses}
            if len(settled) == len(refs) or loop.time() >= deadline:
                return settled
            await asyncio.sleep(0.5)
    finally:
        await engine.dispose()
