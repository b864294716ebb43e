"""Groups of settings kept apart so :mod:`trailpay.settings` stays readable; ``Settings``
inherits them, so they are read like every other (``TRAILPAY_<NAME>``, the data dir's secrets)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings


class OutboundWebhookSettings(BaseSettings):
    """Signed webhooks to the booking platform (connectors/outbound, docs/events.md)."""

    outbound_webhook_url: str | None = Field(
        default=None, description="The booking platform's webhook endpoint (besides those admins "
        "add over the API); public events are POSTed there, signed")
    outbound_webhook_secret: SecretStr | None = Field(
        default=None, description="Signing secret of TRAILPAY_OUTBOUND_WEBHOOK_URL (required with it)")
    outbound_webhook_timeout_s: float = Field(default=10.0, gt=0, le=120,
                                              description="One delivery attempt's time limit")
    outbound_webhook_max_age_s: int = Field(
        default=72 * 3600, ge=1, description="How long a delivery is retried before it is dead")
    outbound_webhook_backoff_base_s: float = Field(
        default=5.0, gt=0, description="First retry's upper bound; doubled each attempt (full jitter)")
    outbound_webhook_backoff_cap_s: float = Field(default=3600.0, gt=0,
                                                  description="Longest wait between two attempts")
    outbound_webhook_rotation_grace_s: int = Field(
        default=24 * 3600, ge=0, description="How long a rotated-out secret still signs")
    outbound_webhook_poll_s: float = Field(default=0.5, gt=0, le=60,
                                           description="How often the deliverer looks for due deliveries")
    outbound_webhook_concurrency: int = Field(default=16, ge=1, le=256,
                                              description="Deliveries in flight at a time")


class DashboardAccessSettings(BaseSettings):
    """Who may read the analytics service (dashboards/access.py)."""

    dashboard_session_hours: float = Field(
        default=8.0, gt=0, le=24 * 30,
        description="How long a dashboard sign-in lasts (the session cookie's lifetime)")
    dashboard_cookie_secure: bool = Field(
        default=False, description="Mark the dashboard session cookie Secure (set it when the "
        "dashboard is served over HTTPS)")
    analytics_service_token: SecretStr | None = Field(
        default=None, description="The token TrailPay's own tools send to the analytics service "
        "(replay into chDB, `trailpay report`); `trailpay up` generates one per data directory")
