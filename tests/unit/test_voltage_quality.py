"""Voltage quality: standard profiles, IEEE 1159 categories, sags and swells, loose neutral, weekly compliance."""

from __future__ import annotations

import copy
import json
from zoneinfo import ZoneInfo

import pytest

from detectors.api import Context
from detectors.compliance import VoltageComplianceDetector, week_bounds
from detectors.neutral import LooseNeutralDetector
from detectors.registry import load
from detectors.sags import SagSwellDetector
from detectors.standards import PROFILES, ieee1159, profile_for, profile_for_customer
from detectors.testing import context, customer, readings
from detectors.voltage import VoltageDetector
from gridwatch.contract import ContractError, check, parse_ts, schema

EN = context(customer(nominal_voltage=230, timezone="UTC"))    # EN 50160, 207 .. 253 V
GB = context(customer(nominal_voltage=220, timezone="Asia/Shanghai", phone="+8613800000001"))
MONDAY = "2026-06-29T00:00:00Z"


def run(detector, batch, ctx, size=4, state=None):
    """Feed ``batch`` in messages of ``size`` readings; returns (state, findings)."""
    found = []
    for i in range(0, len(batch), size):
        state, out = detector.process(state, batch[i:i + size], ctx)
        found.extend(out)
    return state, found


# ------------------------------------------------------------------------------------------- standards

def test_profile_bands_follow_the_standards():
    gb, en = PROFILES["GB/T 12325"], PROFILES["EN 50160"]
    a, b = PROFILES["ANSI C84.1 Range A"], PROFILES["ANSI C84.1 Range B"]
    assert (gb.low, gb.high) == (198.0, 235.4)
    assert (en.low, en.high) == (207.0, 253.0)
    assert (en.outer_low, en.outer_high, en.weekly_share) == (195.5, 253.0, 0.95)
    assert (a.low, a.high) == (114.0, 126.0)
    assert (b.low, b.high) == (110.0, 127.0)
    for p in (gb, a, b):  # no weekly statistic, no outer limits
        assert p.outer_low is None and p.outer_high is None and p.weekly_share is None
        assert p.within_outer(0.0)
    assert en.within_outer(195.5) and not en.within_outer(195.4) and not en.within_outer(253.1)


def test_the_standard_is_chosen_per_customer():
    assert profile_for(220).name == "GB/T 12325" and profile_for(230).name == "EN 50160"
    assert profile_for(120).name == "ANSI C84.1 Range A"
    assert profile_for(120, "ANSI C84.1 Range B").name == "ANSI C84.1 Range B"
    us = {"nominal_voltage": 120}
    assert profile_for_customer(us).name == "ANSI C84.1 Range A"
    assert profile_for_customer({**us, "voltage_standard": "ANSI C84.1 Range B"}).high == 127.0
    generic = profile_for(240)
    assert (generic.name, generic.low, generic.high) == ("generic +/-10 %", 216.0, 264.0)


def test_an_unknown_standard_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown voltage standard 'IEC 61000'.*EN 50160"):
        profile_for(230, "IEC 61000")
    with pytest.raises(ValueError, match="unknown voltage standard"):
        profile_for_customer({"nominal_voltage": 230, "voltage_standard": "en50160"})


def test_the_customers_schema_names_exactly_the_profiles():
    assert schema("customers")["properties"]["voltage_standard"]["enum"] == list(PROFILES)
    rec = customer(nominal_voltage=120, timezone="America/New_York", voltage_standard="ANSI C84.1 Range B")
    assert profile_for_customer(rec).name == "ANSI C84.1 Range B"
    with pytest.raises(ContractError):
        check("customers", dict(rec, voltage_standard="ANSI C84.1 Range C"))


@pytest.mark.parametrize("pu, category", [
    (0.0, "interruption"), (0.099, "interruption"), (0.1, "sag"), (0.5, "sag"), (0.899, "sag"),
    (0.9, "normal"), (1.0, "normal"), (1.1, "normal"), (1.101, "swell"), (1.8, "swell"), (1.81, "normal"),
])
def test_ieee1159_magnitude_categories(pu, category):
    assert ieee1159(pu) == category


