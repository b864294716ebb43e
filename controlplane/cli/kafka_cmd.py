"""``trailpay kafka``: the Apache Kafka broker the embedded stack runs (jars from Maven Central)."""

from __future__ import annotations

from pathlib import Path

import click

from controlplane.cli.common import friendly_errors
from controlplane.stack import kafka_install
from trailpay.settings import load_settings


@click.group("kafka")
def kafka_group() -> None:
    """Install and inspect the embedded Apache Kafka broker."""


@kafka_group.command("install")
@click.option("--dir", "target", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the jars go (default: $TRAILPAY_KAFKA_HOME or "
              "~/.cache/trailpay/kafka/<version>)")
@click.option("--force", is_flag=True, help="Copy the jars again even when they are installed")
@friendly_errors
def kafka_install_cmd(target: Path | None, force: bool) -> None:
    """Copy the Apache Kafka broker's runtime jars from Maven Central (needs java 17+ and mvn).

    Safe to run again: a complete install is kept. `trailpay up` then runs Apache Kafka.
    The version is $TRAILPAY_KAFKA_VERSION, else the one kafka/pom.xml pins."""
    settings = load_settings()
    version = kafka_install.selected_version(settings)
    home = target or kafka_install.kafka_home(settings, version)
    kafka_install.install(home, version=version, echo=click.echo, force=force)


@kafka_group.command("where")
@friendly_errors
def kafka_where() -> None:
    """Print the jar directory and whether the selected version is installed (exit 1 when not)."""
    settings = load_settings()
    version = kafka_install.selected_version(settings)
    home = kafka_install.kafka_home(settings, version)
    ok = kafka_install.installed(home, version)
    found = kafka_install.installed_version(home)
    state = "installed" if ok else f"holds {found}, not {version}" if found else "not installed"
    click.echo(f"{home} (Apache Kafka {version}: {state})")
    raise SystemExit(0 if ok else 1)
