"""The synthetic utility: determinism, the wire contract, voltage bands, faults, ordering (no Kafka)."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from detectors.standards import profile_for
from gridwatch import config
from gridwatch.contract import decode_customer, decode_event, decode_readings, format_ts, parse_ts
from devtools.simulator import (
    Fault, SimConfig, Simulator, encode_value, parse_duration, parse_fault, parse_time,
)

START = "2026-07-01T00:00:00Z"
T0 = parse_ts(START)


def build_parser():
    """Only this module's subcommand: the test does not depend on the other command modules."""
    import argparse

    from devtools.simulator import register

    parser = argparse.ArgumentParser(prog="gridwatch")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def _decode_all(sim: Simulator):
    """Every record through the contract's decoders, as a consumer would see it."""
    customers, readings, events = [], [], []
    for topic, key, value in sim.records():
        k, payload = key.encode(), encode_value(value)
        if topic == config.CUSTOMERS:
            customers.append(decode_customer(k, payload))
        elif topic == config.READINGS:
            readings.extend(decode_readings(k, payload))
        elif topic == config.EVENTS:
            events.append(decode_event(k, payload))
        else:  # pragma: no cover
            raise AssertionError(topic)
    return customers, readings, events


def _band(sim: Simulator) -> dict[str, object]:
    return {c["meter_id"]: profile_for(c["nominal_voltage"]) for c in sim.customers()}


# ------------------------------------------------------------------------------------ determinism

def test_same_seed_gives_identical_records():
    cfg = SimConfig(seed=7, hours=6, scenario="all")
    assert list(Simulator(cfg).records()) == list(Simulator(cfg).records())
    assert Simulator(cfg).truth() == Simulator(cfg).truth()


def test_different_seed_gives_different_records():
    a = list(Simulator(SimConfig(seed=1, hours=3)).records())
    b = list(Simulator(SimConfig(seed=2, hours=3)).records())
    assert a != b
    assert [r for r in a if r[0] == config.READINGS] != [r for r in b if r[0] == config.READINGS]


def test_values_do_not_depend_on_batch_duration_or_faults():
    def readings(**kw):
        out = {}
        for topic, _, value in Simulator(SimConfig(seed=3, **kw)).records():
            if topic == config.READINGS:
                out.update({(r["meter_id"], r["ts"]): r for r in value})
        return out

    base = readings(hours=12, batch=4)
    assert readings(hours=12, batch=1) == base
    longer = readings(hours=24, batch=4)
    assert {k: longer[k] for k in base} == base
    faulty = readings(hours=12, batch=4, faults=("meter_overvoltage:M000005@+2h/1h",))
    assert {k: v for k, v in faulty.items() if k[0] != "M000005"} == \
        {k: v for k, v in base.items() if k[0] != "M000005"}


# ------------------------------------------------------------------------------------ contract

def test_every_record_passes_the_contract():
    sim = Simulator(SimConfig(seed=5, hours=48, scenario="all",
                              faults=("bill_spike:C000004@+30h/1.4",)))
    customers, readings, events = _decode_all(sim)
    assert len(customers) == 48
    assert readings and events
    assert {r.quality for r in readings} == {"actual", "estimated"}
    for r in readings:
        assert r.interval_s == 900 and r.kwh is not None and r.kwh >= 0
        if r.quality == "estimated":
            assert r.v_avg is None and r.v_min is None and r.v_max is None
        else:
            assert r.v_min <= r.v_avg <= r.v_max
    assert {e.type for e in events} == {"power_fail", "power_restore"}


