"""Retention on the real PostgreSQL: pruning raw notifications keeps every month's customer figures as they were."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from history import customer_figures, reports, retention, schema as t
from tests.history.test_customer_figures import note
from tests.history.test_reports import refresh_once
from tests.history.test_store import alert, msgs, project

pytestmark = pytest.mark.postgres


def scenario():
    customers = [{"customer_id": f"C0{i}", "feeder_id": "F1", "segment": "residential"} for i in range(1, 5)]
    alerts, notes, replies = [], [], []
    for m in (1, 2, 3):
        aid = f"A{m}"
        alerts.append(alert(aid, customers=("C01", "C02"), started_at=f"2026-0{m}-10T10:00:00Z",
                            detected_at=f"2026-0{m}-10T10:03:00Z"))
        notes += [note(f"N{m}a", aid, "C01", "sent", f"2026-0{m}-10T10:05:00+00:00", provider_message_id=f"S{m}a"),
                  note(f"N{m}a", aid, "C01", "delivered", f"2026-0{m}-10T10:05:30+00:00",
                       provider_message_id=f"S{m}a"),
                  note(f"N{m}b", aid, "C02", "sent", f"2026-0{m}-10T10:20:00+00:00", provider_message_id=f"S{m}b"),
                  note(f"N{m}c", aid, "C03", "suppressed", f"2026-0{m}-10T10:06:00+00:00", reason="opted_out")]
        replies.append({"feedback_id": f"R{m}", "customer_id": "C01", "alert_id": aid, "intent": "rating",
                        "rating": 2 + m, "received_at": f"2026-0{m}-11T00:00:00+00:00"})
    # an alert that started after the cut with a message created before it (a replay's wall time): kept with it
    alerts.append(alert("A4", customers=("C04",), started_at="2026-03-01T00:00:00Z",
                        detected_at="2026-03-01T00:02:00Z"))
    notes.append(note("N4", "A4", "C04", "sent", "2026-02-28T23:59:00+00:00", provider_message_id="S4"))
    replies.append({"feedback_id": "R9", "customer_id": "C02", "alert_id": "A2", "intent": "opt_out",
                    "received_at": "2026-02-12T00:00:00+00:00"})
    t0 = int(datetime(2026, 1, 10, 10, 4, tzinfo=timezone.utc).timestamp() * 1000)
    return (msgs("customers", customers) + msgs("alerts", alerts, ts_ms=t0) + msgs("notifications", notes)
            + msgs("feedback", replies))


def figures(engine):
    with engine.connect() as conn:
        return customer_figures.report(conn, year=2026)


def kept_notifications(engine):
    with engine.connect() as conn:
        return sorted(conn.execute(select(t.notifications.c.notification_id)).scalars())


def test_pruning_keeps_the_figures_of_the_pruned_months(history_engine):
    project(history_engine, scenario())
    before = figures(history_engine)
    assert {(r["status"], r["outcome"]): r["n"] for r in before["delivery"] if r["month"] == "2026-01"} == {
        ("sent", "delivered"): 1, ("sent", "no receipt"): 1, ("suppressed", None): 1}

    # 45 days before April 15 is March 1: January and February are pruned
    done = retention.prune(history_engine, 45, now=datetime(2026, 4, 15, tzinfo=timezone.utc))
    assert done == {"cut": "2026-03-01", "months_kept": ["2026-01", "2026-02"], "notifications_deleted": 6}
    assert kept_notifications(history_engine) == ["N3a", "N3b", "N3c", "N4"]
    assert figures(history_engine) == before

    # again: nothing more to do, and new raw rows of a kept month do not change its figures
    again = retention.prune(history_engine, 45, now=datetime(2026, 4, 15, tzinfo=timezone.utc))
    assert again["months_kept"] == [] and again["notifications_deleted"] == 0
    project(history_engine, msgs("notifications", [note("N1z", "A1", "C02", "failed", "2026-01-10T11:00:00+00:00")],
                                 start=100))
    assert figures(history_engine) == before


def test_the_refresher_prunes_before_it_refreshes(history_engine):
    project(history_engine, scenario())
    before = figures(history_engine)
    refresh_once(reports.Refresher(history_engine, interval_s=0.1, keep_days=1))
    assert kept_notifications(history_engine) == []  # every month of 2026 up to March ended long ago
    with history_engine.connect() as conn:
        kept = reports.cached(conn, "customers", 2026)
    assert {k: kept[k] for k in customer_figures.TABLES} == {k: before[k] for k in customer_figures.TABLES}


def test_the_setting_is_checked(monkeypatch):
    monkeypatch.delenv(retention.ENV, raising=False)
    assert retention.keep_days_from_env() is None
    monkeypatch.setenv(retention.ENV, "90")
    assert retention.keep_days_from_env() == 90
    for bad in ("0", "ninety", "-5"):
        monkeypatch.setenv(retention.ENV, bad)
        with pytest.raises(ValueError, match=retention.ENV):
            retention.keep_days_from_env()
