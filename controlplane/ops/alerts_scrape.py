"""Scrape the running services' ``/metrics`` into one :class:`Scrape`, as Prometheus would.

Each target's samples get ``job="trailpay"`` and ``instance="<service>"`` (a sample that
already carries one of those labels keeps it as ``exported_<label>``, Prometheus' default),
and each target adds ``up{job,instance}``: 1 when it answered, 0 when it did not.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping

from prometheus_client.parser import text_string_to_metric_families

from controlplane.ops.alerts_promql import Sample, Scrape, labels_of

log = logging.getLogger(__name__)

JOB = "trailpay"
Fetch = Callable[[str], str]


def fetch_text(url: str, timeout_s: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return bytes(resp.read()).decode("utf-8", "replace")


def samples_of(text: str, instance: str) -> Iterator[Sample]:
    """The samples of one Prometheus text exposition, with the target's labels added."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            for target_label in ("job", "instance"):
                if target_label in labels:
                    labels[f"exported_{target_label}"] = labels.pop(target_label)
            labels.update(job=JOB, instance=instance)
            yield Sample(sample.name, labels_of(labels), float(sample.value))


def scrape(targets: Mapping[str, str], fetch: Fetch = fetch_text,
           clock: Callable[[], float] = time.time) -> tuple[Scrape, dict[str, str]]:
    """One scrape of every target: the samples, and the targets that failed with why."""
    samples: list[Sample] = []
    down: dict[str, str] = {}
    at = clock()
    for instance, url in sorted(targets.items()):
        try:
            found = list(samples_of(fetch(url), instance))
        except (OSError, urllib.error.URLError, ValueError) as exc:
            log.warning("scrape of %s (%s) failed: %s", instance, url, exc)
            down[instance] = str(exc)[:200]
            found = []
        samples += found
        samples.append(Sample("up", labels_of({"job": JOB, "instance": instance}),
                              0.0 if instance in down else 1.0))
    return Scrape(at, tuple(samples)), down