# --------------------------------------------------------------------------------------- the registry

def test_the_voltage_detectors_are_registered_and_valid():
    found = load()
    for name, cls in [("voltage", VoltageDetector), ("sag_swell", SagSwellDetector),
                      ("loose_neutral", LooseNeutralDetector), ("voltage_compliance", VoltageComplianceDetector)]:
        assert found[name] is cls
        assert all(p.help for p in cls.parameters()), name


# ------------------------------------------------------------------------------------ sags and swells

def test_a_short_sag_is_one_event_with_its_evidence():
    day = readings(n=96, v=230.0, at={40: {"v_min": 150.0}})
    state, found = run(SagSwellDetector(), day, EN)
    assert len(found) == 1
    f = found[0]
    assert f["kind"] == "sag" and f["status"] == "event" and f["meter_id"] == "M000001"
    assert f["started_at"] == f["detected_at"] == f["at"] == day[40].ts
    assert f["severity"] == "warning"  # 0.652 pu: below 0.7
    assert f["evidence"] == {"v_min": 150.0, "pu": 0.652, "category": "sag", "standard": "EN 50160",
                             "nominal_v": 230.0}
    assert json.loads(json.dumps(state)) == state


def test_consecutive_sag_intervals_are_one_event_and_a_later_sag_another():
    day = readings(n=96, v=230.0, at={range(10, 14): {"v_min": 190.0}, 30: {"v_min": 180.0}})
    _, found = run(SagSwellDetector(), day, EN)
    assert [(f["kind"], f["at"], f["severity"]) for f in found] == [
        ("sag", day[10].ts, "info"), ("sag", day[30].ts, "info")]  # 0.83 and 0.78 pu: shallow


def test_swells_and_their_severity():
    day = readings(n=20, v=230.0, at={5: {"v_max": 260.0}, 12: {"v_max": 290.0}})
    _, found = run(SagSwellDetector(), day, EN)
    assert [(f["kind"], f["severity"], f["evidence"]["v_max"], f["evidence"]["pu"]) for f in found] == [
        ("swell", "info", 260.0, 1.13), ("swell", "warning", 290.0, 1.261)]


def test_no_sag_while_the_mean_itself_is_out_of_band():
    """A sustained undervoltage (v_avg 190 V) with an even lower v_min belongs to the voltage detector."""
    day = readings(n=40, v=230.0, at={range(10, 20): {"v_avg": 190.0, "v_min": 180.0}})
    _, found = run(SagSwellDetector(), day, EN)
    assert found == []
    _, sustained = run(VoltageDetector(), day, EN)
    assert [f["kind"] for f in sustained] == ["undervoltage", "undervoltage"]


def test_clean_data_and_a_swinging_interval_give_no_sag_or_swell():
    assert run(SagSwellDetector(), readings(n=96 * 7, v=lambda i: 225 + (i % 9)), EN)[1] == []
    both = readings(n=8, v=230.0, at={3: {"v_min": 180.0, "v_max": 270.0}})  # the loose-neutral pattern
    assert run(SagSwellDetector(), both, EN)[1] == []


def test_sag_swell_tolerates_missing_fields_duplicates_and_disorder():
    day = readings(n=12, v=230.0, at={2: {"v_min": None, "v_max": None}, 4: {"v_avg": None, "v_min": 100.0},
                                      6: {"v_min": 170.0}, 9: {"v_max": 280.0}})
    det = SagSwellDetector()
    state, found = det.process(None, day, EN)
    assert [f["kind"] for f in found] == ["sag", "swell"]
    frozen = copy.deepcopy(state)
    again, extra = det.process(state, list(reversed(day)), EN)
    assert state == frozen and extra == [] and again["skipped"] == 12
    assert det.process(None, list(reversed(day)), EN)[1] == found
    assert det.process(None, day + day[5:8], EN)[1] == found


