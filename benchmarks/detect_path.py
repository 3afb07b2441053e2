"""CPU cost of the worker's per-message detect path, without Kafka or Faust.

What the detect stage (``streams/detect.py``) does for one ``meter.readings`` message, step by step, on
messages the simulator would publish (JSON arrays of one meter's readings, ``--batch-sizes`` readings per message):

    decode   gridwatch.contract.decode_readings(key, value)  (UTF-8, json.loads, JSON Schema per reading,
             RFC 3339 -> epoch per reading, Reading objects)
    tables   the JSON work of the two table reads and one table write per message, as Faust's "json"
             codec (faust.utils.json) does it: loads of the meter's directory entry (meters table) and of
             its detector state (voltage table), dumps of the new state TWICE (once for the RocksDB store,
             once for the changelog message, see faust Table.on_key_set); plus profile_for
    detect   VoltageDetector().process(state, readings, profile)
    status   the status message for the meter's transformer, encoded as the worker does (one per message)

Not included: what Faust itself adds per message (consumer, stream/event bookkeeping, RocksDB get/put,
changelog send, offset acks) and the producer; ``benchmarks.worker_throughput`` measures all of that.

    python -m benchmarks.detect_path --quick
    python -m benchmarks.detect_path --meters 480 --days 3 --batch-sizes 1,4,16,96 --repeat 3
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time

from benchmarks.common import code_version, loadavg, sim_for


def _json_codec():
    """The JSON functions Faust's "json" codec uses for table values (stdlib json unless orjson is there)."""
    try:
        from faust.utils import json as fjson

        return fjson.loads, fjson.dumps, "faust.utils.json"
    except Exception:  # noqa: BLE001 - faust missing: the stdlib equivalent
        return json.loads, lambda o: json.dumps(o, separators=(",", ":")), "json"


def build_messages(meters: int, days: float, batch: int, seed: int, scenario: str | None):
    """(messages as (key bytes, value bytes), directory entries by meter, readings count, simulator)."""
    from gridwatch.config import READINGS
    from devtools.simulator import encode_value

    sim = sim_for(meters, days, batch, seed=seed, scenario=scenario)
    # the meters table holds directory entries as JSON (the table's value codec)
    entries = {c["meter_id"]: json.dumps({k: c[k] for k in ("customer_id", "meter_id", "transformer_id",
                                                            "feeder_id", "nominal_voltage")}).encode()
               for c in sim.customers()}
    msgs, n = [], 0
    for _, topic, key, value in sim.timed_records(include_customers=False):
        if topic == READINGS:
            msgs.append((key.encode("utf-8"), encode_value(value)))
            n += len(value)
    return msgs, entries, n, sim


def run_path(msgs, entries, jloads, jdumps) -> dict[str, float]:
    """One pass over ``msgs`` with fresh state; nanoseconds per stage and wall, plus transitions seen."""
    from detectors.standards import profile_for
    from detectors.voltage import VoltageDetector
    from gridwatch.contract import decode_readings
    from gridwatch.contract import dumps as _dumps

    detector = VoltageDetector()
    states: dict[str, bytes] = {}
    pc = time.perf_counter_ns
    t_dec = t_state = t_det = t_status = 0
    n_transitions = n_status = 0
    partition = 0
    w0 = pc()
    for key, value in msgs:
        t0 = pc()
        readings = decode_readings(key, value)
        t1 = pc()
        meter_id = readings[0].meter_id
        entry = jloads(entries[meter_id])
        profile = profile_for(entry["nominal_voltage"])
        raw = states.get(meter_id)
        before = jloads(raw) if raw is not None else None
        t2 = pc()
        after, transitions = detector.process(before, readings, profile)
        t3 = pc()
        states[meter_id] = jdumps(after)  # the RocksDB store
        jdumps(after)  # the changelog message
        t4 = pc()
        if after["last_ts"] is not None and (before is None or after["last_ts"] != before["last_ts"]
                                             or transitions):
            _dumps({
                "type": "status", "meter_id": meter_id, "customer_id": entry["customer_id"],
                "partition": partition, "first_ts": min(r.ts for r in readings), "ts": after["last_ts"],
                "transitions": transitions,
                "profile": {"name": profile.name, "nominal": profile.nominal, "low": profile.low,
                            "high": profile.high},
            })
            n_status += 1
        t5 = pc()
        n_transitions += len(transitions)
        t_dec += t1 - t0
        t_state += (t2 - t1) + (t4 - t3)
        t_det += t3 - t2
        t_status += t5 - t4
    wall = pc() - w0
    return {"decode": t_dec, "tables": t_state, "detect": t_det, "status": t_status, "wall": wall,
            "transitions": n_transitions, "status_msgs": n_status}


