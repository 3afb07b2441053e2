"""A meter's state is small (≤ 2 KB as JSON) and says the same as before it was made small.

Three parts of it were shrunk: the voltage ring (``_trace``, detectors/trace.py: quarter hours that are over
in tenths of a volt), the timestamps the voltage detector and daily usage remember (runs,
detectors/compact.py), and daily usage's open days (lists instead of dicts). For each: the same findings,
points and days as the format before, and a state written in the format before (as the changelogs and
stores of a running deployment hold it) loads and goes on as if it had never been rewritten.
"""

from __future__ import annotations

import json
import random
import struct
from datetime import date

import pytest

from gridwatch.contract import Reading, parse_ts
from detectors.compact import TimeSet, pack_times, unpack_times
from detectors.pipeline import MeterStage, trace_points, trace_update
from detectors.registry import enabled
from detectors.testing import context, customer, reading, readings
from detectors.topology import TRACE_POINTS, TRACE_STEP_S
from detectors.usage import DAY_FIELDS, accumulate, day_bounds
from detectors.voltage import VoltageDetector

START = parse_ts("2026-06-29T00:00:00Z")


# ------------------------------------------------------------------------------------------- the format before
# How the ring was kept before: every quarter hour as four float32 (hex), read back rounded to 0.1 V. Kept
# here to write rings as the states of a running deployment hold them, and as the reference for the points.

def _old_pack(nums):
    try:
        return struct.pack(f"<{len(nums)}f", *nums).hex()
    except OverflowError:
        return struct.pack(f"<{len(nums)}f", *(min(x, 1e38) for x in nums)).hex()


def _old_unpack(q):
    return list(struct.unpack(f"<{len(q) // 8}f", bytes.fromhex(q)))


