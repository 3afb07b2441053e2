"""The first history schema: alerts, the customers they named, notifications, feedback, actions, customers,
and the projector's offsets.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("severity", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("scope_level", sa.Text),
        sa.Column("scope_id", sa.Text),
        sa.Column("feeder_id", sa.Text),
        sa.Column("transformer_ids", ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("started_at", TS),
        sa.Column("detected_at", TS),
        sa.Column("resolved_at", TS),
        sa.Column("acknowledged_at", TS),
        sa.Column("no_fault", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("merged_into", sa.Text),
        sa.Column("parent_alert_id", sa.Text),
        sa.Column("first_record_at", TS),
        sa.Column("last_record_at", TS),
        sa.Column("record", JSONB, nullable=False),
    )
    op.create_index("alerts_kind_started", "alerts", ["kind", "started_at"])
    op.create_index("alerts_feeder_started", "alerts", ["feeder_id", "started_at"])
    op.create_index("alerts_started", "alerts", ["started_at"])
    op.create_index("alerts_status", "alerts", ["status"])

    op.create_table(
        "alert_customers",
        sa.Column("alert_id", sa.Text, primary_key=True),
        sa.Column("customer_id", sa.Text, primary_key=True),
    )
    op.create_index("alert_customers_customer", "alert_customers", ["customer_id"])

    op.create_table(
        "customers",
        sa.Column("customer_id", sa.Text, primary_key=True),
        sa.Column("meter_id", sa.Text),
        sa.Column("transformer_id", sa.Text),
        sa.Column("feeder_id", sa.Text),
        sa.Column("segment", sa.Text),
        sa.Column("language", sa.Text),
        sa.Column("timezone", sa.Text),
        sa.Column("opted_out", sa.Boolean, nullable=False, server_default="false"),
    )
    op.create_index("customers_feeder", "customers", ["feeder_id"])
    op.create_index("customers_meter", "customers", ["meter_id"])

    op.create_table(
        "notifications",
        sa.Column("notification_id", sa.Text, primary_key=True),
        sa.Column("alert_id", sa.Text),
        sa.Column("customer_id", sa.Text),
        sa.Column("channel", sa.Text),
        sa.Column("template", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("created_at", TS),
        sa.Column("sent_at", TS),
        sa.Column("outcome", sa.Text),
        sa.Column("outcome_at", TS),
        sa.Column("first_record_at", TS),
    )
    op.create_index("notifications_alert", "notifications", ["alert_id"])
    op.create_index("notifications_customer", "notifications", ["customer_id"])
    op.create_index("notifications_created", "notifications", ["created_at"])

    op.create_table(
        "feedback",
        sa.Column("feedback_id", sa.Text, primary_key=True),
        sa.Column("customer_id", sa.Text),
        sa.Column("alert_id", sa.Text),
        sa.Column("intent", sa.Text),
        sa.Column("rating", sa.SmallInteger),
        sa.Column("channel", sa.Text),
        sa.Column("opted_out", sa.Boolean),
        sa.Column("received_at", TS),
    )
    op.create_index("feedback_alert", "feedback", ["alert_id"])
    op.create_index("feedback_received", "feedback", ["received_at"])

    op.create_table(
        "alert_actions",
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("offset", sa.BigInteger, primary_key=True),
        sa.Column("alert_id", sa.Text),
        sa.Column("action", sa.Text),
        sa.Column("author", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("at", TS),
        sa.Column("no_fault", sa.Boolean, nullable=False, server_default="false"),
    )
    op.create_index("alert_actions_alert", "alert_actions", ["alert_id"])

    op.create_table(
        "projector_offsets",
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("projector_offsets", "alert_actions", "feedback", "notifications", "customers",
                  "alert_customers", "alerts"):
        op.drop_table(table)
