"""``trailpay lag``: consumer lag per group, topic and partition."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click
from rich.table import Table

from controlplane.cli.common import data_dir_option, friendly_errors
from controlplane.cli.ops_common import out, setup
from trailpay.lag import measure


@click.command("lag")
@data_dir_option
@click.option("--json", "as_json", is_flag=True)
@click.option("--all", "show_all", is_flag=True, help="Also partitions without lag")
@friendly_errors
def lag(data_dir: Path | None, as_json: bool, show_all: bool) -> None:
    """Consumer lag per group, topic and partition (true log end minus committed offset)."""
    settings = setup(data_dir, "lag")
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
