"""The PostgreSQL schema: operational state the HTTP API reads, and the archive ops replay from.

SQLAlchemy Core tables on one :data:`metadata`. Alembic migrations under
``sinks/postgres/migrations`` create them; keep the two in step (a test compares them).

Who writes what:

- the PostgreSQL sink (``trailpay sink-postgres``) writes ``payments`` (upsert
  ``WHERE payments.version < excluded.version``), ``payment_events``, ``payment_intents``,
  ``refunds``, ``customers``, ``provider_callbacks``, ``bookings`` and ``dead_letters``;
- the ingress writes ``users``, ``api_tokens``, ``idempotency_keys``, ``payment_methods``,
  ``customers`` and the version-0 placeholder of ``payments`` (status ``pending``, inserted
  ``ON CONFLICT DO NOTHING`` when a payment is created, so it is visible and owned at once;
  the sink's first state change, version >= 1, replaces it);
- ops tools write ``providers`` and the re-drive columns of ``dead_letters``.

Every time is ``timestamptz`` (UTC); money is ``bigint`` minor units plus a currency code.
The archive tables (``payment_events.record``, ``provider_callbacks.body``) keep enough to
rebuild the topic records for a replay.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

#: Constraint names are deterministic so migrations can refer to them.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

NOW = text("now()")


def _ts(name: str, *, nullable: bool = True, default_now: bool = False) -> Column[object]:
    return Column(
        name,
        DateTime(timezone=True),
        nullable=nullable,
        server_default=NOW if default_now else None,
    )


# --------------------------------------------------------------------------- people and access

users = Table(
    "users",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("role", String(16), nullable=False, server_default="user"),
    _ts("created_at", nullable=False, default_now=True),
    CheckConstraint("role in ('user', 'admin', 'support', 'viewer')", name="role"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True, comment="sha256 hex of the token"),
    Column("user_id", String(100), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False, server_default=""),
    _ts("created_at", nullable=False, default_now=True),
    _ts("last_used_at"),
    _ts("revoked_at"),
    Index(None, "user_id"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("user_id", String(100), nullable=False),
    Column("key", String(255), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("response_body", JSONB, nullable=True),
    _ts("created_at", nullable=False, default_now=True),
    PrimaryKeyConstraint("user_id", "key"),
    Index(None, "created_at"),
)

# --------------------------------------------------------------------------- providers

providers = Table(
    "providers",
    metadata,
    Column("code", String(32), primary_key=True, comment="stripe | mpesa | airtel"),
    Column("name", String(100), nullable=False),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("currencies", ARRAY(String(3)), nullable=False, server_default=text("'{}'")),
    Column("countries", ARRAY(String(2)), nullable=False, server_default=text("'{}'")),
    Column("methods", ARRAY(String(32)), nullable=False, server_default=text("'{}'")),
    Column("config", JSONB, nullable=False, server_default=text("'{}'::jsonb"),
           comment="Non-secret settings only; secrets stay in the environment"),
    _ts("created_at", nullable=False, default_now=True),
    _ts("updated_at", nullable=False, default_now=True),
)

# --------------------------------------------------------------------------- payments

payments = Table(
    "payments",
    metadata,
    Column("reference", String(64), primary_key=True),
    Column("version", BigInteger, nullable=False, server_default="0",
           comment="0 = the ingress placeholder; >= 1 = the state machine's version"),
    Column("status", String(32), nullable=False),
    Column("user_id", String(100), nullable=False),
    Column("booking_id", String(100), nullable=True),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("provider", String(16), nullable=False),
    Column("method", String(32), nullable=False),
    Column("country", String(2), nullable=True),
    Column("phone_masked", String(32), nullable=True),
    Column("email", String(320), nullable=True),
    Column("description", Text, nullable=False, server_default=""),
    Column("provider_reference", String(200), nullable=True,
           comment="CheckoutRequestID, PaymentIntent id or Airtel transaction id"),
    Column("provider_status", String(100), nullable=True),
    Column("provider_code", String(100), nullable=True),
    Column("provider_message", Text, nullable=True),
    Column("customer_id", String(100), nullable=True),
    Column("payment_method_id", String(100), nullable=True),
    Column("client_secret", String(300), nullable=True),
    Column("refunded_minor", BigInteger, nullable=False, server_default="0"),
    _ts("created_at", nullable=False, default_now=True),
    _ts("updated_at", nullable=False, default_now=True),
    _ts("deadline_at"),
    Column("settled_by", String(16), nullable=True),
    Column("snapshot", JSONB, nullable=True,
           comment="The state machine's snapshot, phone number masked"),
    CheckConstraint("amount_minor >= 0", name="amount_nonnegative"),
    CheckConstraint("refunded_minor >= 0", name="refunded_nonnegative"),
    Index(None, "user_id", "created_at"),
    Index(None, "booking_id"),
    Index(None, "provider_reference"),
    Index(None, "status", "updated_at"),
    Index(None, "created_at"),
)

payment_events = Table(
    "payment_events",
    metadata,
    Column("event_id", String(200), primary_key=True, comment="<reference>:<version>"),
    Column("reference", String(64), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("from_status", String(32), nullable=True),
    Column("to_status", String(32), nullable=False),
    Column("cause", String(64), nullable=False),
    Column("cause_event_id", String(200), nullable=False),
    _ts("at", nullable=False),
    Column("record", JSONB, nullable=False,
           comment="The whole PaymentStateChanged as on the topic: the archive for replay"),
    Column("kafka_partition", Integer, nullable=True),
    Column("kafka_offset", BigInteger, nullable=True),
    _ts("recorded_at", nullable=False, default_now=True),
    Index(None, "reference", "version"),
    Index(None, "at"),
)

payment_intents = Table(
    "payment_intents",
    metadata,
    Column("payment_intent_id", String(100), primary_key=True),
    Column("reference", String(64), nullable=False),
    Column("version", BigInteger, nullable=False, comment="Payment version last written"),
    Column("status", String(64), nullable=True, comment="Stripe's own PaymentIntent status"),
    Column("payment_status", String(32), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("customer_id", String(100), nullable=True),
    Column("payment_method_id", String(100), nullable=True),
    Column("client_secret", String(300), nullable=True),
    Column("last_error_code", String(100), nullable=True),
    Column("last_error_message", Text, nullable=True),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    Index(None, "reference"),
)

refunds = Table(
    "refunds",
    metadata,
    Column("refund_id", String(64), primary_key=True),
    Column("reference", String(64), nullable=False),
    Column("version", BigInteger, nullable=False, comment="Payment version last written"),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reason", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("provider_reference", String(200), nullable=True),
    _ts("requested_at", nullable=False),
    _ts("updated_at", nullable=False),
    Column("failure_code", String(100), nullable=True),  # why failed or refused (0003)
    Column("failure_message", Text, nullable=True),
    Index(None, "reference"),
)

customers = Table(
    "customers",
    metadata,
    Column("user_id", String(100), primary_key=True),
    Column("customer_id", String(100), nullable=False, unique=True, comment="Stripe cus_..."),
    Column("email", String(320), nullable=True),
    _ts("created_at", nullable=False, default_now=True),
    _ts("updated_at", nullable=False, default_now=True),
)

payment_methods = Table(
    "payment_methods",
    metadata,
    Column("payment_method_id", String(100), primary_key=True, comment="Stripe pm_..."),
    Column("user_id", String(100), nullable=False),
    Column("customer_id", String(100), nullable=True),
    Column("provider", String(16), nullable=False, server_default="stripe"),
    Column("type", String(32), nullable=False, server_default="card"),
    Column("brand", String(32), nullable=True),
    Column("last4", String(4), nullable=True),
    Column("exp_month", Integer, nullable=True),
    Column("exp_year", Integer, nullable=True),
    Column("is_default", Boolean, nullable=False, server_default=text("false")),
    _ts("created_at", nullable=False, default_now=True),
    _ts("detached_at"),
    Index(None, "user_id"),
)

# --------------------------------------------------------------------------- bookings

bookings = Table(
    "bookings",
    metadata,
    Column("booking_id", String(100), primary_key=True),
    Column("revision", Integer, nullable=False),
    Column("reference", String(64), nullable=False,
           comment="TPB-... payment reference of this revision"),
    Column("status", String(16), nullable=False, comment="last booking event kind"),
    Column("user_id", String(100), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("country", String(2), nullable=False),
    Column("preferred_method", String(32), nullable=True),
    Column("provider", String(16), nullable=True),
    Column("last_event_id", String(200), nullable=False),
    _ts("last_event_at", nullable=False),
    Column("kind_rank", Integer, nullable=False, server_default="0",
           comment="lifecycle order of the last event kind (orders same-instant events)"),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False, default_now=True),
    Index(None, "user_id"),
    Index(None, "reference"),
)

# --------------------------------------------------------------------------- webhooks

provider_callbacks = Table(
    "provider_callbacks",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("provider", String(16), nullable=False),
    Column("reference", String(64), nullable=True),
    _ts("received_at", nullable=False),
    _ts("occurred_at"),
    Column("verified", Boolean, nullable=True, comment="NULL = not checked at the ingress"),
    Column("verification_error", Text, nullable=True),
    Column("event_type", String(100), nullable=True,
           comment="Best effort from the body: Stripe event type"),
    Column("provider_code", String(100), nullable=True,
           comment="Best effort from the body: Daraja ResultCode, Airtel status code"),
    Column("provider_message", Text, nullable=True),
    Column("headers", JSONB, nullable=False, server_default=text("'{}'::jsonb"),
           comment="Credentials redacted"),
    Column("query", JSONB, nullable=False, server_default=text("'{}'::jsonb"),
           comment="Callback tokens redacted"),
    Column("body", LargeBinary, nullable=False, comment="The raw bytes as received"),
    Column("kafka_partition", Integer, nullable=True),
    Column("kafka_offset", BigInteger, nullable=True),
    _ts("recorded_at", nullable=False, default_now=True),
    Index(None, "reference", "received_at"),
    Index(None, "received_at"),
    Index(None, "provider", "received_at"),
)

# --------------------------------------------------------------------------- dead letters

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("source_topic", String(200), nullable=False),
    Column("partition", Integer, nullable=True),
    Column("offset", BigInteger, nullable=True),
    Column("key", LargeBinary, nullable=True),
    Column("value", LargeBinary, nullable=False, comment="The original bytes"),
    Column("error_type", String(200), nullable=False),
    Column("error_message", Text, nullable=False),
    Column("stage", String(100), nullable=False),
    Column("reference", String(64), nullable=True),
    Column("redrive_of", String(200), nullable=True),
    _ts("failed_at", nullable=False),
    _ts("recorded_at", nullable=False, default_now=True),
    _ts("redriven_at"),
    Column("redrive_count", Integer, nullable=False, server_default="0"),
    _ts("purged_at"),
    Index(None, "source_topic", "failed_at"),
    Index(None, "error_type", "failed_at"),
    Index(None, "failed_at"),
    Index(None, "reference"),
)

# --------------------------------------------------------------------------- audit (0005)

#: Who did what, to what, and why: every act of a person (cancel, refund, retry through the
#: API) and of an ops command (dlq, replay, reconcile --fix, providers setup, tokens).
#: ``id`` derives from action and request id when there is one (a retried request writes
#: one row); ``actor`` is a user id or the OS user of a command; ``role`` user | support |
#: admin | ops; ``source`` the client address or ``cli@<host>``; ``outcome`` pending
#: (written before the act) -> ok | failed. Written by sinks.postgres.audit.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", String(64), primary_key=True),
    _ts("at", nullable=False, default_now=True),
    Column("actor", String(200), nullable=False),
    Column("actor_email", String(320), nullable=True),
    Column("role", String(16), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(200), nullable=False),
    Column("reason", Text, nullable=True),
    Column("request_id", String(200), nullable=True),
    Column("source", String(200), nullable=True),
    Column("outcome", String(16), nullable=False, server_default="pending"),
    Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Index(None, "at"),
    Index(None, "target", "at"),
    Index(None, "actor", "at"),
)

__all__ = [
    "api_tokens",
    "audit_log",
    "bookings",
    "customers",
    "dead_letters",
    "idempotency_keys",
    "metadata",
    "payment_events",
    "payment_intents",
    "payment_methods",
    "payments",
    "provider_callbacks",
    "providers",
    "refunds",
    "users",
]
