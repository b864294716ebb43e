"""``--help`` works on ``trailpay`` and on every command and subcommand under it.

Runs in-process through click's CliRunner: it catches a command module that no longer
imports, an option declared twice, a docstring click cannot format, and a command
dropped from ``controlplane.cli.main.COMMANDS``.
"""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from controlplane.cli.main import cli

#: Written out, not read from COMMANDS: the commands people and scripts rely on. More may exist.
EXPECTED = {
    "analytics", "bench", "db", "db current", "db upgrade", "dlq", "dlq list", "dlq purge",
    "dlq redrive", "dlq show", "ingress", "init", "lag", "payments", "payments check-pending",
    "providers", "providers list", "providers setup", "replay", "report", "sandbox",
    "sink-postgres", "status", "tokens", "tokens create", "topics", "topics create",
    "topics describe", "topics list", "up", "users", "users create", "worker",
}


def _paths(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if path:
        yield path
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _paths(sub, (*path, name))


ALL = [" ".join(p) for p in _paths(cli)]


def test_every_expected_command_is_registered() -> None:
    assert EXPECTED - set(ALL) == set()


def test_top_level_help_lists_the_commands() -> None:
    result = CliRunner().invoke(cli, ["--help"], prog_name="trailpay")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: trailpay [OPTIONS] COMMAND [ARGS]...")
    for name in ("up", "status", "replay", "dlq", "payments", "providers", "lag"):
        assert f"  {name} " in result.output, name


@pytest.mark.parametrize("command", ALL)
def test_help_of(command: str) -> None:
    result = CliRunner().invoke(cli, [*command.split(), "--help"], prog_name="trailpay")
    assert result.exit_code == 0, result.output
    # "usage:" in lower case from `bench`, which hands its arguments to argparse.
    assert result.output.lower().startswith(f"usage: trailpay {command}"), result.output[:200]
