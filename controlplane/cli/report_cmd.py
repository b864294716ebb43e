"""``trailpay report``: the dashboard figures as tables in the terminal."""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from controlplane.cli.common import data_dir_option, friendly_errors, settings_for
from controlplane.stack.state import StackInfo
from dashboards.queries import BY_NAME
from trailpay.domain.errors import ConfigurationError
from trailpay.settings import Settings


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _via_service(dashboard_url: str, name: str, since: datetime, until: datetime,
                 currency: str | None, token: str | None = None) -> dict[str, Any]:
    query = {"since": since.isoformat(), "until": until.isoformat()}
    if currency:
        query["currency"] = currency
    url = f"{dashboard_url}/api/metrics/{name}?{urllib.parse.urlencode(query)}"
    # the figures need a token: the stack's analytics service token
    request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        raise ConfigurationError(f"the analytics service answered {exc.code}: {exc.read()[:300]!r}") from exc
    except OSError as exc:
        raise ConfigurationError(
            f"cannot reach the analytics service at {dashboard_url} ({exc}); is `trailpay up` running?"
        ) from exc


def _direct(settings: Settings, names: list[str], since: datetime, until: datetime,
            currency: str | None) -> list[dict[str, Any]]:
    from dashboards.metrics_api import run_metric
    from trailpay.clickhouse import ClickHouse

    ch = ClickHouse(settings)
    try:
        async def run_all() -> list[dict[str, Any]]:
            return [await run_metric(ch, n, since, until, currency) for n in names]

        return asyncio.run(run_all())
    finally:
        ch.close()


def fetch(settings: Settings, names: list[str], since: datetime, until: datetime,
          currency: str | None) -> list[dict[str, Any]]:
    """Run the metrics on a ClickHouse server directly, or through the analytics service
    that owns the embedded chDB path (only one process may open it)."""
    if settings.clickhouse_url:
        return _direct(settings, names, since, until, currency)
    info = StackInfo.read(settings.data_path)
    if not info.dashboard_url:
        raise ConfigurationError("the running stack has no analytics service")
    secret = settings.analytics_service_token
    token = secret.get_secret_value() if secret is not None else None
    return [_via_service(info.dashboard_url, n, since, until, currency, token) for n in names]


def _render_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=result["title"], title_justify="left")
    for column in result["columns"]:
        table.add_column(column, justify="right" if column.endswith(("_minor", "_ms", "rate")) else "left")
    for row in result["rows"]:
        table.add_row(*["" if v is None else str(v) for v in row])
    if not result["rows"]:
        table.caption = "no data in this range"
    Console().print(table)


@click.command()
@data_dir_option
@click.option("--metric", "metrics", multiple=True, type=click.Choice(sorted(BY_NAME)),
              help="Only these metrics (repeatable; default: all)")
@click.option("--since", help="UTC start, ISO-8601 (default: 30 days ago)")
@click.option("--until", help="UTC end, exclusive, ISO-8601 (default: now)")
@click.option("--currency", help="Only this currency where money is summed (e.g. KES)")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
@friendly_errors
def report(data_dir: Path | None, metrics: tuple[str, ...], since: str | None, until: str | None,
           currency: str | None, fmt: str) -> None:
    """Print the dashboard figures (revenue, failures, providers, conversion, refunds)."""
    from dashboards.metrics_api import to_csv

    end = _parse_time(until) or datetime.now(UTC) + timedelta(minutes=1)
    start = _parse_time(since) or end - timedelta(days=30)
    if end <= start:
        raise click.BadParameter("--until must be after --since")
    settings = settings_for(data_dir)
    results = fetch(settings, list(metrics) or list(BY_NAME), start, end, currency)
    if fmt == "json":
        json.dump(results, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif fmt == "csv":
        for result in results:
            sys.stdout.write(f"# {result['name']}: {result['title']}\n{to_csv(result)}\n")
    else:
        for result in results:
            _render_table(result)
