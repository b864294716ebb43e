"""``trailpay sandbox``: run the provider sandboxes (Stripe, M-Pesa Daraja, Airtel Money)."""

from __future__ import annotations

from pathlib import Path

import click

from controlplane.cli.common import data_dir_option, friendly_errors, init_logging, settings_for


@click.command()
@data_dir_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on")
@click.option("--port", type=int, default=None,
              help="Port (default $TRAILPAY_SANDBOX_PORT or 8070)")
@click.option("--callback-delay", type=float, default=0.5, show_default=True,
              help="Seconds before a callback or webhook is POSTed to TrailPay")
@friendly_errors
def sandbox(data_dir: Path | None, host: str, port: int | None, callback_delay: float) -> None:
    """Run the provider sandboxes on one port: /stripe, /mpesa, /airtel, /healthz.

    Outcomes are deterministic from the inputs (phone number's last digit, Stripe test
    payment method); see docs/sandboxes.md. Callbacks and webhooks go to
    $TRAILPAY_PUBLIC_BASE_URL (default: the API URL).
    """
    import uvicorn

    from connectors.sandboxes.app import create_app

    settings = settings_for(data_dir, running_stack=False)
    init_logging(settings, "sandbox")
    uvicorn.run(create_app(settings, callback_delay_s=callback_delay), host=host,
                port=settings.sandbox_port if port is None else port, log_level="warning",
                log_config=None)  # uvicorn's lines through our root handler: scrubbed
