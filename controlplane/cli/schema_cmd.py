"""``trailpay schema export``: the JSON Schemas the booking platform's developers build on.

Two contracts cross the boundary with the booking platform: the public events we publish
(``payments.events.v1`` and the outgoing webhooks, :class:`PublicPaymentEvent`) and the
booking events we accept on ``bookings.events.v1`` (:class:`BookingEvent`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel

from trailpay import topics
from trailpay.domain.events import BookingEvent
from trailpay.domain.public_events import PublicPaymentEvent

#: File name -> (topic, model) of every exported schema.
EXPORTED: dict[str, tuple[str, type[BaseModel]]] = {
    f"{topics.PAYMENT_EVENTS}.schema.json": (topics.PAYMENT_EVENTS, PublicPaymentEvent),
    f"{topics.BOOKING_EVENTS}.schema.json": (topics.BOOKING_EVENTS, BookingEvent),
}


def schema_of(topic: str, model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``model`` as it travels on ``topic``."""
    schema = model.model_json_schema(mode="serialization" if topic == topics.PAYMENT_EVENTS
                                     else "validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://trailpay.dev/schemas/{topic}.schema.json",
            "x-topic": topic, **schema}


def export(out_dir: Path) -> list[Path]:
    """Write every schema of :data:`EXPORTED` into ``out_dir``; the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (topic, model) in EXPORTED.items():
        path = out_dir / name
        path.write_text(json.dumps(schema_of(topic, model), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


@click.group("schema")
def schema_group() -> None:
    """The event contracts as JSON Schema."""


@schema_group.command("export")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("schemas"), show_default=True, help="Directory to write into")
def export_cmd(out_dir: Path) -> None:
    """Write the JSON Schema of the public payment events and of the booking events we accept."""
    for path in export(out_dir):
        click.echo(str(path))