def old_trace_update(ring, rs):
    nan = float("nan")
    t0, last, q = (None, None, "") if ring is None else (ring["t0"], ring["last"], ring["q"])
    size = end = len(q) // 32
    nums: list = []
    for r in sorted(rs, key=lambda r: r.ts):
        if last is not None and r.ts <= last:
            continue
        last = r.ts
        va, vn, vx = r.v_avg, r.v_min, r.v_max
        k = -(-r.ts // TRACE_STEP_S) * TRACE_STEP_S
        if t0 is None:
            if va is None and vn is None and vx is None:
                continue
            t0 = k
        i = (k - t0) // TRACE_STEP_S
        if va is None and vn is None and vx is None:
            continue
        if i >= end:
            if i >= end + TRACE_POINTS:
                q, nums, t0, size, i, end = "", [], k, 0, 0, 0
            if i > end:
                nums += [nan, 0.0, nan, nan] * (i - end)
            nums += (nan if va is None else va, 0.0 if va is None else 1.0, nan if vn is None else vn,
                     nan if vx is None else vx)
            end = i + 1
            continue
        if i < size:
            nums = _old_unpack(q[i * 32:]) + nums
            q, size = q[:i * 32], i
        j = 4 * (i - size)
        mean, n, lo, hi = nums[j:j + 4]
        if va is not None:
            mean, n = (va, 1.0) if n == 0 else ((mean * n + va) / (n + 1), n + 1)
        if vn is not None and not lo <= vn:
            lo = vn
        if vx is not None and not hi >= vx:
            hi = vx
        nums[j:j + 4] = [mean, n, lo, hi]
    if nums:
        q += _old_pack(nums)
    cut = len(q) // 32 - TRACE_POINTS
    if cut > 0:
        q, t0 = q[cut * 32:], t0 + cut * TRACE_STEP_S
    return {"t0": t0, "last": last, "q": q}


def old_trace_points(ring):
    def v(x):
        return None if x != x else round(x, 1)
    if not ring or not ring["q"]:
        return []
    nums, out = _old_unpack(ring["q"]), []
    for i in range(len(nums) // 4):
        mean, n, lo, hi = nums[4 * i:4 * i + 4]
        if not (n == 0 and lo != lo and hi != hi):
            out.append([ring["t0"] + i * TRACE_STEP_S, v(mean) if n else None, v(lo), v(hi)])
    return out


def old_voltage_state(st: dict) -> dict:
    """The voltage detector's state as it was before runs: ``seen`` a plain list."""
    return {**st, "seen": unpack_times(st["seen"])}


def old_usage_state(st: dict) -> dict:
    """Daily usage's state as version 1: a dict per open day (with its ``ts``), ``seen`` a plain list."""
    return {**st, "v": 1, "seen": unpack_times(st["seen"]),
            "open": {k: {"ts": day_bounds(st["tz"], date.fromisoformat(k))[0], **dict(zip(DAY_FIELDS, rec))}
                     for k, rec in st["open"].items()}}


# ------------------------------------------------------------------------------------------------ inputs

def messy(seed: int, n: int = 400) -> list[Reading]:
    """One meter's readings as a bad day brings them: 1-, 5- and 15-minute intervals, silences (some longer
    than the ring), nulls, repeats and late ones, and voltages of every size the contract allows."""
    rnd = random.Random(seed)
    out, t = [], START
    for _ in range(n):
        step = rnd.choice((60, 300, 900, 900, 900))
        t += step * (rnd.choice((1, 1, 1, 1, 2, 7, 40)) if rnd.random() < 0.2 else 1)
        if rnd.random() < 0.02:
            t += 30 * 3600                                     # longer than the ring
        va = rnd.choice((None, round(rnd.uniform(0, 1500), 1), round(rnd.gauss(230, 8), 2), 230.05, 0.0,
                         rnd.uniform(100, 300)))
        vn = None if rnd.random() < 0.1 else (va * 0.97 if va is not None else rnd.uniform(0, 400))
        vx = None if rnd.random() < 0.1 else (va * 1.02 if va is not None else rnd.uniform(0, 400))
        out.append(reading("M1", t, interval_s=step, v_avg=va, v_min=vn, v_max=vx))
        if rnd.random() < 0.05:
            out.append(out[rnd.randrange(len(out))])           # a repeat or a late one
    return out


def batches(rs: list, seed: int) -> list[list]:
    rnd, out, i = random.Random(seed), [], 0
    while i < len(rs):
        k = rnd.choice((1, 1, 4, 16, 50))
        out.append(rs[i:i + k])
        i += k
    return out


# ------------------------------------------------------------------------------------------------ timestamps

@pytest.mark.parametrize("seed", range(20))
def test_runs_hold_the_same_timestamps(seed):
    rnd = random.Random(seed)
    ts = {START + 900 * k for k in range(rnd.randrange(200))}
    ts |= {rnd.randrange(START, START + 200 * 900) for _ in range(rnd.randrange(30))}
    packed = pack_times(ts)
    assert unpack_times(packed) == sorted(ts) and json.loads(json.dumps(packed)) == packed
    assert unpack_times(pack_times(ts, 96)) == sorted(ts)[-96:]
    # a plain list of timestamps (how they were kept before) reads as it is
    assert unpack_times(sorted(ts, key=lambda t: -t)) == sorted(ts, key=lambda t: -t)


def test_a_meter_on_time_is_one_run():
    assert pack_times(range(START, START + 96 * 900, 900)) == [[START, 900, 96]]
    assert pack_times([START, START + 900, START + 7200]) == [START, START + 900, START + 7200]
    assert pack_times([]) == [] and pack_times([5.5, 1]) == [1, 5.5]      # runs are of whole seconds only


# ------------------------------------------------------------------------------------------------ the ring

@pytest.mark.parametrize("seed", range(12))
def test_the_ring_gives_the_points_it_gave_before(seed):
    """Batch by batch over a messy meter, the points are those of the ring kept as floats; and a ring in the
    format before, taken at any batch, loads and goes on to the same points."""
    ring = old = None
    for k, batch in enumerate(batches(messy(seed), seed)):
        if k % 7 == 3:
            ring = old                                        # a state written before: loads as it is
        ring, old = trace_update(ring, batch), old_trace_update(old, batch)
        assert trace_points(ring) == old_trace_points(old)
        assert type(ring["c"]) is str                        # compact: every figure is within ±3,276.6 V
        assert json.loads(json.dumps(ring, allow_nan=False)) == ring
        assert ring["last"] == old["last"]


def test_a_day_of_the_ring_is_768_characters():
    ring = trace_update(None, readings("M1", START, 300, v=lambda i: 230 + (i % 9) / 3))
    assert len(trace_points(ring)) == TRACE_POINTS and len(ring["c"]) == (TRACE_POINTS - 1) * 8
    assert len(json.dumps(ring)) < 900


def test_a_figure_beyond_the_compact_range_is_kept_as_a_list_until_it_leaves_the_ring():
    rs = readings("M1", START, 4) + [reading("M1", START + 5 * 900, v_avg=5000.0, v_min=-4000.0, v_max=1e30)]
    rs += readings("M1", START + 5 * 900, 3)
    ring, old = trace_update(None, rs), old_trace_update(None, rs)
    assert type(ring["c"]) is list and trace_points(ring) == old_trace_points(old)
    more = readings("M1", START + 8 * 900, TRACE_POINTS)
    ring, old = trace_update(ring, more), old_trace_update(old, more)
    assert type(ring["c"]) is str and trace_points(ring) == old_trace_points(old)


# ------------------------------------------------------------------------------------- voltage and usage

@pytest.mark.parametrize("seed", range(6))
def test_voltage_decides_the_same_from_a_state_written_before_runs(seed):
    det, ctx = VoltageDetector(), context(customer(nominal_voltage=230))
    rs = [r for r in messy(seed) if r.v_avg is None or 150 < r.v_avg < 300]
    a = b = None
    for k, batch in enumerate(batches(rs, seed)):
        a, fa = det.process(a, batch, ctx)
        b, fb = det.process(old_voltage_state(b) if b is not None and k % 3 else b, batch, ctx)
        assert fa == fb and a == b


def test_daily_usage_closes_the_same_days_from_a_version_1_state():
    tz = "Europe/Paris"
    rs = readings("M1", START, 4 * 24 * 5, kwh=lambda i: 0.1 + (i % 13) / 50)
    rs = rs[:100] + rs[98:102] + rs[100:]                   # repeats
    a = b = None
    days_a, days_b = [], []
    for k in range(0, len(rs), 16):
        a, da = accumulate(a, rs[k:k + 16], tz)
        b, db = accumulate(old_usage_state(b) if b is not None else None, rs[k:k + 16], tz)
        days_a += da
        days_b += db
        assert a == b
    assert days_a == days_b and len(days_a) == 5 and a["duplicates"] == 4


# ------------------------------------------------------------------------------------------------ the size

def test_a_meter_state_after_three_days_is_under_2_kb():
    """Every meter detector, daily usage and the ring after three days of 15-minute readings in batches of
    16, as the worker keeps it (its ``_last_ts`` included)."""
    entry = customer(nominal_voltage=230, timezone="Europe/Paris")
    stage = MeterStage(enabled())
    rs = readings(entry["meter_id"], START, 3 * 96, v=lambda i: round(229 + (i % 11) / 4, 1),
                  kwh=lambda i: 0.1 + (i % 7) / 40)
    st = None
    for k in range(0, len(rs), 16):
        st, _, _ = stage.process(st, rs[k:k + 16], entry)
    st["_last_ts"] = rs[-1].ts
    sizes = {k: len(json.dumps(v)) for k, v in st.items()}
    assert {"_trace", "_usage", "voltage"} <= set(sizes) and len(json.dumps(st)) <= 2048, sizes


@pytest.mark.parametrize("seed", range(60))
def test_a_time_set_packs_what_pack_times_packs(seed):
    """TimeSet (add, then packed) against a plain set: in order, with repeats and late ones, and with the
    newest / after cuts the detectors make."""
    rnd = random.Random(seed)
    step = rnd.choice((60, 900))
    start = [] if seed % 5 == 0 else pack_times(range(START, START + step * rnd.randrange(1, 120), step))
    if seed % 7 == 1:
        start = unpack_times(start)[::-1]                     # a plain list, newest first (the format before)
    ts = TimeSet(start)
    plain = set(unpack_times(start))
    t = max(plain, default=START)
    on_time = seed % 3 == 0                                   # a meter on time: no jumps, repeats or late ones
    for _ in range(rnd.randrange(40)):
        t += step if on_time or rnd.random() < 0.9 else rnd.choice((step * 3, 17))
        x = t if on_time or rnd.random() < 0.85 else rnd.choice(sorted(plain | {t}))
        assert ts.add(x) == (x not in plain)
        plain.add(x)
    newest = rnd.choice((None, 0, 2, 96))
    after = rnd.choice((None, START - 1, START + step * rnd.randrange(150)))
    kept = [x for x in plain if after is None or x > after]
    assert ts.packed(newest, after) == pack_times(kept, newest)


def test_a_meter_state_as_the_table_held_it_before_goes_on_as_the_new_one():
    """The whole meter state in the formats before (the ring as floats, plain timestamp lists, version 1
    usage), as a running deployment's meter-state table holds it: the meter stage takes it and gives the
    same findings, days and state as from the new one."""
    entry = customer(nominal_voltage=230, timezone="Europe/Paris")
    stage = MeterStage(enabled())
    rs = readings(entry["meter_id"], START, 3 * 96, v=lambda i: 196.0 if 202 < i < 212 else 230.0 + (i % 5),
                  kwh=lambda i: 0.1 + (i % 7) / 40)
    new = None
    ring = None
    for k in range(0, 200, 16):
        new, _, _ = stage.process(new, rs[k:k + 16], entry)
        ring = old_trace_update(ring, rs[k:k + 16])
    before = {**new, "_trace": ring, "voltage": old_voltage_state(new["voltage"]),
              "_usage": old_usage_state(new["_usage"])}
    assert json.loads(json.dumps(before)) == before and "q" in before["_trace"] and before["_usage"]["v"] == 1
    found = []
    for k in range(200, len(rs), 16):
        a, fa, da = stage.process(new, rs[k:k + 16], entry)
        b, fb, db = stage.process(before, rs[k:k + 16], entry)
        assert (fa, da) == (fb, db) and a == b
        found += fa
        new = before = a
    assert any(f["status"] == "trace" for f in found) and any(f["kind"] == "undervoltage" for f in found)