def test_topology_ids_regions_and_customers():
    sim = Simulator(SimConfig(seed=11, hours=1))
    topo = sim.topology()
    assert [f["feeder_id"] for f in topo["feeders"]] == ["F001", "F002"]
    assert [t["transformer_id"] for t in topo["transformers"]] == [f"T{i:04d}" for i in range(1, 7)]
    assert [m["meter_id"] for m in topo["meters"]] == [f"M{i:06d}" for i in range(1, 49)]
    assert [f["region"] for f in topo["feeders"]] == ["CN", "GB"]
    cust = sim.customers()
    assert [c["customer_id"] for c in cust] == [f"C{i:06d}" for i in range(1, 49)]
    cn = [c for c in cust if c["feeder_id"] == "F001"]
    eu = [c for c in cust if c["feeder_id"] == "F002"]
    assert {c["nominal_voltage"] for c in cn} == {220} and {c["timezone"] for c in cn} == {"Asia/Shanghai"}
    assert {c["tariff"]["currency"] for c in cn} == {"CNY"} and all(c["phone"][:2] + c["phone"][5:10] == "+155501" for c in cn)
    assert {c["nominal_voltage"] for c in eu} == {230} and {c["timezone"] for c in eu} == {"Europe/London"}
    assert {c["language"] for c in cust} == {"zh-CN", "en"}
    assert {c["segment"] for c in cust} == {"residential", "commercial", "industrial"}
    assert sum(c["segment"] == "residential" for c in cust) > len(cust) / 2
    for c in cust:
        assert decode_customer(c["customer_id"], json.dumps(c)) == c


def test_regions_cycle_with_us_and_france():
    sim = Simulator(SimConfig(seed=1, hours=1, feeders=5, transformers_per_feeder=1, meters_per_transformer=3))
    assert [f["region"] for f in sim.topology()["feeders"]] == ["CN", "GB", "US", "CN", "FR"]
    nominal = {c["feeder_id"]: (c["nominal_voltage"], c["timezone"], c["tariff"]["currency"])
               for c in sim.customers()}
    assert nominal["F003"] == (120, "America/New_York", "USD")
    assert nominal["F005"] == (230, "Europe/Paris", "EUR")


@pytest.mark.parametrize("mpt", [5, 8, 12])
@pytest.mark.parametrize("seed", range(6))
def test_every_transformer_with_five_meters_has_an_opted_out_customer(seed, mpt):
    sim = Simulator(SimConfig(seed=seed, hours=1, feeders=3, meters_per_transformer=mpt))
    by_tr = defaultdict(list)
    for c in sim.customers():
        by_tr[c["transformer_id"]].append(c["opted_out"])
    for tr, flags in by_tr.items():
        assert any(flags), tr
        assert not all(flags), tr


def test_about_ten_percent_opted_out():
    cust = Simulator(SimConfig(seed=2, hours=1, feeders=10, meters_per_transformer=10)).customers()
    share = sum(c["opted_out"] for c in cust) / len(cust)
    assert 0.07 <= share <= 0.15


def test_cn_transformers_mix_languages():
    sim = Simulator(SimConfig(seed=9, hours=1, feeders=3))
    langs = defaultdict(set)
    for c in sim.customers():
        if c["timezone"] == "Asia/Shanghai":
            langs[c["transformer_id"]].add(c["language"])
    assert langs and all(v == {"zh-CN", "en"} for v in langs.values())


# ------------------------------------------------------------------------------------ voltage

@pytest.mark.parametrize("seed", [0, 1, 42])
def test_clean_data_never_leaves_the_band(seed):
    sim = Simulator(SimConfig(seed=seed, hours=24 * 7, scenario="clean", feeders=4, regions="CN,EU,US"))
    band = _band(sim)
    _, readings, events = _decode_all(sim)
    assert not events
    assert {p.name for p in band.values()} == {"GB/T 12325", "EN 50160", "ANSI C84.1 Range A"}
    n = 0
    for r in readings:
        if r.v_avg is None:
            continue
        p = band[r.meter_id]
        margin = 0.01 * p.nominal - 0.051  # 1 % of nominal, less the 0.05 V of rounding
        assert p.low + margin <= r.v_min <= r.v_avg <= r.v_max <= p.high - margin, r
        n += 1
    assert n > 0.99 * len(readings)


def test_voltage_sags_with_load():
    import numpy as np

    sim = Simulator(SimConfig(seed=4, hours=24 * 7))
    v = sim.values()
    cols = slice(0, 8)  # T0001
    load = v["kwh"][:, cols].sum(axis=1)
    volts = np.nanmean(np.where(v["estimated"][:, cols], np.nan, v["v_avg"][:, cols]), axis=1)
    assert np.corrcoef(load, volts)[0, 1] < -0.5


