"""The outage detector: scope roll-up, lifecycle, nesting, event-time discipline, and agreement with the
simulator's ground truth (no Kafka)."""

from __future__ import annotations

import copy
import random

import pytest

from detectors.api import Context
from detectors.outage import OutageConfig, OutageDetector
from detectors.registry import load
from detectors.testing import Scenario, Step, event, feeder, run
from detectors.topology import alert_id
from gridwatch import config
from gridwatch.contract import MeterEvent, check, format_ts, parse_ts
from devtools.simulator import SimConfig, Simulator

T0 = parse_ts("2026-07-01T10:00:00Z")
M, H = 60, 3600
FEEDER = feeder("F001", transformers=3, meters_per_transformer=8)  # T0001 M1-8, T0002 M9-16, T0003 M17-24
ALL = FEEDER.meter_ids
TR = FEEDER.transformers
# 14 of 24 meters (~60 %), spread over the three transformers, get a last gasp through
GASPS = [m for i, m in enumerate(ALL) if i % 12 in (0, 1, 3, 4, 6, 8, 10)]


def mid(n: int) -> str:
    return f"M{n:06d}"


def valid(records: list[dict]) -> list[dict]:
    for rec in records:
        check("alerts", rec)
    return records


def fails(meters, ts=T0):
    return [event(m, ts, "power_fail") for m in meters]


def restores(meters, ts):
    return [event(m, ts, "power_restore") for m in meters]


def fixed_run(events, last_seen, until, watermarks=None, det=None):
    """All events in one call, then advance through ``watermarks`` (default: straight to ``until``) with
    one unchanging Context: what happens before anyone's power comes back."""
    det = det or OutageDetector()
    ctx = FEEDER.context(last_seen)
    state, found = det.process(None, events, ctx)
    assert found == []
    records = []
    for wm in (watermarks or [until]):
        state, recs = det.advance(state, wm, ctx)
        records += recs
    return state, valid(records)


