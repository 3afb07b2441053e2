"""Each feeder's slice of a kept report, so one feeder's report is one small row to read.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_slices",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("year", sa.Integer, primary_key=True),
        sa.Column("scope", sa.Text, primary_key=True),  # a feeder id
        sa.Column("body", JSONB, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("report_slices")
