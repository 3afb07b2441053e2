"""End-to-end throughput of one ``gridwatch worker`` on a real broker, reading a backlog.

1. Creates every gridwatch topic under a fresh prefix (``bench<random>.``) and a temporary run directory,
   so nothing else on the cluster is touched.
2. ``--directory warm`` (default): publishes the customers, runs the worker until the customers, the meter
   directory and the membership messages are consumed, stops it (SIGTERM). The meter directory is then in
   the worker's tables, as on a long-running deployment, and readings take the normal detect path.
   ``--directory cold``: no warm-up; customers and readings are published together, so the worker reads
   readings of meters whose directory entry has not arrived yet and parks them first.
3. Publishes the readings of a clean simulated utility (no faults, so no SMS) as fast as possible.
4. Starts ``python -m gridwatch.cli worker`` on that backlog and polls the committed offsets of its consumer
   group (the Faust app id, ``<prefix>gridwatch``) on ``meter.readings`` against the topic's end offsets
   until it has caught up, then on ``gridwatch.meter-status`` (the topology stage of the same worker).
5. Reports: messages/s and readings/s between the first and the last commit the worker made on
   ``meter.readings`` (the brief's measure); the startup time (process start to Faust's "Worker: Ready"
   log line, and to the first commit); the whole backlog from "Ready" until both ``meter.readings`` and
   ``gridwatch.meter-status`` are committed (the most robust figure: it includes the topology stage,
   which runs in the same process and costs about as much as the detect stage); the CPU seconds of the
   worker process from /proc (and of the broker when ``gridwatch kafka start`` runs it). Then it stops the
   worker (SIGTERM) and deletes the benchmark's topics (Faust's changelog topics included) and group.

Offsets are committed every ``broker_commit_interval`` (Faust's default 2.8 s), so the first and last
commit are each up to that late; the rate uses the messages committed BETWEEN them, which cancels most of
it, but a run of less than ~20 s of processing is still imprecise: use the default size or larger.

    python -m benchmarks.worker_throughput --quick
    python -m benchmarks.worker_throughput --meters 512 --days 7 --batch 16    # the default
    python -m benchmarks.worker_throughput --profile /tmp/worker.prof    # the worker under cProfile
    python -m benchmarks.worker_throughput --profile /tmp/w.pyisession --profiler pyinstrument
    python -m benchmarks.worker_throughput --py-spy /tmp/worker-stacks.txt    # sampled from outside

cProfile and pyinstrument hook every call and slow the worker 2-2.5x (and inflate call-heavy code such
as copy.deepcopy); py-spy samples from outside at ~1 % cost and gives the truer split. None of the three
profilers is a dependency of the project (cProfile is in the standard library).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import NamedTuple

from benchmarks.common import code_version, loadavg, machine_cpu, proc_cpu_seconds, sim_for

COMMIT_NOTE = "Faust commits every 2.8 s"
READY_LINE = "Worker]: Ready"  # Faust logs "[^<worker class>]: Ready" (ours is BoundedStopWorker)


class Snap(NamedTuple):
    t: float                 # time.monotonic()
    cpu: float | None        # worker CPU seconds
    broker: float | None     # broker CPU seconds
    m_busy: float            # machine busy CPU seconds (all cores)
    m_total: float           # machine total CPU seconds (all cores)


def scan_log(path: Path, pos: int, needle: str) -> tuple[int, bool]:
    """Read ``path`` from byte ``pos``; (new position, whether ``needle`` occurs in a complete line)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(pos)
            data = fh.read()
    except OSError:
        return pos, False
    cut = data.rfind(b"\n") + 1
    return pos + cut, needle.encode() in data[:cut]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Offsets:
    """Committed offsets of the worker's consumer group against the end offsets of a topic."""

    def __init__(self, settings):
        from kafka import KafkaConsumer
        from kafka.admin import KafkaAdminClient

        self.settings = settings
        self.group = settings.app_id
        self.admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_list, client_id="gridwatch-bench")
        self.consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_list, group_id=None,
                                      enable_auto_commit=False, client_id="gridwatch-bench-offsets")

    def partitions(self, name: str):
        from kafka import TopicPartition

        topic = self.settings.topic(name)
        return [TopicPartition(topic, p) for p in range(self.settings.partitions)]

    def end(self, name: str) -> int:
        return sum(self.consumer.end_offsets(self.partitions(name)).values())

    def committed(self, *names: str) -> dict[str, int]:
        """topic name (contract name) -> sum of the committed offsets of the group (0 when none yet)."""
        res = self.admin.list_group_offsets({self.group: None}).get(self.group, {}) or {}
        out = {n: 0 for n in names}
        wanted = {self.settings.topic(n): n for n in names}
        for tp, om in res.items():
            n = wanted.get(tp.topic)
            if n is not None and om is not None and om.offset is not None and om.offset >= 0:
                out[n] += om.offset
        return out

    def stable_members(self) -> int:
        """How many members the group has when it is Stable (0 while it rebalances or is empty)."""
        seen = self.admin.describe_groups([self.group])[self.group]
        return len(seen.get("members") or ()) if seen.get("group_state") == "Stable" else 0

    def close(self):
        with contextlib.suppress(Exception):
            self.consumer.close()
        with contextlib.suppress(Exception):
            self.admin.close()


