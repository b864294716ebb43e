"""Entry point of the ``trailpay`` command."""

from __future__ import annotations

import importlib

import click

from trailpay import __version__

#: (module, attribute) of every command; each feature registers its commands here.
COMMANDS: list[tuple[str, str]] = [
    ("controlplane.cli.report_cmd", "report"),
    ("controlplane.cli.stack_cmds", "up"),
    ("controlplane.cli.stack_cmds", "status"),
    ("controlplane.cli.stack_cmds", "topics_group"),
    ("controlplane.cli.stack_cmds", "analytics"),
    ("controlplane.cli.stack_cmds", "init"),
    ("controlplane.cli.sandbox_cmd", "sandbox"),
    ("controlplane.cli.sink_cmds", "db_group"),
    ("controlplane.cli.sink_cmds", "sink_postgres"),
    ("controlplane.cli.ingress_cmds", "ingress"),
    ("controlplane.cli.ingress_cmds", "users_group"),
    ("controlplane.cli.ingress_cmds", "tokens_group"),
    ("controlplane.cli.worker_cmd", "worker"),
    ("controlplane.cli.replay_cmd", "replay"),
    ("controlplane.cli.restore_cmd", "restore"),
    ("controlplane.cli.dlq_cmds", "dlq_group"),
    ("controlplane.cli.payments_cmds", "payments_group"),
    ("controlplane.cli.providers_cmds", "providers_group"),
    ("controlplane.cli.lag_cmd", "lag"),
    ("controlplane.cli.bench_cmd", "bench"),
    ("controlplane.cli.kafka_cmd", "kafka_group"),
    ("controlplane.cli.reconcile_cmd", "reconcile"),
    ("controlplane.cli.refunds_cmd", "refunds_group"),
    ("controlplane.cli.schema_cmd", "schema_group"),
    ("controlplane.cli.webhooks_cmds", "webhooks_group"),
    ("controlplane.cli.audit_cmd", "audit_group"),
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
