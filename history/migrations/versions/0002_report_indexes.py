"""Indexes the reports need: a customer's notification of an alert, a customer's replies in time.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("notifications_alert", table_name="notifications")
    op.create_index("notifications_alert_customer", "notifications", ["alert_id", "customer_id"])
    op.create_index("feedback_customer_received", "feedback", ["customer_id", "received_at"])
    op.create_index("notifications_sent", "notifications", ["sent_at"])


def downgrade() -> None:
    op.drop_index("notifications_sent", table_name="notifications")
    op.drop_index("feedback_customer_received", table_name="feedback")
    op.drop_index("notifications_alert_customer", table_name="notifications")
    op.create_index("notifications_alert", "notifications", ["alert_id"])
