"""``trailpay bench``: the end-to-end benchmark (benchmarks/e2e.py) from a source checkout.

The benchmark lives in ``benchmarks/`` next to the package (it reuses the stream, sink and
ingress benchmarks there); an installed wheel without the repository says so plainly.
Options are the benchmark's own (``trailpay bench --help``), among them ``--broker kafka|tansu``
(twice: the whole table on each broker, side by side).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[2]


@click.command("bench", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                          "help_option_names": []}, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    """End-to-end benchmark of an embedded stack of its own, with baselines (--help for options)."""
    if not (ROOT / "benchmarks" / "e2e.py").is_file():
        raise click.ClickException(
            f"benchmarks/e2e.py is not next to the trailpay package ({ROOT}); "
            "run `trailpay bench` from a source checkout (pip install -e .)")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    e2e = importlib.import_module("benchmarks.e2e")
    sys.argv[0] = "trailpay bench"
    raise SystemExit(e2e.main(list(args)))
