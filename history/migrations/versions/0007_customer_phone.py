"""The customer's phone number in the directory: the console looks customers up in the store instead of
holding the whole directory in memory, and shows an operator the number a message went to.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("customers", sa.Column("phone", sa.Text))


def downgrade() -> None:
    op.drop_column("customers", "phone")