def ticks(outages, hours=6.0, start=T0 - H, step=900, det=None):
    """Drive the detector as the feeder stage does, in 15-minute ticks: each tick brings the events of the
    tick and every meter's newest reading (a meter without power sends none), then a watermark.

    ``outages``: (start, end or None, meters dark, meters sending a last gasp); each dark meter sends a
    power_restore at ``end`` unless another outage keeps it dark then.
    """
    def dark(m, t):
        return any(a < t and (b is None or t <= b) and m in out for a, b, out, _ in outages)

    evs = []
    for a, b, out, gasp in outages:
        evs += fails(gasp, a)
        if b is not None:
            evs += [e for e in restores(out, b)
                    if not any(e.meter_id in o2 and a2 <= b and (b2 is None or b < b2)
                               for a2, b2, o2, _ in outages if (a2, b2, o2) != (a, b, out))]
    last_seen = {}
    steps = []
    for k in range(int(hours * H // step) + 1):
        t = start + k * step
        for m in ALL:
            if not dark(m, t):
                last_seen[m] = t
        steps.append(Step([e for e in evs if t - step < e.ts <= t], FEEDER.context(last_seen), t))
    state, per_step = run(det or OutageDetector(), Scenario(steps))
    return state, valid([r for rs in per_step for r in rs])


def summary(records):
    return [(r["kind"], r["status"], r["scope"]["level"], r["scope"]["id"], len(r["meter_ids"]),
             r["started_at"], r["detected_at"], r["resolved_at"]) for r in records]


# ------------------------------------------------------------------------------------------ scope

def test_feeder_outage_is_one_feeder_alert_that_takes_in_every_meter_at_once_and_resolves():
    # every meter read at T0 and then went dark; 14 sent a last gasp; power back for all at +45 min
    _, recs = ticks([(T0, T0 + 45 * M, ALL, GASPS)])
    assert summary(recs) == [
        ("outage", "open", "feeder", "F001", 24, format_ts(T0), format_ts(T0 + 180), None),
        ("outage", "resolved", "feeder", "F001", 24, format_ts(T0), format_ts(T0 + 180), format_ts(T0 + 45 * M)),
    ]
    first, resolved = recs
    assert {r["alert_id"] for r in recs} == {alert_id("outage", "feeder", "F001", T0)}
    assert first["meter_ids"] == ALL and first["severity"] == "critical"
    # the feeder decided out from the gasps: its silent ten are in the incident (and told) at once
    assert first["customer_ids"] == sorted("C" + m[1:] for m in ALL)
    assert first["evidence"] == {"meters_out": 24, "meters_back": 0, "meters_total": 24, "last_gasps": 14,
                                 "missing_reads": 0, "missed_reads": 0, "in_scope": 10, "feeder_id": "F001",
                                 "transformer_ids": ["T0001", "T0002", "T0003"], "duration_class": "sustained",
                                 "updated_at": format_ts(T0 + 180)}
    assert resolved["evidence"]["duration_s"] == 45 * M and resolved["evidence"]["meters_back"] == 24
    assert resolved["evidence"]["still_out_customer_ids"] == []


def test_transformer_outage_is_one_transformer_alert():
    out = TR["T0002"]
    _, recs = ticks([(T0, T0 + 2 * H, out, out[:5])])
    assert {(r["scope"]["level"], r["scope"]["id"]) for r in recs} == {("transformer", "T0002")}
    # most of it gasped: the transformer is decided out, its three silent meters are in it from the start
    assert [(r["status"], len(r["meter_ids"])) for r in recs] == [("open", 8), ("resolved", 8)]
    assert recs[0]["evidence"]["in_scope"] == 3
    assert recs[0]["detected_at"] == format_ts(T0 + 180)
    assert recs[-1]["evidence"]["meters_total"] == 8 and recs[-1]["evidence"]["transformer_ids"] == ["T0002"]


def test_one_meter_is_a_meter_alert():
    _, recs = ticks([(T0, T0 + H, [mid(5)], [mid(5)])])
    assert summary(recs) == [
        ("outage", "open", "meter", mid(5), 1, format_ts(T0), format_ts(T0 + 180), None),
        ("outage", "resolved", "meter", mid(5), 1, format_ts(T0), format_ts(T0 + 180), format_ts(T0 + H)),
    ]
    assert recs[0]["customer_ids"] == ["C000005"] and recs[0]["evidence"]["meters_total"] == 1


def test_a_few_meters_of_a_transformer_are_meter_alerts_and_not_a_transformer_one():
    out = [mid(1), mid(2), mid(3)]  # 3 of 8: the transformer is not out
    _, recs = ticks([(T0, T0 + H, out, out)])
    assert sorted((r["scope"]["level"], r["scope"]["id"], r["status"]) for r in recs) == sorted(
        [("meter", m, s) for m in out for s in ("open", "resolved")])


def test_missing_reads_alone_find_an_outage_from_last_seen():
    out = TR["T0003"]
    _, recs = ticks([(T0, T0 + 2 * H, out, [])])
    assert summary(recs) == [
        ("outage", "open", "transformer", "T0003", 8, format_ts(T0), format_ts(T0 + 1800), None),
        ("outage", "resolved", "transformer", "T0003", 8, format_ts(T0), format_ts(T0 + 1800),
         format_ts(T0 + 2 * H)),
    ]
    assert recs[0]["evidence"]["last_gasps"] == 0 and recs[0]["evidence"]["missing_reads"] == 8


def test_a_transformer_outage_that_spreads_to_the_feeder_stays_one_alert_whose_scope_grows():
    t1 = TR["T0001"]
    rest = [m for m in ALL if m not in t1]
    _, recs = ticks([(T0, T0 + 2 * H, t1, t1[:5]), (T0 + H, T0 + 2 * H, rest, rest[:10])])
    incident = alert_id("outage", "transformer", "T0001", T0)  # named by its first record, and kept
    assert {r["alert_id"] for r in recs} == {incident}
    assert [(r["status"], r["scope"]["level"], len(r["meter_ids"]), r["evidence"]["updated_at"]) for r in recs] == [
        ("open", "transformer", 8, format_ts(T0 + 180)),
        # 18 of 24 out: the feeder, at once; its six other meters that have shown no power since join too
        ("open", "feeder", 24, format_ts(T0 + H)),
        ("resolved", "feeder", 24, format_ts(T0 + 2 * H))]
    assert all(r["started_at"] == format_ts(T0) and r["detected_at"] == format_ts(T0 + 180) for r in recs)
    assert not any(r["evidence"].get("merged_into") for r in recs)


def test_meter_alerts_that_turn_out_to_be_one_transformer_outage_become_one_alert():
    """Three of eight meters gasp (fewer than half): three meter alerts at +3 min; the other five miss their
    next read and the transformer is out — one incident goes on (the others close ``merged_into`` it, their
    ids in the survivor's ``merged_from`` so their customers are not told twice)."""
    f = feeder("F001", transformers=2, meters_per_transformer=8)
    t1 = f.transformers["T0001"]
    det = OutageDetector()
    last = {m: T0 for m in f.meter_ids}
    state, _ = det.process(None, fails(t1[:3], T0 + 60), f.context(last))
    records = []
    for k in range(1, 6):
        t = T0 + k * 900
        for m in f.meter_ids:
            if m not in t1:
                last[m] = t
        state, recs = det.advance(state, t, f.context(last))
        records += valid(recs)
    ids = [alert_id("outage", "meter", m, T0 + 60) for m in t1[:3]]
    assert [(r["alert_id"], r["status"], r["scope"]["level"], r["evidence"]["updated_at"]) for r in records] == [
        (ids[0], "open", "meter", format_ts(T0 + 240)),
        (ids[1], "open", "meter", format_ts(T0 + 240)),
        (ids[2], "open", "meter", format_ts(T0 + 240)),
        (ids[1], "resolved", "meter", format_ts(T0 + 900 + 120)),
        (ids[2], "resolved", "meter", format_ts(T0 + 900 + 120)),
        (ids[0], "open", "transformer", format_ts(T0 + 900 + 120))]
    assert {r["evidence"]["merged_into"] for r in records[3:5]} == {ids[0]}
    assert records[5]["evidence"]["merged_from"] == ids[1:]
    assert records[5]["meter_ids"] == t1 and records[5]["evidence"]["missed_reads"] == 5


def test_feeder_decided_from_its_meters_gasping_unevenly_within_minutes():
    # 12 of 24 gasp, 2, 4 and 6 per transformer: half the feeder, from all its transformers
    gasps = TR["T0001"][:2] + TR["T0002"][:4] + TR["T0003"][:6]
    _, recs = ticks([(T0, T0 + H, ALL, gasps)])
    assert [(r["status"], r["scope"]["level"], len(r["meter_ids"]), r["detected_at"]) for r in recs] == [
        ("open", "feeder", 24, format_ts(T0 + 180)), ("resolved", "feeder", 24, format_ts(T0 + 180))]
    # a third of it (8 of 24) gasping together from all its transformers is the feeder too
    _, recs = ticks([(T0, T0 + H, ALL, TR["T0001"][:2] + TR["T0002"][:3] + TR["T0003"][:3])])
    assert [(r["status"], r["scope"]["level"], r["detected_at"]) for r in recs] == [
        ("open", "feeder", format_ts(T0 + 180)), ("resolved", "feeder", format_ts(T0 + 180))]
    # 7 of 24 gasp: a transformer (half of it gasped) and meters at +3 min, the feeder once the silent ones
    # miss their next read (one reading interval and the slack after it); the transformer's id goes on
    _, recs = ticks([(T0, T0 + H, ALL, TR["T0001"][:1] + TR["T0002"][:2] + TR["T0003"][:4])])
    feeder_at = next(r for r in recs if r["scope"]["level"] == "feeder")
    assert feeder_at["evidence"]["updated_at"] == format_ts(T0 + 15 * M + 120)
    assert feeder_at["alert_id"] == alert_id("outage", "transformer", "T0003", T0) and feeder_at["meter_ids"] == ALL
    assert [r["status"] for r in recs if r["alert_id"] == feeder_at["alert_id"]] == ["open", "open", "resolved"]
    assert {r["evidence"]["merged_into"] for r in recs
            if r["alert_id"] != feeder_at["alert_id"] and r["status"] == "resolved"} == {
        feeder_at["alert_id"]}  # the three meters alerted alone at +3 min close into it


def test_restore_events_spread_over_minutes_end_the_outage_once_without_child_outages():
    evs = fails(GASPS) + [event(m, T0 + 45 * M + 7 * i, "power_restore") for i, m in enumerate(ALL)]
    det = OutageDetector()
    ctx = FEEDER.context({m: T0 for m in ALL})
    state, _ = det.process(None, evs, ctx)
    records = []
    for wm in range(T0, T0 + 60 * M, 30):
        state, recs = det.advance(state, wm, ctx)
        records += valid(recs)
    # most of the meters that gasped are back with the 8th of the 14 (meter 13 restores 12 x 7 s in): the
    # supply is back from then; the last restore comes 161 s after the first, within the grace window, so
    # it is decided then, with no nested outage
    back = T0 + 45 * M + 7 * 12
    assert [(r["status"], r["resolved_at"], r["evidence"]["updated_at"]) for r in records] == [
        ("open", None, format_ts(T0 + 180)), ("resolved", format_ts(back), format_ts(T0 + 45 * M + 7 * 23))]
    assert len({r["alert_id"] for r in records}) == 1
    # one meter still dark after the grace window is a nested outage; the feeder is back from the moment
    # most of its meters were
    late = [e for e in evs if not (e.meter_id == mid(5) and e.type == "power_restore")]
    back = T0 + 45 * M + 7 * 13  # without meter 5 the 8th gasped meter back is meter 14
    state, records = fixed_run(late, {m: T0 for m in ALL}, T0 + 60 * M)
    assert [(r["status"], r["scope"]["id"], r["resolved_at"], r["detected_at"]) for r in records] == [
        ("open", "F001", None, format_ts(T0 + 180)),
        ("resolved", "F001", format_ts(back), format_ts(T0 + 180)),
        ("open", mid(5), None, format_ts(back + 300))]
    assert records[1]["evidence"]["still_out_customer_ids"] == ["C000005"]


# ------------------------------------------------------------------------------------------ lifecycle

def test_momentary_interruption_is_a_single_resolved_record():
    _, recs = ticks([(T0, T0 + 60, ALL, GASPS)])
    assert len(recs) == 1
    rec = recs[0]
    assert (rec["kind"], rec["severity"], rec["status"]) == ("momentary_interruption", "info", "resolved")
    assert rec["alert_id"] == alert_id("momentary_interruption", "feeder", "F001", T0)
    assert rec["scope"] == {"level": "feeder", "id": "F001"} and rec["meter_ids"] == ALL
    assert rec["started_at"] == format_ts(T0)
    assert rec["detected_at"] == rec["resolved_at"] == format_ts(T0 + 60)
    assert rec["evidence"]["duration_class"] == "momentary" and rec["evidence"]["duration_s"] == 60


def test_an_interruption_of_exactly_three_minutes_is_still_short():
    _, recs = ticks([(T0, T0 + 180, [mid(7)], [mid(7)])])
    assert [(r["kind"], r["status"]) for r in recs] == [("momentary_interruption", "resolved")]
    _, recs = ticks([(T0, T0 + 181, [mid(7)], [mid(7)])])
    assert [(r["kind"], r["status"]) for r in recs] == [("outage", "open"), ("outage", "resolved")]


def test_nested_outage_two_meters_still_dark_after_the_feeder_is_restored():
    dark = [mid(3), mid(12)]  # in T0001 and T0002: 1 of 8 each, so each is a meter on its own
    others = [m for m in ALL if m not in dark]
    state, recs = ticks([(T0, T0 + 45 * M, others, [m for m in GASPS if m not in dark]),
                         (T0, T0 + 3 * H, dark, [mid(3)])])
    feeder_id = alert_id("outage", "feeder", "F001", T0)
    by_id: dict[str, list[dict]] = {}
    for r in recs:
        by_id.setdefault(r["alert_id"], []).append(r)
    assert set(by_id) == {feeder_id} | {alert_id("outage", "meter", m, T0) for m in dark}
    assert [r["status"] for r in by_id[feeder_id]] == ["open", "resolved"]
    assert by_id[feeder_id][-1]["resolved_at"] == format_ts(T0 + 45 * M)
    # decided once the grace window for late restores is over
    assert by_id[feeder_id][-1]["evidence"]["updated_at"] == format_ts(T0 + 50 * M)
    assert by_id[feeder_id][-1]["meter_ids"] == ALL
    for m in dark:
        child = by_id[alert_id("outage", "meter", m, T0)]
        assert [(r["status"], r["detected_at"], r["resolved_at"]) for r in child] == [
            ("open", format_ts(T0 + 50 * M), None),
            ("resolved", format_ts(T0 + 50 * M), format_ts(T0 + 3 * H))]
        assert all(r["evidence"]["parent_alert_id"] == feeder_id for r in child)
        assert child[0]["started_at"] == format_ts(T0) and child[0]["severity"] == "critical"
    # the feeder's resolution comes first, then its children, at the same moment
    assert [r["alert_id"] for r in recs].index(feeder_id) < min(
        [r["alert_id"] for r in recs].index(alert_id("outage", "meter", m, T0)) for m in dark)
    assert OutageDetector().out_meters(state, T0 + 2 * H) == set(dark)
    assert OutageDetector().out_meters(state, T0 + 3 * H) == set()


def test_nested_outage_of_a_whole_transformer_is_one_child_transformer_alert():
    t1 = TR["T0001"]
    others = [m for m in ALL if m not in t1]
    _, recs = ticks([(T0, T0 + 45 * M, others, GASPS[4:]), (T0, T0 + 2 * H, t1, t1[:2])])
    children = [r for r in recs if r["evidence"].get("parent_alert_id")]
    assert {(r["scope"]["level"], r["scope"]["id"]) for r in children} == {("transformer", "T0001")}
    assert [(r["status"], len(r["meter_ids"])) for r in children] == [("open", 8), ("resolved", 8)]
    assert children[0]["evidence"]["parent_alert_id"] == alert_id("outage", "feeder", "F001", T0)
    assert children[-1]["resolved_at"] == format_ts(T0 + 2 * H)


def test_out_meters_answers_for_any_decided_time():
    det = OutageDetector()
    state, _ = ticks([(T0, T0 + 45 * M, ALL, GASPS)], det=det)
    assert det.out_meters(state, T0 - 1) == set()
    assert det.out_meters(state, T0 + 10 * M) == set(ALL)  # the silent ones from their last reading on
    assert det.out_meters(state, T0 + 45 * M) == set()
    assert det.out_meters(None, T0) == set()


# --------------------------------------------------------------------------------------- event time

def _feeder_inputs():
    evs = fails(GASPS) + restores(ALL, T0 + 45 * M)
    last_seen = {m: T0 for m in ALL}  # the silent ones stop at T0; nobody has read since the restore yet
    return evs, last_seen


def test_duplicated_and_shuffled_events_give_the_same_records():
    evs, last_seen = _feeder_inputs()
    until = T0 + 50 * M
    _, plain = fixed_run(sorted(evs, key=lambda e: (e.ts, e.meter_id, e.type)), last_seen, until)
    assert [r["status"] for r in plain] == ["open", "resolved"]
    rng = random.Random(5)
    noisy = evs + evs[::3] + [MeterEvent(mid(2), T0 + 5, "tamper")]
    rng.shuffle(noisy)
    det = OutageDetector()
    ctx = FEEDER.context(last_seen)
    state = None
    for i in range(0, len(noisy), 7):  # in several calls, in no order
        state, _ = det.process(state, noisy[i:i + 7], ctx)
    state, again = det.advance(state, until, ctx)
    assert again == plain
    assert state["counts"]["duplicates"] == len(evs[::3]) and state["counts"]["ignored"] == 1


def test_one_step_and_many_small_steps_give_the_same_records():
    evs, last_seen = _feeder_inputs()
    until = T0 + 50 * M
    _, one = fixed_run(evs, last_seen, until)
    rng = random.Random(2)
    wms, t = [], T0 - 600
    while t < until:
        t += rng.choice([1, 7, 60, 179, 181, 900])
        wms.append(min(t, until))
    _, many = fixed_run(evs, last_seen, until, watermarks=wms)
    assert many == one and len(one) == 2


def test_a_moment_is_never_decided_twice():
    evs, last_seen = _feeder_inputs()
    det = OutageDetector()
    ctx = FEEDER.context(last_seen)
    state, _ = det.process(None, evs, ctx)
    state, first = det.advance(state, T0 + 10 * M, ctx)
    assert len(first) == 1
    for wm in (T0 + 10 * M, T0 + 5 * M, T0):
        again, recs = det.advance(state, wm, ctx)
        assert recs == [] and again == state


def test_a_late_event_counts_from_the_next_watermark_and_what_was_decided_stands():
    det = OutageDetector()
    ctx = FEEDER.context({m: T0 + 2 * H for m in ALL if m != mid(5)} | {mid(5): T0})
    state, _ = det.process(None, fails([mid(5)]), ctx)
    state, opened = det.advance(state, T0 + 20 * M, ctx)
    state, _ = det.process(state, restores([mid(5)], T0 + 10 * M), ctx)  # it happened before 20 min
    assert state["counts"]["late"] == 1
    state, recs = det.advance(state, T0 + 25 * M, ctx)
    assert [r["status"] for r in opened] == ["open"] and [r["status"] for r in recs] == ["resolved"]
    assert recs[0]["resolved_at"] == format_ts(T0 + 25 * M)


def test_events_of_meters_not_yet_members_are_kept_for_when_they_join():
    det = OutageDetector()
    early = Context(feeder_id="F001", members={}, last_seen={})
    state, _ = det.process(None, fails(GASPS), early)
    state, recs = det.advance(state, T0 - 1, early)
    assert recs == []
    state, recs = det.advance(state, T0 + 5 * M, FEEDER.context({m: T0 for m in ALL}))
    assert summary(recs) == [("outage", "open", "feeder", "F001", 24, format_ts(T0), format_ts(T0 + 180), None)]


def test_inputs_are_never_mutated():
    evs, last_seen = _feeder_inputs()
    evs = evs[::-1]
    det = OutageDetector()
    ctx = FEEDER.context(last_seen)
    snapshot = copy.deepcopy((evs, ctx))
    state, _ = det.process(None, evs, ctx)
    frozen = copy.deepcopy(state)
    later, _ = det.advance(state, T0 + 50 * M, ctx)
    more, _ = det.process(later, restores(ALL, T0 + 50 * M), ctx)
    assert (evs, ctx) == snapshot and state == frozen
    assert later != frozen and more != later


def test_config_defaults_and_checks():
    cfg = OutageDetector().config
    assert (cfg.sustained_s, cfg.missing_reads_s, cfg.majority, cfg.min_meters) == (180, 1800, 0.5, 2)
    assert {p.name for p in OutageDetector.parameters()} >= {"sustained_s", "missing_reads_s", "majority",
                                                              "min_meters", "history_s"}
    assert all(p.help for p in OutageDetector.parameters())
    with pytest.raises(ValueError, match="majority"):
        OutageDetector(majority=1.0)
    assert OutageDetector(OutageConfig(sustained_s=60)).config.sustained_s == 60


def test_registered():
    assert load()["outage"] is OutageDetector


# ---------------------------------------------------------------------------------- against the simulator

def drive(sim: Simulator, det: OutageDetector) -> list[dict]:
    """The simulator's records through the detector as the pipeline feeds it: events when they come, a
    watermark just before the first reading of every readings message, last_seen from the readings."""
    topo = sim.topology()
    feeder_of = {m["meter_id"]: m["feeder_id"] for m in topo["meters"]}
    members: dict[str, dict] = {f["feeder_id"]: {} for f in topo["feeders"]}
    for m in topo["meters"]:
        members[m["feeder_id"]][m["meter_id"]] = {"transformer_id": m["transformer_id"],
                                                  "customer_id": m["customer_id"]}
    states: dict[str, dict | None] = {f: None for f in members}
    last_seen: dict[str, int] = {}
    records: list[dict] = []

    def ctx(fid: str) -> Context:
        return Context(feeder_id=fid, members=members[fid],
                       last_seen={m: last_seen[m] for m in members[fid] if m in last_seen})

    def advance(wm: int) -> None:
        for fid in sorted(states):
            states[fid], recs = det.advance(states[fid], wm, ctx(fid))
            records.extend(recs)

    for _, topic, _, value in sim.timed_records(include_customers=False):
        if topic == config.READINGS:
            ts = [parse_ts(r["ts"]) for r in value]
            advance(min(ts) - 1)
            m = value[0]["meter_id"]
            last_seen[m] = max(ts + [last_seen.get(m, max(ts))])
        elif topic == config.EVENTS:
            fid = feeder_of[value["meter_id"]]
            ev = MeterEvent(value["meter_id"], parse_ts(value["ts"]), value["type"])
            states[fid], _ = det.process(states[fid], [ev], ctx(fid))
    advance(sim.end)
    return valid(records)


def test_the_detector_finds_what_the_simulator_injected_including_a_nested_outage():
    sim = Simulator(SimConfig(seed=3, hours=16, faults=("feeder_outage:F002@+10h/45m",
                                                        "meter_outage:M000030@+10h/3h")))
    truth = sim.truth()
    records = drive(sim, OutageDetector())
    alerts: dict[str, list[dict]] = {}
    for r in records:
        alerts.setdefault(r["alert_id"], []).append(r)
    assert {r["kind"] for r in records} == {"outage"}
    assert len(alerts) == len(truth) == 2
    found = sorted(alerts.values(), key=lambda rs: rs[0]["scope"]["level"] != "feeder")
    for t, recs in zip(truth, found):
        assert recs[0]["scope"] == t["scope"]
        assert recs[0]["started_at"] == t["start"] and recs[-1]["resolved_at"] == t["end"]
        assert set(recs[-1]["meter_ids"]) == set(t["meter_ids"])
        assert set(recs[-1]["customer_ids"]) == set(t["customer_ids"])
        assert [r["status"] for r in recs][-1] == "resolved"
    feeder_recs, child = found
    # recognised within 5 minutes of the last gasps, from the gasps alone
    assert feeder_recs[0]["detected_at"] == format_ts(parse_ts(truth[0]["start"]) + 180)
    # the whole feeder at once: its meters that did not gasp are in the incident from the first record
    assert set(feeder_recs[0]["meter_ids"]) == set(truth[0]["meter_ids"])
    assert feeder_recs[0]["evidence"]["last_gasps"] == len(set(truth[0]["power_fail_meter_ids"])
                                                           | set(truth[1]["power_fail_meter_ids"]))
    assert child[0]["evidence"]["parent_alert_id"] == feeder_recs[0]["alert_id"]
    # the meter still dark once the grace window for late restores is over
    assert child[0]["detected_at"] == format_ts(parse_ts(truth[0]["end"]) + 300)


def test_a_clean_simulated_day_raises_nothing():
    assert drive(Simulator(SimConfig(seed=4, hours=24)), OutageDetector()) == []


def test_one_silent_meter_without_a_last_gasp_is_not_an_outage():
    """A single meter's missing reads are more often a communication or data gap (a replayed file's DST
    hour, a modem) than a loss of supply: no alert and no interruption record until corroborated."""
    _, recs = ticks([(T0, None, [mid(7)], [])])
    assert recs == []
    # ... until it comes back with a restore event: then it was an outage, known too late for an open alert
    _, recs = ticks([(T0, T0 + 2 * H, [mid(7)], [])])
    assert [(r["status"], r["detected_at"]) for r in recs] == [("resolved", format_ts(T0 + 2 * H))]
    # most of a transformer silent together is an outage of the transformer
    _, recs = ticks([(T0, T0 + 2 * H, [mid(n) for n in range(1, 6)], [])])
    assert [(r["kind"], r["status"], r["scope"]["id"]) for r in recs][0] == ("outage", "open", "T0001")
    # and one last gasp is enough on its own
    _, recs = ticks([(T0, T0 + 2 * H, [mid(7)], [mid(7)])])
    assert [(r["kind"], r["status"], r["scope"]["level"]) for r in recs] == [
        ("outage", "open", "meter"), ("outage", "resolved", "meter")]


def test_a_silent_meter_that_comes_back_with_a_restore_event_had_an_outage():
    """Its last gasp was lost, and one silent meter is no outage while it is silent; but a meter that
    comes back with a power_restore event says it had no power (a data gap sends none): one resolved
    outage record then, too late for a notice (customers are only told "power is back" after a notice)."""
    det = OutageDetector()
    last = {m: T0 for m in ALL}
    state, _ = det.process(None, restores([mid(7)], T0 + 2 * H), FEEDER.context(last))
    records = []
    for k in range(1, 10):
        t = T0 + k * 900
        last.update({m: t for m in ALL if m != mid(7) or t > T0 + 2 * H})
        state, recs = det.advance(state, t, FEEDER.context(last))
        records += valid(recs)
    assert summary(records) == [("outage", "resolved", "meter", mid(7), 1, format_ts(T0), format_ts(T0 + 2 * H),
                                 format_ts(T0 + 2 * H))]
    assert records[0]["evidence"]["found_by"] == "power_restore after silence"
    # a silence that ends with readings only stays nothing (test_one_silent_meter_without_a_last_gasp...)
