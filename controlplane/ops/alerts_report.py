"""``trailpay report --metric alerts``: scrape the running stack, say which rules would fire."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from controlplane.ops.alerts import RULES_FILE, evaluate_rules, load
from controlplane.ops.alerts_promql import Scrape
from controlplane.ops.alerts_scrape import Fetch, fetch_text, scrape


def alerts_report(targets: Mapping[str, str], *, rules_path: Path = RULES_FILE,
                  interval_s: float = 0.0, fetch: Fetch = fetch_text,
                  sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Scrape ``targets`` (service -> /metrics URL) once, or twice ``interval_s`` apart so
    that rate() and increase() see the counters move, and evaluate every rule on it."""
    rules = load(rules_path)
    scrapes: list[Scrape] = []
    down: dict[str, str] = {}
    for n in range(2 if interval_s > 0 else 1):
        if n:
            sleep(interval_s)
        taken, down = scrape(targets, fetch)
        scrapes.append(taken)
    alerts = evaluate_rules(rules, scrapes)
    return {
        "name": "alerts",
        "title": "Alerts that would fire now",
        "rules_file": str(rules_path),
        "rules": len(rules),
        "scrapes": [s.at for s in scrapes],
        "targets": dict(sorted(targets.items())),
        "targets_down": down,
        "firing": sum(1 for a in alerts if a.state == "firing"),
        "pending": sum(1 for a in alerts if a.state == "pending"),
        "alerts": [a.as_json() for a in alerts],
    }
