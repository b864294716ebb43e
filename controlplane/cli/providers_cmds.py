"""``trailpay providers``: set up the providers table from settings, list it.

:mod:`controlplane.ops.providers` is imported inside the commands: it loads SQLAlchemy, which
would almost double every `trailpay` start (see :func:`ops_common.engine_for`).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from controlplane.cli.audit_cmd import ops_audited, reason_option
from controlplane.cli.common import data_dir_option, friendly_errors
from controlplane.cli.ops_common import out, setup, with_engine


@click.group("providers")
def providers_group() -> None:
    """Payment providers: set up the providers table from settings, list it."""


@providers_group.command("setup")
@data_dir_option
@reason_option
@friendly_errors
def providers_setup(data_dir: Path | None, reason: str | None) -> None:
    """Create or update the providers table from settings (safe to run again)."""
    from controlplane.ops.providers import setup_providers

    settings = setup(data_dir, "providers")

    async def run(engine: Any) -> dict[str, str]:
        async with ops_audited(engine, "providers.setup", "providers", reason=reason) as extra:
            done = await setup_providers(engine, settings)
            extra["result"] = {str(k): str(v) for k, v in done.items()}
        return done

    result = asyncio.run(with_engine(settings, run))
    for code, what in result.items():
        out.print(f"{code:<8} {what}")


@providers_group.command("list")
@data_dir_option
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def providers_list(data_dir: Path | None, as_json: bool) -> None:
    """List the providers table."""
    from controlplane.ops.providers import list_providers

    settings = setup(data_dir, "providers")
    rows = asyncio.run(with_engine(settings, list_providers))
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
