"""The history store on a real PostgreSQL: migrations, and the projector's writes (no Kafka here: the
records are handed over as the consumer would; tests/integration/test_history_projector.py runs it on the broker)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select, text

from history import db, schema as t
from history.projector import Batch, BadRecord, Projector, write

pytestmark = pytest.mark.postgres


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 1_700_000_000_000


def msgs(topic: str, records: list, partition: int = 0, start: int = 0, ts_ms: int = 1_700_000_000_000) -> list[Msg]:
    """Consumer records of ``records`` as one partition holds them; the i-th written at ``ts_ms`` + i seconds."""
    out = []
    for i, rec in enumerate(records):
        key = None if rec is None else (rec.get("customer_id") or rec.get("alert_id") or "k")
        out.append(Msg(topic, partition, start + i, key.encode() if key else b"C1",
                       None if rec is None else json.dumps(rec).encode(), ts_ms + i * 1000))
    return out


def alert(aid="outage:transformer:T1:2026-01-05T10:00:00Z", status="open", customers=("C1", "C2"), **kw):
    rec = {"alert_id": aid, "kind": "outage", "severity": "critical", "status": status,
           "scope": {"level": "transformer", "id": "T1"}, "meter_ids": [f"M{c[1:]}" for c in customers],
           "customer_ids": list(customers), "started_at": "2026-01-05T10:00:00Z",
           "detected_at": "2026-01-05T10:03:00Z", "resolved_at": None,
           "evidence": {"feeder_id": "F1", "transformer_ids": ["T1"]}}
    rec.update(kw)
    return rec


def project(engine, messages: list[Msg]) -> Batch:
    batch = Batch()
    for m in messages:
        batch.offsets[(m.topic, m.partition)] = m.offset + 1
        Projector._apply(batch, m.topic, m)
    with engine.begin() as conn:
        write(conn, batch)
    return batch


def dump(engine) -> dict:
    with engine.connect() as conn:
        return {table.name: sorted(tuple(str(v) for v in row) for row in conn.execute(select(table)))
                for table in t.metadata.sorted_tables if table.name != "projector_offsets"}


def test_the_schema_is_at_head_and_migrating_again_changes_nothing(history_engine):
    assert db.current_revision(history_engine) == db.head_revision()
    assert db.migrate(history_engine) == db.head_revision()
    with history_engine.connect() as conn:
        tables = set(conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())
    assert {"alerts", "alert_customers", "notifications", "feedback", "alert_actions", "customers",
            "projector_offsets", "alembic_version"} <= tables


def test_an_outage_whose_scope_grows_and_shrinks_keeps_every_customer_it_named(history_engine):
    updates = [alert(customers=("C1", "C2")), alert(customers=("C1", "C2", "C3", "C4")),
               alert(customers=("C3",)), alert(status="resolved", customers=("C3",), resolved_at="2026-01-05T11:00:00Z")]
    project(history_engine, msgs("alerts", updates[:2]))
    project(history_engine, msgs("alerts", updates[2:], start=2))
    with history_engine.connect() as conn:
        row = conn.execute(select(t.alerts)).one()
        named = conn.execute(select(t.alert_customers.c.customer_id).order_by("customer_id")).scalars().all()
    assert (row.status, row.feeder_id, row.transformer_ids) == ("resolved", "F1", ["T1"])
    assert row.resolved_at.isoformat() == "2026-01-05T11:00:00+00:00"
    assert row.first_record_at.timestamp() == 1_700_000_000 and row.last_record_at.timestamp() == 1_700_000_001
    assert named == ["C1", "C2", "C3", "C4"]


def test_reading_every_record_twice_changes_nothing(history_engine):
    records = {
        "customers": [{"customer_id": "C1", "meter_id": "M1", "transformer_id": "T1", "feeder_id": "F1",
                       "segment": "residential", "phone": "+8613800000001"},
                      {"customer_id": "C2", "meter_id": "M2", "transformer_id": "T1", "feeder_id": "F1",
                       "segment": "commercial"}],
        "alerts": [alert(), alert(status="resolved", resolved_at="2026-01-05T11:00:00Z")],
        "notifications": [
            {"notification_id": "N1", "alert_id": "A", "customer_id": "C1", "channel": "sms", "status": "sent",
             "provider_message_id": "SM1", "created_at": "2026-01-05T10:04:00Z"},
            {"notification_id": "N1", "alert_id": "A", "customer_id": "C1", "channel": "sms", "status": "delivered",
             "provider_message_id": "SM1", "created_at": "2026-01-05T10:04:09Z"},
            {"notification_id": "N2", "alert_id": "A", "customer_id": "C2", "channel": "sms", "status": "suppressed",
             "reason": "opted_out", "created_at": "2026-01-05T10:04:00Z"}],
        "feedback": [{"feedback_id": "F1", "customer_id": "C1", "alert_id": "A", "intent": "rating", "rating": 4,
                      "received_at": "2026-01-05T12:00:00Z"}],
        "gridwatch.alert-actions": [{"action": "acknowledge", "alert_id": "A", "author": "ops", "reason": "crew",
                                     "at": "2026-01-05T10:10:00Z"}],
    }
    everything = [m for topic, recs in records.items() for m in msgs(topic, recs)]
    project(history_engine, everything)
    once = dump(history_engine)
    project(history_engine, everything)
    assert dump(history_engine) == once
    with history_engine.connect() as conn:
        n1 = conn.execute(select(t.notifications).where(t.notifications.c.notification_id == "N1")).one()
        directory = conn.execute(select(t.customers).order_by(t.customers.c.customer_id)).mappings().all()
    # the phone number the console shows is kept (0007); no other contact detail is
    assert [c["phone"] for c in directory] == ["+8613800000001", None]
    assert not {"email", "webhook"} & set(directory[0].keys())
    # the receipt keeps the decision and its send time, and adds the provider's outcome
    assert (n1.status, n1.outcome) == ("sent", "delivered")
    assert n1.sent_at.isoformat() == "2026-01-05T10:04:00+00:00"
    assert n1.outcome_at.isoformat() == "2026-01-05T10:04:09+00:00"
    assert len(once["alert_actions"]) == 1 and len(once["feedback"]) == 1


def test_a_customer_tombstone_deletes_the_customer(history_engine):
    project(history_engine, msgs("customers", [{"customer_id": "C9", "feeder_id": "F1"}]))
    project(history_engine, [Msg("customers", 0, 1, b"C9", None)])
    with history_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.customers)).scalar() == 0


def test_a_failure_inside_the_batch_commits_neither_rows_nor_offsets(history_engine):
    batch = Batch()
    for m in msgs("alerts", [alert()]):
        batch.offsets[(m.topic, m.partition)] = m.offset + 1
        Projector._apply(batch, m.topic, m)
    with pytest.raises(RuntimeError):
        with history_engine.begin() as conn:
            write(conn, batch)
            raise RuntimeError("the process dies here")
    with history_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.alerts)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(t.projector_offsets)).scalar() == 0


@pytest.mark.parametrize("value, error", [
    (b"{not json", "not JSON"), (b"[1]", "not a JSON object"), (b'{"kind": "outage"}', "no alert_id"),
    (json.dumps(alert(started_at="yesterday")).encode(), "not RFC 3339"),
])
def test_an_unreadable_record_is_refused_with_the_reason(value, error):
    with pytest.raises(BadRecord, match=error):
        Projector._apply(Batch(), "alerts", Msg("alerts", 0, 0, b"k", value))