def decode_breakdown(msgs) -> dict[str, float]:
    """Nanoseconds of the parts of decode_readings, each timed on its own over all messages."""
    from gridwatch.contract import check, decode_readings, parse_ts

    pc = time.perf_counter_ns
    t0 = pc()
    for key, value in msgs:
        decode_readings(key, value)
    total = pc() - t0

    t0 = pc()
    parsed = [json.loads(value.decode("utf-8")) for _, value in msgs]
    t_loads = pc() - t0

    t0 = pc()
    for v in parsed:
        check("meter.readings", v)
    t_schema = pc() - t0

    stamps = [r["ts"] for v in parsed for r in (v if isinstance(v, list) else [v])]
    t0 = pc()
    for s in stamps:
        parse_ts(s)
    t_ts = pc() - t0
    return {"total": total, "utf8+json.loads": t_loads, "schema check": t_schema, "parse_ts": t_ts,
            "rest (Reading, key check)": max(0, total - t_loads - t_schema - t_ts)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.detect_path", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--meters", type=int, default=480,
                   help="meters (default 480; rounded up to 16-meter steps: 2 feeders x 8 meters/transformer)")
    p.add_argument("--days", type=float, default=3.0, help="simulated days of 15-minute readings (default 3)")
    p.add_argument("--batch-sizes", default="1,4,16,96",
                   help="readings per message, comma-separated (default 1,4,16,96)")
    p.add_argument("--repeat", type=int, default=3, help="passes per batch size; the median is shown (default 3)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--scenario", default=None,
                   help="simulator scenario (default: none = clean, no transitions; 'demo' adds two faults)")
    p.add_argument("--no-breakdown", action="store_true", help="skip the decode breakdown table")
    p.add_argument("--quick", action="store_true",
                   help="192 meters x 1 day, one pass (well under 20 s); explicit --meters/--days/--repeat win")
    args = p.parse_args(argv)
    if args.quick:
        given = set(a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:]))
        if "--meters" not in given:
            args.meters = 192
        if "--days" not in given:
            args.days = 1.0
        if "--repeat" not in given:
            args.repeat = 1
    sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
    jloads, jdumps, jname = _json_codec()

    t_begin = time.monotonic()
    print(f"detect path, CPU only: Python {platform.python_version()} on {platform.machine()}, "
          f"load average {loadavg()}, state codec {jname}, median of {args.repeat} pass(es); {code_version()}")
    rows, breakdowns = [], []
    for b in sizes:
        t0 = time.monotonic()
        msgs, entries, n_read, sim = build_messages(args.meters, args.days, b, args.seed, args.scenario)
        gen_s = time.monotonic() - t0
        if not msgs:
            print(f"batch {b}: no messages")
            continue
        passes = []
        for _ in range(max(1, args.repeat)):
            gc.collect()
            passes.append(run_path(msgs, entries, jloads, jdumps))
        med = {k: statistics.median(r[k] for r in passes) for k in passes[0]}
        rows.append((b, len(msgs), n_read, med))
        if not args.no_breakdown:
            bd = [decode_breakdown(msgs) for _ in range(max(1, args.repeat))]
            breakdowns.append((b, n_read, {k: statistics.median(r[k] for r in bd) for k in bd[0]}))
        print(f"  batch {b:>3}: {sim.M} meters, {len(msgs)} messages, {n_read} readings "
              f"(generated in {gen_s:.1f} s), {med['transitions']:.0f} transitions", flush=True)

    print()
    print(f"{'batch':>5} {'messages/s':>11} {'readings/s':>11} | {'µs/reading:':<11} {'decode':>7} {'tables':>7} "
          f"{'detect':>7} {'status':>7} {'total':>7} | {'µs/message':>10}")
    for b, n_msg, n_read, m in rows:
        secs = m["wall"] / 1e9
        per = lambda k: m[k] / 1e3 / n_read  # noqa: E731
        print(f"{b:>5} {n_msg / secs:>11,.0f} {n_read / secs:>11,.0f} | {'':<11} {per('decode'):>7.2f} "
              f"{per('tables'):>7.2f} {per('detect'):>7.2f} {per('status'):>7.2f} {per('wall'):>7.2f} | "
              f"{m['wall'] / 1e3 / n_msg:>10.1f}")
    if breakdowns:
        keys = [k for k in breakdowns[0][2] if k != "total"]
        print()
        print("decode_readings, µs per reading: " + ", ".join(keys) + " (each timed on its own)")
        print(f"{'batch':>5} " + " ".join(f"{k[:16]:>16}" for k in keys) + f" {'total':>8}")
        for b, n_read, d in breakdowns:
            print(f"{b:>5} " + " ".join(f"{d[k] / 1e3 / n_read:>16.2f}" for k in keys)
                  + f" {d['total'] / 1e3 / n_read:>8.2f}")
    print(f"\n(one core, single thread; total run {time.monotonic() - t_begin:.1f} s; load average now {loadavg()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
