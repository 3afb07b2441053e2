"""The console's model, fed by hand: filters and counts, timeline, figures with known numbers, satisfaction,
phone masking, bounded histories."""

from __future__ import annotations

import pytest

from console.model import ConsoleModel, format_time, parse_time, quantile, reason_category
from gridwatch import config as names
from notifiers.privacy import mask_phone

PHONE_C1 = "+8613812348000"
T0 = 1_780_000_000.0  # Kafka (wall) time of the first alert record


def customer(cid, meter, transformer, feeder, phone, **extra):
    return {"customer_id": cid, "meter_id": meter, "transformer_id": transformer, "feeder_id": feeder,
            "segment": "residential", "phone": phone, "language": "zh-CN", "timezone": "Asia/Shanghai",
            "nominal_voltage": 220, **extra}


def alert(aid, kind, severity, status, level, sid, meters, customers, started, detected, **extra):
    record = {"alert_id": aid, "kind": kind, "severity": severity, "status": status,
              "scope": {"level": level, "id": sid}, "meter_ids": meters, "customer_ids": customers,
              "started_at": started, "detected_at": detected, "resolved_at": None, "evidence": {}}
    record.update(extra)
    return record


def note(nid, aid, cid, status, created_at, reason=None, body="GridWatch: voltage low", channel="sms"):
    return {"notification_id": nid, "alert_id": aid, "customer_id": cid, "channel": channel, "language": "en",
            "body": body, "status": status, "reason": reason, "provider_message_id": None, "created_at": created_at}


def entry(status, at, by, reason=None):
    return {"status": status, "at": at, "by": by, "reason": reason}


def build() -> ConsoleModel:
    """4 alerts with known delays (detection 900, 1800, 180, 3600 s) and messages; see the tests."""
    m = ConsoleModel()
    for c in (customer("C1", "M1", "T1", "F1", PHONE_C1), customer("C2", "M2", "T1", "F1", "+447700900123"),
              customer("C3", "M3", "T2", "F2", "+4930123456789", language="de")):
        m.apply(names.CUSTOMERS, c["customer_id"], c, None)
    a1 = alert("A1", "undervoltage", "warning", "open", "transformer", "T1", ["M1", "M2"], ["C1", "C2"],
               "2026-07-01T04:15:00Z", "2026-07-01T04:30:00Z", history=[entry("open", "2026-07-01T04:30:00Z", "detector")])
    a2 = alert("A2", "overvoltage", "critical", "acknowledged", "meter", "M3", ["M3"], ["C3"],
               "2026-07-01T14:15:00Z", "2026-07-01T14:45:00Z", acknowledged_by="ana",
               history=[entry("open", "2026-07-01T14:45:00Z", "detector"),
                        entry("acknowledged", "2026-07-02T09:00:00Z", "ana", "crew dispatched")])
    a3 = alert("A3", "outage", "critical", "resolved", "feeder", "F1", ["M1", "M2"], ["C1", "C2"],
               "2026-07-01T18:00:00Z", "2026-07-01T18:03:00Z", resolved_at="2026-07-01T19:00:00Z",
               resolved_by="bob", no_fault=True,
               history=[entry("open", "2026-07-01T18:03:00Z", "detector"),
                        entry("resolved", "2026-07-01T18:30:00Z", "detector"),
                        entry("open", "2026-07-01T18:40:00Z", "detector"),
                        entry("resolved", "2026-07-01T19:00:00Z", "bob", "no fault found")])
    a4 = alert("A4", "bill_spike", "info", "resolved", "meter", "M1", ["M1"], ["C1"],
               "2026-07-03T00:00:00+00:00", "2026-07-03T01:00:00+00:00", resolved_at="2026-07-05T00:00:00Z",
               no_fault=False)
    m.apply(names.ALERTS, "A1", {**a1, "severity": "info"}, T0)       # a first record, then the latest
    m.apply(names.ALERTS, "A1", a1, T0 + 5)
    m.apply(names.ALERTS, "A2", a2, T0 + 100)
    m.apply(names.ALERTS, "A3", a3, T0 + 200)
    m.apply(names.ALERTS, "A4", a4, T0 + 300)
    for n in (note("N1", "A1", "C1", "sent", format_time(T0 + 12)),
              note("N1", "A1", "C1", "delivered", format_time(T0 + 20), body=None),
              note("N2", "A1", "C2", "suppressed", format_time(T0 + 13), reason="opted_out", body=None),
              note("N3", "A2", "C3", "deferred", format_time(T0 + 101), reason="quiet_hours until 2026-07-02T06:00:00Z"),
              note("N3", "A2", "C3", "sent", format_time(T0 + 130)),
              note("N4", "A3", "C1", "suppressed", format_time(T0 + 201), reason="silenced sil-1 by ana: work"),
              note("N5", "A3", "C2", "failed", format_time(T0 + 202), reason="21211 invalid number")):
        m.apply(names.NOTIFICATIONS, n["customer_id"], n, None)
    for i, (aid, rating, intent) in enumerate((("A1", 5, "rating"), ("A1", 4, "rating"), ("A3", 2, "rating"),
                                               ("A9", 3, "rating"), ("A1", None, "other"))):
        m.apply(names.FEEDBACK, "C1", {"feedback_id": f"F{i}", "customer_id": "C1", "intent": intent,
                                       "rating": rating, "alert_id": aid, "body": str(rating),
                                       "created_at": format_time(T0 + 400 + i)}, None)
    return m