def test_transformer_undervoltage_window():
    fault = "transformer_undervoltage:T0002@2026-07-01T10:00Z/2h"
    sim = Simulator(SimConfig(seed=8, hours=24, faults=(fault,)))
    band = _band(sim)
    affected = set(sim.topology()["transformers"][1]["meter_ids"])
    start, end = parse_ts("2026-07-01T10:00:00Z"), parse_ts("2026-07-01T12:00:00Z")
    _, readings, _ = _decode_all(sim)
    inside = 0
    for r in readings:
        if r.v_avg is None:
            continue
        p = band[r.meter_id]
        if r.meter_id in affected and start < r.ts <= end:
            assert r.v_avg < p.low and r.v_min < p.low and r.v_max < p.low, r
            assert 0.84 * p.nominal < r.v_avg < 0.88 * p.nominal
            inside += 1
        else:
            assert p.low < r.v_avg < p.high, r
    assert inside >= 8 * 8 - 2  # 8 meters x 8 quarter hours, less estimated ones


def test_meter_overvoltage_window_in_a_european_band():
    sim = Simulator(SimConfig(seed=8, hours=24, faults=("meter_overvoltage:M000030@2026-07-01T14:00Z/90m",)))
    band = _band(sim)
    assert band["M000030"].name == "EN 50160"
    start, end = parse_ts("2026-07-01T14:00:00Z"), parse_ts("2026-07-01T15:30:00Z")
    _, readings, _ = _decode_all(sim)
    hits = 0
    for r in readings:
        if r.v_avg is None:
            continue
        p = band[r.meter_id]
        if r.meter_id == "M000030" and start < r.ts <= end:
            assert r.v_avg > p.high and r.v_max > p.high
            hits += 1
        else:
            assert p.low < r.v_avg < p.high
    assert hits >= 5


def test_partial_interval_overlap_mixes_levels():
    sim = Simulator(SimConfig(seed=8, hours=4, faults=("meter_undervoltage:M000001@2026-07-01T01:05Z/20m",)))
    v = {r.ts: r for r in _decode_all(sim)[1] if r.meter_id == "M000001"}
    t = parse_ts("2026-07-01T01:15:00Z")  # 10 of 15 minutes under
    if v[t].v_avg is not None:
        assert 0.86 * 220 < v[t].v_avg < 0.98 * 220
        assert v[t].v_min < 0.9 * 220
        assert v[t].v_max > 0.9 * 220


# ------------------------------------------------------------------------------------ outage

def test_feeder_outage_events_and_gap():
    sim = Simulator(SimConfig(seed=12, hours=24, faults=("feeder_outage:F002@2026-07-01T10:00Z/45m",)))
    feeder = {m["meter_id"] for m in sim.topology()["meters"] if m["feeder_id"] == "F002"}
    start, end = parse_ts("2026-07-01T10:00:00Z"), parse_ts("2026-07-01T10:45:00Z")
    _, readings, events = _decode_all(sim)
    during = [r for r in readings if r.meter_id in feeder and start < r.ts <= end]
    assert during == []
    others = {r.meter_id for r in readings if r.meter_id not in feeder and start < r.ts <= end}
    assert len(others) == 48 - len(feeder)
    fails = {e.meter_id for e in events if e.type == "power_fail"}
    restores = {e.meter_id for e in events if e.type == "power_restore"}
    assert fails < feeder and fails  # a strict, non-empty subset
    assert 0.4 <= len(fails) / len(feeder) <= 0.8
    assert restores == feeder
    assert {e.ts for e in events if e.type == "power_fail"} == {start}
    assert {e.ts for e in events if e.type == "power_restore"} == {end}
    # readings resume: every meter of the feeder reports the first interval after the outage
    after = {r.meter_id for r in readings if r.ts == end + 900}
    assert feeder <= after
    before = {r.meter_id for r in readings if r.ts == start}
    assert feeder <= before
    truth = sim.truth()[0]
    assert set(truth["power_fail_meter_ids"]) == fails


def test_counts_match_the_records():
    sim = Simulator(SimConfig(seed=3, hours=30, scenario="all"))
    recs = list(sim.records())
    counts = sim.counts()
    assert counts["messages"] == len(recs)
    assert counts["readings"] == sum(len(v) for t, _, v in recs if t == config.READINGS)
    assert counts["events"] == sum(t == config.EVENTS for t, _, _ in recs)


