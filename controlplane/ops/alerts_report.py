"""``trailpay report --metric alerts``: scrape the running stack, say which rules would fire.

Prometheus evaluates rules over scrapes it keeps; one run of the report has only its own.
So that ``rate()``/``increase()`` see counters move between two runs, the report keeps the
scrapes of earlier runs in ``DATA_DIR/alerts-scrapes.json`` (only the series the rules read,
only as far back as the longest range in the rules, at most :data:`KEEP_SCRAPES`), and
evaluates over those and the new one. ``--interval`` takes a second scrape in the same run.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from controlplane.ops.alerts import RULES_FILE, Rule, evaluate_rules, load
from controlplane.ops.alerts_promql import (
    Aggregation,
    Binary,
    Node,
    RangeFunction,
    Sample,
    Scrape,
    Selector,
    labels_of,
)
from controlplane.ops.alerts_scrape import Fetch, fetch_text, scrape

log = logging.getLogger(__name__)

HISTORY_FILE = "alerts-scrapes.json"
KEEP_SCRAPES = 120


def _selectors(node: Node) -> Iterator[Selector]:
    if isinstance(node, Selector):
        yield node
    elif isinstance(node, RangeFunction):
        yield node.selector
    elif isinstance(node, Aggregation):
        yield from _selectors(node.arg)
    elif isinstance(node, Binary):
        yield from _selectors(node.left)
        yield from _selectors(node.right)


def _read_names(rules: Sequence[Rule]) -> tuple[set[str], float]:
    """The series names the rules read (counters with their ``_created``), the longest range."""
    names: set[str] = set()
    longest = 0.0
    for rule in rules:
        for selector in _selectors(rule.node):
            names |= {selector.name, selector.name.removesuffix("_total") + "_created"}
            longest = max(longest, selector.range_s or 0.0)
    return names, longest


def load_history(path: Path) -> list[Scrape]:
    try:
        raw = json.loads(path.read_text())
        return [Scrape(float(s["at"]), tuple(Sample(n, labels_of(ls), float(v)) for n, ls, v in s["samples"]))
                for s in raw]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a damaged file starts over
        log.warning("alert scrape history %s unreadable (%s); starting over", path, exc)
        return []


def save_history(path: Path, scrapes: Sequence[Scrape]) -> None:
    data = [{"at": s.at, "samples": [[x.name, dict(x.labels), x.value] for x in s.samples]} for s in scrapes]
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def alerts_report(targets: Mapping[str, str], *, rules_path: Path = RULES_FILE,
                  interval_s: float = 0.0, history: Path | None = None, fetch: Fetch = fetch_text,
                  sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Scrape ``targets`` (service -> /metrics URL) once, or twice ``interval_s`` apart, and
    evaluate every rule over the scrapes kept in ``history`` (when given) and these."""
    rules = load(rules_path)
    names, longest = _read_names(rules)
    earlier = load_history(history) if history is not None else []
    scrapes: list[Scrape] = []
    down: dict[str, str] = {}
    for n in range(2 if interval_s > 0 else 1):
        if n:
            sleep(interval_s)
        taken, down = scrape(targets, fetch)
        scrapes.append(Scrape(taken.at, tuple(s for s in taken.samples if s.name in names)))
    now = scrapes[-1].at
    kept = [s for s in earlier if now - longest <= s.at < scrapes[0].at][-(KEEP_SCRAPES - len(scrapes)):]
    window = [*kept, *scrapes]
    if history is not None:
        try:
            save_history(history, window)
        except OSError as exc:
            log.warning("alert scrape history not saved to %s: %s", history, exc)
    alerts = evaluate_rules(rules, window)
    return {
        "name": "alerts",
        "title": "Alerts that would fire now",
        "rules_file": str(rules_path),
        "rules": len(rules),
        "scrapes": [s.at for s in window],
        "targets": dict(sorted(targets.items())),
        "targets_down": down,
        "firing": sum(1 for a in alerts if a.state == "firing"),
        "pending": sum(1 for a in alerts if a.state == "pending"),
        "alerts": [a.as_json() for a in alerts],
    }
