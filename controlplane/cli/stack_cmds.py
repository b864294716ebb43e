"""``trailpay up`` / ``status`` / ``topics``: the embedded stack and the topic registry."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

import click

from controlplane.cli.common import data_dir_option, friendly_errors, init_logging, settings_for
from controlplane.stack.stack_secrets import ensure_secrets
from controlplane.stack.state import StackInfo
from trailpay import kafka, topics
from trailpay.lag import crash_looping, lagging, measure
from trailpay.settings import load_settings


@click.command()
@data_dir_option
@click.option("--port", type=int, default=None,
              help="HTTP API port (0 = pick a free one; default $TRAILPAY_API_PORT or 8000)")
@click.option("--dashboard-port", type=int, default=None, help="Dashboard port (0 = free one)")
@click.option("--sandbox-port", type=int, default=None, help="Provider sandbox port (0 = free one)")
@click.option("--broker", type=click.Choice(["auto", "kafka", "tansu"]), default=None,
              help="Embedded broker: Apache Kafka (kept on disk), tansu (in memory), or auto = "
              "Apache Kafka when Java 17+ and its jars are installed (default $TRAILPAY_EMBEDDED_BROKER "
              "or auto)")
@click.option("--workers", type=click.IntRange(1, 32), default=None,
              help="Stream workers in the one consumer group (default $TRAILPAY_WORKERS or 1)")
@friendly_errors
def up(data_dir: Path | None, port: int | None, dashboard_port: int | None,
       sandbox_port: int | None, broker: str | None, workers: int | None) -> None:
    """Start the embedded stack (broker, PostgreSQL, chDB, TrailPay services) and supervise it.

    Stops everything on Ctrl-C or SIGTERM. A second `up` on the same directory keeps the
    PostgreSQL and ClickHouse data, and on Apache Kafka the topics, records and offsets;
    tansu keeps records in memory and always starts empty.
    """
    from controlplane.stack.brokers import APACHE_KAFKA, choose
    from controlplane.stack.supervisor import Stack, install_signal_handlers

    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if port is not None:
        overrides["api_port"] = port
    if dashboard_port is not None:
        overrides["dashboard_port"] = dashboard_port
    elif port == 0:
        overrides["dashboard_port"] = 0
    if sandbox_port is not None:
        overrides["sandbox_port"] = sandbox_port
    elif port == 0:
        overrides["sandbox_port"] = 0
    if broker is not None:
        overrides["embedded_broker"] = broker
    if workers is not None:
        overrides["workers"] = workers
    # The data directory's own callback tokens and webhook secret, generated on its first
    # start and reused after; these settings and every child's read them from there.
    ensure_secrets(load_settings(**overrides).data_path)
    settings = load_settings(**overrides)
    init_logging(settings, "up")
    choice = choose(settings)
    stack = Stack(settings, broker=choice)
    install_signal_handlers(stack)
    click.echo(f"Starting the TrailPay embedded stack in {settings.data_path}")
    if choice.kind == APACHE_KAFKA:
        click.echo(f"Broker: Apache Kafka ({choice.reason}). Topics, records and offsets are "
                   f"kept in {settings.data_path / 'kafka'}, as are PostgreSQL and ClickHouse data.")
    else:
        click.echo(f"Broker: tansu ({choice.reason}). It keeps records in memory and starts "
                   "empty; PostgreSQL and ClickHouse data are kept, and the pipeline is restored "
                   "from the PostgreSQL archive before the stack is ready.")
    try:
        info = stack.start()
        click.echo("")
        click.secho("TrailPay is up.", fg="green", bold=True)
        if stack.restored is not None:
            click.echo(f"  {stack.restored.line()}")
        click.echo(f"  API          {info.api_url}   (docs at {info.api_url}/docs)")
        click.echo(f"  Dashboards   {info.dashboard_url}")
        click.echo(f"  Sandboxes    {info.sandbox_url}")
        kind = info.broker.summary() if info.broker else "?"
        click.echo(f"  Kafka        {info.kafka_bootstrap}   ({kind}, {settings.workers} "
                   f"stream worker{'s' if settings.workers > 1 else ''})")
        click.echo(f"  PostgreSQL   {without_password(info.database_url)}")
        click.echo(f"  ClickHouse   {info.clickhouse_dsn}")
        click.echo(f"  stack.json   {settings.data_path / 'stack.json'}")
        click.echo("Press Ctrl-C to stop.")
        sys.stdout.flush()
        stack.supervise()
    finally:
        click.echo("Stopping...")
        stack.stop()
        click.echo("Stopped.")


def without_password(url: str) -> str:
    """``postgresql+psycopg://postgres:pw@host/db`` -> ``...postgres:***@host/db``."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


def _http_json(url: str) -> tuple[bool, Any]:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status == 200, json.loads(resp.read() or b"null")
    except (OSError, ValueError) as exc:
        return False, str(exc)


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


async def _check_broker(settings: Any, info: StackInfo) -> tuple[bool, str]:
    kind = f"{info.broker.summary()}, " if info.broker is not None else ""
    try:
        described = await asyncio.wait_for(kafka.describe_topics(settings), 10)
        return True, f"{kind}{len(described)} topics"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return False, f"{type(exc).__name__}: {exc}"


