"""``trailpay refunds record-external``: money returned outside TrailPay, recorded as a refund.

A customer refunded by cash, a bank transfer or the provider's own portal would otherwise
still count as paid in full: revenue and refund figures would be wrong. The command publishes
a refund fact (a succeeded refund event, ``provider_code`` ``recorded_external``, the
operator and reason as its words) onto provider.events.v1; the state machine applies it like
a refund the provider made without our asking (partially_refunded / refunded), so the read
model, the analytics and the notifications follow. Operators only: it needs the stack's
settings (``--data-dir``), and a reason.

The refund id is derived from (reference, amount, reason) unless ``--refund-id`` is given:
running the same command twice records the money once.

The read model (SQLAlchemy) is imported inside the function: it would almost double every
`trailpay` start (see :func:`ops_common.engine_for`).
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from pathlib import Path
from typing import Any

import click

from controlplane.cli.common import data_dir_option, friendly_errors
from controlplane.cli.ops_common import err, out, setup, with_engine
from trailpay import codec, routing, topics
from trailpay.domain.events import Money, Provider, ProviderEvent, ProviderEventKind, stable_id, utcnow
from trailpay.domain.money import MoneyError
from trailpay.domain.refunds import RECORDED_EXTERNALLY
from trailpay.domain.status import REFUNDABLE
from trailpay.kafka import make_producer
from trailpay.settings import Settings

REFUNDABLE_VALUES = frozenset(s.value for s in REFUNDABLE)


@click.group("refunds")
def refunds_group() -> None:
    """Refund operations."""


@refunds_group.command("record-external")
@data_dir_option
@click.option("--reference", required=True, help="The payment's reference")
@click.option("--amount", required=True, help="Returned amount in major units, e.g. 500 or 12.50")
@click.option("--reason", required=True, help="Why and how the money went back (kept on the refund)")
@click.option("--actor", default=None, help="Who records it (default: the login name)")
@click.option("--refund-id", default=None, help="Our id for it (default: derived from the inputs)")
@friendly_errors
def record_external(data_dir: Path | None, reference: str, amount: str, reason: str,
                    actor: str | None, refund_id: str | None) -> None:
    """Record money returned to the customer outside TrailPay, so the figures stay true."""
    reason = reason.strip()
    if len(reason) < 3:
        raise click.BadParameter("say why (at least 3 characters)", param_hint="--reason")
    settings = setup(data_dir, "refunds")
    who = actor or getpass.getuser()
    row = asyncio.run(with_engine(settings, lambda e: _payment(e, reference)))
    if row is None:
        err.print(f"No payment {reference!r} in the read model.")
        sys.exit(1)
    try:
        money = Money(amount=routing.exact_minor_units(amount, row["currency"]), currency=row["currency"])
    except (MoneyError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--amount") from None
    problem = refusal(row, money.amount)
    if problem:
        err.print(f"Not recorded: {problem}")
        sys.exit(1)
    rid = refund_id or "ext_" + stable_id("external-refund", reference, money.amount, reason)[:24]
    event = external_refund_event(row["reference"], Provider(row["provider"]), money, rid,
                                  f"recorded outside TrailPay by {who}: {reason}")
    asyncio.run(_publish(settings, event))
    out.print(f"Recorded refund {rid} of {money} on {row['reference']} ({topics.PROVIDER_EVENTS}); "
              f"`trailpay` read model and analytics follow within seconds.")


def refusal(row: dict[str, Any], amount_minor: int) -> str | None:
    """Why an external refund of ``amount_minor`` cannot be true of this payment, or None."""
    if row["status"] not in REFUNDABLE_VALUES:
        return f"payment {row['reference']} is {row['status']}; only paid payments can be refunded"
    left = row["amount_minor"] - max(row["refunded_minor"], row["committed_minor"])
    if amount_minor <= 0:
        return "the amount must be positive"
    if amount_minor > left:
        return f"only {left} minor units of {row['reference']} are left to refund"
    return None


def external_refund_event(reference: str, provider: Provider, amount: Money, refund_id: str,
                          words: str) -> ProviderEvent:
    return ProviderEvent(
        event_id=f"external-refund:{refund_id}", occurred_at=utcnow(), kind=ProviderEventKind.REFUND,
        reference=reference, provider=provider, refund_id=refund_id, refund_succeeded=True,
        amount=amount, provider_status="succeeded", provider_code=RECORDED_EXTERNALLY,
        provider_message=words[:500], source="reconcile")


async def _payment(engine: Any, reference: str) -> dict[str, Any] | None:
    from sqlalchemy import select

    from connectors.ingress.readmodel import committed_refund_minor
    from sinks.postgres.schema import payments as t

    async with engine.connect() as conn:
        row = (await conn.execute(select(t).where(t.c.reference == reference))).mappings().first()
    if row is None:
        return None
    return {**dict(row), "committed_minor": await committed_refund_minor(engine, reference)}


async def _publish(settings: Settings, event: ProviderEvent) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(topics.PROVIDER_EVENTS, codec.encode(event),
                                     key=event.reference.encode())
    finally:
        await producer.stop()
