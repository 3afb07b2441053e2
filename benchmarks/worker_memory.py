"""One ``gridwatch worker`` with many meters: its resident memory, measured rather than estimated.

    python -m benchmarks.worker_memory                      # 64,000 meters, 2 hours of readings, 8 per message
    python -m benchmarks.worker_memory --meters 8000 --hours 1

Publishes a clean simulated utility of ``--meters`` meters under a fresh topic prefix (customers first, the
meter directory warmed by a first worker, as in ``benchmarks.throughput``), then ``--hours`` of 15-minute
readings (one message per meter per ``--batch`` readings), and runs one worker on the backlog until it has
committed all of it. It prints the worker's VmRSS and peak VmHWM (from /proc) at the end, and the meter
states' figures for ``--per`` meters (``benchmarks.throughput --state-only``). Two runs of different sizes
give the worker's memory per meter.

The simulator has fiction phone numbers for 71,100 customers, hence the default of 64,000 meters rather than
100,000. Its meters' states have seen ``--hours`` of readings, less than a running deployment's (a day in
the ring); the states' own figures, after days of readings, are printed beside. Everything it created is
deleted at the end (topics, groups, the temporary run directory).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import time
import uuid
import warnings

from benchmarks.common import code_version, loadavg, sim_for
from benchmarks.throughput import Setup, measure_states, publish_backlog, report_states, run_workers
from benchmarks.worker_throughput import delete_benchmark_topics


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.worker_memory", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--meters", type=int, default=64_000)
    p.add_argument("--hours", type=float, default=2.0)
    p.add_argument("--batch", type=int, default=8, help="readings per meter.readings message (default 8)")
    p.add_argument("--per", type=int, default=100_000, help="meters of the states' figures (default 100,000)")
    p.add_argument("--poll", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=3600)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.getLogger("kafka").setLevel(logging.ERROR)

    t_begin = time.monotonic()
    base_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for var in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER", "TWILIO_MESSAGING_SERVICE_SID",
                "GRIDWATCH_WORKER_ID"):
        base_env.pop(var, None)
    setup = Setup(f"bench{uuid.uuid4().hex[:8]}m.", base_env)   # "bench": what the clean-up may delete
    sim = sim_for(args.meters, args.hours / 24, args.batch, scenario="clean")
    counts = sim.counts()
    print(f"worker memory: {sim.M:,} meters x {args.hours:g} hours, {args.batch} readings per message = "
          f"{counts['readings']:,} readings; {code_version()}; load average {loadavg()}", flush=True)
    try:
        end = publish_backlog(setup, sim, args.timeout, args.poll)
        r = run_workers(setup, 1, end, args.timeout, args.poll)
        rss, hwm = r["mem"][0]
        print(f"one worker, {sim.M:,} meters, {r['messages']:,} messages at {r['msgs_s']:,.0f} messages/s "
              f"(load average {r['load']}): VmRSS {rss / 1024:,.0f} MiB at the end, peak VmHWM {hwm / 1024:,.0f} MiB "
              f"(measured)", flush=True)
        mem = measure_states(args.per, 3.0, {**base_env, "GRIDWATCH_RUN_DIR": str(setup.run_dir)})
        report_states(mem, None)
        return 0
    finally:
        with contextlib.suppress(Exception):
            delete_benchmark_topics(setup.settings, setup.prefix)
        shutil.rmtree(setup.run_dir, ignore_errors=True)
        print(f"total benchmark time {time.monotonic() - t_begin:.1f} s, load average {loadavg()}")


if __name__ == "__main__":
    sys.exit(main())
