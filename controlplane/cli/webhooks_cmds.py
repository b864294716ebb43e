"""``trailpay webhooks``: run the deliverer, read the delivery log, redeliver.

The store and the deliverer are imported inside the commands: they load SQLAlchemy and
httpx, which would almost double every `trailpay` start (see :func:`ops_common.engine_for`).
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from controlplane.cli.common import data_dir_option, friendly_errors, init_logging, settings_for
from controlplane.cli.ops_common import out, setup, with_engine
from trailpay import codec


@click.group("webhooks")
def webhooks_group() -> None:
    """Outgoing webhooks to the booking platform: deliver, list, show, redeliver."""


@webhooks_group.command("deliver")
@data_dir_option
@click.option("--metrics-port", type=int, default=None,
              help="Serve Prometheus metrics on this port (default: none)")
@friendly_errors
def deliver(data_dir: Path | None, metrics_port: int | None) -> None:
    """Run the deliverer: payments.events.v1 -> signed POSTs, retried for up to 72 h."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from connectors.outbound.deliverer import serve
    from trailpay.metrics import serve_metrics

    settings = settings_for(data_dir)
    init_logging(settings, "webhooks")
    if metrics_port is not None:
        serve_metrics(metrics_port)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        engine = create_async_engine(settings.sqlalchemy_async_url(), pool_size=4, pool_pre_ping=True)
        try:
            await serve(settings, engine, stop)
        finally:
            await engine.dispose()

    asyncio.run(main())


def _row(row: Any) -> dict[str, Any]:
    data: dict[str, Any] = codec.jsonable(dict(row._mapping))
    return data


@webhooks_group.command("list")
@data_dir_option
@click.option("--status", type=click.Choice(["pending", "delivered", "dead"]), default=None)
@click.option("--endpoint", "endpoint_id", default=None, help="Endpoint id")
@click.option("--reference", default=None, help="Payment reference")
@click.option("--event-id", default=None)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def list_cmd(data_dir: Path | None, status: str | None, endpoint_id: str | None,
             reference: str | None, event_id: str | None, limit: int, as_json: bool) -> None:
    """The delivery log, newest first."""
    from sinks.postgres import webhook_store as store

    settings = setup(data_dir, "webhooks")
    rows = asyncio.run(with_engine(settings, lambda e: store.list_deliveries(
        e, status=status, endpoint_id=endpoint_id, reference=reference, event_id=event_id,
        limit=limit)))
    if as_json:
        click.echo(json.dumps([{k: v for k, v in _row(r).items() if k != "payload"} for r in rows],
                              indent=2))
        return
    table = Table(title="Webhook deliveries", title_justify="left")
    for col in ("id", "endpoint", "event type", "reference", "status", "attempts", "last", "next"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r.id), r.endpoint_id, r.event_type, r.reference, r.status, str(r.attempts),
                      str(r.last_status_code or r.last_error or "-"),
                      r.next_attempt_at.isoformat(timespec="seconds") if r.status == "pending" else "-")
    out.print(table)


@webhooks_group.command("show")
@data_dir_option
@click.argument("delivery_id", type=int)
@friendly_errors
def show(data_dir: Path | None, delivery_id: int) -> None:
    """One delivery with its payload and last outcome."""
    from sinks.postgres import webhook_store as store

    settings = setup(data_dir, "webhooks")
    row = asyncio.run(with_engine(settings, lambda e: store.get_delivery(e, delivery_id)))
    if row is None:
        raise click.ClickException(f"no delivery {delivery_id}")
    data = _row(row)
    data["payload"] = json.loads(row.payload)
    click.echo(json.dumps(data, indent=2))


@webhooks_group.command("redeliver")
@data_dir_option
@click.argument("delivery_ids", type=int, nargs=-1, required=True)
@friendly_errors
def redeliver(data_dir: Path | None, delivery_ids: tuple[int, ...]) -> None:
    """Deliver again (a dead or a delivered one): due now, with a new 72 h retry window."""
    from sinks.postgres import webhook_store as store

    settings = setup(data_dir, "webhooks")

    async def run(engine: Any) -> list[int]:
        missing = []
        for delivery_id in delivery_ids:
            if await store.redeliver(engine, delivery_id) is None:
                missing.append(delivery_id)
        return missing

    missing = asyncio.run(with_engine(settings, run))
    for delivery_id in delivery_ids:
        if delivery_id not in missing:
            click.echo(f"delivery {delivery_id}: pending again")
    if missing:
        raise click.ClickException("no delivery " + ", ".join(map(str, missing)))