def test_a_gap_ends_a_run_of_sag_intervals():
    before = readings(n=4, v=230.0, v_min=180.0)
    after = readings(start=before[-1].ts + 3 * 900, n=2, v=230.0, v_min=180.0)  # two intervals missing
    _, found = run(SagSwellDetector(), before + after, EN)
    assert [f["at"] for f in found] == [before[0].ts, after[0].ts]


# --------------------------------------------------------------------------------------- loose neutral

def swinging(n=48, start=MONDAY, calm_after=None):
    """Every interval dips below and rises above the EN 50160 band; v_avg alternates around nominal."""
    batch = readings(start=start, n=n, at={i: {"v_avg": 238.0 if i % 2 else 222.0, "v_min": 190.0 + i % 5,
                                                "v_max": 265.0 + i % 3} for i in range(n)})
    if calm_after is not None:
        batch = batch[:calm_after] + readings(start=batch[calm_after - 1].ts, n=n - calm_after, v=230.0)
    return batch


def test_a_swinging_meter_is_a_critical_loose_neutral_until_calm():
    batch = swinging(n=48, calm_after=16)
    _, found = run(LooseNeutralDetector(), batch, EN)
    assert [(f["kind"], f["status"]) for f in found] == [("loose_neutral", "abnormal"),
                                                         ("loose_neutral", "normal")]
    opened, closed = found
    assert opened["severity"] == "critical" and opened["meter_id"] == "M000001"
    assert opened["started_at"] == batch[0].ts
    assert opened["detected_at"] == opened["at"] == batch[3].ts  # the fourth swing
    ev = opened["evidence"]
    assert (ev["window_s"], ev["swings"], ev["standard"], ev["band_v"]) == (21600, 4, "EN 50160", [207.0, 253.0])
    assert ev["v_min"] == 190.0 and ev["v_max"] == 267.0
    assert closed["at"] == batch[15].ts + 7200  # two calm hours after the last swing
    assert closed["evidence"]["last_swing_at"] == batch[15].ts and closed["evidence"]["swings"] >= 4


def test_alternating_mean_voltage_across_the_band_is_a_swing_too():
    batch = readings(n=16, v=lambda i: 260.0 if i % 2 else 200.0)
    _, found = run(LooseNeutralDetector(), batch, EN)
    assert [f["status"] for f in found] == ["abnormal"] and found[0]["evidence"]["swings"] == 4


