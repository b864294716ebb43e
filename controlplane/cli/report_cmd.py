"""``trailpay report``: the dashboard figures as tables in the terminal.

``--metric alerts`` is no dashboard figure: it scrapes every service's ``/metrics`` (the
URLs ``trailpay up`` records in stack.json, or ``--target NAME=URL``) and prints which of the
shipped alert rules would fire now (:mod:`controlplane.ops.alerts_report`).
"""

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
from controlplane.ops.alerts_report import HISTORY_FILE, alerts_report
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


ALERTS = "alerts"


def _alert_targets(data_dir: Path | None, given: tuple[str, ...]) -> tuple[dict[str, str], Path | None]:
    """The /metrics URLs to scrape, and where to keep the scrapes (the stack's directory)."""
    if given:
        pairs = [t.split("=", 1) for t in given]
        if any(len(p) != 2 or not p[0] or not p[1] for p in pairs):
            raise click.BadParameter("--target takes NAME=URL", param_hint="--target")
        return {name: url for name, url in pairs}, None
    settings = settings_for(data_dir, running_stack=False)
    info = StackInfo.read(settings.data_path)
    if not info.metrics_urls:
        raise ConfigurationError("the running stack records no metrics URLs in stack.json")
    return dict(info.metrics_urls), settings.data_path / HISTORY_FILE


def _render_alerts(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['title']} ({result['rules']} rules)", title_justify="left")
    for column in ("alert", "state", "severity", "labels", "value", "summary"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for alert in result["alerts"]:
        shown = {k: v for k, v in alert["labels"].items() if k != "severity"}
        table.add_row(alert["alert"], alert["state"], alert["severity"],
                      ", ".join(f"{k}={v}" for k, v in sorted(shown.items())), f"{alert['value']:g}",
                      alert["annotations"].get("summary", ""))
    if not result["alerts"]:
        table.caption = "nothing would fire"
    for name, why in result["targets_down"].items():
        table.caption = f"{table.caption or ''}\n{name} did not answer: {why}".strip()
    Console().print(table)


def _report_alerts(data_dir: Path | None, targets: tuple[str, ...], interval: float, fmt: str) -> None:
    urls, history = _alert_targets(data_dir, targets)
    result = alerts_report(urls, interval_s=interval, history=history)
    if fmt == "json":
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif fmt == "csv":
        sys.stdout.write("alert,state,severity,labels,value\n")
        for a in result["alerts"]:
            labels = ";".join(f"{k}={v}" for k, v in sorted(a["labels"].items()))
            sys.stdout.write(f"{a['alert']},{a['state']},{a['severity']},\"{labels}\",{a['value']:g}\n")
    else:
        _render_alerts(result)


@click.command()
@data_dir_option
@click.option("--metric", "metrics", multiple=True, type=click.Choice([*sorted(BY_NAME), ALERTS]),
              help="Only these metrics (repeatable; default: all dashboard figures); "
                   "'alerts': which alert rules would fire now")
@click.option("--since", help="UTC start, ISO-8601 (default: 30 days ago)")
@click.option("--until", help="UTC end, exclusive, ISO-8601 (default: now)")
@click.option("--currency", help="Only this currency where money is summed (e.g. KES)")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json")
@click.option("--target", "targets", multiple=True, metavar="NAME=URL",
              help="alerts: scrape this /metrics URL instead of the stack's (repeatable)")
@click.option("--interval", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="alerts: scrape twice this many seconds apart (rates over the gap)")
@friendly_errors
def report(data_dir: Path | None, metrics: tuple[str, ...], since: str | None, until: str | None,
           currency: str | None, fmt: str, as_json: bool, targets: tuple[str, ...],
           interval: float) -> None:
    """Print the dashboard figures (revenue, failures, providers, conversion, refunds),
    or with ``--metric alerts`` the alert rules that would fire now."""
    from dashboards.metrics_api import to_csv

    fmt = "json" if as_json else fmt
    if ALERTS in metrics:
        if len(metrics) > 1:
            raise click.BadParameter("--metric alerts goes alone", param_hint="--metric")
        _report_alerts(data_dir, targets, interval, fmt)
        return

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
