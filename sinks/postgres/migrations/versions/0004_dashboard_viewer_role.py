"""users.role: also ``viewer`` (dashboard analysts) and ``support``.

Written on the dashsec branch without an assigned revision number: the lead re-chains it.
The allowed set names ``support`` too (added by another branch) so that whichever of the two
migrations runs last keeps both roles.

Revision ID: 0004_dashsec
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0004_dashsec"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint(op.f("ck_users_role"), "users", type_="check")
    op.create_check_constraint(op.f("ck_users_role"), "users",
                               "role in ('user', 'admin', 'support', 'viewer')")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_users_role"), "users", type_="check")
    op.create_check_constraint(op.f("ck_users_role"), "users", "role in ('user', 'admin')")