# ------------------------------------------------------------------------------------ bill spike

def test_bill_spike_multiplies_consumption_from_the_date_on():
    base = Simulator(SimConfig(seed=6, hours=72)).values()["kwh"][:, 2]
    sim = Simulator(SimConfig(seed=6, hours=72, faults=("bill_spike:C000003@2026-07-02/1.6",)))
    spiked = sim.values()["kwh"][:, 2]
    cut = 24 * 4  # intervals ending before or at 2026-07-02T00:00Z
    assert (spiked[:cut] == base[:cut]).all()
    ratio = spiked[cut:].sum() / base[cut:].sum()
    assert ratio == pytest.approx(1.6, rel=0.01)
    truth = sim.truth()[0]
    assert truth["expected_kind"] == "bill_spike" and truth["customer_ids"] == ["C000003"]
    assert truth["scope"] == {"level": "meter", "id": "M000003"} and truth["factor"] == 1.6


# ------------------------------------------------------------------------------------ ordering

def test_record_ordering_guarantees():
    # an outage from 10:20 cuts the 10:00-11:00 window of F002's meters short after the 10:15 reading
    sim = Simulator(SimConfig(seed=21, hours=24, scenario="all", batch=4,
                              faults=("feeder_outage:F002@2026-07-01T10:20Z/1h",)))
    timed = list(sim.timed_records())
    cut = parse_ts("2026-07-01T10:15:00Z")
    short = [i for i, (t, topic, _, _) in enumerate(timed) if topic == config.READINGS and t == cut]
    fails = [i for i, (t, topic, _, v) in enumerate(timed)
             if topic == config.EVENTS and v["type"] == "power_fail" and t == cut + 5 * 60]
    full = [i for i, (t, topic, _, _) in enumerate(timed) if topic == config.READINGS and t == cut + 45 * 60]
    assert short and fails and full
    assert max(short) < min(fails) and max(fails) < min(full)
    topics = [t for _, t, _, _ in timed]
    n_cust = topics.count(config.CUSTOMERS)
    assert topics[:n_cust] == [config.CUSTOMERS] * n_cust
    assert [k for _, _, k, _ in timed[:n_cust]] == sorted(k for _, _, k, _ in timed[:n_cust])
    rest = timed[n_cust:]
    times = [t for t, _, _, _ in rest]
    assert times == sorted(times)  # non-decreasing event time
    window = 4 * 900
    seen = defaultdict(set)
    last_window = -1
    for t, topic, key, value in rest:
        if topic == config.EVENTS:
            assert value["meter_id"] == key and parse_ts(value["ts"]) == t
            continue
        assert isinstance(value, list) and 1 <= len(value) <= 4
        ts = [parse_ts(r["ts"]) for r in value]
        assert ts == sorted(ts) and all(r["meter_id"] == key for r in value)
        assert t == ts[-1]
        w = (ts[0] - T0 - 1) // window
        assert all((x - T0 - 1) // window == w for x in ts)  # one batch window per message
        assert w >= last_window  # all of a window before the next
        last_window = w
        assert key not in seen[w]  # one message per meter per window
        seen[w].add(key)
    # ties: readings before events at the same instant
    for (t1, top1, _, _), (t2, top2, _, _) in zip(rest, rest[1:]):
        if t1 == t2 and top1 == config.EVENTS:
            assert top2 == config.EVENTS


# ------------------------------------------------------------------------------------ faults and truth

def test_parse_fault_and_times():
    f = parse_fault("transformer_undervoltage:T0002@2026-07-01T10:00Z/2h", T0)
    assert (f.level, f.effect, f.target) == ("transformer", "undervoltage", "T0002")
    assert f.end - f.start == 7200 and format_ts(f.start) == "2026-07-01T10:00:00Z"
    b = parse_fault("bill_spike:C000003@2026-07-10/1.6", T0)
    assert b.effect == "bill_spike" and b.factor == 1.6 and format_ts(b.start) == "2026-07-10T00:00:00Z"
    assert parse_time("+4h", T0) == T0 + 4 * 3600
    assert parse_duration("1h30m") == 5400 and parse_duration("90m") == 5400 and parse_duration("1d") == 86400
    for bad in ("nonsense", "transformer_undervoltage:T0002@2026-07-01T10:00Z", "meter_explodes:M000001@+1h/1h",
                "meter_overvoltage:M000001@+1h/2x"):
        with pytest.raises(ValueError):
            parse_fault(bad, T0)
    with pytest.raises(ValueError, match="no transformer"):
        Simulator(SimConfig(hours=1, faults=("transformer_undervoltage:T0099@+1h/1h",)))
    assert isinstance(f, Fault)


def test_truth_lines_match_the_faults(tmp_path):
    truth, out = tmp_path / "truth.jsonl", tmp_path / "records.jsonl"
    args = build_parser().parse_args([
        "simulate", "--seed", "5", "--hours", "24", "--no-progress", "--truth", str(truth), "--out", str(out),
        "--fault", "transformer_undervoltage:T0002@2026-07-01T10:00Z/2h",
        "--fault", "meter_overvoltage:M000005@2026-07-01T16:00Z/90m",
        "--fault", "feeder_outage:F002@2026-07-01T10:00Z/45m",
        "--fault", "bill_spike:C000003@2026-07-01T12:00Z/1.6"])
    assert args.func(args) == 0
    lines = [json.loads(x) for x in truth.read_text().splitlines()]
    assert [t["fault"] for t in lines] == ["transformer_undervoltage", "meter_overvoltage", "feeder_outage",
                                           "bill_spike"]
    assert [t["expected_kind"] for t in lines] == ["undervoltage", "overvoltage", "outage", "bill_spike"]
    tu = lines[0]
    assert tu["scope"] == {"level": "transformer", "id": "T0002"}
    assert (tu["start"], tu["end"]) == ("2026-07-01T10:00:00Z", "2026-07-01T12:00:00Z")
    assert tu["meter_ids"] == [f"M{i:06d}" for i in range(9, 17)]
    assert tu["customer_ids"] == [f"C{i:06d}" for i in range(9, 17)]
    assert lines[1]["scope"] == {"level": "meter", "id": "M000005"} and lines[1]["end"] == "2026-07-01T17:30:00Z"
    assert lines[2]["scope"] == {"level": "feeder", "id": "F002"} and len(lines[2]["meter_ids"]) == 24
    assert lines[3]["end"] == "2026-07-02T00:00:00Z"
    for t in lines:
        assert set(t) >= {"fault", "scope", "start", "end", "meter_ids", "customer_ids", "expected_kind"}
    # the --out file holds what would have been published, in order, and it decodes
    recs = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert recs[0]["topic"] == config.CUSTOMERS
    for r in recs:
        payload = json.dumps(r["value"])
        {config.CUSTOMERS: decode_customer, config.READINGS: decode_readings,
         config.EVENTS: decode_event}[r["topic"]](r["key"], payload)


def test_scenarios():
    demo = Simulator(SimConfig(seed=42, scenario="demo"))
    assert demo.n_steps == 96
    kinds = [(t["fault"], t["scope"]["id"]) for t in demo.truth()]
    assert [k for k, _ in kinds] == ["transformer_undervoltage", "meter_overvoltage", "transformer_outage"]
    cust = {c["meter_id"]: c for c in demo.customers()}
    under = demo.truth()[0]
    assert {cust[m]["language"] for m in under["meter_ids"]} == {"zh-CN", "en"}
    assert {cust[m]["nominal_voltage"] for m in under["meter_ids"]} == {220}
    over = cust[demo.truth()[1]["meter_ids"][0]]
    assert over["timezone"] in ("Europe/London", "Europe/Paris") and not over["opted_out"]
    cut = demo.truth()[2]  # a power cut on another transformer of the overvoltage meter's feeder
    assert cut["scope"]["id"] != cust[demo.truth()[1]["meter_ids"][0]]["transformer_id"]
    assert {cust[m]["feeder_id"] for m in cut["meter_ids"]} == {over["feeder_id"]}
    assert Simulator(SimConfig(scenario="clean")).truth() == []
    assert [t["expected_kind"] for t in Simulator(SimConfig(scenario="outage")).truth()] == ["outage"]
    everything = Simulator(SimConfig(scenario="all", hours=24))
    assert {t["expected_kind"] for t in everything.truth()} == {"undervoltage", "overvoltage", "outage",
                                                                 "bill_spike"}


def test_cli_scenario_defaults_and_overrides():
    from devtools.simulator import config_from_args

    p = build_parser()
    cfg = config_from_args(p.parse_args(["simulate", "--scenario", "all"]))
    assert cfg.hours == 336 and cfg.scenario == "all"
    cfg = config_from_args(p.parse_args(["simulate", "--scenario", "all", "--hours", "12", "--feeders", "3"]))
    assert cfg.hours == 12 and cfg.feeders == 3
    cfg = config_from_args(p.parse_args(["simulate"]))
    assert (cfg.hours, cfg.feeders, cfg.batch, cfg.interval, cfg.scenario) == (24, 2, 4, 900, None)


def test_generation_is_fast():
    import time

    sim = Simulator(SimConfig(seed=1, hours=24 * 7))
    t = time.perf_counter()
    n = sum(len(v) for topic, _, v in sim.records() if topic == config.READINGS)
    rate = n / (time.perf_counter() - t)
    assert rate > 50_000, f"{rate:.0f} readings/s"  # target 100k+/s; loose for slow CI machines


# ------------------------------------------------------------------------------------ short events

def _meter_values(sim: Simulator, meter_id: str) -> dict[str, object]:
    """One meter's columns of :meth:`Simulator.values`, plus ``ts`` (the end of each interval)."""
    import numpy as np

    v = sim.values()
    j = [m["meter_id"] for m in sim.topology()["meters"]].index(meter_id)
    out = {k: v[k][:, j] for k in ("v_avg", "v_min", "v_max", "estimated")}
    out["ts"] = sim.start + (np.arange(sim.n_steps) + 1) * sim.interval
    return out


def test_meter_sag_and_swell_move_only_the_interval_extremes():
    import numpy as np

    base = Simulator(SimConfig(seed=8, hours=12))
    sim = Simulator(SimConfig(seed=8, hours=12, faults=("meter_sag:M000030@2026-07-01T03:00Z/1h",
                                                        "meter_swell:M000031@2026-07-01T05:00Z/30m")))
    windows = {"M000030": (T0 + 3 * 3600, T0 + 4 * 3600), "M000031": (T0 + 5 * 3600, T0 + 5 * 3600 + 1800)}
    for mid, field, lo, hi in (("M000030", "v_min", 0.6, 0.8), ("M000031", "v_max", 1.15, 1.3)):
        a, b = _meter_values(base, mid), _meter_values(sim, mid)
        rows = (windows[mid][0] < b["ts"]) & (b["ts"] <= windows[mid][1])
        assert rows.sum() == (4 if mid == "M000030" else 2)
        assert np.all((lo * 230 - 0.05 <= b[field][rows]) & (b[field][rows] <= hi * 230 + 0.05))
        assert np.array_equal(a[field][~rows], b[field][~rows])
        other = "v_max" if field == "v_min" else "v_min"
        assert np.array_equal(a["v_avg"], b["v_avg"]) and np.array_equal(a[other], b[other])
        assert np.all((207.0 < b["v_avg"]) & (b["v_avg"] < 253.0))  # the mean stays in band


def test_meter_looseneutral_swings_both_ways_inside_its_window():
    import numpy as np

    sim = Simulator(SimConfig(seed=8, hours=24, faults=("meter_looseneutral:M000003@2026-07-01T08:00Z/4h",)))
    p = profile_for(220)
    b = _meter_values(sim, "M000003")
    rows = (T0 + 8 * 3600 < b["ts"]) & (b["ts"] <= T0 + 12 * 3600) & ~b["estimated"]
    assert rows.sum() >= 15
    assert np.all(b["v_min"][rows] < p.low) and np.all(b["v_max"][rows] > p.high)
    assert np.all((p.low < b["v_avg"][rows]) & (b["v_avg"][rows] < p.high))
    assert (b["v_avg"][rows] > 220).any() and (b["v_avg"][rows] < 220).any()
    outside = ~rows & ~b["estimated"]
    assert np.all(b["v_min"][outside] >= p.low) and np.all(b["v_max"][outside] <= p.high)


def test_short_event_faults_leave_every_other_value_bit_for_bit():
    old = ("transformer_undervoltage:T0002@+3h/2h", "meter_overvoltage:M000030@+5h/90m",
           "feeder_outage:F002@+10h/45m", "bill_spike:C000003@+12h/1.6")
    new = ("meter_sag:M000001@+2h/1h", "meter_swell:M000012@+3h/1h", "meter_looseneutral:M000040@+1h/4h")
    base = Simulator(SimConfig(seed=3, hours=18, faults=old))
    touched = {"M000001", "M000012", "M000040"}
    keep = [i for i, m in enumerate(base.topology()["meters"]) if m["meter_id"] not in touched]
    # wherever the new faults stand in the list, the values of every other meter stay as they were
    for order in (old + new, new[:1] + old[:2] + new[1:] + old[2:]):
        a, b = base.values(), Simulator(SimConfig(seed=3, hours=18, faults=order)).values()
        for k in a:
            assert (a[k][:, keep] == b[k][:, keep]).all(), k
    # after the existing faults, they change neither their truth nor their events
    more = Simulator(SimConfig(seed=3, hours=18, faults=old + new))
    assert more.truth()[:len(old)] == base.truth()
    assert [r for r in more.records() if r[0] == config.EVENTS] == [r for r in base.records() if r[0] == config.EVENTS]


def test_short_event_fault_kinds_and_their_truth():
    assert parse_fault("meter_sag:M000001@+1h/10m", T0).effect == "sag"
    assert parse_fault("transformer_swell:T0001@+1h/10m", T0).effect == "swell"
    assert parse_fault("meter_looseneutral:M000001@+1h/3h", T0).effect == "looseneutral"
    with pytest.raises(ValueError, match="use meter_looseneutral"):
        parse_fault("transformer_looseneutral:T0001@+1h/3h", T0)
    sim = Simulator(SimConfig(seed=1, hours=6, faults=("meter_sag:M000002@+1h/1h", "meter_swell:M000002@+2h/1h",
                                                       "meter_looseneutral:M000003@+1h/3h")))
    assert [(t["expected_kind"], t["scope"]) for t in sim.truth()] == [
        ("sag", {"level": "meter", "id": "M000002"}), ("swell", {"level": "meter", "id": "M000002"}),
        ("loose_neutral", {"level": "meter", "id": "M000003"})]
    _, readings, _ = _decode_all(sim)
    for r in readings:  # still inside the contract: v_min <= v_avg <= v_max
        assert r.v_avg is None or r.v_min <= r.v_avg <= r.v_max


# ------------------------------------------------------------------------------------ nested outages

def test_a_meter_in_a_longer_outage_gets_no_restore_when_its_feeder_comes_back():
    sim = Simulator(SimConfig(seed=12, hours=24, faults=("feeder_outage:F002@2026-07-01T10:00Z/45m",
                                                         "meter_outage:M000030@2026-07-01T10:00Z/3h")))
    start = parse_ts("2026-07-01T10:00:00Z")
    feeder_end, meter_end = start + 2700, start + 3 * 3600
    feeder = {m["meter_id"] for m in sim.topology()["meters"] if m["feeder_id"] == "F002"}
    _, readings, events = _decode_all(sim)
    restores = defaultdict(list)
    for e in events:
        if e.type == "power_restore":
            restores[e.meter_id].append(e.ts)
    assert restores == {**{m: [feeder_end] for m in feeder - {"M000030"}}, "M000030": [meter_end]}
    fails = [e.meter_id for e in events if e.type == "power_fail"]
    assert len(fails) == len(set(fails)) and "M000030" in fails  # one last gasp, even if both faults drew it
    assert {e.ts for e in events if e.type == "power_fail"} == {start}
    m30 = [r.ts for r in readings if r.meter_id == "M000030"]
    assert not [t for t in m30 if start < t <= meter_end] and meter_end + 900 in m30
    truth = sim.truth()
    assert set(truth[0]["power_fail_meter_ids"]) | set(truth[1]["power_fail_meter_ids"]) == set(fails)
    assert sim.counts()["events"] == len(events)


def test_an_outage_starting_inside_another_sends_no_last_gasp_and_back_to_back_outages_are_one():
    sim = Simulator(SimConfig(seed=12, hours=24, faults=("feeder_outage:F002@2026-07-01T10:00Z/45m",
                                                         "transformer_outage:T0004@2026-07-01T10:30Z/2h")))
    t4 = set(next(t["meter_ids"] for t in sim.topology()["transformers"] if t["transformer_id"] == "T0004"))
    _, _, events = _decode_all(sim)
    t4_events = [(e.ts, e.type) for e in events if e.meter_id in t4]
    gasped = [(ts, typ) for ts, typ in t4_events if typ == "power_fail"]
    assert {ts for ts, _ in gasped} <= {parse_ts("2026-07-01T10:00:00Z")}  # only from the feeder outage
    assert sim.truth()[1]["power_fail_meter_ids"] == []
    assert sorted(ts for ts, typ in t4_events if typ == "power_restore") == \
        [parse_ts("2026-07-01T12:30:00Z")] * len(t4)
    sim = Simulator(SimConfig(seed=12, hours=24, faults=("meter_outage:M000005@+10h/1h",
                                                         "meter_outage:M000005@+11h/1h")))
    _, _, events = _decode_all(sim)
    assert [(e.ts - T0, e.type) for e in events] == [(10 * 3600, "power_fail"), (12 * 3600, "power_restore")]


def test_outages_that_do_not_overlap_keep_their_own_events():
    def events(*faults):
        return [r for r in Simulator(SimConfig(seed=9, hours=30, faults=faults)).timed_records()
                if r[1] == config.EVENTS]

    feeder, meter = "feeder_outage:F002@+10h/45m", "meter_outage:M000030@+20h/1h"
    assert events(feeder, meter) == events(feeder) + events(meter)


def test_field_realities():
    """--field: per-meter gasp chances, restore jitter, single readings and hourly arrays, a wrong clock,
    meters joining the directory late; counts() still says exactly what records() yields."""
    from gridwatch.contract import parse_ts as _parse

    cfg = dict(seed=10, feeders=2, transformers_per_feeder=3, meters_per_transformer=6, regions="CN", hours=7,
               faults=("feeder_outage:F002@+3h07m13s/50m",))
    plain = Simulator(SimConfig(**cfg))
    sim = Simulator(SimConfig(**cfg, field=True, wrong_clock=1, late_meters=2))
    assert 0.4 <= sim._gasp_p.min() and sim._gasp_p.max() <= 0.7
    (truth,) = sim.truth()
    assert 0 < len(truth["power_fail_meter_ids"]) < len(truth["meter_ids"])
    recs = list(sim.timed_records())
    assert [r[0] for r in recs] == sorted(r[0] for r in recs)
    counts = sim.counts()
    assert counts["messages"] == len(recs)
    assert counts["readings"] == plain.counts()["readings"]  # the same values, delivered differently
    restores = [_parse(v["ts"]) for _, t, _, v in recs if t == "meter.events" and v["type"] == "power_restore"]
    end = _parse(truth["end"])
    assert len(restores) == 18 and min(restores) >= end and max(restores) <= end + 90 and len(set(restores)) > 5
    readings = [(k, v) for _, t, k, v in recs if t == "meter.readings"]
    singles = {k for k, v in readings if isinstance(v, dict)}
    arrays = {k for k, v in readings if isinstance(v, list)}
    assert singles and arrays and not singles & arrays
    assert all(len(v) <= 4 for k, v in readings if isinstance(v, list))
    (wrong,) = sim._wrong_clock
    sent_at, first = next((t, v) for t, top, k, v in recs if top == "meter.readings" and k == wrong)
    first = first if isinstance(first, dict) else first[-1]
    assert _parse(first["ts"]) - sent_at == sim.WRONG_CLOCK_S  # sent when due, dated 3 years ahead
    late = set(sim._late)
    assert len(late) == 2 and wrong not in late
    cust_at = {v["meter_id"]: t for t, top, k, v in recs if top == "customers"}
    first_read = {k: t for t, top, k, v in reversed(recs) if top == "meter.readings"}
    assert all(cust_at[m] == sim.start + sim.LATE_JOIN_S > first_read[m] for m in late)
    assert all(cust_at[m] == sim.start for m in cust_at if m not in late)
    # without --field nothing changed: the plain run still sends the fixed 60 % subset and batches of 4
    assert all(isinstance(v, list) for _, t, _, v in plain.timed_records() if t == "meter.readings")
