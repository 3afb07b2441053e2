"""The console's start and memory against topics of a given size: ``--customers`` customers on `customers`,
``--notifications`` notifications and ``--alerts`` alerts, on a fresh topic prefix of the broker at
KAFKA_BOOTSTRAP_SERVERS (its topics are deleted afterwards). Then `gridwatch console` is started and timed until
it serves (it prints its URL once every topic was read to its end), and its resident memory is read from /proc
(VmRSS after ready, VmHWM its peak). Prints per-customer figures to extrapolate from a size that fits the machine.

    python -m benchmarks.console_start --customers 100000 --notifications 300000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.common import code_version, loadavg


def fill(settings, customers: int, notifications: int, alerts: int) -> float:
    from kafka import KafkaProducer

    from gridwatch.config import ALERTS, CUSTOMERS, NOTIFICATIONS

    began = time.monotonic()
    p = KafkaProducer(bootstrap_servers=settings.bootstrap_list, acks=1, linger_ms=50, batch_size=256 * 1024,
                      compression_type=None)
    for i in range(customers):
        cid = f"C{i:07d}"
        p.send(settings.topic(CUSTOMERS), key=cid.encode(), value=json.dumps({
            "customer_id": cid, "meter_id": f"M{i:07d}", "transformer_id": f"T{i // 10:06d}",
            "feeder_id": f"F{i // 2000:04d}", "segment": "residential", "phone": f"+4479{i:08d}",
            "email": f"customer{i}@example.net", "language": "en-GB", "timezone": "Europe/London",
            "nominal_voltage": 230, "opted_out": False}).encode())
    for i in range(alerts):
        aid = f"outage:transformer:T{i:06d}:2026-01-01T00:00:00Z"
        p.send(settings.topic(ALERTS), key=aid.encode(), value=json.dumps({
            "alert_id": aid, "kind": "outage", "severity": "critical", "status": "resolved",
            "scope": {"level": "transformer", "id": f"T{i:06d}"}, "meter_ids": [f"M{i * 10 + k:07d}" for k in range(10)],
            "customer_ids": [f"C{i * 10 + k:07d}" for k in range(10)], "started_at": "2026-01-01T00:00:00Z",
            "detected_at": "2026-01-01T00:03:00Z", "resolved_at": "2026-01-01T01:00:00Z"}).encode())
    for i in range(notifications):
        aid = f"outage:transformer:T{(i // 10) % max(1, alerts):06d}:2026-01-01T00:00:00Z"
        p.send(settings.topic(NOTIFICATIONS), key=aid.encode(), value=json.dumps({
            "notification_id": uuid.UUID(int=i).hex, "alert_id": aid, "customer_id": f"C{i % max(1, customers):07d}",
            "channel": "sms", "status": "sent", "created_at": "2026-01-01T00:05:00Z",
            "provider_message_id": f"SM{i:030d}"}).encode())
    p.flush(600)
    p.close()
    return time.monotonic() - began


def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) // 1024  # MiB
    return out


def start_console(settings, timeout: float) -> tuple[float, dict[str, int]]:
    """Start `gridwatch console` on the settings' topics: seconds until it serves, and its memory then."""
    from devtools.demo import gridwatch_argv

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "GRIDWATCH_TOPIC_PREFIX": settings.topic_prefix,
           "GRIDWATCH_CONSOLE_USERS": f"bench:viewer:{uuid.uuid4().hex}", "PYTHONUNBUFFERED": "1"}
    env.pop("GRIDWATCH_CONSOLE_USERS_FILE", None)
    with tempfile.TemporaryFile("w+") as log:
        began = time.monotonic()
        proc = subprocess.Popen(gridwatch_argv("console", "--port", str(port)), env=env, stdout=log,
                                stderr=subprocess.STDOUT, text=True)
        try:
            while time.monotonic() - began < timeout and proc.poll() is None:
                log.seek(0)
                if "console: http" in log.read():
                    ready = time.monotonic() - began
                    time.sleep(1)
                    return ready, _status(proc.pid)
                time.sleep(0.05)
            log.seek(0)
            raise SystemExit("console did not become ready:\n" + log.read()[-2000:])
        finally:
            proc.terminate()
            proc.wait(30)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--customers", type=int, default=100_000)
    p.add_argument("--notifications", type=int, default=300_000)
    p.add_argument("--alerts", type=int, default=2_000)
    p.add_argument("--timeout", type=float, default=600)
    args = p.parse_args(argv)

    from gridwatch.config import Settings
    from streams.topics import create_topics

    settings = dataclasses.replace(Settings(), topic_prefix=f"bench-console-{uuid.uuid4().hex[:8]}.")
    create_topics(settings)
    try:
        print(f"console_start {code_version()} load {loadavg()}: {args.customers:,} customers, "
              f"{args.alerts:,} alerts, {args.notifications:,} notifications", flush=True)
        # the console on the empty topics first: what it costs before it holds anything
        empty = start_console(settings, args.timeout)
        print(f"empty topics: console ready {empty[0]:.1f} s after start; RSS {empty[1]['VmRSS']} MiB", flush=True)
        print(f"filled in {fill(settings, args.customers, args.notifications, args.alerts):.1f} s", flush=True)
        ready, mem = start_console(settings, args.timeout)
        per = (mem["VmRSS"] - empty[1]["VmRSS"]) * 1024 / max(1, args.customers)
        print(f"console ready {ready:.1f} s after start; RSS {mem['VmRSS']} MiB (peak {mem['VmHWM']} MiB): "
              f"{per:.2f} KiB per customer above the empty console's", flush=True)
    finally:
        _drop_topics(settings)
    return 0


def _drop_topics(settings) -> None:
    from kafka.admin import KafkaAdminClient

    client = KafkaAdminClient(bootstrap_servers=settings.bootstrap_list, client_id="gridwatch-bench")
    try:
        names = [t for t in client.list_topics() if t.startswith(settings.topic_prefix)]
        if names:
            client.delete_topics(names, timeout_ms=30000)
    finally:
        client.close()


if __name__ == "__main__":
    raise SystemExit(main())
