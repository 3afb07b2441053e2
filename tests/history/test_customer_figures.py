"""Customer-side figures on the real PostgreSQL for a scenario computed by hand."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from history import customer_figures
from tests.history.test_store import alert, msgs, project

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 1, 10, 10, 5, tzinfo=timezone.utc)  # the broker time of the first alerts record


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def note(nid, aid, cid, status, created, **kw):
    return {"notification_id": nid, "alert_id": aid, "customer_id": cid, "channel": "sms", "status": status,
            "created_at": created, **kw}


def test_customer_figures_equal_the_hand_computed_values(history_engine):
    customers = [{"customer_id": c, "feeder_id": "F1", "segment": seg} for c, seg in
                 [("C01", "residential"), ("C02", "residential"), ("C03", "commercial"), ("C04", "residential")]]
    alerts = [  # broker times T0, T0 + 1 s, T0 + 2 s
        alert("A1", customers=("C01", "C02", "C03", "C04"), started_at="2026-01-10T10:00:00Z",
              detected_at="2026-01-10T10:03:00Z"),
        alert("A2", customers=("C01",), kind="undervoltage", started_at="2026-01-15T00:00:00Z",
              detected_at="2026-01-15T00:30:00Z"),
        alert("A3", customers=("C02",), started_at="2026-01-20T00:00:00Z", detected_at="2026-01-20T00:02:00Z"),
    ]
    notes = [
        note("N1", "A1", "C01", "sent", at(60), provider_message_id="SM1"),     # 180 + 60 = 240 s
        note("N2", "A1", "C02", "sent", at(900), provider_message_id="SM2"),    # 1080 s: after the window
        note("N3", "A1", "C03", "suppressed", at(5), reason="opted_out"),
        note("N4", "A1", "C04", "sent", at(30), provider_message_id="SM4"),     # 210 s: A1's first message
        note("N4", "A1", "C04", "delivered", at(40), provider_message_id="SM4"),
        note("N5", "A2", "C01", "sent", at(11), provider_message_id="SM5"),     # 1800 + 10 = 1810 s
        note("N6", "A3", "C02", "sent", at(102), provider_message_id="SM6"),    # 120 + 100 = 220 s
    ]
    replies = [
        {"feedback_id": "R1", "customer_id": "C01", "alert_id": "A1", "intent": "rating", "rating": 5,
         "received_at": at(3600)},
        {"feedback_id": "R2", "customer_id": "C02", "alert_id": "A1", "intent": "rating", "rating": 2,
         "received_at": at(3600)},
        {"feedback_id": "R3", "customer_id": "C03", "alert_id": "A1", "intent": "rating", "rating": 4,
         "received_at": at(3600)},
        {"feedback_id": "R4", "customer_id": "C01", "alert_id": "A2", "intent": "opt_out",
         "received_at": at(2 * 86400)},
        {"feedback_id": "R5", "customer_id": "C04", "alert_id": "A1", "intent": "help", "received_at": at(100)},
    ]
    t0_ms = int(T0.timestamp() * 1000)
    project(history_engine, msgs("customers", customers) + msgs("alerts", alerts, ts_ms=t0_ms)
            + msgs("notifications", notes) + msgs("feedback", replies))
    with history_engine.connect() as conn:
        rep = customer_figures.report(conn, year=2026)

    first = {r["kind"]: r for r in rep["first_message"]}
    assert (first["outage"]["alerts"], first["outage"]["p50_s"], first["outage"]["p95_s"]) == (2, 215, 219.5)
    assert (first["undervoltage"]["p50_s"], first["undervoltage"]["p95_s"]) == (1810, 1810)
    # A1: C01 240 s and C04 210 s within 15 min, C02 too late, C03 not told; A3: C02 220 s -> 3 of 5
    assert rep["told_before_report"] == [{"month": "2026-01", "affected": 5, "told": 4, "told_before_report": 3,
                                          "share_told_before_report": 0.6}]
    assert {(r["status"], r["outcome"]): r["n"] for r in rep["delivery"]} == {
        ("sent", "delivered"): 1, ("sent", "no receipt"): 4, ("suppressed", None): 1}
    assert {r["intent"]: r["n"] for r in rep["replies"]} == {"help": 1, "opt_out": 1, "rating": 3}
    assert {(r["kind"], r["segment"]): (r["ratings"], r["mean_rating"], r["satisfied"])
            for r in rep["satisfaction"]} == {("outage", "commercial"): (1, 4.0, 1),
                                              ("outage", "residential"): (2, 3.5, 1)}
    # C01, C02 and C04 were sent messages in January; C01 opted out two days later
    assert rep["opt_out"] == [{"month": "2026-01", "messaged": 3, "opted_out": 1, "opt_out_rate": 0.333333}]
