"""The series an alert's evidence carries for its picture: the voltage trace against the standard's band of
voltage alerts (detectors.topology, fed by the meter stage's ring in detectors.pipeline), and the cycle's
consumption against the Prophet forecast interval of bill alerts (detectors.bill)."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from gridwatch.contract import check, parse_ts
from detectors.bill import BillSpikeDetector
from detectors.pipeline import CustomerStage, Pipeline, trace_points, trace_update
from detectors.registry import enabled
from detectors.testing import daily_scenario, feeder, fitter, reading, readings
from detectors.topology import TRACE_POINTS

START = parse_ts("2026-06-29T00:00:00Z")
HOUR = 3600
FAULT = (START + 10 * HOUR, START + 12 * HOUR)     # readings ending in (10:00, 12:00] are out of band


def run_feeder(levels: dict, hours: int = 24, batch: int = 4, meters: int = 4) -> Pipeline:
    """One transformer of ``meters`` meters at 230 V (EN 50160: 207 .. 253 V), 15-minute readings in batches;
    ``levels`` maps a meter to its v_avg during FAULT, or to (v_avg, its own fault window). The watermark
    follows each window of batches."""
    f = feeder(transformers=1, meters_per_transformer=meters)
    pipe = Pipeline([d for d in enabled() if d.input != "daily"])
    for c in f.customers:
        pipe.add_customer(c)
    n = hours * 4
    series = {}
    for i, m in enumerate(f.meter_ids):
        normal = (lambda k, i=i: round(229.0 + i + 1.5 * ((k % 8) - 4) / 4, 1))
        rs = readings(m, START, n, v=normal)
        v, (lo, hi) = levels[m] if isinstance(levels.get(m), tuple) else (levels.get(m), FAULT)
        series[m] = [reading(m, r.ts, v_avg=v, kwh=r.kwh) if v is not None and lo < r.ts <= hi else r for r in rs]
    for w in range(0, n, batch):
        for m in f.meter_ids:
            pipe.add_readings(series[m][w:w + batch])
        pipe.advance(series[f.meter_ids[0]][min(n, w + batch) - 1].ts - 2 * batch * 900)
    pipe.advance(START + hours * HOUR)
    return pipe


@pytest.fixture(scope="module")
def transformer_alert():
    # three of four meters sag to different levels: one transformer alert; M000002 is the worst
    return run_feeder({"M000001": 200.0, "M000002": 190.0, "M000003": 198.0})


def ts(p: list) -> int:
    return parse_ts(p[0])


def test_an_undervoltage_alert_shows_the_worst_meter_against_the_band(transformer_alert):
    recs = [a for a in transformer_alert.alerts if a["kind"] == "undervoltage"]
    assert [(a["status"], a["scope"]["level"]) for a in recs] == [("open", "transformer"), ("resolved", "transformer")]
    opened = recs[0]
    tr = opened["evidence"]["trace"]
    assert {k: tr[k] for k in ("unit", "standard", "nominal", "band", "meter_id")} == {
        "unit": "V", "standard": "EN 50160", "nominal": 230.0, "band": [207.0, 253.0], "meter_id": "M000002"}
    pts = tr["points"]
    started, detected = parse_ts(opened["started_at"]), parse_ts(opened["detected_at"])
    assert 0 < len(pts) <= TRACE_POINTS
    assert all(len(p) == 4 for p in pts) and [ts(p) for p in pts] == sorted(ts(p) for p in pts)
    before = [p for p in pts if ts(p) < started]
    after = [p for p in pts if ts(p) >= started]
    assert len(before) >= 4 and ts(before[0]) >= started - 2 * HOUR            # a lead-in of up to 2 h ...
    assert all(tr["band"][0] <= p[1] <= tr["band"][1] for p in before)         # ... inside the band
    assert after and all(p[1] < tr["band"][0] for p in after)                  # then below it
    assert ts(pts[-1]) == detected                                              # through the decision
    assert min(p[1] for p in pts) == opened["evidence"]["v_extreme"] == 190.0  # the worst meter's values
    assert all(p[2] is not None and p[2] <= p[1] <= p[3] for p in pts)        # v_min <= v_avg <= v_max


def test_the_resolved_record_shows_the_return_into_the_band(transformer_alert):
    resolved = [a for a in transformer_alert.alerts if a["kind"] == "undervoltage"][-1]
    tr = resolved["evidence"]["trace"]
    pts = tr["points"]
    assert resolved["status"] == "resolved" and tr["meter_id"] == "M000002" and len(pts) <= TRACE_POINTS
    assert ts(pts[-1]) == parse_ts(resolved["resolved_at"])
    assert tr["band"][0] <= pts[-1][1] <= tr["band"][1]                         # ends back in band
    assert any(p[1] < tr["band"][0] for p in pts)                               # after the dip
    assert ts(pts[0]) < parse_ts(resolved["started_at"])


def test_a_growing_alert_shows_the_newest_worst_meter():
    # M000004 joins an hour later and lower: the grown record shows it, through the moment it joined
    pipe = run_feeder({"M000001": 200.0, "M000002": 199.0, "M000003": 198.0,
                       "M000004": (185.0, (FAULT[0] + HOUR, FAULT[1]))})
    recs = [a for a in pipe.alerts if a["kind"] == "undervoltage"]
    assert [(a["status"], len(a["meter_ids"])) for a in recs] == [("open", 3), ("open", 4), ("resolved", 4)]
    first, grown = recs[0]["evidence"]["trace"], recs[1]["evidence"]["trace"]
    assert first["meter_id"] == "M000003" and min(p[1] for p in first["points"]) == 198.0
    assert grown["meter_id"] == "M000004" and min(p[1] for p in grown["points"]) == 185.0
    assert ts(grown["points"][-1]) == FAULT[0] + HOUR + 1800 > ts(first["points"][-1])
    assert ts(grown["points"][0]) == parse_ts(recs[1]["started_at"]) - 2 * HOUR


def test_the_trace_does_not_depend_on_how_the_readings_were_batched(transformer_alert):
    levels = {"M000001": 200.0, "M000002": 190.0, "M000003": 198.0}
    assert run_feeder(levels, batch=1).alerts == run_feeder(levels, batch=12).alerts == transformer_alert.alerts


def test_records_with_a_trace_keep_the_alert_schema_and_are_json(transformer_alert):
    for a in transformer_alert.alerts:
        assert check("alerts", json.loads(json.dumps(a)))["evidence"]["trace"] == a["evidence"]["trace"]


def test_a_lone_meter_and_a_sag_show_their_own_meter():
    pipe = run_feeder({"M000003": 260.0})
    over = [a for a in pipe.alerts if a["kind"] == "overvoltage"]
    assert [(a["status"], a["scope"]["id"]) for a in over] == [("open", "M000003"), ("resolved", "M000003")]
    for a in over:
        tr = a["evidence"]["trace"]
        assert tr["meter_id"] == "M000003" and tr["band"] == [207.0, 253.0]
        assert max(p[1] for p in tr["points"]) == 260.0
        assert ts(tr["points"][-1]) == parse_ts(a["detected_at"] if a["status"] == "open" else a["resolved_at"])
    assert tr["band"][0] <= tr["points"][-1][1] <= tr["band"][1]


def test_a_long_run_keeps_at_most_96_points_and_clean_meters_send_no_trace():
    pipe = run_feeder({"M000001": 195.0, "M000002": 196.0}, hours=48, meters=2)
    assert pipe.alerts and all(len(a["evidence"]["trace"]["points"]) <= TRACE_POINTS for a in pipe.alerts)
    # the ring stays bounded and JSON, and the correlator let go of the traces once the alert resolved
    for st in pipe.meter_states.values():
        assert len(trace_points(st["_trace"])) <= TRACE_POINTS and json.loads(json.dumps(st)) == st
    assert all("trace" not in rec for t in pipe.transformers.values() for rec in t["members"].values())


def test_the_ring_merges_short_intervals_into_quarter_hours_and_skips_repeats():
    rs = readings("M1", START, 6, interval_s=300, v=[230.0, 232.0, 234.0, 220.0, 222.0, 224.0])
    ring = trace_update(None, rs[:4])
    again = trace_update(ring, rs[2:])                 # two repeats, then two new readings
    assert trace_points(ring) == [[START + 900, 232.0, 227.7, 235.2], [START + 1800, 220.0, 217.8, 221.1]]
    assert trace_points(again) == [[START + 900, 232.0, 227.7, 235.2], [START + 1800, 222.0, 217.8, 225.1]]
    assert trace_points(ring) == [[START + 900, 232.0, 227.7, 235.2], [START + 1800, 220.0, 217.8, 221.1]]
    long = trace_update(None, readings("M1", START, 200))
    assert len(trace_points(long)) == TRACE_POINTS and trace_points(long)[-1][0] == START + 200 * 900
    # a silence leaves empty quarter hours out; one longer than the ring starts it afresh
    gap = trace_update(long, readings("M1", START + 210 * 900, 2) + readings("M1", START + 400 * 900, 1))
    assert [p[0] for p in trace_points(gap)] == [START + 400 * 900 + 900]
    gap = trace_update(long, readings("M1", START + 210 * 900, 2))
    assert [p[0] for p in trace_points(gap)][-3:] == [START + 200 * 900, START + 211 * 900, START + 212 * 900]
    assert len(trace_points(gap)) == TRACE_POINTS - 12 + 2
    # null voltages stay null, and a reading without any voltage adds nothing
    odd = trace_update(None, [reading("M1", START + 900, v_avg=None, v_min=201.5, v_max=None),
                              reading("M1", START + 1800, v_avg=None)])
    assert trace_points(odd) == [[START + 900, None, 201.5, None]]


# ------------------------------------------------------------------------------------------------ bill

@pytest.fixture(scope="module")
def bill_alert():
    """The contract suite's daily scenario (x1.8 from day 63) through the customer stage, fits inline."""
    det = BillSpikeDetector()
    stage, fit = CustomerStage([det]), fitter(BillSpikeDetector)
    states, alerts = None, []
    for step in daily_scenario().steps:
        cust = step.ctx.customer
        states, recs, requests = stage.process(states, step.inputs, cust)
        alerts += recs
        for name, payload in requests:
            states, recs = stage.apply(states, name, fit(payload), cust)
            alerts += recs
    assert len(alerts) == 1
    return alerts[0], states


