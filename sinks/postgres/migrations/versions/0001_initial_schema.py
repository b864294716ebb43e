"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-26 16:10:00.488776
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bookings",
        sa.Column("booking_id", sa.String(length=100), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column(
            "reference",
            sa.String(length=64),
            nullable=False,
            comment="TPB-... payment reference of this revision",
        ),
        sa.Column("status", sa.String(length=16), nullable=False, comment="last booking event kind"),
        sa.Column("user_id", sa.String(length=100), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("preferred_method", sa.String(length=32), nullable=True),
        sa.Column("provider", sa.String(length=16), nullable=True),
        sa.Column("last_event_id", sa.String(length=200), nullable=False),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "kind_rank",
            sa.Integer(),
            server_default="0",
            nullable=False,
            comment="lifecycle order of the last event kind (orders same-instant events)",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("booking_id", name=op.f("pk_bookings")),
    )
    op.create_index(op.f("ix_bookings_reference"), "bookings", ["reference"], unique=False)
    op.create_index(op.f("ix_bookings_user_id"), "bookings", ["user_id"], unique=False)
    op.create_table(
        "customers",
        sa.Column("user_id", sa.String(length=100), nullable=False),
        sa.Column("customer_id", sa.String(length=100), nullable=False, comment="Stripe cus_..."),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_customers")),
        sa.UniqueConstraint("customer_id", name=op.f("uq_customers_customer_id")),
    )
    op.create_table(
        "dead_letters",
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("source_topic", sa.String(length=200), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=True),
        sa.Column("offset", sa.BigInteger(), nullable=True),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=False, comment="The original bytes"),
        sa.Column("error_type", sa.String(length=200), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("stage", sa.String(length=100), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=True),
        sa.Column("redrive_of", sa.String(length=200), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("redriven_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("redrive_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_dead_letters")),
    )
    op.create_index(
        op.f("ix_dead_letters_error_type_failed_at"),
        "dead_letters",
        ["error_type", "failed_at"],
        unique=False,
    )
    op.create_index(op.f("ix_dead_letters_failed_at"), "dead_letters", ["failed_at"], unique=False)
    op.create_index(op.f("ix_dead_letters_reference"), "dead_letters", ["reference"], unique=False)
    op.create_index(
        op.f("ix_dead_letters_source_topic_failed_at"),
        "dead_letters",
        ["source_topic", "failed_at"],
        unique=False,
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(op.f("ix_idempotency_keys_created_at"), "idempotency_keys", ["created_at"], unique=False)
    op.create_table(
        "payment_events",
        sa.Column("event_id", sa.String(length=200), nullable=False, comment="<reference>:<version>"),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("from_status", sa.String(length=32), nullable=True),
        sa.Column("to_status", sa.String(length=32), nullable=False),
        sa.Column("cause", sa.String(length=64), nullable=False),
        sa.Column("cause_event_id", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "record",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            comment="The whole PaymentStateChanged as on the topic: the archive for replay",
        ),
        sa.Column("kafka_partition", sa.Integer(), nullable=True),
        sa.Column("kafka_offset", sa.BigInteger(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_payment_events")),
    )
    op.create_index(op.f("ix_payment_events_at"), "payment_events", ["at"], unique=False)
    op.create_index(
        op.f("ix_payment_events_reference_version"), "payment_events", ["reference", "version"], unique=False
    )
    op.create_table(
        "payment_intents",
        sa.Column("payment_intent_id", sa.String(length=100), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False, comment="Payment version last written"),
        sa.Column("status", sa.String(length=64), nullable=True, comment="Stripe's own PaymentIntent status"),
        sa.Column("payment_status", sa.String(length=32), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("customer_id", sa.String(length=100), nullable=True),
        sa.Column("payment_method_id", sa.String(length=100), nullable=True),
        sa.Column("client_secret", sa.String(length=300), nullable=True),
        sa.Column("last_error_code", sa.String(length=100), nullable=True),
        sa.Column("last_error_message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("payment_intent_id", name=op.f("pk_payment_intents")),
    )
    op.create_index(op.f("ix_payment_intents_reference"), "payment_intents", ["reference"], unique=False)
    op.create_table(
        "payment_methods",
        sa.Column("payment_method_id", sa.String(length=100), nullable=False, comment="Stripe pm_..."),
        sa.Column("user_id", sa.String(length=100), nullable=False),
        sa.Column("customer_id", sa.String(length=100), nullable=True),
        sa.Column("provider", sa.String(length=16), server_default="stripe", nullable=False),
        sa.Column("type", sa.String(length=32), server_default="card", nullable=False),
        sa.Column("brand", sa.String(length=32), nullable=True),
        sa.Column("last4", sa.String(length=4), nullable=True),
        sa.Column("exp_month", sa.Integer(), nullable=True),
        sa.Column("exp_year", sa.Integer(), nullable=True),
        sa.Column("is_default", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("detached_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("payment_method_id", name=op.f("pk_payment_methods")),
    )
    op.create_index(op.f("ix_payment_methods_user_id"), "payment_methods", ["user_id"], unique=False)
    op.create_table(
        "payments",
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column(
            "version",
            sa.BigInteger(),
            server_default="0",
            nullable=False,
            comment="0 = the ingress placeholder; >= 1 = the state machine's version",
        ),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=100), nullable=False),
        sa.Column("booking_id", sa.String(length=100), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("phone_masked", sa.String(length=32), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "provider_reference",
            sa.String(length=200),
            nullable=True,
            comment="CheckoutRequestID, PaymentIntent id or Airtel transaction id",
        ),
        sa.Column("provider_status", sa.String(length=100), nullable=True),
        sa.Column("provider_code", sa.String(length=100), nullable=True),
        sa.Column("provider_message", sa.Text(), nullable=True),
        sa.Column("customer_id", sa.String(length=100), nullable=True),
        sa.Column("payment_method_id", sa.String(length=100), nullable=True),
        sa.Column("client_secret", sa.String(length=300), nullable=True),
        sa.Column("refunded_minor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settled_by", sa.String(length=16), nullable=True),
        sa.Column(
            "snapshot",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=True,
            comment="The state machine's snapshot, phone number masked",
        ),
        sa.CheckConstraint("amount_minor >= 0", name=op.f("ck_payments_amount_nonnegative")),
        sa.CheckConstraint("refunded_minor >= 0", name=op.f("ck_payments_refunded_nonnegative")),
        sa.PrimaryKeyConstraint("reference", name=op.f("pk_payments")),
    )
    op.create_index(op.f("ix_payments_booking_id"), "payments", ["booking_id"], unique=False)
    op.create_index(op.f("ix_payments_created_at"), "payments", ["created_at"], unique=False)
    op.create_index(op.f("ix_payments_provider_reference"), "payments", ["provider_reference"], unique=False)
    op.create_index(op.f("ix_payments_status_updated_at"), "payments", ["status", "updated_at"], unique=False)
    op.create_index(
        op.f("ix_payments_user_id_created_at"), "payments", ["user_id", "created_at"], unique=False
    )
    op.create_table(
        "provider_callbacks",
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=True, comment="NULL = not checked at the ingress"),
        sa.Column("verification_error", sa.Text(), nullable=True),
        sa.Column(
            "event_type",
            sa.String(length=100),
            nullable=True,
            comment="Best effort from the body: Stripe event type",
        ),
        sa.Column(
            "provider_code",
            sa.String(length=100),
            nullable=True,
            comment="Best effort from the body: Daraja ResultCode, Airtel status code",
        ),
        sa.Column("provider_message", sa.Text(), nullable=True),
        sa.Column(
            "headers",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
            comment="Credentials redacted",
        ),
        sa.Column(
            "query",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
            comment="Callback tokens redacted",
        ),
        sa.Column("body", sa.LargeBinary(), nullable=False, comment="The raw bytes as received"),
        sa.Column("kafka_partition", sa.Integer(), nullable=True),
        sa.Column("kafka_offset", sa.BigInteger(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_provider_callbacks")),
    )
    op.create_index(
        op.f("ix_provider_callbacks_provider_received_at"),
        "provider_callbacks",
        ["provider", "received_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_provider_callbacks_received_at"), "provider_callbacks", ["received_at"], unique=False
    )
    op.create_index(
        op.f("ix_provider_callbacks_reference_received_at"),
        "provider_callbacks",
        ["reference", "received_at"],
        unique=False,
    )
    op.create_table(
        "providers",
        sa.Column("code", sa.String(length=32), nullable=False, comment="stripe | mpesa | airtel"),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "currencies",
            postgresql.ARRAY(sa.String(length=3)),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "countries", postgresql.ARRAY(sa.String(length=2)), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column(
            "methods", postgresql.ARRAY(sa.String(length=32)), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column(
            "config",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
            comment="Non-secret settings only; secrets stay in the environment",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_providers")),
    )
    op.create_table(
        "refunds",
        sa.Column("refund_id", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False, comment="Payment version last written"),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider_reference", sa.String(length=200), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("refund_id", name=op.f("pk_refunds")),
    )
    op.create_index(op.f("ix_refunds_reference"), "refunds", ["reference"], unique=False)
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=16), server_default="user", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("role in ('user', 'admin')", name=op.f("ck_users_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "api_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False, comment="sha256 hex of the token"),
        sa.Column("user_id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_api_tokens")),
    )
    op.create_index(op.f("ix_api_tokens_user_id"), "api_tokens", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_api_tokens_user_id"), table_name="api_tokens")
    op.drop_table("api_tokens")
    op.drop_table("users")
    op.drop_index(op.f("ix_refunds_reference"), table_name="refunds")
    op.drop_table("refunds")
    op.drop_table("providers")
    op.drop_index(op.f("ix_provider_callbacks_reference_received_at"), table_name="provider_callbacks")
    op.drop_index(op.f("ix_provider_callbacks_received_at"), table_name="provider_callbacks")
    op.drop_index(op.f("ix_provider_callbacks_provider_received_at"), table_name="provider_callbacks")
    op.drop_table("provider_callbacks")
    op.drop_index(op.f("ix_payments_user_id_created_at"), table_name="payments")
    op.drop_index(op.f("ix_payments_status_updated_at"), table_name="payments")
    op.drop_index(op.f("ix_payments_provider_reference"), table_name="payments")
    op.drop_index(op.f("ix_payments_created_at"), table_name="payments")
    op.drop_index(op.f("ix_payments_booking_id"), table_name="payments")
    op.drop_table("payments")
    op.drop_index(op.f("ix_payment_methods_user_id"), table_name="payment_methods")
    op.drop_table("payment_methods")
    op.drop_index(op.f("ix_payment_intents_reference"), table_name="payment_intents")
    op.drop_table("payment_intents")
    op.drop_index(op.f("ix_payment_events_reference_version"), table_name="payment_events")
    op.drop_index(op.f("ix_payment_events_at"), table_name="payment_events")
    op.drop_table("payment_events")
    op.drop_index(op.f("ix_idempotency_keys_created_at"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_index(op.f("ix_dead_letters_source_topic_failed_at"), table_name="dead_letters")
    op.drop_index(op.f("ix_dead_letters_reference"), table_name="dead_letters")
    op.drop_index(op.f("ix_dead_letters_failed_at"), table_name="dead_letters")
    op.drop_index(op.f("ix_dead_letters_error_type_failed_at"), table_name="dead_letters")
    op.drop_table("dead_letters")
    op.drop_table("customers")
    op.drop_index(op.f("ix_bookings_user_id"), table_name="bookings")
    op.drop_index(op.f("ix_bookings_reference"), table_name="bookings")
    op.drop_table("bookings")
