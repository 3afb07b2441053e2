"""One run, one broker, one backlog: the raw consume limit, one worker, two workers, and the worker's memory.

    python -m benchmarks.throughput                   # 1,024 meters x 3 days, 16 readings per message
    python -m benchmarks.throughput --batch 1 --days 1   # one reading per message
    python -m benchmarks.throughput --state-meters 100000   # the memory figure for 100,000 meters (default)
    python -m benchmarks.throughput --state-only   # only the meter states' figures (no broker, ~1 minute)

1. Simulates a clean utility (no faults, so no SMS) and publishes the SAME backlog under two fresh topic
   prefixes (``bench<random>a.`` and ``...b.``), each with its customers; one warm-up worker per prefix
   builds the meter directory first (as on a long-running deployment), then the readings are published.
2. **Raw limit**: a bare aiokafka consumer (no group) reads every ``meter.readings`` message of prefix a
   and ``json.loads`` it, as fast as it can: what one process can do before any processing.
3. **One worker** (``python -m gridwatch.cli worker``, every detector) on prefix a; **two workers** (two
   processes, their own state directories and group instance ids, one consumer group) on prefix b. Each is
   timed by its group's committed offsets on ``meter.readings``, between the first and the last commit.
4. Memory: the resident set (VmRSS, and its peak VmHWM) of the one worker at the end of its run; and, in a
   child process of its own, what the meter states of ``--state-meters`` meters cost in memory (the detect
   stage's in-memory states, streams/detect.py) and as JSON (the table and changelog), built from real
   states after ``--state-days`` (3) days of readings.

Everything it created is deleted at the end (topics, groups, temporary run directories). The machine may
be shared: the load average is printed with every figure, and the ratios are within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

from benchmarks.common import code_version, loadavg, machine_cpu, proc_cpu_seconds, sim_for
from benchmarks.worker_throughput import Offsets, Worker, broker_pid, delete_benchmark_topics, free_port, wait_caught_up


def rss_kb(pid: int) -> tuple[int | None, int | None]:
    """(VmRSS, VmHWM) of a process in KiB, from /proc."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    except OSError:
        pass
    return out.get("VmRSS"), out.get("VmHWM")


class Setup:
    """One topic prefix with its own run directory and the backlog on it."""

    def __init__(self, prefix: str, base_env: dict):
        from gridwatch.config import Settings

        self.prefix = prefix
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"gridwatch-{prefix.rstrip('.')}-"))
        self.settings = dataclasses.replace(Settings(), topic_prefix=prefix, run_dir=self.run_dir,
                                            sandbox_url=f"http://127.0.0.1:{free_port()}",
                                            twilio_account_sid=None, twilio_auth_token=None)
        self.env = {**base_env, "GRIDWATCH_TOPIC_PREFIX": prefix, "GRIDWATCH_SANDBOX_URL": self.settings.sandbox_url}

    def worker_env(self, n: int) -> dict:
        """Worker ``n``: its own state directory and group instance id (two of them are two hosts)."""
        run = self.run_dir / f"w{n}"
        run.mkdir(exist_ok=True)
        return {**self.env, "GRIDWATCH_RUN_DIR": str(run), "GRIDWATCH_WORKER_ID": f"w{n}"}


def publish_backlog(setup: Setup, sim, timeout: float, poll: float) -> int:
    from gridwatch import config as names
    from devtools.simulator import TopicSink, make_producer, publish
    from streams.topics import create_topics

    create_topics(setup.settings)
    offsets = Offsets(setup.settings)
    producer = make_producer(setup.settings.bootstrap_list)
    try:
        sink = TopicSink(producer, setup.settings)
        customers = [(sim.start, names.CUSTOMERS, c["customer_id"], c) for c in sim.customers()]
        publish(customers, sink, progress=False, flush_after=None)
        warm = Worker(setup.worker_env(1), setup.run_dir / "warmup.log")
        try:
            secs = wait_caught_up(offsets, warm, (names.CUSTOMERS, names.METER_DIRECTORY, names.METER_STATUS),
                                  timeout, poll, f"warm-up {setup.prefix}")
        finally:
            warm.stop()
        t0 = time.monotonic()
        sent = publish(sim.timed_records(include_customers=False), sink, progress=False, flush_after=None)
        print(f"{setup.prefix}: directory warm after {secs:.1f} s; {sent.get(names.READINGS, 0)} reading messages "
              f"published in {time.monotonic() - t0:.1f} s", flush=True)
        return offsets.end(names.READINGS)
    finally:
        with contextlib.suppress(Exception):
            producer.close(timeout=10)
        offsets.close()


