"""audit_log (who did what to which payment, token or dead letter, and why) and the
``support`` role.

The role check is rebuilt from the roles the current constraint allows plus ``support``,
so this migration keeps a role another migration added, in whichever order they run.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ROLE_CHECK = "ck_users_role"
ROLE = "support"


def _roles() -> list[str]:
    definition = op.get_bind().execute(sa.text(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = :name"),
        {"name": ROLE_CHECK}).scalar()
    found = re.findall(r"'([a-z_]+)'", definition or "")
    return list(dict.fromkeys(found or ["user", "admin"]))


def _set_roles(roles: list[str]) -> None:
    listed = ", ".join(f"'{r}'" for r in roles)
    op.drop_constraint(op.f(ROLE_CHECK), "users", type_="check")  # op.f: already the full name
    # The naming convention prefixes ck_users_ itself: pass the bare name.
    op.create_check_constraint("role", "users", f"role in ({listed})")


def upgrade() -> None:
    roles = _roles()
    if ROLE not in roles:
        _set_roles([*roles, ROLE])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("actor_email", sa.String(320), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("request_id", sa.String(200), nullable=True),
        sa.Column("source", sa.String(200), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("details", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_target_at", "audit_log", ["target", "at"])
    op.create_index("ix_audit_log_actor_at", "audit_log", ["actor", "at"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.execute(sa.text("UPDATE users SET role = 'user' WHERE role = :role").bindparams(role=ROLE))
    _set_roles([r for r in _roles() if r != ROLE])
