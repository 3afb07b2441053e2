"""The voltage detector and the transformer correlator together, without Kafka."""

from __future__ import annotations

import copy

from gridwatch.contract import Reading, parse_ts
from detectors.api import Context
from detectors.standards import profile_for
from detectors.topology import TransformerCorrelator
from detectors.voltage import VoltageDetector

T0 = parse_ts("2026-07-01T00:00:00Z")
GB = profile_for(220)
CTX = Context(profile=GB)


def series(meter, hours=24, fault=None, v=225.0, interval=900):
    """15-minute readings; ``fault`` = (start_h, end_h, volts) replaces v_avg inside the window."""
    out = []
    for i in range(1, int(hours * 3600 / interval) + 1):
        ts = T0 + i * interval
        volts = v
        if fault and fault[0] * 3600 < ts - T0 <= fault[1] * 3600:
            volts = fault[2]
        out.append(Reading(meter_id=meter, ts=ts, interval_s=interval, kwh=0.2, v_avg=volts))
    return out


def run_detector(readings, detector=None, batch=4):
    det = detector or VoltageDetector()
    state, found = None, []
    for i in range(0, len(readings), batch):
        state, tr = det.process(state, readings[i:i + batch], CTX)
        found.extend(tr)
    return state, found


def test_single_noisy_reading_does_not_alert():
    rs = series("M1")
    rs[40] = Reading("M1", rs[40].ts, 900, 0.2, 190.0)
    _, found = run_detector(rs)
    assert found == []


def test_sustained_undervoltage_opens_after_min_duration_and_closes_when_back_in_band():
    _, found = run_detector(series("M1", fault=(10, 12, 190.0)))
    assert [t["status"] for t in found] == ["abnormal", "normal"]
    opened, closed = found
    assert opened["kind"] == "undervoltage"
    assert opened["started_at"] == T0 + 10 * 3600 + 900          # first abnormal reading
    assert opened["detected_at"] == T0 + 10 * 3600 + 1800        # after 30 minutes of event time
    assert closed["at"] == T0 + 12 * 3600 + 900                  # first reading back in band
    assert opened["v_extreme"] == 190.0


def test_duplicates_and_input_are_left_alone():
    rs = series("M1", hours=2)
    det = VoltageDetector()
    state, _ = det.process(None, rs, Context(profile=GB))
    frozen = copy.deepcopy(state)
    batch = list(reversed(rs[:3]))
    again, found = det.process(state, batch, Context(profile=GB))
    assert state == frozen, "input state must not be mutated"
    assert batch == list(reversed(rs[:3])), "input readings must not be reordered"
    assert again["duplicates"] == 3 and found == []


def test_findings_name_their_meter_and_the_customer_can_choose_the_standard():
    rs = series("M7", fault=(10, 12, 200.0))  # 200 V: inside GB/T 12325 (198.0 V), below EN 50160 (207 V)
    det = VoltageDetector()
    _, gb = det.process(None, rs, Context(profile=GB))
    assert gb == []
    # no profile in the Context: the customer's own choice of standard decides
    cust = {"nominal_voltage": 220, "voltage_standard": "EN 50160"}
    _, en = det.process(None, rs, Context(customer=cust))
    assert [(f["kind"], f["status"], f["meter_id"]) for f in en] == [
        ("undervoltage", "abnormal", "M7"), ("undervoltage", "normal", "M7")]


def test_a_bare_profile_is_still_accepted():
    rs = series("M1", fault=(10, 12, 190.0))
    assert VoltageDetector().process(None, rs, GB) == VoltageDetector().process(None, rs, CTX)


def test_overvoltage_band_edges_follow_the_standard():
    assert GB.classify(235.4) == "normal" and GB.classify(235.5) == "over"
    assert GB.classify(198.0) == "normal" and GB.classify(197.9) == "under"
    assert profile_for(230).low == 207.0 and profile_for(120).high == 126.0


def feed(meters, faults, batch=4, order="by_window"):
    """Run detector per meter and correlator per transformer, watermark = newest common ts."""
    det, cor = VoltageDetector(), TransformerCorrelator()
    st = cor.new_state("T1")
    for i, m in enumerate(meters):
        st = cor.member(st, {"meter_id": m, "customer_id": "C" + m[1:], "partition": i % 3, "feeder_id": "F1"})
    streams = {m: series(m, fault=faults.get(m)) for m in meters}
    states = {m: None for m in meters}
    alerts = []
    n = len(next(iter(streams.values())))
    windows = range(0, n, batch)
    order_keys = [(w, m) for w in windows for m in meters] if order == "by_window" else \
        [(w, m) for m in meters for w in windows]
    for w, m in order_keys:
        chunk = streams[m][w:w + batch]
        states[m], tr = det.process(states[m], chunk, CTX)
        st = cor.status(st, {"meter_id": m, "customer_id": "C" + m[1:], "partition": meters.index(m) % 3,
                             "first_ts": chunk[0].ts, "ts": chunk[-1].ts, "transitions": tr,
                             "profile": {"name": GB.name, "nominal": 220.0, "low": GB.low, "high": GB.high}})
        if order == "by_window":
            st, out = cor.advance(st, chunk[-1].ts - 900 * batch)
            alerts.extend(out)
    st, out = cor.advance(st, T0 + 24 * 3600)
    alerts.extend(out)
    return alerts


METERS = [f"M{i}" for i in range(1, 9)]


def test_most_meters_deviating_together_is_one_transformer_alert():
    faults = {m: (10, 12, 188.0) for m in METERS[:6]}
    alerts = feed(METERS, faults)
    assert [(a["status"], a["scope"]["level"]) for a in alerts] == [("open", "transformer"), ("resolved", "transformer")]
    opened, resolved = alerts
    assert opened["alert_id"] == resolved["alert_id"]
    assert opened["meter_ids"] == METERS[:6]
    assert opened["customer_ids"] == ["C" + m[1:] for m in METERS[:6]]
    assert opened["started_at"] == "2026-07-01T10:15:00Z"
    assert opened["detected_at"] == "2026-07-01T10:30:00Z"
    assert resolved["resolved_at"] == "2026-07-01T12:15:00Z"
    assert opened["evidence"]["standard"] == "GB/T 12325" and opened["evidence"]["v_extreme"] == 188.0


def test_a_lone_meter_is_a_meter_alert():
    alerts = feed(METERS, {"M3": (10, 12, 240.0)})
    assert [(a["status"], a["scope"], a["kind"]) for a in alerts] == [
        ("open", {"level": "meter", "id": "M3"}, "overvoltage"),
        ("resolved", {"level": "meter", "id": "M3"}, "overvoltage")]


def test_clean_transformer_raises_nothing():
    assert feed(METERS, {}) == []


def test_arrival_order_does_not_change_the_alerts():
    """Replay determinism: one meter at a time (worst skew) gives the same alerts as window by window."""
    faults = {m: (10, 12, 188.0) for m in METERS[:6]}
    faults["M8"] = (3, 5, 240.0)
    assert feed(METERS, faults, order="by_meter") == feed(METERS, faults)
