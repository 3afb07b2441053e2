"""A worker recovers meter states written in the formats before from the meter-state changelog and goes on.

The meter states of a running deployment sit in the ``meter-state`` changelog (and each worker's RocksDB)
in the formats before the state was made small (detectors/trace.py, detectors/compact.py, daily usage
version 1). Here the changelog's newest value of every meter is replaced by that value in the formats
before, the worker's state directory is wiped (as on a new host: every table is recovered from its
changelog), and the second half of the readings goes through. Each meter's state must come out as the
meter stage computes it in memory over the same messages, never having seen the formats before.
"""

from __future__ import annotations

import json
import shutil
import struct
import time

import pytest

from gridwatch.contract import parse_ts
from detectors.compact import unpack_times
from detectors.pipeline import MeterStage, _reading, directory_entry
from detectors.registry import enabled
from detectors.trace import _decode, trace_points
from detectors.usage import DAY_FIELDS, day_bounds

pytestmark = pytest.mark.integration


def ring_before(ring: dict) -> dict:
    """A ring as ``{"t0", "last", "q"}``: every quarter hour as four float32, as it was kept before."""
    nan, nums = float("nan"), []
    for rec in _decode(ring["c"]):
        if rec is None:
            nums += (nan, 0.0, nan, nan)
        else:
            a, lo, hi = (nan if x is None else x for x in rec)
            nums += (a, 0.0 if rec[0] is None else 1.0, lo, hi)
    q = struct.pack(f"<{len(nums)}f", *nums).hex() + ring["o"]
    return {"t0": ring["t0"], "last": ring["last"], "q": q}


def state_before(st: dict) -> dict:
    from datetime import date

    usage = st["_usage"]
    return {**st, "_trace": ring_before(st["_trace"]),
            "voltage": {**st["voltage"], "seen": unpack_times(st["voltage"]["seen"])},
            "_usage": {**usage, "v": 1, "seen": unpack_times(usage["seen"]),
                       "open": {k: {"ts": day_bounds(usage["tz"], date.fromisoformat(k))[0],
                                    **dict(zip(DAY_FIELDS, rec))} for k, rec in usage["open"].items()}}}


def newest_states(pipeline, timeout: float = 60.0) -> dict[bytes, tuple[int, dict]]:
    """The meter-state changelog's newest value per key: key bytes -> (partition, state)."""
    from kafka import KafkaConsumer, TopicPartition

    from streams.topics import changelog_topic

    name = changelog_topic(pipeline.settings, "meter-state")
    consumer = KafkaConsumer(bootstrap_servers=pipeline.settings.bootstrap_list, group_id=None,
                             enable_auto_commit=False)
    try:
        tps = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: dict[bytes, tuple[int, dict]] = {}
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, "the changelog was not read to its end"
            for tp, batch in consumer.poll(timeout_ms=500).items():
                for m in batch:
                    if m.value is not None:
                        out[m.key] = (tp.partition, json.loads(m.value))
        return out
    finally:
        consumer.close()


def newest_readings(records) -> dict[str, int]:
    """meter_id -> the time of its newest reading among the simulator's ``records``."""
    out: dict[str, int] = {}
    for _, topic, _, value in records:
        if topic == "meter.readings":
            for r in value if isinstance(value, list) else [value]:
                out[r["meter_id"]] = max(out.get(r["meter_id"], 0), _reading(r).ts)
    return out


def wait_states(pipeline, last_ts: dict[str, int], timeout: float = 240.0) -> dict[str, dict]:
    """Until every meter's state on the changelog has seen its reading at ``last_ts[meter]``."""
    deadline = time.monotonic() + timeout
    while True:
        states = {json.loads(k): v for k, (_, v) in newest_states(pipeline).items()}   # (JSON keys)
        if all(states.get(m, {}).get("_last_ts") == t for m, t in last_ts.items()):
            return states
        assert time.monotonic() < deadline, (f"meter states not written within {timeout:.0f}s: want {last_ts}, "
                                             f"have { {m: st.get('_last_ts') for m, st in states.items()} }")
        pipeline.assert_alive()
        time.sleep(2)


def test_meter_states_in_the_formats_before_are_recovered_from_the_changelog_and_go_on(pipeline):
    from devtools.simulator import SimConfig, Simulator, publish

    from tests.integration.test_pipeline import PrefixedSink

    sim = Simulator(SimConfig(seed=7, feeders=1, transformers_per_feeder=1, meters_per_transformer=3,
                              hours=36, batch=8, faults=("meter_undervoltage:M000002@+27h/2h",)))
    records = list(sim.timed_records())
    half = min(i for i, r in enumerate(records) if r[0] >= sim.start + 26 * 3600)

    publish(records[:half], PrefixedSink(pipeline), progress=False)
    first = wait_states(pipeline, newest_readings(records[:half]))
    assert all("c" in st["_trace"] and st["_usage"]["v"] == 2 for st in first.values())

    # the worker stops (with the half committed: it is not read again, however the stop goes); the
    # changelog's newest value of every meter becomes that value in the formats before
    pipeline.wait_committed("meter.readings")
    pipeline.stop_worker()
    from streams.topics import changelog_topic

    topic = changelog_topic(pipeline.settings, "meter-state")
    for key, (partition, st) in newest_states(pipeline).items():
        pipeline.producer.send(topic, key=key, value=json.dumps(state_before(st)).encode(), partition=partition)
    pipeline.flush()
    assert all("q" in st["_trace"] for _, st in newest_states(pipeline).values())
    shutil.rmtree(pipeline.settings.run_dir / "worker")          # a new host: every table from its changelog
    pipeline.start_worker()

    publish(records[half:], PrefixedSink(pipeline), progress=False, flush_after=None)
    after = wait_states(pipeline, newest_readings(records))

    # the same states as the meter stage computes in memory over the same messages, in the new formats only
    entries = {c["meter_id"]: directory_entry(c) for c in sim.customers()}
    stage, expected = MeterStage(enabled()), {}
    for _, topic, _, value in records:
        if topic == "meter.readings":
            rs = [_reading(v) for v in (value if isinstance(value, list) else [value])]
            m = rs[0].meter_id
            expected[m], _, _ = stage.process(expected.get(m), rs, entries[m])
    assert set(after) == set(expected)
    for m, st in after.items():
        assert "q" not in st["_trace"] and st["_usage"]["v"] == 2
        assert trace_points(st["_trace"]) == trace_points(expected[m]["_trace"])
        assert {k: v for k, v in st.items() if k != "_last_ts"} == expected[m], m
    alerts = pipeline.read("alerts", lambda rs: any(r["kind"] == "undervoltage" for r in rs))
    trace = next(r for r in alerts if r["kind"] == "undervoltage")["evidence"]["trace"]
    assert parse_ts(trace["points"][0][0]) < sim.start + 26 * 3600   # from the ring recovered in the format before
