"""Run the ClickHouse sink on its own, or query its tables (tests, benchmarks, ops).

    python -m sinks.clickhouse run --data-dir DIR [--topic-prefix P] [--group G] [--until-idle S]
    python -m sinks.clickhouse query --data-dir DIR "SELECT ..."

In the embedded stack the sink runs inside ``trailpay analytics`` (it owns the chDB path);
do not point this at a chDB directory that a running analytics service holds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sinks.clickhouse.sink import CONSUMED, GROUP, ClickHouseSink
from sinks.runner import RunnerConfig, SinkRunner, run_until_signalled, stop_when_idle
from trailpay import topics
from trailpay.clickhouse import ClickHouse
from trailpay.logs import setup_logging
from trailpay.settings import Settings, load_settings


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    ch = ClickHouse(settings)
    try:
        sink = ClickHouseSink(ch, topic_map={args.topic_prefix + t: t for t in CONSUMED})
        runner = SinkRunner(settings, sink, group_id=args.group,
                            config=RunnerConfig(batch_size=args.batch_size, max_wait_s=args.max_wait),
                            dead_letter_topic=args.topic_prefix + topics.DEAD_LETTERS)
        watcher = None
        if args.until_idle:
            watcher = asyncio.create_task(stop_when_idle(runner, args.until_idle))
        await run_until_signalled(runner)
        if watcher is not None:
            watcher.cancel()
        print(json.dumps({"written": runner.records_written}), flush=True)  # noqa: T201
        return 0
    finally:
        ch.close()


def _rows_of(sql: str) -> Callable[[Any], list[dict[str, Any]]]:
    def run(client: Any) -> list[dict[str, Any]]:
        result = client.query(sql)
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sinks.clickhouse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="consume and write until SIGTERM (or idle)")
    query = sub.add_parser("query", help="print the rows of one query as JSON")
    for p in (run, query):
        p.add_argument("--data-dir", type=Path, default=None)
    run.add_argument("--topic-prefix", default="")
    run.add_argument("--group", default=GROUP)
    run.add_argument("--batch-size", type=int, default=5000)
    run.add_argument("--max-wait", type=float, default=1.0)
    run.add_argument("--until-idle", type=float, default=None,
                     help="exit after this many seconds without records")
    query.add_argument("sql", nargs="+", help="one query (prints its rows) or several "
                       "(prints a list with the rows of each)")
    args = parser.parse_args(argv)
    settings = load_settings(**({"data_dir": args.data_dir} if args.data_dir else {}))
    if args.command == "run":
        setup_logging(settings.log_level, settings.log_format, "sink-clickhouse")
        return asyncio.run(_run(settings, args))
    ch = ClickHouse(settings)
    try:
        results = [ch.call(_rows_of(sql)) for sql in args.sql]
        out = results[0] if len(results) == 1 else results
        print(json.dumps(out, default=str))  # noqa: T201
    finally:
        ch.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
