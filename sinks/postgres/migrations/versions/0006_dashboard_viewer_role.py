"""users.role: also ``viewer`` (dashboard analysts) and ``support``.

The allowed set names ``support`` too (0005 added it), so the check ends with all four roles.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint(op.f("ck_users_role"), "users", type_="check")
    op.create_check_constraint(op.f("ck_users_role"), "users",
                               "role in ('user', 'admin', 'support', 'viewer')")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_users_role"), "users", type_="check")
    op.create_check_constraint(op.f("ck_users_role"), "users", "role in ('user', 'admin', 'support')")