class Worker:
    """``python -m gridwatch.cli worker`` as our child process (its own session), log to a file."""

    def __init__(self, env: dict, log: Path, profile: str | None = None, profiler: str = "cprofile"):
        argv = [sys.executable]
        if profile and profiler == "pyinstrument":
            argv += ["-m", "pyinstrument", "-r", "pyisession", "-o", profile]
        elif profile:
            argv += ["-m", "cProfile", "-o", profile]
        argv += ["-m", "gridwatch.cli", "worker"]
        self.log = log
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def cpu(self) -> float | None:
        return proc_cpu_seconds(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> float | None:
        """SIGTERM, SIGKILL after ``timeout``; returns the CPU seconds read just before it exited."""
        cpu = self.cpu()
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return cpu

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def last_progress(log: Path) -> dict[str, int]:
    """The worker's last ``progress: k=v, ...`` log line (its counters), as a dict."""
    found: dict[str, int] = {}
    try:
        for line in log.read_text(errors="replace").splitlines():
            if "progress: " in line:
                found = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line.split("progress: ", 1)[1])}
    except OSError:
        pass
    return found


def wait_caught_up(offsets: Offsets, worker: Worker, names: tuple[str, ...], timeout: float, poll: float,
                   what: str) -> float:
    """Wait until the group's committed offsets on every topic in ``names`` reach the end offsets."""
    t0 = time.monotonic()
    last_print = 0.0
    while True:
        if not worker.alive():
            raise RuntimeError(f"the worker exited with {worker.proc.returncode} during {what}:\n{worker.tail()}")
        ends = {n: offsets.end(n) for n in names}
        done = offsets.committed(*names)
        if all(done[n] >= ends[n] for n in names):
            return time.monotonic() - t0
        now = time.monotonic()
        if now - t0 > timeout:
            raise RuntimeError(f"{what}: not caught up after {timeout:.0f} s ({done} of {ends}):\n{worker.tail()}")
        if now - last_print >= 5:
            last_print = now
            print(f"  {what}: {now - t0:5.1f} s, committed " + ", ".join(f"{n} {done[n]}/{ends[n]}" for n in names),
                  flush=True)
        time.sleep(poll)


def broker_pid() -> int | None:
    """The broker started by ``gridwatch kafka start`` (the project's default run directory), if any."""
    try:
        from gridwatch.config import Settings
        from devtools.broker import managed_pid

        return managed_pid(Settings())
    except Exception:  # noqa: BLE001
        return None


def start_pyspy(pid: int, out: str, log: Path) -> subprocess.Popen:
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    if exe is None:
        raise RuntimeError("--py-spy needs py-spy: pip install py-spy (into the venv; it is not a dependency)")
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--rate", "100", "--format", "raw",
                             "--output", out], stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)


def stop_pyspy(proc: subprocess.Popen) -> None:
    """SIGINT makes py-spy write its output and exit."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def delete_benchmark_topics(settings, prefix: str) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (ours, Faust's changelogs included), and the group."""
    from kafka.admin import KafkaAdminClient

    assert prefix and prefix.startswith("bench"), prefix  # never anything but a benchmark's own prefix
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_list, client_id="gridwatch-bench-cleanup")
    try:
        names = sorted(t for t in admin.list_topics() if t.startswith(prefix))
        if names:
            admin.delete_topics(names, timeout_ms=30000, raise_errors=False)
        with contextlib.suppress(Exception):
            admin.delete_groups([settings.app_id])
        return names
    finally:
        admin.close()