def test_a_bill_alert_carries_the_cycle_so_far_and_the_forecast_interval(bill_alert):
    alert, _ = bill_alert
    ev = alert["evidence"]
    s = ev["series"]
    assert set(s) == {"unit", "currency", "days", "previous", "forecast"}
    assert s["unit"] == "kWh" and s["currency"] == ev["currency"] == "GBP"
    cycle_start, cycle_end = date.fromisoformat(ev["cycle_start"]), date.fromisoformat(ev["cycle_end"])
    days = [date.fromisoformat(d) for d, _ in s["days"]]
    assert days[0] == cycle_start and days == [cycle_start + timedelta(days=i) for i in range(len(days))]
    assert sum(k for _, k in s["days"]) == pytest.approx(ev["measured_kwh"], abs=0.06)
    # the forecast covers exactly the days left, each with lower <= yhat <= upper
    fc = s["forecast"]
    assert len(fc) == ev["days_left"] > 0
    assert [date.fromisoformat(r[0]) for r in fc] == [days[-1] + timedelta(days=i + 1) for i in range(len(fc))]
    assert date.fromisoformat(fc[-1][0]) == cycle_end
    assert all(r[2] <= r[1] <= r[3] and r[2] < r[3] for r in fc)
    # the comparison period: the cycle before this one (the history is shorter than a year)
    assert ev["basis"] == "recent cycles"
    prev = [date.fromisoformat(d) for d, _ in s["previous"]]
    assert prev and prev[-1] == cycle_start - timedelta(days=1) and prev[0].day == cycle_start.day
    assert check("alerts", json.loads(json.dumps(alert)))["evidence"]["series"] == s


def test_the_stored_forecast_keeps_one_interval_row_per_day(bill_alert):
    _, states = bill_alert
    fc = states["bill_spike"]["fc"]
    assert len(fc["lo"]) == len(fc["hi"]) == len(fc["yhat"])
    assert all(lo <= y <= hi for lo, y, hi in zip(fc["lo"], fc["yhat"], fc["hi"]))
    assert json.loads(json.dumps(states)) == states
