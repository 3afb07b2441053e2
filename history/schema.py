"""The history store's tables (SQLAlchemy Core), as the Alembic migrations in ``migrations/`` create them.

One row per record id, so the projector's upserts are idempotent: ``alerts`` holds the latest record of each
alert id (``record`` keeps it whole, with its ``history``), ``alert_customers`` the union of every customer
an alert ever named (an outage's scope grows and shrinks by updates of the same id), ``notifications`` one row
per notification id with its send and its provider's outcome, ``feedback`` one per reply, ``alert_actions``
one per record of ``gridwatch.alert-actions`` (keyed by its partition and offset: actions carry no id),
``customers`` the directory with the phone number the console shows (no email or webhook; 0007), and ``projector_offsets``
the next offset to read per topic partition, written in the same transaction as the rows.
"""

from __future__ import annotations

from sqlalchemy import (BigInteger, Boolean, Column, DateTime, Float, Index, Integer, MetaData, SmallInteger, Table,
                        Text)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = MetaData()
TS = DateTime(timezone=True)

alerts = Table(
    "alerts", metadata,
    Column("alert_id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("severity", Text),
    Column("status", Text, nullable=False),
    Column("scope_level", Text),
    Column("scope_id", Text),
    Column("feeder_id", Text),
    Column("transformer_ids", ARRAY(Text), nullable=False, server_default="{}"),
    Column("started_at", TS),
    Column("detected_at", TS),
    Column("resolved_at", TS),
    Column("acknowledged_at", TS),
    Column("no_fault", Boolean, nullable=False, server_default="false"),
    Column("merged_into", Text),
    Column("parent_alert_id", Text),
    Column("first_record_at", TS),   # broker timestamp of the alert's first record (wall clock)
    Column("last_record_at", TS),
    Column("record", JSONB, nullable=False),
)
Index("alerts_kind_started", alerts.c.kind, alerts.c.started_at)
Index("alerts_feeder_started", alerts.c.feeder_id, alerts.c.started_at)
Index("alerts_started", alerts.c.started_at)
Index("alerts_status", alerts.c.status)

alert_customers = Table(
    "alert_customers", metadata,
    Column("alert_id", Text, primary_key=True),
    Column("customer_id", Text, primary_key=True),
)
Index("alert_customers_customer", alert_customers.c.customer_id)

customers = Table(
    "customers", metadata,
    Column("customer_id", Text, primary_key=True),
    Column("meter_id", Text),
    Column("transformer_id", Text),
    Column("feeder_id", Text),
    Column("segment", Text),
    Column("language", Text),
    Column("timezone", Text),
    Column("opted_out", Boolean, nullable=False, server_default="false"),
    Column("phone", Text),  # 0007: the console shows it to operators (masked to viewers)
)
Index("customers_feeder", customers.c.feeder_id)
Index("customers_meter", customers.c.meter_id)

notifications = Table(
    "notifications", metadata,
    Column("notification_id", Text, primary_key=True),
    Column("alert_id", Text),
    Column("customer_id", Text),
    Column("channel", Text),
    Column("template", Text),
    Column("status", Text, nullable=False),        # the latest record's
    Column("reason", Text),
    Column("created_at", TS),                      # of the first record
    Column("sent_at", TS),                         # created_at of the record that says "sent"
    Column("outcome", Text),                       # delivered | undelivered | failed, from the provider
    Column("outcome_at", TS),
    Column("first_record_at", TS),                 # broker timestamp of the first record
)
Index("notifications_alert_customer", notifications.c.alert_id, notifications.c.customer_id)  # 0002
Index("notifications_sent", notifications.c.sent_at)  # 0002
Index("notifications_customer", notifications.c.customer_id)
Index("notifications_created", notifications.c.created_at)

feedback = Table(
    "feedback", metadata,
    Column("feedback_id", Text, primary_key=True),
    Column("customer_id", Text),
    Column("alert_id", Text),
    Column("intent", Text),
    Column("rating", SmallInteger),
    Column("channel", Text),
    Column("opted_out", Boolean),
    Column("received_at", TS),
)
Index("feedback_alert", feedback.c.alert_id)
Index("feedback_received", feedback.c.received_at)
Index("feedback_customer_received", feedback.c.customer_id, feedback.c.received_at)  # 0002

alert_actions = Table(
    "alert_actions", metadata,
    Column("partition", Integer, primary_key=True),
    Column("offset", BigInteger, primary_key=True),
    Column("alert_id", Text),
    Column("action", Text),
    Column("author", Text),
    Column("reason", Text),
    Column("at", TS),
    Column("no_fault", Boolean, nullable=False, server_default="false"),
)
Index("alert_actions_alert", alert_actions.c.alert_id)

projector_offsets = Table(
    "projector_offsets", metadata,
    Column("topic", Text, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
    Column("updated_at", TS, nullable=False),
)

# reports computed in the background (history/reports.py), one per name and year
report_cache = Table(
    "report_cache", metadata,
    Column("name", Text, primary_key=True),
    Column("year", Integer, primary_key=True),
    Column("computed_at", TS, nullable=False),
    Column("seconds", Float, nullable=False),
    Column("body", JSONB, nullable=False),
)

console_sessions = Table(
    "console_sessions", metadata,
    Column("key", Text, primary_key=True),
    Column("user_name", Text, nullable=False),
    Column("user_key", Text, nullable=False),
    Column("csrf", Text, nullable=False),
    Column("created", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
)

# one feeder's slice of a kept report (written with it), so a feeder's report reads one small row
report_slices = Table(
    "report_slices", metadata,
    Column("name", Text, primary_key=True),
    Column("year", Integer, primary_key=True),
    Column("scope", Text, primary_key=True),
    Column("body", JSONB, nullable=False),
)

# the customer figures of a month whose raw notifications were pruned (history/retention.py), kept for good
figures_months = Table(
    "figures_months", metadata,
    Column("month", Text, primary_key=True),
    Column("frozen_at", TS, nullable=False),
    Column("body", JSONB, nullable=False),
)
