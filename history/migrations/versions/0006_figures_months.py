"""Customer figures of months whose raw notifications were pruned (history/retention.py).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "figures_months",
        sa.Column("month", sa.Text, primary_key=True),  # YYYY-MM (UTC)
        sa.Column("frozen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", JSONB, nullable=False),  # table name -> that month's rows of the customer figures
    )


def downgrade() -> None:
    op.drop_table("figures_months")
