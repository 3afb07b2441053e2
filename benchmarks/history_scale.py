"""The history store at a utility's size: a year of history for 1 million customers, then the queries the
console asks, and the projector's write path.

1. Fills a fresh database (on the local PostgreSQL, or GRIDWATCH_DATABASE_URL's server) with COPY:
   ``--customers`` customers on feeders of 2,000 and transformers of 10, ``--incidents`` outage incidents spread
   over the year (a transformer, several transformers or a whole feeder, 10 % of them momentary), each
   customer of an incident notified and half of the messages with a delivery receipt, 5 % of them rated.
2. Times the console's history queries (``--repeat`` each): an alert search, a filtered page of alerts, one
   alert's record; then the projector's background refresh of the year's reliability report and customer
   figures (once: computed from the raw rows), and the console's answers from those kept reports — p50 / p95.
3. The projector's write path without Kafka (``history.projector.write``): records per second for batches of
   2,000 notification records, the bulk of what it reads.

    python -m benchmarks.history_scale                       # 1 M customers, 5,000 incidents
    python -m benchmarks.history_scale --customers 100000 --incidents 1000 --repeat 5
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import time
import uuid
from datetime import datetime, timedelta, timezone

from benchmarks.common import code_version, loadavg

YEAR = 2026
FEEDER_SIZE, TRANSFORMER_SIZE = 2000, 10


def _copy(conn, table: str, columns: list[str], rows) -> int:
    n = 0
    with conn.cursor() as cur:
        with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                n += 1
    return n


def fill(url: str, customers: int, incidents: int, seed: int) -> dict:
    import psycopg
    from psycopg.types.json import Jsonb
    from sqlalchemy.engine import make_url

    rng = random.Random(seed)
    u = make_url(url)
    counts = {}
    t0 = time.monotonic()
    with psycopg.connect(host=u.host, port=u.port, user=u.username, password=u.password, dbname=u.database) as conn:
        segments = ["residential"] * 8 + ["commercial", "industrial"]
        counts["customers"] = _copy(conn, "customers", ["customer_id", "meter_id", "transformer_id", "feeder_id",
                                                         "segment", "language", "timezone", "opted_out", "phone"],
                                    ((f"C{i:07d}", f"M{i:07d}", f"T{i // TRANSFORMER_SIZE:06d}",
                                      f"F{i // FEEDER_SIZE:04d}", segments[i % 10], "en", "UTC", False,
                                      f"+4479{i:08d}")
                                     for i in range(customers)))
        start = datetime(YEAR, 1, 1, tzinfo=timezone.utc)
        alerts, members, notes, ratings = [], [], [], []
        for k in range(incidents):
            s = start + timedelta(seconds=rng.randrange(0, 364 * 86400))
            momentary = rng.random() < 0.1
            minutes = rng.uniform(0.5, 4.5) if momentary else rng.lognormvariate(4.0, 0.8)
            e = s + timedelta(minutes=minutes)
            feeder = rng.randrange(max(1, customers // FEEDER_SIZE))
            first = feeder * FEEDER_SIZE
            size = rng.choice([TRANSFORMER_SIZE, TRANSFORMER_SIZE * rng.randint(2, 20), FEEDER_SIZE])
            offset = rng.randrange(0, max(1, FEEDER_SIZE - size + 1)) // TRANSFORMER_SIZE * TRANSFORMER_SIZE
            ids = [f"C{i:07d}" for i in range(first + offset, min(customers, first + offset + size))]
            level = "transformer" if size == TRANSFORMER_SIZE else "feeder"
            scope = f"T{(first + offset) // TRANSFORMER_SIZE:06d}" if level == "transformer" else f"F{feeder:04d}"
            kind = "momentary_interruption" if momentary else "outage"
            aid = f"{kind}:{level}:{scope}:{s.isoformat()}"
            record = {"alert_id": aid, "kind": kind, "status": "resolved", "scope": {"level": level, "id": scope}}
            alerts.append((aid, kind, "critical", "resolved", level, scope, f"F{feeder:04d}", "{}", s,
                           s + timedelta(minutes=3), e, False, s + timedelta(minutes=3), e, Jsonb(record)))
            members += [(aid, c) for c in ids]
            if not momentary:
                for c in ids:
                    nid = uuid.uuid4().hex
                    sent = s + timedelta(minutes=3, seconds=rng.uniform(1, 60))
                    outcome = rng.choice(["delivered", None])
                    notes.append((nid, aid, c, "sms", "outage/notice", "sent", None, sent, sent, outcome,
                                  sent + timedelta(seconds=5) if outcome else None, sent))
                    if rng.random() < 0.05:
                        ratings.append((uuid.uuid4().hex, c, aid, "rating", rng.randint(1, 5), "sms", False,
                                        e + timedelta(minutes=30)))
        counts["alerts"] = _copy(conn, "alerts", ["alert_id", "kind", "severity", "status", "scope_level", "scope_id",
                                                  "feeder_id", "transformer_ids", "started_at", "detected_at",
                                                  "resolved_at", "no_fault", "first_record_at", "last_record_at",
                                                  "record"], alerts)
        counts["alert_customers"] = _copy(conn, "alert_customers", ["alert_id", "customer_id"], set(members))
        counts["notifications"] = _copy(conn, "notifications", [
            "notification_id", "alert_id", "customer_id", "channel", "template", "status", "reason", "created_at",
            "sent_at", "outcome", "outcome_at", "first_record_at"], notes)
        counts["feedback"] = _copy(conn, "feedback", ["feedback_id", "customer_id", "alert_id", "intent", "rating",
                                                      "channel", "opted_out", "received_at"], ratings)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
    counts["fill_s"] = round(time.monotonic() - t0, 1)
    counts["database_size"] = size
    return counts


def _timed(fn, repeat: int) -> dict:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))], 1), "runs": repeat}


def queries(engine, customers: int, repeat: int) -> dict:
    from console.history_api import _alert_record, alert_query
    from history import reports

    rng = random.Random(1)
    feeders = max(1, customers // FEEDER_SIZE)
    out = {}
    with engine.connect() as conn:
        out["alert search (q=part of an id)"] = _timed(lambda: conn.execute(alert_query(
            search=f"T{rng.randrange(customers // TRANSFORMER_SIZE):06d}", limit=51)).all(), repeat)
        out["alerts page (feeder + month + kind)"] = _timed(lambda: conn.execute(alert_query(
            feeders=[f"F{rng.randrange(feeders):04d}"], kinds=["outage"],
            since=datetime(YEAR, m := rng.randint(1, 11), 1, tzinfo=timezone.utc),
            until=datetime(YEAR, m + 1, 1, tzinfo=timezone.utc), limit=51)).all(), repeat)
        out["alert record (its customers, messages, actions)"] = _timed(
            lambda: _alert_record(conn, conn.execute(alert_query(limit=1)).first().alert_id), repeat)
    # what the projector's refresher does in the background (once: each takes long at this size) ...
    began = time.perf_counter()
    took = reports.refresh(engine, YEAR)
    out["background refresh: reliability report (year, computed)"] = _once(took["reliability"])
    out["background refresh: customer figures (year, computed)"] = _once(took["customers"])
    # ... and what the console then does for a monthly report: read the kept one (and slice a feeder)
    with engine.connect() as conn:
        out["monthly report as the console answers it (kept)"] = _timed(
            lambda: reports.cached(conn, "reliability", YEAR, f"F{rng.randrange(feeders):04d}"), repeat)
        out["system report as the console answers it (kept, every feeder)"] = _timed(
            lambda: reports.cached(conn, "reliability", YEAR), repeat)
        out["customer figures as the console answers them (kept)"] = _timed(
            lambda: reports.cached(conn, "customers", YEAR), repeat)
    return out


def _once(seconds: float) -> dict:
    return {"p50_ms": round(seconds * 1000, 1), "p95_ms": round(seconds * 1000, 1), "runs": 1}


def projector_writes(engine, batches: int, batch_size: int = 2000) -> dict:
    from history.projector import Batch, Projector, write

    class Msg:
        __slots__ = ("topic", "partition", "offset", "key", "value", "timestamp")

    total, t0 = 0, time.perf_counter()
    for b in range(batches):
        batch = Batch()
        for i in range(batch_size):
            m = Msg()
            m.topic, m.partition, m.offset, m.key, m.timestamp = "notifications", i % 8, b * batch_size + i, b"C", 0
            m.value = json.dumps({"notification_id": f"bench-{b}-{i}", "alert_id": "A", "customer_id": f"C{i:07d}",
                                  "channel": "sms", "status": "sent", "created_at": "2026-06-01T00:00:00Z"}).encode()
            batch.offsets[(m.topic, m.partition)] = m.offset + 1
            Projector._apply(batch, "notifications", m)
        with engine.begin() as conn:
            write(conn, batch)
        total += batch_size
    seconds = time.perf_counter() - t0
    return {"records": total, "seconds": round(seconds, 2), "records_per_s": round(total / seconds)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--customers", type=int, default=1_000_000)
    p.add_argument("--incidents", type=int, default=5000)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--keep", action="store_true", help="keep the benchmark's database afterwards")
    args = p.parse_args(argv)

    from sqlalchemy.engine import make_url

    from history import db, server

    started = not os.environ.get("GRIDWATCH_DATABASE_URL") and server.managed_pid() is None
    base = db.database_url()
    name = f"bench_{uuid.uuid4().hex[:8]}"
    server.create_database(base, name)
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    engine = db.make_engine(url)
    try:
        db.migrate(engine)
        print(f"history_scale {code_version()} load {loadavg()}: {args.customers:,} customers, "
              f"{args.incidents:,} incidents, database {name}", flush=True)
        counts = fill(url, args.customers, args.incidents, args.seed)
        print("filled: " + json.dumps(counts), flush=True)
        for what, figures in queries(engine, args.customers, args.repeat).items():
            print(f"{what:<58} p50 {figures['p50_ms']:>8.1f} ms   p95 {figures['p95_ms']:>8.1f} ms", flush=True)
        w = projector_writes(engine, 10)
        print(f"projector write path: {w['records']:,} notification records in {w['seconds']} s = "
              f"{w['records_per_s']:,} records/s", flush=True)
    finally:
        engine.dispose()
        if not args.keep:
            server.drop_database(base, name)
        if started:  # the local server this run started
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