async def raw_limit(settings, expected: int) -> tuple[int, int, float, float]:
    """A bare aiokafka consumer reading and ``json.loads``-ing every readings message:
    (messages, readings, wall seconds, CPU seconds of this process)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from gridwatch import config as names

    topic = settings.topic(names.READINGS)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_list, enable_auto_commit=False,
                                group_id=None, max_partition_fetch_bytes=4 << 20, fetch_max_bytes=64 << 20)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        msgs = readings = 0
        t0 = c0 = None
        while msgs < expected:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10000)
            if t0 is None and batch:  # from the first fetch on: the connection's start is not reading
                t0, c0 = time.monotonic(), time.process_time()
            for records in batch.values():
                for rec in records:
                    value = json.loads(rec.value)
                    readings += len(value) if isinstance(value, list) else 1
                    msgs += 1
        return msgs, readings, time.monotonic() - t0, time.process_time() - c0
    finally:
        await consumer.stop()


def cores(r: dict) -> str:
    """Where the CPU went during a timed window: the workers, the local broker, the whole machine."""
    broker = "" if r["broker_cores"] is None else f", the broker {r['broker_cores']:.2f}"
    return (f"CPU in cores: the workers {r['workers_cores']:.2f}{broker}; the machine {100 * r['machine_busy']:.0f} % "
            f"busy over {os.cpu_count()} cores")


def run_workers(setup: Setup, count: int, end: int, timeout: float, poll: float) -> dict:
    """``count`` worker processes on one backlog until ``meter.readings`` is committed to its end.

    Timed from the first commit after the group is Stable with all ``count`` members: the workers start
    together, and the first to join takes every partition until the others join, so what is committed
    before that measures one worker and a rebalance, not ``count``."""
    from gridwatch import config as names

    offsets = Offsets(setup.settings)
    workers = [Worker(setup.worker_env(i + 1), setup.run_dir / f"worker{i + 1}.log") for i in range(count)]
    started = time.monotonic()
    first = last = stable = None
    prev = c_first = 0
    mem: list[tuple[int | None, int | None]] = []
    cpu = lambda: sum(w.cpu() or 0.0 for w in workers)  # noqa: E731
    broker = broker_pid()  # a broker this project started on this machine shares its cores
    try:
        while True:
            for w in workers:
                if not w.alive():
                    raise RuntimeError(f"a worker exited with {w.proc.returncode}:\n{w.tail()}")
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"not caught up after {timeout:.0f} s:\n{workers[0].tail()}")
            if stable is None and offsets.stable_members() == count:
                stable = time.monotonic()
            c = offsets.committed(names.READINGS)[names.READINGS]
            if c != prev:
                last = (time.monotonic(), cpu(), c, (broker and proc_cpu_seconds(broker)) or 0.0, machine_cpu())
                if first is None and stable is not None:
                    first, c_first = last, c
                prev = c
            if c >= end:
                mem = [rss_kb(w.proc.pid) for w in workers]
                break
            time.sleep(poll)
        if first is None:
            raise RuntimeError("the backlog was committed before the group was stable: use a larger backlog (--days)")
        elapsed = last[0] - first[0]
        done = prev - c_first
        if elapsed <= 0 or done <= 0:
            raise RuntimeError("the whole backlog was committed at once: use a larger backlog (--days)")
        (busy0, total0), (busy1, total1) = first[4], last[4]
        return {"msgs_s": done / elapsed, "cpu_per_msg": (last[1] - first[1]) / done, "window_s": elapsed,
                "messages": done, "total_s": last[0] - started, "stable_s": stable - started, "mem": mem,
                "workers_cores": (last[1] - first[1]) / elapsed,
                "broker_cores": (last[3] - first[3]) / elapsed if broker else None,
                "machine_busy": (busy1 - busy0) / max(1e-9, total1 - total0), "load": loadavg()}
    finally:
        for w in workers:
            w.stop()
        offsets.close()


def state_memory(meters: int, days: float = 3.0) -> dict:
    """In this (fresh) process: the meter states of ``meters`` meters, made from real states after ``days``
    days of 15-minute readings in messages of 16 (64 simulated meters, each state copied by a JSON round
    trip, so nothing is shared), with the ``_last_ts`` the worker adds (streams/worker.py)."""
    from detectors.pipeline import MeterStage, _reading, directory_entry
    from detectors.registry import enabled

    sim = sim_for(64, days, 16, scenario="clean")
    entries = {c["meter_id"]: directory_entry(c) for c in sim.customers()}
    stage = MeterStage(enabled())
    states: dict[str, dict] = {}
    for _t, topic, _key, value in sim.timed_records(include_customers=False):
        if topic != "meter.readings":
            continue
        rs = [_reading(v) for v in (value if isinstance(value, list) else [value])]
        m = rs[0].meter_id
        states[m], _, _ = stage.process(states.get(m), rs, entries[m])
        states[m]["_last_ts"] = max(r.ts for r in rs)
    texts = [json.dumps(s) for s in states.values()]
    per_part: dict[str, float] = {}
    for s in states.values():
        for k, v in s.items():
            per_part[k] = per_part.get(k, 0) + len(json.dumps(v)) / len(states)
    from faust.utils import json as table_json          # what the worker's table codec decodes with (orjson)

    before = rss_kb(os.getpid())[0] or 0
    cache = {f"M{i:07d}": table_json.loads(texts[i % len(texts)]) for i in range(meters)}
    after = rss_kb(os.getpid())[0] or 0
    assert len(cache) == meters
    return {"meters": meters, "days": days, "rss_kb_before": before, "rss_kb_after": after,
            "bytes_per_meter_memory": (after - before) * 1024 / meters,
            "json_bytes_per_meter": sum(len(t) for t in texts) / len(texts),
            "json_bytes_by_part": {k: round(v) for k, v in sorted(per_part.items())}}


def measure_states(meters: int, days: float, env: dict) -> dict:
    """:func:`state_memory` in a fresh child process (its RSS growth is the states' alone)."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.throughput", "--state-memory-only", str(meters),
                          "--state-days", str(days)], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def report_states(mem: dict, rss: int | None) -> None:
    """The meter states' figures; with ``rss`` (KiB, a worker's at the end of its run) the estimate for a
    worker with ``mem["meters"]`` meters."""
    from streams.detect import STATE_CACHE_METERS

    grow = (mem["rss_kb_after"] - mem["rss_kb_before"]) / 1024
    print(f"meter states after {mem['days']:g} days of readings, {mem['meters']:,} meters in memory: +{grow:,.0f} MiB "
          f"({mem['bytes_per_meter_memory']:,.0f} bytes per meter as Python objects); as JSON (table and changelog) "
          f"{mem['json_bytes_per_meter']:,.0f} bytes per meter: {mem['json_bytes_by_part']}")
    kept = min(mem["meters"], STATE_CACHE_METERS)
    cache = kept * mem["bytes_per_meter_memory"] / 2**20
    print(f"a worker with {mem['meters']:,} meters keeps at most {kept:,} of their states in memory "
          f"(GRIDWATCH_STATE_CACHE_METERS), ~{cache:,.0f} MiB; the rest stays in RocksDB on disk")
    if rss:
        print(f"estimate: ~{rss / 1024 + cache:,.0f} MiB RSS (this run's worker, plus those states). All "
              f"{mem['meters']:,} in memory would take {rss / 1024 + grow:,.0f} MiB")


