"""Event time on a live feed that one bad meter cannot break, on the real broker.

A feed dated up to the wall clock, paced so that no partition ever goes quiet (a partition with no batch for
20 s of wall time moves on regardless, which would hide a frozen watermark): one reading of a meter with a
wrong clock, five years ahead, a meter that is not in the customer directory and keeps reporting, and an
eight-day-old reading of another such meter. A transformer undervoltage after them is still found, no outage
is declared, and the old reading is given up as a replayable dead letter.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from gridwatch.contract import decode_readings, format_ts
from streams.app import partition_for
from tests.integration.test_pipeline import PrefixedSink

pytestmark = pytest.mark.integration

HOURS, SPEEDUP = 8, 400  # eight hours of event time in 72 s of wall time: every meter sends every 2.25 s


def test_a_live_feed_with_a_wrong_clock_and_an_unknown_meter_still_finds_a_later_undervoltage(pipeline):
    from devtools.simulator import SimConfig, Simulator, publish

    n = pipeline.settings.partitions
    start = (int(time.time()) - HOURS * 3600) // 900 * 900
    sim = Simulator(SimConfig(seed=21, feeders=1, transformers_per_feeder=2, meters_per_transformer=6, regions="CN",
                              start=format_ts(start), hours=HOURS, batch=1,
                              faults=("transformer_undervoltage:T0001@+5h/2h",)))
    (truth,) = sim.truth()
    t1 = sorted(truth["meter_ids"])
    wrong_clock = t1[0]
    # a meter not in the directory, on the partition of another of T0001's meters: without a bound on what
    # it holds back, that partition's watermark stays at its first reading and T0001 is never decided
    unknown = next(f"M9{i:05d}" for i in range(10**5)
                   if partition_for(f"M9{i:05d}", n) == partition_for(t1[1], n)
                   and partition_for(f"M9{i:05d}", n) != partition_for(wrong_clock, n))
    extra = []
    for k in range(1, HOURS * 4):
        ts = start + k * 900
        extra.append((ts, "meter.readings", unknown, [{"meter_id": unknown, "ts": format_ts(ts), "interval_s": 900,
                                                       "kwh": 0.2, "v_avg": 221.5, "v_min": 220.0, "v_max": 223.0}]))
    # and one reading, eight days old, of a meter that never joins the directory: held, then given up as
    # one replayable dead letter once its partition's watermark is a week past it
    stale = next(f"M8{i:05d}" for i in range(10**5) if partition_for(f"M8{i:05d}", n) == partition_for(t1[2], n))
    extra.append((start + 600, "meter.readings", stale, [{"meter_id": stale, "ts": format_ts(start - 8 * 86400),
                                                          "interval_s": 900, "kwh": 0.1, "v_avg": 230.0}]))
    future = start + 3600 + 5 * 365 * 86400
    extra.append((start + 3600 + 1, "meter.readings", wrong_clock, [{
        "meter_id": wrong_clock, "ts": format_ts(future), "interval_s": 900, "kwh": 0.3, "v_avg": 221.0,
        "v_min": 219.0, "v_max": 223.0}]))
    records = sorted(list(sim.timed_records()) + extra, key=lambda r: (r[0], r[1] != "customers"))
    publish(records, PrefixedSink(pipeline), speedup=SPEEDUP, progress=False)

    alerts = pipeline.read("alerts", lambda rs: any(r["kind"] == "undervoltage" for r in rs), timeout=240)
    alerts = pipeline.settle("alerts")
    under = [a for a in alerts if a["kind"] == "undervoltage"]
    assert {a["scope"]["level"] for a in under} == {"transformer"}
    assert {a["scope"]["id"] for a in under} == {"T0001"}
    assert set(under[0]["meter_ids"]) == set(t1)
    assert [a for a in alerts if a["kind"] == "outage"] == [], "no outage may be declared"
    assert {a["kind"] for a in alerts} == {"undervoltage"}

    dlq = pipeline.settle("gridwatch.dlq", seconds=2)  # (a handful of records: one poll reads them all)
    assert Counter(d["code"] for d in dlq) == {"ts_in_future": 1, "unknown_meter": 1}, dlq
    (given_up,) = [d for d in dlq if d["code"] == "unknown_meter"]
    assert given_up["key"] == stale and given_up["offset"] is None
    (r,) = decode_readings(stale.encode(), given_up["payload"])
    assert r.ts == start - 8 * 86400
    (refused,) = [d for d in dlq if d["code"] == "ts_in_future"]
    assert refused["key"] == wrong_clock and format_ts(future) in refused["payload"]
    assert "ahead of the wall clock" in refused["error"]
    # held readings are reported; the unknown meter's readings are held, not dead-lettered
    log = (pipeline.settings.run_dir / "worker.log").read_text(errors="replace")
    assert f"meter {unknown} is not in the customer directory" in log
    assert "held_readings=" in log
