"""The console's start and memory against topics of a given size: ``--customers`` customers on `customers`,
``--notifications`` notifications and ``--alerts`` alerts, on a fresh topic prefix of the broker at
KAFKA_BOOTSTRAP_SERVERS (its topics are deleted afterwards). Then `gridwatch console` is started and timed until
it serves (it prints its URL once every topic was read to its end), and its resident memory is read from /proc
(VmRSS after ready, VmHWM its peak). Prints per-customer figures to extrapolate from a size that fits the machine.

Two configurations. Without a database (the default, and ``--store`` unless ``--skip-topics``) the console
reads the customer directory and every alert from the topics. With ``--store`` it is also started on a history
store: a fresh database on the local PostgreSQL (``gridwatch db start``'s, started for the run when it is not
running; ``GRIDWATCH_POSTGRES_PORT``) or on GRIDWATCH_DATABASE_URL's server, filled as
``benchmarks.history_scale`` fills it (the same customers, with phone numbers; ``--incidents`` outage incidents
over the year with their notifications and ratings), plus ``--open`` open alerts; the projector's offsets set to
the topics' ends (as a projector that has caught up leaves them); then ``--unprojected`` customer updates, a
tenth as many open alerts and as many notifications published after them, which the console must read. After
it is ready, the board's first ``/api/figures`` (computed by the database) and ``/api/alerts`` are timed.

    python -m benchmarks.console_start --customers 100000 --notifications 300000
    python -m benchmarks.console_start --customers 1000000 --notifications 0 --alerts 0 --store --skip-topics
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
from datetime import datetime, timedelta, timezone
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


def _get(url: str, token: str) -> float:
    """Seconds one authorised GET took (it must answer 200)."""
    import urllib.request

    began = time.monotonic()
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}),
                                timeout=300) as r:
        r.read()
        if r.status != 200:
            raise SystemExit(f"{url}: HTTP {r.status}")
    return time.monotonic() - began


def start_console(settings, timeout: float, env_extra: dict[str, str], probe: bool = False) -> dict:
    """Start `gridwatch console` on the settings' topics: seconds until it serves, its memory then, and with
    ``probe`` the time of its first /api/figures and /api/alerts and its memory after them."""
    from devtools.demo import gridwatch_argv

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = uuid.uuid4().hex
    env = {**os.environ, "GRIDWATCH_TOPIC_PREFIX": settings.topic_prefix,
           "GRIDWATCH_CONSOLE_USERS": f"bench:viewer:{token}", "PYTHONUNBUFFERED": "1", **env_extra}
    env.pop("GRIDWATCH_CONSOLE_USERS_FILE", None)
    if "GRIDWATCH_DATABASE_URL" not in env_extra:
        env.pop("GRIDWATCH_DATABASE_URL", None)
    with tempfile.TemporaryFile("w+") as log:
        began = time.monotonic()
        proc = subprocess.Popen(gridwatch_argv("console", "--port", str(port)), env=env, stdout=log,
                                stderr=subprocess.STDOUT, text=True)
        try:
            while time.monotonic() - began < timeout and proc.poll() is None:
                log.seek(0)
                text = log.read()
                if "console: http" in text:
                    out = {"ready_s": time.monotonic() - began}
                    time.sleep(1)
                    out.update(_status(proc.pid))
                    out["said"] = [line for line in text.splitlines() if line.startswith("console: ")
                                   and "demo" not in line][-1]
                    if probe:
                        base = f"http://127.0.0.1:{port}"
                        out["figures_s"] = _get(f"{base}/api/figures", token)
                        out["figures_again_s"] = _get(f"{base}/api/figures", token)
                        out["alerts_s"] = _get(f"{base}/api/alerts", token)
                        out["after"] = _status(proc.pid)
                    return out
                time.sleep(0.05)
            log.seek(0)
            raise SystemExit("console did not become ready:\n" + log.read()[-2000:])
        finally:
            proc.terminate()
            proc.wait(30)


def _report(name: str, got: dict, empty: dict | None, customers: int) -> None:
    line = (f"{name}: console ready {got['ready_s']:.1f} s after start; RSS {got['VmRSS']} MiB "
            f"(peak {got['VmHWM']} MiB)")
    if empty is not None:
        per = (got["VmRSS"] - empty["VmRSS"]) * 1024 / max(1, customers)
        line += f": {per:.3f} KiB per customer above the empty console's ({empty['VmRSS']} MiB)"
    print(line, flush=True)
    print(f"  it said: {got['said']}", flush=True)
    if "figures_s" in got:
        print(f"  first /api/figures {got['figures_s']:.2f} s (again: {got['figures_again_s'] * 1000:.0f} ms), "
              f"/api/alerts {got['alerts_s'] * 1000:.0f} ms; RSS after them {got['after']['VmRSS']} MiB "
              f"(peak {got['after']['VmHWM']} MiB)", flush=True)


# ------------------------------------------------------------------------------------ the history store

def open_store():
    """(admin URL, whether this run started the local server)."""
    from history import db, server

    started = not os.environ.get("GRIDWATCH_DATABASE_URL") and server.managed_pid() is None
    return db.database_url(), started


def fill_store(url: str, settings, customers: int, incidents: int, open_alerts: int) -> dict:
    """The history as history_scale fills it, ``open_alerts`` open ones, and the projector's offsets at the
    topics' ends."""
    import psycopg
    from psycopg.types.json import Jsonb
    from sqlalchemy.engine import make_url

    from benchmarks.history_scale import TRANSFORMER_SIZE, fill as fill_history
    from history.projector import TOPICS

    counts = fill_history(url, customers, incidents, seed=14)
    u = make_url(url)
    now = datetime.now(timezone.utc)
    rows = []
    for k in range(open_alerts):
        first = (k * 97 % max(1, customers // TRANSFORMER_SIZE)) * TRANSFORMER_SIZE
        ids = list(range(first, min(customers, first + TRANSFORMER_SIZE)))
        scope = f"T{first // TRANSFORMER_SIZE:06d}"
        started = now - timedelta(hours=k % 48)
        aid = f"undervoltage:transformer:{scope}:{started.isoformat()}"
        record = {"alert_id": aid, "kind": "undervoltage", "severity": "warning", "status": "open",
                  "scope": {"level": "transformer", "id": scope}, "meter_ids": [f"M{i:07d}" for i in ids],
                  "customer_ids": [f"C{i:07d}" for i in ids], "started_at": started.isoformat(),
                  "detected_at": (started + timedelta(minutes=15)).isoformat(), "evidence": {}}
        rows.append((aid, "undervoltage", "warning", "open", "transformer", scope, f"F{first // 2000:04d}",
                     [scope], started, started + timedelta(minutes=15), started + timedelta(minutes=15),
                     started + timedelta(minutes=15), Jsonb(record)))
    with psycopg.connect(host=u.host, port=u.port, user=u.username, password=u.password, dbname=u.database) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO alerts (alert_id, kind, severity, status, scope_level, scope_id, feeder_id, "
                "transformer_ids, started_at, detected_at, first_record_at, last_record_at, record) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)
            ends = _end_offsets(settings, [settings.topic(t) for t in TOPICS])
            cur.executemany("INSERT INTO projector_offsets (topic, partition, next_offset, updated_at) "
                            "VALUES (%s, %s, %s, now())", [(t, p, off) for (t, p), off in sorted(ends.items())])
        conn.commit()
    counts["open_alerts"] = open_alerts
    counts["projected_offsets"] = sum(ends.values())
    return counts


def _end_offsets(settings, topics: list[str]) -> dict[tuple[str, int], int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_list, group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        return {(tp.topic, tp.partition): off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def publish_unprojected(settings, customers: int, n: int) -> None:
    """What a projector would not have written yet: ``n`` customer updates, ``n // 10`` open alerts, ``n``
    notifications of them."""
    from kafka import KafkaProducer

    from gridwatch.config import ALERTS, CUSTOMERS, NOTIFICATIONS

    p = KafkaProducer(bootstrap_servers=settings.bootstrap_list, acks=1, linger_ms=50)
    for i in range(n):
        k = i * 7919 % max(1, customers)
        cid = f"C{k:07d}"
        p.send(settings.topic(CUSTOMERS), key=cid.encode(), value=json.dumps({
            "customer_id": cid, "meter_id": f"M{k:07d}", "transformer_id": f"T{k // 10:06d}",
            "feeder_id": f"F{k // 2000:04d}", "segment": "residential", "phone": f"+4478{k:08d}",
            "language": "en-GB", "timezone": "Europe/London", "opted_out": False}).encode())
    now = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    for i in range(max(1, n // 10)):
        t = i * 31 % max(1, customers // 10)
        aid = f"overvoltage:transformer:T{t:06d}:{now}"
        p.send(settings.topic(ALERTS), key=aid.encode(), value=json.dumps({
            "alert_id": aid, "kind": "overvoltage", "severity": "warning", "status": "open",
            "scope": {"level": "transformer", "id": f"T{t:06d}"},
            "meter_ids": [f"M{t * 10 + k:07d}" for k in range(10)],
            "customer_ids": [f"C{t * 10 + k:07d}" for k in range(10)], "started_at": now,
            "detected_at": now}).encode())
        for k in range(10):
            p.send(settings.topic(NOTIFICATIONS), key=aid.encode(), value=json.dumps({
                "notification_id": uuid.uuid4().hex, "alert_id": aid, "customer_id": f"C{t * 10 + k:07d}",
                "channel": "sms", "status": "sent", "created_at": now}).encode())
    p.flush(600)
    p.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--customers", type=int, default=100_000)
    p.add_argument("--notifications", type=int, default=300_000)
    p.add_argument("--alerts", type=int, default=2_000)
    p.add_argument("--store", action="store_true", help="also start the console on a filled history store")
    p.add_argument("--skip-topics", action="store_true",
                   help="with --store: do not start the console without a database on the filled topics")
    p.add_argument("--incidents", type=int, default=2000, help="with --store: incidents in the year's history")
    p.add_argument("--open", type=int, default=50, help="with --store: open alerts in the store")
    p.add_argument("--unprojected", type=int, default=1000,
                   help="with --store: customer records published after the projector's offsets")
    p.add_argument("--timeout", type=float, default=600)
    args = p.parse_args(argv)

    from sqlalchemy.engine import make_url

    from gridwatch.config import Settings
    from history import db, server
    from streams.topics import create_topics

    settings = dataclasses.replace(Settings(), topic_prefix=f"bench-console-{uuid.uuid4().hex[:8]}.")
    create_topics(settings)
    # the console without a database must not find the local server in the run directory
    no_db = {"GRIDWATCH_RUN_DIR": tempfile.mkdtemp(prefix="bench-console-")}
    base = name = None
    started_server = False
    try:
        print(f"console_start {code_version()} load {loadavg()}: {args.customers:,} customers, "
              f"{args.alerts:,} alerts, {args.notifications:,} notifications on the topics"
              + (f"; a store of {args.incidents:,} incidents, {args.open} open alerts, "
                 f"{args.unprojected:,} customer records not projected" if args.store else ""), flush=True)
        # the console on the empty topics first: what it costs before it holds anything
        empty = start_console(settings, args.timeout, no_db)
        _report("empty topics, no database", empty, None, args.customers)
        if args.store:
            base, started_server = open_store()
            name = f"bench_console_{uuid.uuid4().hex[:8]}"
            server.create_database(base, name)
            url = make_url(base).set(database=name).render_as_string(hide_password=False)
            engine = db.make_engine(url)
            db.migrate(engine)
            engine.dispose()
            with_db = {"GRIDWATCH_DATABASE_URL": url}
            empty_store = start_console(settings, args.timeout, with_db)
            _report("empty topics, empty store", empty_store, None, args.customers)
        print(f"topics filled in {fill(settings, args.customers, args.notifications, args.alerts):.1f} s "
              f"(load {loadavg()})", flush=True)
        if not (args.store and args.skip_topics):
            got = start_console(settings, args.timeout, no_db, probe=True)
            _report(f"no database, load {loadavg()}", got, empty, args.customers)
        if args.store:
            began = time.monotonic()
            counts = fill_store(url, settings, args.customers, args.incidents, args.open)
            print(f"store filled in {time.monotonic() - began:.1f} s: {json.dumps(counts)} (load {loadavg()})",
                  flush=True)
            publish_unprojected(settings, args.customers, args.unprojected)
            got = start_console(settings, args.timeout, with_db, probe=True)
            _report(f"history store, load {loadavg()}", got, empty_store, args.customers)
    finally:
        _drop_topics(settings)
        if name is not None:
            server.drop_database(base, name)
        if started_server:
            server.stop()
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