async def _check_postgres(url: str) -> tuple[bool, str]:
    try:
        import psycopg

        plain = url.replace("postgresql+psycopg://", "postgresql://")
        async with await psycopg.AsyncConnection.connect(plain, connect_timeout=5) as conn:
            cur = await conn.execute("select version()")
            row = await cur.fetchone()
            return True, str(row[0]).split(",")[0] if row else "?"
    except Exception as exc:  # noqa: BLE001
        return False, f"{type(exc).__name__}: {exc}"


def _check_consumers(settings: Any) -> dict[str, tuple[bool, str]]:
    """A consumer crash-looping or lagging past the threshold is unhealthy (issue 16)."""
    problems = crash_looping(settings)
    try:
        problems += lagging(asyncio.run(asyncio.wait_for(measure(settings), 20)),
                            settings.consumer_max_lag)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return {"consumers": (False, f"lag not measured: {type(exc).__name__}: {exc}")}
    if not problems:
        return {"consumers": (True, "none crash-looping or lagging")}
    return {f"consumer {p.consumer}": (False, f"{p.kind.replace('_', '-')}: {p.detail}")
            for p in problems}


@click.command()
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON")
@friendly_errors
def status(data_dir: Path | None, as_json: bool) -> None:
    """Report each part of a running stack healthy or not (exit 0 only when all are)."""
    settings = settings_for(data_dir)
    info = StackInfo.read(settings.data_path)
    checks: dict[str, tuple[bool, str]] = {}
    checks["broker"] = asyncio.run(_check_broker(settings, info))
    checks["postgres"] = asyncio.run(_check_postgres(info.database_url))
    if info.dashboard_url:
        ok, body = _http_json(f"{info.dashboard_url}/healthz")
        checks["clickhouse"] = (ok and isinstance(body, dict) and bool(body.get("clickhouse")),
                                info.clickhouse_dsn)
    for name in ("api", "sandbox"):
        url = getattr(info, f"{name}_url")
        if url and name in info.processes:
            ok, _ = _http_json(f"{url}/healthz")
            checks[name] = (ok, url)
    for name, pid in info.processes.items():
        if name not in checks:
            checks[name] = (_pid_alive(pid), f"pid {pid}")
    checks.update(_check_consumers(settings))
    healthy = all(ok for ok, _ in checks.values())
    if as_json:
        report: dict[str, Any] = {k: {"healthy": ok, "detail": d} for k, (ok, d) in checks.items()}
        if info.broker is not None:
            report["broker"].update(info.broker.model_dump())
        click.echo(json.dumps(report, indent=2))
    else:
        for name, (ok, detail) in checks.items():
            mark = click.style("healthy  ", fg="green") if ok else click.style("UNHEALTHY", fg="red")
            click.echo(f"{name:<14} {mark} {detail}")
    sys.exit(0 if healthy else 1)


@click.group("topics")
def topics_group() -> None:
    """Create, list and describe TrailPay's Kafka topics."""


@topics_group.command("create")
@data_dir_option
@friendly_errors
def topics_create(data_dir: Path | None) -> None:
    """Create every missing topic (safe to run again)."""
    settings = settings_for(data_dir)
    created = asyncio.run(kafka.create_topics(settings))
    click.echo(f"created {len(created)} topics" + (f": {', '.join(created)}" if created else ""))


@topics_group.command("list")
@friendly_errors
def topics_list() -> None:
    """List the topic registry: name, key, contract, configuration."""
    for spec in topics.TOPICS:
        cfg = ",".join(f"{k}={v}" for k, v in spec.config().items())
        click.echo(f"{spec.name:<24} key={spec.key:<40} {spec.contract:<20} {cfg}")


@topics_group.command("describe")
@data_dir_option
@friendly_errors
def topics_describe(data_dir: Path | None) -> None:
    """Show the topics as the broker has them (partition counts)."""
    settings = settings_for(data_dir)
    for row in asyncio.run(kafka.describe_topics(settings)):
        known = topics.BY_NAME.get(row["topic"])
        note = "" if known else "  (not a TrailPay topic)"
        click.echo(f"{row['topic']:<24} partitions={row['partitions']}{note}")


@click.command()
@data_dir_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on")
@friendly_errors
def analytics(data_dir: Path | None, host: str) -> None:
    """Run the analytics service: ClickHouse sink and dashboards (owns the chDB path)."""
    import uvicorn

    from dashboards.server import create_app

    settings = settings_for(data_dir, running_stack=False)
    init_logging(settings, "analytics")
    uvicorn.run(create_app(settings), host=host, port=settings.dashboard_port,
                log_level="warning", log_config=None)  # through our root handler: scrubbed


@click.command("init")
@data_dir_option
@friendly_errors
def init(data_dir: Path | None) -> None:
    """Prepare servers for a deployment: create topics and run database migrations."""
    settings = settings_for(data_dir)
    init_logging(settings, "init")
    created = asyncio.run(kafka.create_topics(settings))
    click.echo(f"topics: {len(created)} created")
    try:
        from sinks.postgres.migrations import upgrade
    except ImportError:
        click.echo("database: no migrations installed")
        return
    upgrade(settings)
    click.echo("database: migrated")