def test_time_helpers():
    assert parse_time("2026-07-01T04:15:00Z") == parse_time("2026-07-01T06:15:00+02:00")
    assert parse_time("2026-07-01T04:15:00") is None and parse_time("junk") is None and parse_time(None) is None
    assert parse_time(12.5) == 12.5
    assert format_time(parse_time("2026-07-01T04:15:00.250Z")) == "2026-07-01T04:15:00.250Z"
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5 and quantile([], 0.5) is None
    assert reason_category("silenced sil-1 by ana: x") == "silenced"
    assert reason_category("budget: 3 messages in 24 h") == "budget" and reason_category(None) == "unknown"


def test_summary_derives_feeder_and_transformers_from_the_customer_directory():
    m = build()
    s = m.summary("A1")
    assert s == {"alert_id": "A1", "kind": "undervoltage", "severity": "warning", "status": "open",
                 "scope": {"level": "transformer", "id": "T1"}, "started_at": "2026-07-01T04:15:00Z",
                 "detected_at": "2026-07-01T04:30:00Z", "resolved_at": None, "n_meters": 2, "n_customers": 2,
                 "feeder_id": "F1", "transformer_ids": ["T1"], "updated_at": format_time(T0 + 5)}
    assert m.summary("A3")["feeder_id"] == "F1" and m.summary("A3")["transformer_ids"] == ["T1"]
    assert m.summary("A2")["feeder_id"] == "F2" and m.summary("A2")["transformer_ids"] == ["T2"]
    # the directory changes: the summary follows (C3 moves to another feeder, then is deleted)
    m.apply("customers", "C3", customer("C3", "M3", "T9", "F9", "+4930123456789"), None)
    assert m.summary("A2")["feeder_id"] == "F9" and m.summary("A2")["transformer_ids"] == ["T9"]
    m.apply("customers", "C3", None, None)
    assert m.summary("A2")["feeder_id"] is None and m.summary("A2")["transformer_ids"] == []


def test_filters_counts_and_order():
    m = build()
    every = m.list_alerts()
    assert [a["alert_id"] for a in every["alerts"]] == ["A4", "A3", "A2", "A1"]  # newest detection first
    assert every["counts"] == {"open": 1, "acknowledged": 1, "resolved": 2}

    f1 = m.list_alerts(feeder={"F1"})
    assert {a["alert_id"] for a in f1["alerts"]} == {"A1", "A3", "A4"}
    assert f1["counts"] == {"open": 1, "acknowledged": 0, "resolved": 2}
    # the status filter narrows the list, not the counts
    resolved = m.list_alerts(feeder={"F1"}, status={"resolved"})
    assert [a["alert_id"] for a in resolved["alerts"]] == ["A4", "A3"]
    assert resolved["counts"] == f1["counts"]

    assert [a["alert_id"] for a in m.list_alerts(kind={"undervoltage", "overvoltage"})["alerts"]] == ["A2", "A1"]
    assert [a["alert_id"] for a in m.list_alerts(severity={"critical"})["alerts"]] == ["A3", "A2"]
    assert [a["alert_id"] for a in m.list_alerts(transformer={"T2"})["alerts"]] == ["A2"]
    assert m.list_alerts(transformer={"T2"})["counts"] == {"open": 0, "acknowledged": 1, "resolved": 0}
    limited = m.list_alerts(limit=2)
    assert [a["alert_id"] for a in limited["alerts"]] == ["A4", "A3"] and limited["counts"]["resolved"] == 2


