"""CPU of the detection stages alone (detectors/pipeline.py, no Kafka, no decoding), per detector set.

    python -m benchmarks.detect_stages [--meters 512] [--days 3] [--batch 16]

Runs the backtest's in-process pipeline over a clean simulated utility, once with the voltage detector
alone, once with every reading and event detector, once with all installed detectors, and prints CPU
(``time.process_time``) per reading and per message. Compare with ``benchmarks.worker_throughput`` for
what Faust and Kafka add.
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import sim_for
from detectors.pipeline import Pipeline
from detectors.registry import enabled


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.detect_stages", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--meters", type=int, default=512)
    p.add_argument("--days", type=float, default=3.0)
    p.add_argument("--batch", type=int, default=16)
    args = p.parse_args(argv)
    sim = sim_for(args.meters, args.days, args.batch)
    records = list(sim.timed_records())
    messages = sum(1 for r in records if r[1] == "meter.readings")
    readings = sum(len(r[3]) for r in records if r[1] == "meter.readings")
    every = enabled()
    sets = {"voltage": [d for d in every if d.name == "voltage"],
            "readings and events": [d for d in every if d.input != "daily"],
            "all": every}
    print(f"{len(sim.customers())} meters, {args.days:g} days, {args.batch} readings per message: "
          f"{messages} messages, {readings} readings")
    for label, dets in sets.items():
        pipe = Pipeline(dets)
        t0 = time.process_time()
        pipe.run(records)
        cpu = time.process_time() - t0
        print(f"{label:<20} ({', '.join(d.name for d in dets)}): {cpu / readings * 1e6:6.1f} µs per reading, "
              f"{cpu / messages * 1e6:7.0f} µs per message, {len(pipe.alerts)} alerts, {pipe.fits} fits")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
