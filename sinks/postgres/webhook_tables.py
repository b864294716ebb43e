"""Tables of the outgoing webhooks: the endpoints and the delivery log (migration 0004).

On the one :data:`sinks.postgres.schema.metadata` (the migrations test compares them); the
package ``sinks.postgres`` imports this module so the tables are there whenever the schema is.

- ``webhook_endpoints``: where public events go. The settings' endpoint
  (``TRAILPAY_OUTBOUND_WEBHOOK_URL``) is the row ``settings``, its secret left in the
  settings (``secret`` NULL); admins add the others over the API. A rotated secret stays
  valid, and signs alongside the new one, until ``previous_secret_expires_at``.
- ``webhook_deliveries``: one row per (endpoint, event), in the order the events were read
  (``id``): ``pending`` until a 2xx (``delivered``) or until the retry window closes
  (``dead``). ``ordering_key`` is the booking id (the reference when there is none): a
  delivery waits while an earlier pending one of the same endpoint and key exists.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY

from sinks.postgres.schema import _ts, metadata

#: The endpoint row of ``TRAILPAY_OUTBOUND_WEBHOOK_URL``.
SETTINGS_ENDPOINT_ID = "settings"

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("url", Text, nullable=False),
    Column("secret", Text, nullable=True, comment="NULL: the settings' secret"),
    Column("previous_secret", Text, nullable=True),
    _ts("previous_secret_expires_at"),
    Column("event_types", ARRAY(String(64)), nullable=True, comment="NULL: every type"),
    Column("description", Text, nullable=False, server_default=""),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("created_by", String(100), nullable=True),
    _ts("created_at", nullable=False, default_now=True),
    _ts("updated_at", nullable=False, default_now=True),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("endpoint_id", String(40), ForeignKey("webhook_endpoints.id"), nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("ordering_key", String(100), nullable=False),
    Column("reference", String(64), nullable=False),
    Column("payload", Text, nullable=False, comment="The exact body POSTed and signed"),
    Column("status", String(16), nullable=False, server_default="pending",
           comment="pending | delivered | dead"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("redeliveries", Integer, nullable=False, server_default="0"),
    _ts("next_attempt_at", nullable=False, default_now=True),
    _ts("window_started_at", nullable=False, default_now=True),
    _ts("created_at", nullable=False, default_now=True),
    _ts("last_attempt_at"),
    _ts("delivered_at"),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    UniqueConstraint("endpoint_id", "event_id"),
    Index(None, "status", "next_attempt_at"),
    Index(None, "endpoint_id", "ordering_key", "id"),
    Index(None, "reference"),
    Index(None, "event_id"),
)

__all__ = ["SETTINGS_ENDPOINT_ID", "webhook_deliveries", "webhook_endpoints"]
