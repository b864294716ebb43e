"""Entry point of the ``trailpay`` command."""

from __future__ import annotations

import importlib

import click

from trailpay import __version__

#: (module, attribute) of every command; each feature registers its commands here.
COMMANDS: list[tuple[str, str]] = [
    ("trailpay.cli.report_cmd", "report"),
    ("trailpay.cli.stack_cmds", "up"),
    ("trailpay.cli.stack_cmds", "status"),
    ("trailpay.cli.stack_cmds", "topics_group"),
    ("trailpay.cli.stack_cmds", "analytics"),
    ("trailpay.cli.stack_cmds", "init"),
    ("connectors.sandboxes.cli", "sandbox"),
    ("trailpay.cli.sink_cmds", "db_group"),
    ("trailpay.cli.sink_cmds", "sink_postgres"),
    ("trailpay.cli.ingress_cmds", "ingress"),
    ("trailpay.cli.ingress_cmds", "users_group"),
    ("trailpay.cli.ingress_cmds", "tokens_group"),
    ("trailpay.cli.worker_cmd", "worker"),
    ("trailpay.cli.ops_cmds", "replay"),
    ("trailpay.cli.ops_cmds", "dlq_group"),
    ("trailpay.cli.ops_cmds", "payments_group"),
    ("trailpay.cli.ops_cmds", "providers_group"),
    ("trailpay.cli.ops_cmds", "lag"),
    ("trailpay.cli.bench_cmd", "bench"),
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trailpay")
def cli() -> None:
    """TrailPay: the Kafka-driven payments pipeline of Trails & Trails.

    Start here: `trailpay up` runs everything on this machine; `trailpay status` checks it.
    """


for module_name, attribute in COMMANDS:
    cli.add_command(getattr(importlib.import_module(module_name), attribute))


if __name__ == "__main__":
    cli()