def test_apply_returns_live_events():
    m = ConsoleModel()
    events = m.apply("alerts", "X", alert("X", "sag", "warning", "open", "meter", "M1", ["M1"], [],
                                          "2026-07-01T00:00:00Z", "2026-07-01T00:15:00Z"), 10.0)
    assert events[0][0] == "alert" and events[0][1]["alert_id"] == "X" and events[0][1]["n_meters"] == 1
    assert m.apply("alerts", "X", None, None) == [("alert", {"alert_id": "X", "deleted": True})]
    assert m.apply("alerts", "X", None, None) == []
    n = note("N", "X", "C1", "sent", "2026-07-01T00:16:00Z")
    assert m.apply("notifications", "C1", n, None) == [("notification", n)]
    assert m.apply("feedback", None, {"feedback_id": "f", "customer_id": None}, None)[0][0] == "feedback"
    s = {"silence_id": "sil-1", "scope": {"level": "all", "id": "*"}}
    assert m.apply(names.SILENCES, "sil-1", s, None) == [("silence", s)]
    assert m.apply(names.SILENCES, "sil-1", dict(s), None) == []  # read back unchanged: nothing to push
    assert m.apply("customers", "C1", customer("C1", "M1", "T1", "F1", PHONE_C1), None) == []
    assert m.apply("alerts", "Y", "not a record", None) == []
    with pytest.raises(ValueError):
        m.apply("meter.readings", "M1", {}, None)


def test_timeline():
    m = build()
    assert m.timeline("A1") == [
        {"event": "started", "at": "2026-07-01T04:15:00Z", "by": None, "reason": None},
        {"event": "detected", "at": "2026-07-01T04:30:00Z", "by": "detector", "reason": None},
        {"event": "notified", "at": format_time(T0 + 12), "by": "sms", "reason": None}]
    assert [(e["event"], e["by"], e["reason"]) for e in m.timeline("A2")] == [
        ("started", None, None), ("detected", "detector", None), ("notified", "sms", None),
        ("acknowledged", "ana", "crew dispatched")]
    assert m.timeline("A2")[2]["at"] == format_time(T0 + 130)  # the first SENT, not the deferral
    assert [e["event"] for e in m.timeline("A3")] == ["started", "detected", "resolved", "reopened", "resolved"]
    assert m.timeline("A3")[-1] == {"event": "resolved", "at": "2026-07-01T19:00:00Z", "by": "bob",
                                    "reason": "no fault found"}
    # no history: the record's own fields
    assert [e["event"] for e in m.timeline("A4")] == ["started", "detected", "resolved"]
    assert m.timeline("nope") == []


def test_customers_notifications_and_masking():
    m = build()
    masked = m.customers_of("A1", reveal_phones=False)
    assert [c["customer_id"] for c in masked] == ["C1", "C2"]
    assert masked[0]["phone"] == mask_phone(PHONE_C1) == "+86138****8000"
    assert PHONE_C1 not in repr(masked)
    full = m.customers_of("A1", reveal_phones=True)
    assert full[0]["phone"] == PHONE_C1 and full[0]["language"] == "zh-CN" and full[0]["segment"] == "residential"
    n1 = full[0]["notifications"]
    assert len(n1) == 1 and n1[0]["notification_id"] == "N1"
    assert n1[0]["status"] == "delivered" and n1[0]["body"] == "GridWatch: voltage low"  # latest status, kept body
    assert [h["status"] for h in n1[0]["history"]] == ["sent", "delivered"]
    assert full[1]["notifications"][0]["status"] == "suppressed" and full[1]["notifications"][0]["reason"] == "opted_out"
    detail = m.detail("A1", reveal_phones=False, evidence_url=None)
    assert detail["alert"]["alert_id"] == "A1" and detail["evidence_svg"] is None
    assert [f["feedback_id"] for f in detail["feedback"]] == ["F0", "F1", "F4"]
    assert m.detail("nope", reveal_phones=True, evidence_url=None) is None


def test_figures_with_known_numbers():
    f = build().figures()
    # detection: 900, 1800, 180, 3600 s -> median (900 + 1800) / 2, p95 at rank 2.85
    assert f["detection_s"] == {"n": 4, "median": 1350.0, "p95": 3330.0}
    # first message: A1 12 s wall + 900 s detection; A2 30 s wall (sent 130 s after its first record at +100)
    # + 1800 s detection
    assert f["first_message_s"] == {"n": 2, "median": 1371.0, "p95": 1784.1}
    assert f["messages"] == {"sent": 2, "delivered": 1, "suppressed": 2, "failed": 1, "deferred": 1,
                             "suppressed_by_reason": {"opted_out": 1, "silenced": 1}}
    assert f["false_alarms"] == {"resolved": 2, "no_fault": 1, "rate": 0.5}
    empty = ConsoleModel().figures()
    assert empty["detection_s"] == {"n": 0, "median": None, "p95": None}
    assert empty["false_alarms"] == {"resolved": 0, "no_fault": 0, "rate": None}