def main(argv: list[str] | None = None) -> int:  # noqa: C901 - one linear script
    p = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--meters", type=int, default=1024)
    p.add_argument("--days", type=float, default=3.0)
    p.add_argument("--batch", type=int, default=16, help="readings per meter.readings message (default 16)")
    p.add_argument("--workers", type=int, default=2,
                   help="the scale-out run's worker processes (default 2; 0: no scale-out run, for quick A/B pairs)")
    p.add_argument("--state-meters", type=int, default=100_000,
                   help="meters for the memory figure of the meter states (default 100,000; 0: skip)")
    p.add_argument("--poll", type=float, default=0.25)
    p.add_argument("--timeout", type=float, default=1200)
    p.add_argument("--state-days", type=float, default=3.0,
                   help="days of readings the meter states of the memory figure have seen (default 3)")
    p.add_argument("--state-only", action="store_true",
                   help="only the meter states' figures (no broker, no workers; about a minute)")
    p.add_argument("--state-memory-only", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.state_memory_only is not None:
        print(json.dumps(state_memory(args.state_memory_only, args.state_days)))
        return 0
    if args.state_only:
        print(f"meter states: {code_version()}; load average {loadavg()}", flush=True)
        report_states(measure_states(args.state_meters or 100_000, args.state_days, dict(os.environ)), None)
        return 0
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.getLogger("kafka").setLevel(logging.ERROR)

    t_begin = time.monotonic()
    tag = f"bench{uuid.uuid4().hex[:8]}"
    base_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for var in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER", "TWILIO_MESSAGING_SERVICE_SID",
                "GRIDWATCH_WORKER_ID"):
        base_env.pop(var, None)
    one, many = Setup(f"{tag}a.", base_env), Setup(f"{tag}b.", base_env)
    sim = sim_for(args.meters, args.days, args.batch, scenario="clean")
    counts = sim.counts()
    n_msgs = counts["messages"] - counts["customers"] - counts["events"]
    rpm = counts["readings"] / max(1, n_msgs)
    print(f"throughput: {sim.M} meters x {args.days:g} days, {args.batch} readings per message = "
          f"{counts['readings']} readings in {n_msgs} messages; broker {one.settings.bootstrap_servers}, "
          f"{one.settings.partitions} partitions, {os.cpu_count()} cores; {code_version()}; load average {loadavg()}",
          flush=True)
    rows = []
    try:
        end_a = publish_backlog(one, sim, args.timeout, args.poll)
        end_b = publish_backlog(many, sim, args.timeout, args.poll) if args.workers else end_a
        assert end_a == end_b == n_msgs, (end_a, end_b, n_msgs)

        load = loadavg()
        msgs, readings, secs, cpu = asyncio.run(raw_limit(one.settings, end_a))
        raw = {"msgs_s": msgs / secs, "cpu_per_msg": cpu / msgs, "load": load}
        print(f"raw limit: {msgs} messages, {readings} readings in {secs:.1f} s (load average {load})", flush=True)

        r1 = run_workers(one, 1, end_a, args.timeout, args.poll)
        print(f"one worker: {r1['msgs_s']:,.0f} messages/s ({cores(r1)}; load average {r1['load']})", flush=True)
        r2 = run_workers(many, args.workers, end_b, args.timeout, args.poll) if args.workers else None
        if r2:
            print(f"{args.workers} workers: {r2['msgs_s']:,.0f} messages/s over {r2['messages']:,} messages from the "
                  f"group's stable point ({r2['stable_s']:.1f} s after the start; {cores(r2)}; load average "
                  f"{r2['load']})", flush=True)

        mem = None
        if args.state_meters:
            mem = measure_states(args.state_meters, args.state_days,
                                 {**base_env, "GRIDWATCH_RUN_DIR": str(one.run_dir)})

        def row(name, r, note=""):
            rows.append((name, r["msgs_s"], r["msgs_s"] * rpm, r["cpu_per_msg"] * 1e6, r["load"], note))

        row("raw limit: aiokafka + json.loads, one process", raw)
        row("one `gridwatch worker`, every detector", r1, f"{100 * r1['msgs_s'] / raw['msgs_s']:.1f} % of the raw limit")
        if r2:
            row(f"{args.workers} `gridwatch worker` processes, one group", r2,
                f"{r2['msgs_s'] / r1['msgs_s']:.2f}x one worker")
        print()
        print(f"| {rpm:g} readings/message | messages/s | readings/s | CPU µs per message | load average | |")
        print("|---|---:|---:|---:|---|---|")
        for name, ms, rs, us, ld, note in rows:
            print(f"| {name} | {ms:,.0f} | {rs:,.0f} | {us:,.0f} | {ld} | {note} |")
        print()
        rss, hwm = r1["mem"][0]
        print(f"one worker's memory at the end of its run ({sim.M} meters): VmRSS {rss / 1024:.0f} MiB, "
              f"peak {hwm / 1024:.0f} MiB" if rss else "one worker's memory: not readable from /proc")
        if mem:
            report_states(mem, rss)
        return 0
    finally:
        for s in (one, many):
            with contextlib.suppress(Exception):
                delete_benchmark_topics(s.settings, s.prefix)
            shutil.rmtree(s.run_dir, ignore_errors=True)
        print(f"total benchmark time {time.monotonic() - t_begin:.1f} s, load average {loadavg()}; "
              f"benchmark process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
