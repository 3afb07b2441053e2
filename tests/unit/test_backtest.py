"""Backtest scoring: alert records + truth records -> found / missed / false, delays, scope."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from detectors.api import Detector, param
from detectors.backtest import (
    alert_spans, build_detectors, format_duration, format_report, match, merge_scores, parse_settings, score,
    truth_events,
)

T0 = "2026-07-01T10:00:00Z"        # truth start
T_END = "2026-07-01T12:00:00Z"     # truth end
TR_METERS = ["M000009", "M000010", "M000011", "M000012"]


def alert(aid="a1", kind="undervoltage", level="transformer", scope_id="T0002", meters=TR_METERS,
          started="2026-07-01T10:15:00Z", detected="2026-07-01T10:30:00Z", status="open", resolved=None,
          **evidence):
    return {"alert_id": aid, "kind": kind, "severity": "warning", "status": status,
            "scope": {"level": level, "id": scope_id}, "meter_ids": list(meters),
            "customer_ids": ["C" + m[1:] for m in meters], "started_at": started, "detected_at": detected,
            "resolved_at": resolved, "evidence": dict(evidence)}


def truth(fault="transformer_undervoltage", level="transformer", scope_id="T0002", meters=TR_METERS,
          start=T0, end=T_END, kind="undervoltage"):
    return {"fault": fault, "scope": {"level": level, "id": scope_id}, "start": start, "end": end,
            "meter_ids": list(meters), "customer_ids": ["C" + m[1:] for m in meters], "expected_kind": kind}


def run(alerts, truths, **kw):
    return match(alert_spans(alerts), truth_events(truths), **kw)


# ------------------------------------------------------------------------------------------ spans

def test_alert_lifecycle_records_fold_into_one_span():
    recs = [alert(meters=TR_METERS[:2]),
            alert(meters=TR_METERS[:3], detected="2026-07-01T10:45:00Z"),
            alert(meters=TR_METERS[:3], status="resolved", resolved="2026-07-01T12:15:00Z")]
    [span] = alert_spans(recs)
    assert span.meter_ids == frozenset(TR_METERS[:3])
    assert span.detected_at == 1782901800          # the earliest detection, 10:30Z
    assert span.resolved_at == 1782908100          # 12:15Z
    assert (span.level, span.scope_id) == ("transformer", "T0002")


def test_an_unresolved_alert_lasts_to_the_end_of_time():
    [span] = alert_spans([alert(started="2026-06-30T00:00:00Z")])
    assert span.resolved_at is None and span.end == float("inf")


# ------------------------------------------------------------------------------------------ match

def test_one_transformer_alert_finds_a_transformer_fault_with_the_right_scope():
    m = run([alert(), alert(status="resolved", resolved="2026-07-01T12:00:00Z")], [truth()])
    [t] = m.truths
    assert t.found and t.scope_ok
    assert t.delay_s == 30 * 60
    assert [a.status for a in m.alerts] == ["true"]


def test_one_alert_per_meter_finds_the_fault_with_the_wrong_scope_and_counts_duplicates():
    alerts = [alert(f"a{i}", level="meter", scope_id=mid, meters=[mid],
                    detected=f"2026-07-01T10:{30 + i:02d}:00Z") for i, mid in enumerate(TR_METERS)]
    m = run(alerts, [truth()])
    [t] = m.truths
    assert t.found and not t.scope_ok
    assert t.delay_s == 30 * 60                    # the earliest of the four
    assert [a.status for a in m.alerts] == ["true", "duplicate", "duplicate", "duplicate"]
    s = score(m)["kinds"]["undervoltage"]
    assert (s["found"], s["false"], s["duplicates"], s["scope_ok"]) == (1, 0, 3, 0)


def test_an_alert_of_another_kind_is_false_and_the_fault_is_missed():
    m = run([alert(kind="sag", level="meter", scope_id="M000009", meters=["M000009"])], [truth()])
    assert not m.truths[0].found
    [a] = m.alerts
    assert a.status == "false"
    assert a.during_other_fault                    # a sag raised by the undervoltage fault itself


def test_an_alert_on_other_meters_is_false():
    m = run([alert(scope_id="T0003", meters=["M000013", "M000014"])], [truth()])
    assert not m.truths[0].found
    assert m.alerts[0].status == "false" and not m.alerts[0].during_other_fault


@pytest.mark.parametrize("started, resolved, tolerance, found", [
    ("2026-07-01T12:10:00Z", None, 900, True),                        # 10 min after the end: within 15 min
    ("2026-07-01T12:20:00Z", None, 900, False),                       # 20 min after: too late
    ("2026-07-01T12:20:00Z", None, 1800, True),                       # ... unless the tolerance is wider
    ("2026-07-01T08:00:00Z", "2026-07-01T09:50:00Z", 900, True),      # ended 10 min before the start
    ("2026-07-01T08:00:00Z", "2026-07-01T09:40:00Z", 900, False),     # ended 20 min before
    ("2026-06-30T08:00:00Z", None, 0, True),                          # still open when the fault began
])
def test_time_overlap_with_tolerance(started, resolved, tolerance, found):
    recs = [alert(started=started, detected=started)]
    if resolved:
        recs.append(alert(started=started, detected=started, status="resolved", resolved=resolved))
    m = run(recs, [truth()], tolerance_s=tolerance)
    assert m.truths[0].found is found
    assert m.alerts[0].status == ("true" if found else "false")


def test_a_truth_is_counted_once_and_each_alert_claims_what_is_left():
    truths = [truth(), truth(scope_id="T0003", meters=["M000013", "M000014"], start="2026-07-02T10:00:00Z",
                             end="2026-07-02T11:00:00Z")]
    alerts = [alert("a1"), alert("a2", detected="2026-07-01T10:40:00Z"),
              alert("a3", scope_id="T0003", meters=["M000013", "M000014"], started="2026-07-02T10:15:00Z",
                    detected="2026-07-02T10:15:00Z"),
              alert("a4", scope_id="T0009", meters=["M000033"], started="2026-07-03T00:00:00Z",
                    detected="2026-07-03T00:00:00Z")]
    m = run(alerts, truths)
    assert [t.found for t in m.truths] == [True, True]
    assert {a.alert.alert_id: a.status for a in m.alerts} == {"a1": "true", "a2": "duplicate", "a3": "true",
                                                              "a4": "false"}
    s = score(m)["kinds"]["undervoltage"]
    assert (s["truths"], s["found"], s["missed"], s["false"], s["duplicates"]) == (2, 2, 0, 1, 1)
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == 1.0
    assert s["delay_s"] == [900, 1800]
    assert (s["delay_median_s"], s["delay_max_s"]) == (1350, 1800)


def test_a_merged_meter_alert_counts_for_detection_but_never_as_false_or_duplicate():
    alerts = [alert("m1", level="meter", scope_id="M000009", meters=["M000009"], detected="2026-07-01T10:20:00Z"),
              alert("m1", level="meter", scope_id="M000009", meters=["M000009"], status="resolved",
                    resolved="2026-07-01T10:45:00Z", merged_into="t1"),
              alert("t1", detected="2026-07-01T10:45:00Z")]
    m = run(alerts, [truth()])
    [t] = m.truths
    assert t.found and t.scope_ok
    assert t.delay_s == 20 * 60
    assert {a.alert.alert_id: a.status for a in m.alerts} == {"m1": "merged", "t1": "true"}
    assert score(m)["kinds"]["undervoltage"]["alerts"] == 1


def test_a_bill_spike_matches_by_customer_and_kind():
    t = truth(fault="bill_spike", level="meter", scope_id="M000003", meters=["M000003"], kind="bill_spike",
              start="2026-07-10T00:00:00Z", end="2026-07-15T00:00:00Z")
    a = alert("b1", kind="bill_spike", level="meter", scope_id="M000003", meters=[],
              started="2026-07-12T00:00:00Z", detected="2026-07-13T00:00:00Z")
    a["customer_ids"] = ["C000003"]
    m = run([a], [t])
    assert m.truths[0].found and m.truths[0].scope_ok
    assert m.truths[0].delay_s == 3 * 86400


# ------------------------------------------------------------------------------------------ score

def test_scores_per_detector_and_uncovered_kinds():
    truths = [truth(), truth(fault="feeder_outage", level="feeder", scope_id="F001", meters=["M000001"],
                             kind="outage")]
    m = run([alert()], truths)
    s = score(m, {"voltage": ("undervoltage", "overvoltage")})
    v = s["detectors"]["voltage"]
    assert (v["truths"], v["found"], v["missed"], v["false"]) == (1, 1, 0, 0)
    assert v["kinds"] == ["undervoltage"]
    assert s["uncovered"] == ["outage"]
    assert s["kinds"]["outage"]["missed"] == 1
    assert s["kinds"]["outage"]["precision"] is None   # no alert and nothing found: undefined, not 0


def test_scores_of_several_runs_add_up():
    one = score(run([alert()], [truth()]), {"voltage": ("undervoltage",)})
    two = score(run([alert(scope_id="T0003", meters=["M000099"])], [truth()]), {"voltage": ("undervoltage",)})
    both = merge_scores([one, two])
    v = both["detectors"]["voltage"]
    assert (v["truths"], v["found"], v["missed"], v["false"]) == (2, 1, 1, 1)
    assert v["precision"] == 0.5 and v["recall"] == 0.5
    assert v["delay_s"] == [1800]


def test_report_table_lists_detectors_and_their_kinds():
    truths = [truth(), truth(fault="feeder_outage", level="feeder", scope_id="F001", meters=["M000001"],
                             kind="outage")]
    s = score(run([alert()], truths), {"voltage": ("undervoltage", "overvoltage")})
    text = format_report(s)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["detector", "/", "kind"]
    voltage = next(line for line in lines if line.startswith("voltage"))
    assert voltage.split()[1:5] == ["1", "1", "0", "0"]
    assert "100%" in voltage and "30m" in voltage and "1/1" in voltage
    assert any(line.startswith("  undervoltage") for line in lines)
    assert "not scored, no chosen detector emits them: outage 1 labelled faults" in lines


def test_a_detector_named_after_its_only_kind_gets_one_line():
    truths = [truth(fault="feeder_outage", level="feeder", scope_id="F001", meters=["M000001"], kind="outage")]
    a = alert("o1", kind="outage", level="feeder", scope_id="F001", meters=["M000001"])
    kinds = {"outage": ("outage",)}
    text = format_report(score(run([a], truths), kinds), kinds)
    assert [line.split()[0] for line in text.splitlines()[2:] if line.strip()][:1] == ["outage"]
    assert sum(line.lstrip().startswith("outage") for line in text.splitlines()) == 1


@pytest.mark.parametrize("seconds, text", [(None, "-"), (0, "0s"), (45, "45s"), (2700, "45m"),
                                           (5400, "1h30m"), (90060, "1d1h1m"), (-900, "-15m")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


# ------------------------------------------------------------------------------------------ settings

@dataclass(frozen=True)
class _Cfg:
    min_duration_s: int = param(1800, "seconds out of band")
    ratio: float = param(0.5, "a fraction")
    strict: bool = param(False, "a switch")
    label: str = param("x", "a name")


class _Tunable(Detector):
    """A detector with one parameter of each type."""
    name = "tunable"
    detects = "nothing"
    kinds = ("sag",)
    Config = _Cfg


def test_settings_are_converted_to_the_parameter_type():
    s = parse_settings(["tunable.min_duration_s=2700", "tunable.ratio=0.7", "tunable.strict=true",
                        "tunable.label=y"], {"tunable": _Tunable})
    assert s == {"tunable": {"min_duration_s": 2700, "ratio": 0.7, "strict": True, "label": "y"}}
    [det] = build_detectors(["tunable"], s, {"tunable": _Tunable})
    assert det.config.min_duration_s == 2700 and det.config.strict is True


@pytest.mark.parametrize("spec, words", [
    ("tunable.min_duration_s", "DETECTOR.PARAMETER=VALUE"),
    ("other.x=1", "no detector 'other'"),
    ("tunable.nope=1", "no parameter 'nope'"),
    ("tunable.min_duration_s=soon", "not a valid int"),
    ("tunable.strict=maybe", "not a valid bool"),
])
def test_bad_settings_say_what_is_wrong(spec, words):
    with pytest.raises(ValueError, match=words):
        parse_settings([spec], {"tunable": _Tunable})


def test_build_detectors_refuses_unknown_names_and_settings_for_unchosen_detectors():
    with pytest.raises(ValueError, match="no detector 'nope'"):
        build_detectors(["nope"], {}, {"tunable": _Tunable})
    with pytest.raises(ValueError, match="not among the chosen"):
        build_detectors(["tunable"], {"other": {"x": 1}}, {"tunable": _Tunable, "other": _Tunable})


# ------------------------------------------------------------------------------------------ the command

def _backtest(capsys, *args):
    from gridwatch.cli import main

    code = main(["backtest", *args, "--no-progress"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_backtest_of_the_demo_scenario_finds_both_faults_at_their_scope(capsys):
    code, out, _ = _backtest(capsys, "--scenario", "demo", "--detectors", "voltage", "--json")
    assert code == 0
    res = json.loads(out)
    v = res["scores"]["detectors"]["voltage"]
    assert (v["truths"], v["found"], v["false"], v["scope_ok"]) == (2, 2, 0, 2)
    [run_] = res["runs"]
    by_fault = {t["fault"]: t for t in run_["truth"]}
    # two 15-minute means out of band, and a lone meter waits 15 minutes for its neighbours
    assert by_fault["transformer_undervoltage"]["delay_s"] == 1800
    assert by_fault["meter_overvoltage"]["delay_s"] == 2700
    assert res["detectors"]["voltage"]["min_duration_s"] == 1800


def test_a_tuned_parameter_changes_the_outcome(capsys):
    _, out, _ = _backtest(capsys, "--scenario", "demo", "--detectors", "voltage", "--json",
                          "--set", "voltage.min_duration_s=2700")
    res = json.loads(out)
    assert res["detectors"]["voltage"]["min_duration_s"] == 2700
    delays = {t["fault"]: t["delay_s"] for t in res["runs"][0]["truth"]}
    assert delays["transformer_undervoltage"] == 2700


def test_backtest_of_a_csv_with_labels(tmp_path, capsys):
    rows = ["meter_id,ts,kwh,v_avg,v_min,v_max"]
    for i in range(96):
        h, m = divmod(15 * (i + 1), 60)
        ts = f"2026-07-01T{h:02d}:{m:02d}:00Z" if h < 24 else "2026-07-02T00:00:00Z"
        v = 196.0 if 40 <= i < 48 else 231.0       # 10:15 .. 12:00 below EN 50160's 207 V
        rows.append(f"M-CSV-1,{ts},0.2,{v},{v - 2},{v + 1}")
    csv = tmp_path / "meter.csv"
    csv.write_text("\n".join(rows) + "\n")
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps(truth(fault="meter_undervoltage", level="meter", scope_id="M-CSV-1",
                                       meters=["M-CSV-1"])) + "\n")
    code, out, _ = _backtest(capsys, "--csv", str(csv), "--labels", str(labels), "--detectors", "voltage",
                             "--details")
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("voltage"))
    assert line.split()[1:5] == ["1", "1", "0", "0"]
    assert "meter_undervoltage M-CSV-1: found, after 45m" in out


@pytest.mark.parametrize("args, words", [
    (["--csv", "x.csv"], "--csv needs --labels"),
    (["--labels", "x.jsonl"], "--labels goes with --csv"),
    (["--scenario", "demo", "--detectors", "nope"], "no detector 'nope'"),
    (["--scenario", "demo", "--set", "voltage.nope=1"], "has no parameter 'nope'"),
    (["--scenario", "demo", "--detectors", "voltage", "--set", "sag_swell.warning_sag_pu=0.5"],
     "not among the chosen detectors"),
    (["--scenario", "demo", "--seeds", "1,x"], "expected comma-separated integers"),
])
def test_backtest_usage_errors(capsys, args, words):
    code, _, err = _backtest(capsys, *args)
    assert code == 2 and words in err


# ------------------------------------------------------------------------------------------ the eval scenario

def _eval_sim(seed):
    from devtools.simulator import SCENARIOS, SimConfig, Simulator

    return Simulator(SimConfig(scenario="eval", seed=seed, **SCENARIOS["eval"][0]))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_eval_scenario_has_every_fault_kind_once_without_overlaps(seed):
    from gridwatch.contract import parse_ts
    from devtools.simulator import _EFFECTS, _LEVELS

    sim = _eval_sim(seed)
    truths = sim.truth()
    kinds = sorted(t["fault"] for t in truths)
    expected = sorted([f"{lv}_{e}" for e in _EFFECTS if e != "looseneutral" for lv in _LEVELS]
                      + ["meter_looseneutral", "bill_spike"])
    assert kinds == expected
    spans = [(set(t["meter_ids"]), parse_ts(t["start"]), parse_ts(t["end"])) for t in truths]
    for i, (m1, a1, b1) in enumerate(spans):
        for m2, a2, b2 in spans[i + 1:]:
            assert not (m1 & m2) or b1 + 7200 <= a2 or b2 + 7200 <= a1
    faulty = {sim._meters[m]["feeder_id"] for t in truths for m in t["meter_ids"]}
    assert len(faulty) == 4                       # two of the six feeders stay clean
    bill = next(t for t in truths if t["fault"] == "bill_spike")
    cust = sim._cust_by_id[bill["customer_ids"][0]]
    from datetime import datetime
    from zoneinfo import ZoneInfo

    local = datetime.fromtimestamp(parse_ts(bill["start"]), ZoneInfo(cust["timezone"]))
    assert (local.day, local.hour, local.minute) == (cust["bill_cycle_day"], 0, 0)   # a cycle starts
    assert parse_ts(bill["start"]) - sim.start >= 33 * 86400


def test_the_eval_scenario_depends_on_the_seed():
    one, two = (sorted(f.spec for f in _eval_sim(s).faults) for s in (1, 2))
    assert one != two
    assert one == sorted(f.spec for f in _eval_sim(1).faults)


def test_an_incident_whose_scope_grows_is_found_at_its_scope_from_the_record_that_reached_it():
    from detectors.backtest import format_delays

    feeder_meters = TR_METERS + ["M000001", "M000002", "M000003"]
    recs = [alert("o1", "outage", "transformer", "T0002", detected="2026-07-01T10:03:00Z",
                  updated_at="2026-07-01T10:03:00Z"),
            alert("o1", "outage", "feeder", "F001", feeder_meters, detected="2026-07-01T10:03:00Z",
                  updated_at="2026-07-01T10:17:00Z"),
            alert("o1", "outage", "feeder", "F001", feeder_meters, detected="2026-07-01T10:03:00Z",
                  status="resolved", resolved="2026-07-01T11:00:00Z", updated_at="2026-07-01T11:00:00Z")]
    (span,) = alert_spans(recs)
    assert span.reached("transformer", "T0002") == span.detected_at
    assert span.reached("feeder", "F001") - span.detected_at == 14 * 60 and span.reached("meter", "M1") is None
    m = run(recs, [truth("feeder_outage", "feeder", "F001", feeder_meters, kind="outage")])
    (t,) = m.truths
    assert t.scope_ok and t.delay_s == 3 * 60 and t.scope_delay_s == 17 * 60
    text = format_delays(score(m))
    assert text.splitlines()[2].split() == ["outage", "1", "3m", "3m", "3m", "1", "17m", "17m", "17m"]
