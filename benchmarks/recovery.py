"""Recovery of ``gridwatch worker``: restart-to-resume after ``kill -9``, and the stop on SIGTERM with and
without a broker.

    python -m benchmarks.recovery [--kills 5]

Starts a broker of its own (``devtools.broker`` on free 127.0.0.1 ports, data in a temporary directory: the
shared broker is never touched), a topic prefix of its own and one worker. A *probe* is one customers record
per partition (48 simulated customers, re-sent); the worker has resumed every partition when each of them
has come out again on ``gridwatch.meter-directory``. Printed per round: seconds from the new process's
start to its whole probe processed. Then: seconds from SIGTERM to exit with the broker up, and with the
broker stopped under the running worker.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from gridwatch import config as topics
from gridwatch.config import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def own_broker(run_dir: Path) -> Settings:
    """A broker of our own on two free ports, its data under ``run_dir/kafka``."""
    from devtools import broker

    client, controller = free_port(), free_port()
    os.environ["GRIDWATCH_KAFKA_CONTROLLER_PORT"] = str(controller)
    settings = dataclasses.replace(Settings(), bootstrap_servers=f"127.0.0.1:{client}", run_dir=run_dir)
    broker.start(settings)
    return settings


class Probe:
    """Customers records whose keys cover every partition; ``wait`` returns when all came out again."""

    def __init__(self, settings: Settings):
        from kafka import KafkaConsumer, KafkaProducer

        from devtools.simulator import SimConfig, Simulator

        self.settings = settings
        self.customers = Simulator(SimConfig(seed=1, feeders=2, transformers_per_feeder=3,
                                             meters_per_transformer=8, hours=1)).customers()
        self.producer = KafkaProducer(bootstrap_servers=settings.bootstrap_list, acks="all")
        self.consumer = KafkaConsumer(settings.topic(topics.METER_DIRECTORY),
                                      bootstrap_servers=settings.bootstrap_list, group_id=None,
                                      auto_offset_reset="latest", enable_auto_commit=False)
        self.consumer.poll(timeout_ms=1000)  # assignment, positions at the end

    def send(self) -> None:
        for c in self.customers:
            self.producer.send(self.settings.topic(topics.CUSTOMERS), key=c["customer_id"].encode(),
                               value=json.dumps(c).encode())
        self.producer.flush(30)

    def wait(self, timeout: float = 240) -> float:
        want = {c["meter_id"] for c in self.customers}
        deadline = time.monotonic() + timeout
        while want and time.monotonic() < deadline:
            for batch in self.consumer.poll(timeout_ms=200).values():
                want -= {m.key.decode() for m in batch if m.key}
        if want:
            raise RuntimeError(f"{len(want)} meters not processed within {timeout:.0f} s")
        return time.monotonic()

    def close(self) -> None:
        self.producer.close()
        self.consumer.close()


def start_worker(settings: Settings, log: Path) -> subprocess.Popen:
    from devtools.demo import gridwatch_argv

    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "GRIDWATCH_TOPIC_PREFIX": settings.topic_prefix, "GRIDWATCH_RUN_DIR": str(settings.run_dir),
           "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(gridwatch_argv("worker"), env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def stop_time(proc: subprocess.Popen, timeout: float = 120) -> float:
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return float("inf")
    return time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=5, help="kill -9 / restart rounds (default 5)")
    args = p.parse_args(argv)
    from devtools import broker
    from streams.topics import create_topics

    with tempfile.TemporaryDirectory(prefix="gridwatch-recovery-") as tmp:
        run_dir = Path(tmp)
        settings = own_broker(run_dir)
        settings = dataclasses.replace(settings, topic_prefix=f"rec{uuid.uuid4().hex[:6]}.")
        create_topics(settings)
        log = run_dir / "worker.log"
        probe = Probe(settings)
        try:
            t0 = time.monotonic()
            worker = start_worker(settings, log)
            probe.send()
            print(f"first start (fresh group): resumed after {probe.wait() - t0:.1f} s", flush=True)
            resumes = []
            for i in range(args.kills):
                time.sleep(3)  # a committed, running worker
                worker.kill()
                worker.wait()
                t0 = time.monotonic()
                worker = start_worker(settings, log)
                probe.send()
                resumes.append(probe.wait() - t0)
                print(f"kill -9 #{i + 1}: the new worker resumed every partition {resumes[-1]:.1f} s after "
                      f"it was started", flush=True)
            if resumes:
                print(f"restart to resume: median {statistics.median(resumes):.1f} s, max {max(resumes):.1f} s "
                      f"over {len(resumes)} kills")
            time.sleep(3)
            print(f"SIGTERM with the broker up: stopped in {stop_time(worker):.1f} s", flush=True)
            worker = start_worker(settings, log)
            probe.send()
            probe.wait()
            probe.close()
            broker.stop(settings)
            time.sleep(2)
            print(f"SIGTERM with the broker gone: stopped in {stop_time(worker):.1f} s", flush=True)
        finally:
            if worker.poll() is None:
                worker.kill()
            broker.stop(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
