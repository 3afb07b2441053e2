"""IEEE 1366 indices on the real PostgreSQL for a scenario whose values are computed by hand below."""

from __future__ import annotations

import math

import pytest

from history import reliability
from tests.history.test_store import Msg, alert, msgs, project

pytestmark = pytest.mark.postgres

# F1: C01..C10, F2: C11..C15 -> N_T 10, 5, 15
CUSTOMERS = [{"customer_id": f"C{i:02d}", "meter_id": f"M{i:02d}", "transformer_id": "T1" if i <= 10 else "T2",
              "feeder_id": "F1" if i <= 10 else "F2", "segment": "residential"} for i in range(1, 16)]


def outage(aid, start, end, customers, kind="outage", **kw):
    # no feeder in the evidence: the history takes it from the customers' directory entries
    return alert(aid, status="resolved" if end else "open", customers=customers, kind=kind,
                 started_at=start, resolved_at=end, evidence={}, **kw)


def scenario() -> list[Msg]:
    c = lambda *ids: [f"C{i:02d}" for i in ids]  # noqa: E731
    alerts = [
        # A1: Jan 10, 60 min; its scope grows and shrinks over four updates of the same id: C01..C04 once each
        outage("A1", "2026-01-10T10:00:00Z", None, c(1, 2)),
        outage("A1", "2026-01-10T10:00:00Z", None, c(1, 2, 3, 4)),
        outage("A1", "2026-01-10T10:00:00Z", None, c(3)),
        outage("A1", "2026-01-10T10:00:00Z", "2026-01-10T11:00:00Z", c(3)),
        # A2: Jan 20, 30 min, all of F2
        outage("A2", "2026-01-20T08:00:00Z", "2026-01-20T08:30:00Z", c(11, 12, 13, 14, 15)),
        # A3: a momentary interruption (1 min) of C05..C10
        outage("A3", "2026-01-25T12:00:00Z", "2026-01-25T12:01:00Z", c(5, 6, 7, 8, 9, 10),
               kind="momentary_interruption"),
        # A4 Feb 3 00:00-02:00 C01, C02; A5 its child keeps C02 dark 01:00-03:00: C02 is ONE interruption of 180 min
        outage("A4", "2026-02-03T00:00:00Z", "2026-02-03T02:00:00Z", c(1, 2)),
        outage("A5", "2026-02-03T01:00:00Z", "2026-02-03T03:00:00Z", c(2)),
        # A6: an operator's "no fault": not an interruption
        outage("A6", "2026-02-10T00:00:00Z", "2026-02-10T05:00:00Z", c(1), no_fault=True),
        # A7: a 4-minute outage is momentary under IEEE 1366 (at most 5 minutes)
        outage("A7", "2026-02-12T06:00:00Z", "2026-02-12T06:04:00Z", c(9)),
        # A8: still open: not counted until it ends
        outage("A8", "2026-02-20T06:00:00Z", None, c(10)),
        # a voltage alert is no interruption
        outage("V1", "2026-02-21T06:00:00Z", "2026-02-21T09:00:00Z", c(1), kind="undervoltage"),
    ]
    return msgs("customers", CUSTOMERS) + msgs("alerts", alerts)


def test_indices_equal_the_hand_computed_values(history_engine):
    project(history_engine, scenario())
    with history_engine.connect() as conn:
        rep = reliability.report(conn, year=2026)
    s, f1, f2 = rep["system"], rep["feeders"]["F1"], rep["feeders"]["F2"]
    # January: F1 4 customers x 60 min, momentary 6; F2 5 x 30 min
    assert _pick(f1["2026-01"]) == (10, 4, 240, 0.4, 24, 60, 0.6, 0)
    assert _pick(f2["2026-01"]) == (5, 5, 150, 1.0, 30, 30, 0.0, 0)
    assert _pick(s["2026-01"]) == (15, 9, 390, 0.6, 26, pytest.approx(390 / 9, abs=1e-6), 0.4, 0)
    # February: C01 120 min, C02 180 min (A4 and its child merged); C09's 4 minutes momentary
    assert _pick(f1["2026-02"]) == (10, 2, 300, 0.2, 30, 150, 0.1, 0)
    assert _pick(f2["2026-02"]) == (5, 0, 0, 0, 0, None, 0, 0)
    # year to date: C01 and C02 had two sustained interruptions each -> CEMI-1 2/15
    assert _pick(s["ytd"]) == (15, 11, 690, pytest.approx(11 / 15, abs=1e-6), 46,
                               pytest.approx(690 / 11, abs=1e-6), pytest.approx(7 / 15, abs=1e-6),
                               pytest.approx(2 / 15, abs=1e-6))
    assert f1["ytd"]["cemi_1"] == 0.2 and f1["ytd"]["cemi_2"] == 0 and f2["ytd"]["cemi_1"] == 0
    assert not rep["major_event_days"]["applied"] and "history" in rep["major_event_days"]["reason"]
    # replaying everything changes no figure
    project(history_engine, scenario())
    with history_engine.connect() as conn:
        assert reliability.report(conn, year=2026) == rep


def _pick(v):
    return (v["customers_served"], v["customer_interruptions"], v["customer_minutes_interrupted"], v["saifi"],
            v["saidi"], v["caidi"], v["maifi"], v["cemi_1"])


def test_major_event_days_follow_the_2_5_beta_rule(history_engine):
    """A year of ordinary days before 2026 (ln SAIDI/day alternating 0 and 1: α 0.5, β ≈ 0.5), then a storm."""
    customers = [{"customer_id": f"C{i:02d}", "feeder_id": "F1"} for i in range(1, 11)]
    alerts = []
    from datetime import datetime, timedelta, timezone
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    for day in range(0, 365, 5):
        minutes = 10 if (day // 5) % 2 == 0 else 10 * math.e  # one of 10 customers: SAIDI/day 1 or e
        s = start + timedelta(days=day, hours=1)
        e = s + timedelta(minutes=minutes)
        alerts.append(outage(f"H{day}", s.isoformat(), e.isoformat(), ["C01"]))
    # 2026-03-01: all 10 customers out 600 min -> SAIDI/day 600; 2026-03-02 an ordinary day
    alerts.append(outage("STORM", "2026-03-01T00:00:00Z", "2026-03-01T10:00:00Z", [c["customer_id"] for c in customers]))
    alerts.append(outage("DAY", "2026-03-02T00:00:00Z", "2026-03-02T00:10:00Z", ["C01"]))
    project(history_engine, msgs("customers", customers) + msgs("alerts", alerts))
    logs = [0.0 if (d // 5) % 2 == 0 else 1.0 for d in range(0, 365, 5)]
    import statistics
    expected = math.exp(statistics.fmean(logs) + 2.5 * statistics.stdev(logs))
    with history_engine.connect() as conn:
        rep = reliability.report(conn, year=2026)
    med = rep["major_event_days"]
    assert med["applied"], med["reason"]
    assert med["threshold_saidi_minutes"] == pytest.approx(expected, rel=1e-6)
    assert med["days"] == ["2026-03-01"]
    # 10 customers x 600 min + C01's 10 min, over 10 customers; without the storm only the 10 min
    assert rep["system"]["ytd"]["saidi"] == pytest.approx(601)
    assert rep["excluding_major_event_days"]["system"]["ytd"]["saidi"] == pytest.approx(1)


def test_the_threshold_formula():
    assert reliability.med_threshold([1, math.e, math.e ** 2]) == pytest.approx(math.exp(1 + 2.5 * 1.0))
    assert reliability.med_threshold([0, 5]) is None