def show_profile(path: str, profiler: str, top: int = 30) -> None:
    import pstats

    if not Path(path).exists():
        print(f"profile: {path} was not written (the worker did not exit through Python)")
        return
    if profiler == "pyinstrument":
        print(f"\n--- pyinstrument (sampling, wall time) of the measured worker ({path}) ---", flush=True)
        subprocess.run([sys.executable, "-m", "pyinstrument", "--load", path, "-r", "text", "--no-color",
                        "--unicode", "-p", "processor_options.filter_threshold=0.01"], check=False)
        return
    for key in ("tottime", "cumulative"):
        print(f"\n--- cProfile of the measured worker, top {top} by {key} ({path}) ---")
        pstats.Stats(path).sort_stats(key).print_stats(top)


def main(argv: list[str] | None = None) -> int:  # noqa: C901 - one linear script
    from gridwatch import config as names
    from gridwatch.config import Settings
    from devtools.simulator import TopicSink, make_producer, publish
    from streams.topics import create_topics

    p = argparse.ArgumentParser(prog="python -m benchmarks.worker_throughput",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--meters", type=int, default=512,
                   help="meters (default 512; rounded up to 16-meter steps: 2 feeders x 8 meters/transformer)")
    p.add_argument("--days", type=float, default=7.0, help="simulated days of 15-minute readings (default 7)")
    p.add_argument("--batch", type=int, default=16, help="readings per meter.readings message (default 16)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--directory", choices=("warm", "cold"), default="warm",
                   help="warm: the meter directory is in the worker's tables before the readings arrive "
                        "(default); cold: customers and readings published together, first start")
    p.add_argument("--poll", type=float, default=0.25, help="seconds between offset polls (default 0.25)")
    p.add_argument("--timeout", type=float, default=900, help="give up after this many seconds (default 900)")
    p.add_argument("--profile", metavar="FILE", default=None,
                   help="run the measured worker under cProfile, write the stats to FILE and print the top")
    p.add_argument("--profiler", choices=("cprofile", "pyinstrument"), default="cprofile",
                   help="with --profile: cProfile (deterministic, default) or pyinstrument (sampling; must be "
                        "installed in the venv, it is not a dependency)")
    p.add_argument("--py-spy", metavar="FILE", default=None, dest="pyspy",
                   help="sample the measured worker from outside with py-spy (100 Hz, from 'Ready' until caught "
                        "up; raw collapsed stacks to FILE) and print benchmarks.pyspy_summary of it. py-spy is "
                        "not a dependency: pip install py-spy into the venv to use this")
    p.add_argument("--keep", action="store_true", help="keep the topics and the run directory (for inspection)")
    p.add_argument("--quick", action="store_true",
                   help="384 meters x 3 days (about 35 s, under 90 s); explicit --meters/--days win")
    args = p.parse_args(argv)
    given = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:])}
    if args.quick:
        if "--meters" not in given:
            args.meters = 384
        if "--days" not in given:
            args.days = 3.0
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # kafka-python 3 on make_producer's lambdas
    logging.getLogger("kafka").setLevel(logging.ERROR)

    t_begin = time.monotonic()
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    run_dir = Path(tempfile.mkdtemp(prefix="gridwatch-bench-"))
    settings = dataclasses.replace(Settings(), topic_prefix=prefix, run_dir=run_dir,
                                   sandbox_url=f"http://127.0.0.1:{free_port()}",  # nothing listens: no SMS
                                   twilio_account_sid=None, twilio_auth_token=None)
    env = {**os.environ, "GRIDWATCH_TOPIC_PREFIX": prefix, "GRIDWATCH_RUN_DIR": str(run_dir),
           "GRIDWATCH_SANDBOX_URL": settings.sandbox_url, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "GRIDWATCH_PARTITIONS": str(settings.partitions), "PYTHONUNBUFFERED": "1"}
    for var in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER", "TWILIO_MESSAGING_SERVICE_SID"):
        env.pop(var, None)

    sim = sim_for(args.meters, args.days, args.batch, seed=args.seed, scenario="clean")
    counts = sim.counts()
    n_readings = counts["readings"]
    n_msgs = counts["messages"] - counts["customers"] - counts["events"]
    print(f"worker throughput: prefix {prefix!r}, run dir {run_dir}, broker {settings.bootstrap_servers}, "
          f"{settings.partitions} partitions, {os.cpu_count()} cores, load average {loadavg()}; {code_version()}")
    print(f"backlog: {sim.M} meters x {args.days:g} days = {n_readings} readings in {n_msgs} messages of "
          f"{args.batch} (clean scenario), directory {args.directory}")

    offsets = producer = worker = spy = None
    bpid = broker_pid()
    code = 1
    try:
        create_topics(settings)
        offsets = Offsets(settings)
        producer = make_producer(settings.bootstrap_list)
        sink = TopicSink(producer, settings)
        customers = [(sim.start, names.CUSTOMERS, c["customer_id"], c) for c in sim.customers()]
        readings = ((t, topic, key, value) for t, topic, key, value in sim.timed_records(include_customers=False))

        if args.directory == "warm":
            publish(customers, sink, progress=False, flush_after=None)
            print(f"warm-up: {len(customers)} customers published; worker started to build the meter directory",
                  flush=True)
            worker = Worker(env, run_dir / "worker-warmup.log")
            secs = wait_caught_up(offsets, worker, (names.CUSTOMERS, names.METER_DIRECTORY, names.METER_STATUS),
                                  args.timeout, args.poll, "warm-up")
            print(f"warm-up: directory consumed {secs:.1f} s after the worker started; stopping it", flush=True)
            worker.stop()
            worker = None
            timed = readings
        else:
            timed = (r for part in (customers, readings) for r in part)

        t0 = time.monotonic()
        sent = publish(timed, sink, progress=sys.stderr.isatty(), total=n_msgs + (len(customers) if args.directory == "cold" else 0),
                       desc="publishing", flush_after=names.CUSTOMERS if args.directory == "cold" else None)
        pub_s = time.monotonic() - t0
        end_readings = offsets.end(names.READINGS)
        print(f"published {sent.get(names.READINGS, 0)} reading messages ({n_readings} readings) in {pub_s:.1f} s: "
              f"{sent.get(names.READINGS, 0) / pub_s:,.0f} msg/s, {n_readings / pub_s:,.0f} readings/s "
              f"(end offsets {end_readings})", flush=True)
        if end_readings != sent.get(names.READINGS, 0):
            print(f"warning: meter.readings holds {end_readings} messages, {sent.get(names.READINGS)} were sent")

        # -- the measured run ------------------------------------------------------------------------
        worker = Worker(env, run_dir / "worker.log", profile=args.profile, profiler=args.profiler)
        print(f"worker started (pid {worker.proc.pid}, log {worker.log})", flush=True)

        def snap() -> Snap:
            return Snap(time.monotonic(), worker.cpu(), proc_cpu_seconds(bpid) if bpid else None, *machine_cpu())

        ready = first = last = status_done = None
        c_first = 0
        prev_commit, last_print, log_pos = 0, 0.0, 0
        while True:
            if not worker.alive():
                raise RuntimeError(f"the worker exited with {worker.proc.returncode}:\n{worker.tail()}")
            if time.monotonic() - worker.started > args.timeout:
                raise RuntimeError(f"not caught up after {args.timeout:.0f} s:\n{worker.tail()}")
            if ready is None:
                log_pos, seen = scan_log(worker.log, log_pos, READY_LINE)
                if seen:
                    ready = snap()
                    print(f"  Faust worker ready {ready.t - worker.started:.1f} s after start", flush=True)
                    if args.pyspy:
                        spy = start_pyspy(worker.proc.pid, args.pyspy, run_dir / "py-spy.log")
            done = offsets.committed(names.READINGS, names.METER_STATUS)
            c = done[names.READINGS]
            if c != prev_commit:
                last = snap()
                if first is None:
                    first, c_first = last, c
                    print(f"  first commit on meter.readings {first.t - worker.started:.1f} s after start: "
                          f"{c} messages", flush=True)
                prev_commit = c
            if c >= end_readings and done[names.METER_STATUS] >= offsets.end(names.METER_STATUS):
                status_done = snap()
                if spy is not None:
                    stop_pyspy(spy)
                break
            t = time.monotonic()
            if first is not None and t - last_print >= 5:
                last_print = t
                el = t - first.t
                rate = (c - c_first) / el if el > 0 else 0.0
                print(f"  {t - worker.started:5.1f} s: meter.readings {c}/{end_readings} messages committed "
                      f"({100 * c / max(1, end_readings):.0f} %), {rate:,.0f} msg/s since the first commit; "
                      f"meter-status {done[names.METER_STATUS]} committed", flush=True)
            time.sleep(args.poll)

        # wait (briefly) for the worker's own counters to cover the backlog: a cross-check of what it did
        deadline = time.monotonic() + 12
        stats = last_progress(worker.log)
        while stats.get("readings", 0) + stats.get("parked", 0) < n_readings and time.monotonic() < deadline:
            time.sleep(0.5)
            stats = last_progress(worker.log)
        dlq = offsets.end(names.DLQ)
        n_status = offsets.end(names.METER_STATUS)
        w_started = worker.started
        cpu_total = worker.stop()
        worker = None

        # -- report -----------------------------------------------------------------------------------
        rpm = n_readings / max(1, n_msgs)
        ncpu = os.cpu_count() or 1
        print()
        print("startup: process start -> Faust 'Worker: Ready' "
              + (f"{ready.t - w_started:.1f} s" if ready else "(not seen in the log)")
              + f"; -> first commit on meter.readings {first.t - w_started:.1f} s ({c_first} messages done by then)")
        win = last.t - first.t
        msgs_win = prev_commit - c_first
        if win > 0 and msgs_win > 0:
            rate = msgs_win / win
            print(f"meter.readings, first -> last commit ({win:.1f} s, {msgs_win} messages): {rate:,.0f} messages/s "
                  f"= {rate * rpm:,.0f} readings/s   [{COMMIT_NOTE}: up to +-{2.8 / win * 100:.0f} %]")
        else:
            print("meter.readings: the whole backlog was committed at once; use a larger backlog (--days)")
        t0 = ready.t if ready else w_started
        since = "Ready" if ready else "process start"
        print(f"backlog from {since}: meter.readings caught up after {last.t - t0:.1f} s "
              f"({n_msgs / (last.t - t0):,.0f} messages/s = {n_readings / (last.t - t0):,.0f} readings/s)")
        print(f"whole pipeline from {since} (meter.readings and the topology stage's {n_status} meter-status "
              f"messages all committed): {status_done.t - t0:.1f} s = {n_msgs / (status_done.t - t0):,.0f} "
              f"messages/s = {n_readings / (status_done.t - t0):,.0f} readings/s")
        if first.cpu is not None and last.cpu is not None and win > 0:
            wc = last.cpu - first.cpu
            print(f"worker CPU, first -> last commit: {wc:.1f} s = {100 * wc / win:.0f} % of one core; "
                  f"{wc / max(1, msgs_win) * 1e6:,.0f} µs per message = {wc / max(1, msgs_win) / rpm * 1e6:.1f} µs "
                  f"per reading (detect and topology stages together)")
        if ready is not None and ready.cpu is not None and status_done.cpu is not None:
            wc = status_done.cpu - ready.cpu
            print(f"worker CPU, Ready -> everything caught up: {wc:.1f} s = "
                  f"{100 * wc / (status_done.t - ready.t):.0f} % of one core; {wc / n_msgs * 1e6:,.0f} µs per message "
                  f"= {wc / n_readings * 1e6:.1f} µs per reading; before Ready (start-up): {ready.cpu:.1f} s")
        if cpu_total is not None:
            print(f"worker CPU, whole process life (incl. the wait for its counters): {cpu_total:.1f} s")
        if first.broker is not None and status_done.broker is not None:
            bc = status_done.broker - first.broker
            print(f"broker CPU (pid {bpid}), first commit -> everything caught up: {bc:.1f} s = "
                  f"{100 * bc / (status_done.t - first.t):.0f} % of one core")
        if status_done.m_total > first.m_total:
            print(f"machine: {100 * (status_done.m_busy - first.m_busy) / (status_done.m_total - first.m_total):.0f} % "
                  f"busy over {ncpu} cores, first commit -> everything caught up (all processes)")
        print("worker counters: " + (", ".join(f"{k}={v}" for k, v in sorted(stats.items())) or "none logged")
              + f"; dead letters: {dlq}")
        if stats.get("readings", 0) < n_readings:
            print(f"warning: the worker's last progress line counts {stats.get('readings', 0)} detected readings "
                  f"of {n_readings}")
        if args.profile:
            show_profile(args.profile, args.profiler)
        if args.pyspy:
            from benchmarks.pyspy_summary import summarise

            print()
            print(summarise(args.pyspy) if Path(args.pyspy).exists() else f"py-spy wrote no {args.pyspy}; "
                  f"see {run_dir / 'py-spy.log'}")
        code = 0
        return code
    finally:
        if spy is not None:
            stop_pyspy(spy)
        if worker is not None:
            worker.stop()
        if producer is not None:
            with contextlib.suppress(Exception):
                producer.close(timeout=10)
        if offsets is not None:
            offsets.close()
        if not args.keep:
            with contextlib.suppress(Exception):
                deleted = delete_benchmark_topics(settings, prefix)
                print(f"cleanup: deleted {len(deleted)} topics starting with {prefix!r} and group {settings.app_id!r}")
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            print(f"kept: topics {prefix}*, run dir {run_dir}")
        print(f"total benchmark time {time.monotonic() - t_begin:.1f} s, load average {loadavg()}")


if __name__ == "__main__":
    sys.exit(main())
