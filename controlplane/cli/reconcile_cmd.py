"""``trailpay reconcile``: ask the providers about the window's payments; list the disagreements.

Exit codes: 0 when TrailPay and the providers agree on every payment checked, 1 while any
mismatch remains, 2 when something could not be checked (PostgreSQL, Kafka or a provider
unreachable: the message says which setting to look at).

:mod:`controlplane.ops.reconcile_run` is imported inside the function: it loads SQLAlchemy
and the provider SDKs, which would slow every `trailpay` start (see
:func:`ops_common.engine_for`).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from controlplane.cli.audit_cmd import ops_audited, reason_option
from controlplane.cli.common import data_dir_option, friendly_errors
from controlplane.cli.ops_common import engine_for, err, out, progress_bar, setup, when_option
from trailpay.domain.events import Provider
from trailpay.settings import Settings

if TYPE_CHECKING:
    from controlplane.ops.reconcile_run import Result, Window

#: Show a progress bar from this many payments on (and only on a terminal).
PROGRESS_FROM = 50
#: Where each provider's address and credentials are set, for the "not checked" hint.
PROVIDER_SETTINGS = {
    "stripe": "TRAILPAY_STRIPE_API_BASE and TRAILPAY_STRIPE_API_KEY",
    "mpesa": "TRAILPAY_MPESA_BASE_URL and TRAILPAY_MPESA_CONSUMER_KEY / _SECRET",
    "airtel": "TRAILPAY_AIRTEL_BASE_URL and TRAILPAY_AIRTEL_CLIENT_ID / _SECRET",
}


@click.command("reconcile")
@data_dir_option
@click.option("--since", callback=when_option, default=None,
              help="Payments created from this time: ISO 8601 or 30m / 2h / 1d ago [default: 1d]")
@click.option("--until", callback=when_option, default=None,
              help="Payments created before this time [default: now]")
@click.option("--provider", type=click.Choice([p.value for p in Provider]), default=None)
@click.option("--reference", "references", multiple=True, help="Only this payment (repeatable)")
@click.option("--fix", is_flag=True,
              help="Feed each provider's answer in as a provider event, then check again")
@click.option("--wait", type=click.FloatRange(0, 600), default=30.0, show_default=True,
              help="With --fix: how long to wait for the state machine before checking again")
@click.option("--min-age", type=click.FloatRange(0), default=None,
              help="Leave out payments changed in the last N seconds (a callback may be on its "
                   "way) [default: TRAILPAY_RECONCILE_MIN_AGE_S]")
@click.option("--concurrency", type=click.IntRange(1, 128), default=None,
              help="Provider questions at a time [default: TRAILPAY_RECONCILE_CONCURRENCY]")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON")
@reason_option
@friendly_errors
def reconcile(data_dir: Path | None, since: datetime | None, until: datetime | None,
              provider: str | None, references: tuple[str, ...], fix: bool, wait: float,
              min_age: float | None, concurrency: int | None, as_json: bool,
              reason: str | None) -> None:
    """Compare every payment of the window with what its provider says.

    Checks open, failed, expired and cancelled payments (does the provider hold money for
    them?) and paid ones (does the provider agree, for the amount asked?). Stripe is asked
    by PaymentIntent retrieve, M-Pesa by STK Push Query, Airtel by transaction enquiry.
    --fix sends each answer through the pipeline (source `reconcile`); the state machine
    applies it with its usual cross-checks. Exit 1 while any mismatch remains.
    """
    from controlplane.ops.reconcile_run import Window

    settings = setup(data_dir, "reconcile")
    now = datetime.now(UTC)
    window = Window(since=since or now - timedelta(seconds=settings.reconcile_window_s),
                    until=until or now, provider=Provider(provider) if provider else None,
                    min_age=timedelta(seconds=settings.reconcile_min_age_s if min_age is None else min_age),
                    references=references)
    if window.since >= window.until:
        raise click.BadParameter("--since must be before --until", param_hint="--since")
    result = asyncio.run(_run(settings, window, concurrency or settings.reconcile_concurrency,
                              wait if fix else None, show_progress=not as_json, reason=reason))
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
    else:
        _print(result, fix)
    if result.mismatches:
        sys.exit(1)
    if result.errors:
        sys.exit(2)


async def _run(settings: Settings, window: Window, concurrency: int, fix_wait_s: float | None, *,
               show_progress: bool, reason: str | None = None) -> Result:
    from connectors.providers.lookup import ProviderLookup
    from controlplane.ops.reconcile_run import run

    engine = engine_for(settings)
    lookup = ProviderLookup.from_settings(settings)
    bar = progress_bar() if show_progress and err.is_terminal else None

    def progress(total: int) -> Callable[[int], None]:
        if bar is None or total < PROGRESS_FROM:
            return lambda _n: None
        bar.start()
        task = bar.add_task("asking providers", total=total)
        return lambda n: bar.advance(task, n)

    try:
        if fix_wait_s is None:  # a check changes nothing: only --fix is an act to audit
            return await run(settings, engine, lookup, window, concurrency=concurrency,
                             fix_wait_s=fix_wait_s, progress=progress)
        async with ops_audited(engine, "reconcile.fix", window.provider or "all providers",
                               reason=reason,
                               details={"since": window.since.isoformat(),
                                        "until": window.until.isoformat(),
                                        "references": list(window.references)[:100]}) as extra:
            result = await run(settings, engine, lookup, window, concurrency=concurrency,
                               fix_wait_s=fix_wait_s, progress=progress)
            extra.update(mismatches_left=len(result.mismatches), errors=len(result.errors))
        return result
    finally:
        if bar is not None:
            bar.stop()
        await lookup.aclose()
        await engine.dispose()


def _print(result: Result, fixed: bool) -> None:
    if result.mismatches:
        table = Table(title=f"{len(result.mismatches)} mismatches", title_justify="left")
        for col in ("reference", "provider", "TrailPay says", "provider says", "amount asked",
                    "amount at provider", "kind", "provider code"):
            table.add_column(col, overflow="fold")
        for m in result.mismatches:
            r, a = m.recorded, m.answer
            table.add_row(r.reference, r.provider.value, r.status.value, a.says,
                          str(r.amount), str(a.amount) if a.amount else "-",
                          m.kind, a.provider_code or "")
        out.print(table)
    for payment, error in result.errors:
        err.print(f"not checked: {payment.reference} ({payment.provider.value}): {error}")
    for provider in sorted({p.provider.value for p, _ in result.errors}):
        err.print(f"{provider} did not answer after the retries: check {PROVIDER_SETTINGS[provider]} "
                  "and the provider's status, then run reconcile again")
    out.print(result.summary())
    if result.mismatches and not fixed and any(m.fixable for m in result.mismatches):
        out.print("Next: --fix feeds the providers' answers in (the state machine applies them).")
    if result.mismatches and any(not m.fixable for m in result.mismatches):
        out.print("Mismatches --fix cannot settle (paid at TrailPay, not at the provider, or "
                  "another amount) need a person: see docs/reconcile.md.")
