"""refunds.failure_code / failure_message: a refused or failed refund says why on the refund
itself (the payment's provider code and message stay the payment's).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("refunds", sa.Column("failure_code", sa.String(100), nullable=True))
    op.add_column("refunds", sa.Column("failure_message", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("refunds", "failure_message")
    op.drop_column("refunds", "failure_code")