def test_steady_or_one_sided_meters_are_not_a_loose_neutral():
    det = LooseNeutralDetector()
    assert run(det, readings(n=96 * 2, v=lambda i: 224 + i % 11), EN)[1] == []
    # a sustained undervoltage and repeated sags go one way only
    assert run(det, readings(n=96, v=195.0, v_min=185.0), EN)[1] == []
    assert run(det, readings(n=96, v=230.0, at={range(1, 96, 2): {"v_min": 150.0}}), EN)[1] == []
    # swings spread wider than the window never add up to min_swings
    sparse = readings(n=96 * 3, v=230.0, at={i: {"v_max": 270.0} if (i // 40) % 2 else {"v_min": 180.0}
                                             for i in range(0, 96 * 3, 40)})
    assert run(det, sparse, EN)[1] == []


def test_loose_neutral_leaves_its_input_alone_and_drops_duplicates():
    batch = swinging(n=12)
    det = LooseNeutralDetector()
    state, found = det.process(None, batch, EN)
    frozen = copy.deepcopy(state)
    again, extra = det.process(state, batch[4:8], EN)
    assert state == frozen and extra == [] and again["skipped"] == 4
    assert json.loads(json.dumps(state)) == state
    assert det.process(None, list(reversed(batch)), EN)[1] == found


# ------------------------------------------------------------------------------------------ compliance

def week_of_ten_minute_means(out_of_band: int, low_v: float = 205.0, n: int = 1000):
    """``n`` 10-minute readings from Monday 00:00 UTC, the first ``out_of_band`` at ``low_v``, then one
    reading of the next week."""
    week = readings(start=MONDAY, n=n, interval_s=600, v=lambda i: low_v if i < out_of_band else 231.0)
    return week + readings(start=parse_ts("2026-07-06T00:00:00Z"), n=1, interval_s=600, v=230.0)


def test_the_weekly_report_counts_ten_minute_means_in_band():
    batch = week_of_ten_minute_means(out_of_band=32)  # 968 of 1,000 in band, all inside the outer limits
    _, found = run(VoltageComplianceDetector(), batch, EN, size=96)
    assert len(found) == 1
    rep = found[0]
    assert (rep["kind"], rep["status"], rep["meter_id"]) == ("voltage_compliance", "report", "M000001")
    assert rep["started_at"] == parse_ts(MONDAY) and rep["at"] == batch[-1].ts
    ev = rep["evidence"]
    assert ev["text"] == "in band 96.8 % of 10-minute periods"
    assert (ev["in_band_pct"], ev["periods"], ev["in_band_periods"]) == (96.8, 1000, 968)
    assert (ev["outer_ok"], ev["compliant"], ev["standard"], ev["required_pct"]) == (True, True, "EN 50160", 95.0)
    assert ev["week_start"] == "2026-06-29T00:00:00+00:00" and ev["coverage_pct"] == 99.2


def test_a_non_compliant_week_also_gives_a_warning_event():
    _, found = run(VoltageComplianceDetector(), week_of_ten_minute_means(out_of_band=60), EN, size=96)
    assert [(f["status"], f.get("severity")) for f in found] == [("report", None), ("event", "warning")]
    assert found[1]["evidence"] == found[0]["evidence"]
    assert (found[0]["evidence"]["in_band_pct"], found[0]["evidence"]["compliant"]) == (94.0, False)


def test_one_mean_outside_the_outer_limits_fails_an_en50160_week():
    _, found = run(VoltageComplianceDetector(), week_of_ten_minute_means(out_of_band=1, low_v=190.0), EN, size=96)
    ev = found[0]["evidence"]
    assert (ev["in_band_pct"], ev["outer_ok"], ev["outside_outer_periods"], ev["compliant"]) == (99.9, False, 1, False)
    assert ev["text"] == "in band 99.9 % of 10-minute periods, 1 outside 195.5-253 V"
    assert [f["status"] for f in found] == ["report", "event"]


def test_short_readings_are_averaged_into_ten_minute_periods():
    # one-minute readings: 4 minutes at 200 V and 6 at 220 V average 212 V, inside the band
    minutes = readings(start=MONDAY, n=7 * 24 * 60, interval_s=60, v=lambda i: 200.0 if i % 10 < 4 else 220.0)
    minutes += readings(start=parse_ts("2026-07-06T00:00:00Z"), n=1, interval_s=60, v=230.0)
    _, found = run(VoltageComplianceDetector(), minutes, EN, size=600)
    ev = found[0]["evidence"]
    assert (ev["periods"], ev["in_band_pct"], ev["coverage_pct"], ev["compliant"]) == (1008, 100.0, 100.0, True)


def test_weeks_start_on_monday_in_the_customers_time_zone():
    start, end = week_bounds(parse_ts("2026-07-01T12:00:00Z"), ZoneInfo("Europe/London"))
    assert (start, end) == (parse_ts("2026-06-28T23:00:00Z"), parse_ts("2026-07-05T23:00:00Z"))
    # the week of the clocks going back is an hour longer
    start, end = week_bounds(parse_ts("2026-10-22T12:00:00Z"), ZoneInfo("Europe/London"))
    assert (start, end) == (parse_ts("2026-10-18T23:00:00Z"), parse_ts("2026-10-26T00:00:00Z"))
    london = context(customer(nominal_voltage=230, timezone="Europe/London"))
    # readings up to Sunday 23:00 UTC are one London week; the 23:00-23:15 UTC one starts the next
    batch = readings(start="2026-06-28T23:00:00Z", n=7 * 96 + 1, v=230.0)
    _, found = run(VoltageComplianceDetector(), batch, london, size=96)
    assert len(found) == 1
    ev = found[0]["evidence"]
    assert (ev["week_start"], ev["timezone"], ev["periods"]) == ("2026-06-29T00:00:00+01:00", "Europe/London", 672)
    assert found[0]["at"] == batch[-1].ts


def test_standards_without_a_weekly_statistic_use_the_configured_share():
    batch = readings(start="2026-06-28T16:00:00Z", n=7 * 96 + 1, v=lambda i: 195.0 if i < 30 else 220.0)
    _, found = run(VoltageComplianceDetector(), batch, GB, size=96)  # Asia/Shanghai: Monday 00:00 = Sun 16:00Z
    ev = found[0]["evidence"]
    assert (ev["standard"], ev["outer_ok"], ev["required_pct"], ev["compliant"]) == ("GB/T 12325", None, 95.0, True)
    _, strict = run(VoltageComplianceDetector(required_share=0.99), batch, GB, size=96)
    assert strict[0]["evidence"]["compliant"] is False and strict[1]["status"] == "event"


def test_a_barely_covered_week_gets_a_report_without_a_verdict():
    batch = readings(start="2026-07-04T00:00:00Z", n=2 * 96, v=195.0)   # Saturday and Sunday only, all low
    batch += readings(start="2026-07-06T00:00:00Z", n=1, v=230.0)
    _, found = run(VoltageComplianceDetector(), batch, EN, size=96)
    assert [f["status"] for f in found] == ["report"]
    assert (found[0]["evidence"]["compliant"], found[0]["evidence"]["in_band_pct"]) == (None, 0.0)


def test_compliance_state_is_left_alone_and_duplicates_do_not_count():
    batch = week_of_ten_minute_means(out_of_band=32)
    det = VoltageComplianceDetector()
    state, _ = det.process(None, batch[:500], EN)
    frozen = copy.deepcopy(state)
    again, _ = det.process(state, batch[:500], EN)
    assert state == frozen and again["week"] == state["week"] and again["skipped"] == 500
    assert json.loads(json.dumps(state)) == state
    _, found = det.process(state, list(reversed(batch[500:])), EN)
    assert found[0]["evidence"]["in_band_pct"] == 96.8


# -------------------------------------------------------------------------- the simulator's new faults

def test_simulated_sag_swell_and_loose_neutral_faults_are_found():
    """Each new simulator fault is found by its detector on its meter, and by no other detector."""
    from gridwatch import config
    from gridwatch.contract import decode_readings
    from devtools.simulator import SimConfig, Simulator, encode_value

    sim = Simulator(SimConfig(seed=11, hours=24, faults=(
        "meter_sag:M000030@2026-07-01T03:00Z/1h", "meter_swell:M000004@2026-07-01T05:00Z/30m",
        "meter_looseneutral:M000031@2026-07-01T08:00Z/4h")))
    assert [t["expected_kind"] for t in sim.truth()] == ["sag", "swell", "loose_neutral"]
    ctxs = {c["meter_id"]: Context(meter_id=c["meter_id"], customer=c) for c in sim.customers()}
    dets = [SagSwellDetector(), LooseNeutralDetector(), VoltageDetector()]
    states: dict = {}
    found: dict = {}
    for topic, key, value in sim.records(include_customers=False):
        if topic != config.READINGS:
            continue
        for det in dets:
            st, out = det.process(states.get((det.name, key)), decode_readings(key, encode_value(value)), ctxs[key])
            states[(det.name, key)] = st
            for f in out:
                found.setdefault((f["kind"], f["status"]), []).append(f["meter_id"])
    assert found == {("sag", "event"): ["M000030"], ("swell", "event"): ["M000004"],
                     ("loose_neutral", "abnormal"): ["M000031"], ("loose_neutral", "normal"): ["M000031"]}
