"""``trailpay audit list``, and the audit entries of the ops commands.

Every command that changes something (``dlq redrive`` / ``purge``, ``replay``, ``reconcile
--fix``, ``providers setup``, ``users create``, ``tokens create`` / ``revoke``) writes its
row ahead of the act through :func:`ops_audited`: actor = the OS user, role ``ops``,
source ``cli@<host>``.

:mod:`sinks.postgres.audit` is imported inside the functions: it loads SQLAlchemy, which
would almost double every `trailpay` start (see :func:`ops_common.engine_for`).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from controlplane.cli.common import data_dir_option, friendly_errors
from controlplane.cli.ops_common import out, setup, when_option, with_engine

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from sinks.postgres.audit import AuditEntry

reason_option = click.option("--reason", default=None, help="Why (kept in the audit log)")


def ops_actor() -> tuple[str, str]:
    """(actor, source) of the person running this command: the OS user and the host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for the uid (a bare container)
        user = "unknown"
    return user, f"cli@{socket.gethostname()}"


def ops_entry(action: str, target: str, *, reason: str | None = None,
              request_id: str | None = None, details: dict[str, Any] | None = None) -> AuditEntry:
    from sinks.postgres.audit import OPS_ROLE, AuditEntry

    actor, source = ops_actor()
    return AuditEntry(actor=actor, role=OPS_ROLE, action=action, target=target, reason=reason,
                      request_id=request_id, source=source, details=dict(details or {}))


@asynccontextmanager
async def ops_audited(engine: AsyncEngine, action: str, target: str, *, reason: str | None = None,
                      request_id: str | None = None,
                      details: dict[str, Any] | None = None) -> AsyncIterator[dict[str, Any]]:
    """The command's act, written ahead to the audit log (see :func:`sinks.postgres.audit.audited`)."""
    from sinks.postgres.audit import audited

    entry = ops_entry(action, target, reason=reason, request_id=request_id, details=details)
    async with audited(engine, entry) as extra:
        yield extra


@click.group("audit")
def audit_group() -> None:
    """The audit log: who did what to which payment, token or dead letter, and why."""


@audit_group.command("list")
@data_dir_option
@click.option("--since", callback=when_option, metavar="TIME",
              help="At or after TIME (ISO 8601, or 30m / 2h / 1d ago)")
@click.option("--until", callback=when_option, metavar="TIME", help="Before TIME")
@click.option("--actor", default=None, help="User id, e-mail, or OS user of an ops command")
@click.option("--target", default=None, help="Payment reference, token id, dead-letter id ...")
@click.option("--action", default=None, help="e.g. payment.refund, dlq.redrive, token.create")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line")
@friendly_errors
def audit_list(data_dir: Path | None, since: datetime | None, until: datetime | None,
               actor: str | None, target: str | None, action: str | None, limit: int,
               as_json: bool) -> None:
    """List audit records, newest first."""
    from sinks.postgres.audit import AuditFilter, audit_json, list_audit

    settings = setup(data_dir, "audit")
    flt = AuditFilter(since=since, until=until, actor=actor, target=target, action=action,
                      limit=limit)
    rows = [audit_json(r) for r in asyncio.run(with_engine(settings, lambda e: list_audit(e, flt)))]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, default=str))
        return
    if not rows:
        out.print("no audit records match")
        return
    table = Table(title=f"Audit log: {len(rows)} records", title_justify="left")
    for col in ("at (UTC)", "actor", "role", "action", "target", "outcome", "source", "reason"):
        # ids and times whole (they are copied into other commands); the reason folds
        table.add_column(col, no_wrap=col not in ("reason", "actor", "source"), overflow="fold")
    for r in rows:
        table.add_row(r["at"][:19].replace("T", " "), r["actor_email"] or r["actor"], r["role"],
                      r["action"], r["target"], r["outcome"], r["source"] or "", r["reason"] or "")
    out.print(table)
    out.print("Request ids and details: --json.")
