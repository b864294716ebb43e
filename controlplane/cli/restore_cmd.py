"""``trailpay restore``: bring the pipeline back from the PostgreSQL archive after the broker
lost its history (``trailpay up`` does it by itself on start; this is for a stream worker
started on a rebuilt cluster, outside the embedded stack)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
from rich.progress import TaskID

from controlplane.cli.common import data_dir_option, friendly_errors
from controlplane.cli.ops_common import engine_for, err, out, progress_bar, setup
from trailpay.settings import Settings


@click.command()
@data_dir_option
@click.option("--force", is_flag=True,
              help="Re-publish even when the broker still holds state changes (a cluster rebuilt "
              "from part of its data: changelogs shorter than the archive). Safe to repeat: every "
              "record keeps its event id, so the sinks and the state machine change nothing twice")
@click.option("--check", "check_only", is_flag=True,
              help="Only say whether a restore is needed (exit 1 if so)")
@friendly_errors
def restore(data_dir: Path | None, force: bool, check_only: bool) -> None:
    """Re-publish the archived state changes and raw webhooks when the broker lost them.

    The stream worker then knows the open payments again (their deadlines and late callbacks
    apply as before). Without --force nothing happens on a broker that kept its history.

    \b
      trailpay restore --check
      trailpay restore
      trailpay restore --force
    """
    settings = setup(data_dir, "restore")
    code = asyncio.run(_run(settings, force, check_only))
    raise SystemExit(code)


async def _run(settings: Settings, force: bool, check_only: bool) -> int:
    from controlplane.ops import restore as ops

    engine = engine_for(settings)
    try:
        checked = await ops.check(settings, engine)
        out.print(f"{'Restore needed' if checked.needed else 'No restore needed'}: {checked.reason()}.")
        if check_only:
            return 1 if checked.needed else 0
        if not checked.needed and not force:
            if checked.archived_changes:
                out.print("Pass --force to re-publish anyway (a partly rebuilt cluster).")
            return 0
        with progress_bar() as progress:
            tasks: dict[str, TaskID] = {}

            def advance(topic: str, done: int, total: int) -> None:
                if topic not in tasks:
                    tasks[topic] = progress.add_task(f"{topic} (archive)", total=total)
                progress.update(tasks[topic], completed=done)

            report = await ops.restore(settings, engine, advance=advance)
        out.print(report.line())
        if not await ops.wait_absorbed(settings, within_s=60):
            err.print("The stream worker has not read every restored state change yet (is it "
                      "running?); `trailpay lag` shows how far it is.")
        return 0
    finally:
        await engine.dispose()
