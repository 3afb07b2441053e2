"""The console's sessions, so a console restart signs nobody out (console/sessions.py).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("key", sa.Text, primary_key=True),  # SHA-256 of the session id, never the id itself
        sa.Column("user_name", sa.Text, nullable=False),
        sa.Column("user_key", sa.Text, nullable=False),
        sa.Column("csrf", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),  # Unix seconds
        sa.Column("last_seen", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("console_sessions")