def test_first_message_uses_the_first_record_of_the_alert():
    m = ConsoleModel()
    a = alert("X", "outage", "critical", "open", "meter", "M1", ["M1"], ["C1"],
              "2026-07-01T00:00:00Z", "2026-07-01T00:03:00Z")
    m.apply("alerts", "X", a, 1000.0)
    m.apply("alerts", "X", {**a, "meter_ids": ["M1", "M2"]}, 1500.0)  # a later update of the same alert
    m.apply("notifications", "C1", note("N", "X", "C1", "sent", format_time(1010.0)), None)
    assert m.first_message_delays() == [190.0]  # 10 s wall + 180 s event time


def test_satisfaction_per_kind():
    s = build().satisfaction()
    assert s == {
        "outage": {"ratings": 1, "mean": 2.0, "distribution": {"1": 0, "2": 1, "3": 0, "4": 0, "5": 0}},
        "undervoltage": {"ratings": 2, "mean": 4.5, "distribution": {"1": 0, "2": 0, "3": 0, "4": 1, "5": 1}},
        "unknown": {"ratings": 1, "mean": 3.0, "distribution": {"1": 0, "2": 0, "3": 1, "4": 0, "5": 0}},
    }
    assert [f["feedback_id"] for f in build().list_feedback(limit=2)] == ["F4", "F3"]


def test_histories_are_bounded():
    m = ConsoleModel(max_records=3)
    for i in range(5):
        m.apply("notifications", "C1", note(f"N{i}", "A" if i % 2 else "B", "C1", "sent", format_time(i)), None)
        m.apply("feedback", "C1", {"feedback_id": f"F{i}", "alert_id": "A"}, None)
    assert [n["notification_id"] for n in m.notifications_of("A")] == ["N3"]
    assert [n["notification_id"] for n in m.notifications_of("B")] == ["N2", "N4"]
    assert len(m.list_feedback()) == 3 and [f["feedback_id"] for f in m.feedback_of("A")] == ["F2", "F3", "F4"]
    assert m.notification_counts[("sent", "sms")] == 5  # the counter counts everything seen


def test_silences_listed_with_active_flag():
    m = ConsoleModel()
    base = {"scope": {"level": "feeder", "id": "F1"}, "kinds": None, "include_safety": False,
            "author": "ana", "reason": "work", "created_at": "2026-07-01T00:00:00Z", "expired_at": None,
            "expired_by": None}
    now = parse_time("2026-07-01T12:00:00Z")
    m.apply("silences", "s1", {**base, "silence_id": "s1", "starts_at": "2026-07-01T10:00:00Z",
                               "ends_at": "2026-07-01T14:00:00Z"}, None)
    m.apply("silences", "s2", {**base, "silence_id": "s2", "starts_at": "2026-07-01T13:00:00Z",
                               "ends_at": "2026-07-01T14:00:00Z"}, None)
    m.apply("silences", "s3", {**base, "silence_id": "s3", "starts_at": "2026-07-01T10:00:00Z",
                               "ends_at": "2026-07-01T14:00:00Z", "expired_at": "2026-07-01T11:00:00Z",
                               "expired_by": "bob"}, None)
    listed = {s["silence_id"]: (s["active"], s["state"]) for s in m.list_silences(now)}
    assert listed == {"s1": (True, "active"), "s2": (False, "scheduled"), "s3": (False, "expired")}
    m.apply("silences", "s2", None, None)
    assert {s["silence_id"] for s in m.list_silences(now)} == {"s1", "s3"}


def test_the_directory_keeps_only_what_the_console_shows_with_shared_values_once():
    m = ConsoleModel()
    for i in (1, 2):
        m.apply("customers", f"C{i}", {"customer_id": f"C{i}", "meter_id": f"M{i}", "transformer_id": "T" + "1" * 3,
                                       "feeder_id": "F1", "phone": f"+44790000000{i}", "language": "en-GB",
                                       "segment": "residential", "opted_out": False, "email": f"c{i}@example.net",
                                       "webhook_url": "https://example.net/hook", "timezone": "Europe/London"})
    c1, c2 = m.customers["C1"], m.customers["C2"]
    assert c1 == {"meter_id": "M1", "transformer_id": "T111", "feeder_id": "F1", "phone": "+447900000001",
                  "language": "en-GB", "segment": "residential", "opted_out": False}
    assert c1["transformer_id"] is c2["transformer_id"] and c1["segment"] is c2["segment"]
    assert m._customer_of_meter("M2") is c2
