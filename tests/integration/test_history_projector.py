"""The history projector on the real broker and the real PostgreSQL: killed with SIGKILL while a batch's
transaction is open, restarted, its tables still match the topics exactly — no record lost, none counted twice."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import time
import uuid

import pytest
from sqlalchemy import create_engine, func, select, text

from gridwatch.config import Settings
from history import schema as t
from tests.prefixes import fresh_prefix

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

APP = "gridwatch-history-projector"


def _records(rng: random.Random) -> dict[str, list[tuple[str | None, dict | None]]]:
    """What the pipeline would publish: customers, alerts updated several times with a changing scope,
    notifications with receipts, replies, operator actions, and two records nobody can read."""
    customers = [{"customer_id": f"C{i:05d}", "meter_id": f"M{i:05d}", "transformer_id": f"T{i // 10:04d}",
                  "feeder_id": f"F{i // 100:03d}", "segment": rng.choice(["residential", "commercial"]),
                  "phone": f"+86138{i:08d}"} for i in range(600)]
    out: dict[str, list] = {"customers": [(c["customer_id"], c) for c in customers]}
    out["customers"] += [(f"C{i:05d}", None) for i in range(0, 600, 50)]  # 12 deleted
    alerts, notifications, feedback, actions = [], [], [], []
    for a in range(500):
        aid = f"outage:transformer:T{a % 60:04d}:2026-03-{1 + a % 28:02d}T{a % 24:02d}:00:00Z:{a}"
        base = rng.randrange(0, 590)
        scopes = [[f"C{base + k:05d}" for k in range(rng.randint(1, 10))] for _ in range(rng.randint(1, 4))]
        for i, scope in enumerate(scopes):
            last = i == len(scopes) - 1
            alerts.append((aid, {
                "alert_id": aid, "kind": "outage", "severity": "critical", "status": "resolved" if last else "open",
                "scope": {"level": "transformer", "id": f"T{a % 60:04d}"}, "meter_ids": [], "customer_ids": scope,
                "started_at": "2026-03-01T00:00:00Z", "detected_at": "2026-03-01T00:03:00Z",
                "resolved_at": "2026-03-01T01:00:00Z" if last else None, "evidence": {"feeder_id": "F001"}}))
        for c in sorted({c for s in scopes for c in s}):
            nid = f"{aid}|{c}|sms|notice"
            note = {"notification_id": nid, "alert_id": aid, "customer_id": c, "channel": "sms",
                    "status": "sent", "provider_message_id": f"SM{uuid.uuid4().hex}",
                    "created_at": "2026-03-01T00:04:00Z"}
            notifications.append((c, note))
            if rng.random() < 0.5:
                notifications.append((c, {**note, "status": rng.choice(["delivered", "undelivered"]),
                                          "created_at": "2026-03-01T00:04:30Z"}))
            if rng.random() < 0.2:
                feedback.append((c, {"feedback_id": uuid.uuid4().hex, "customer_id": c, "alert_id": aid,
                                     "intent": "rating", "rating": rng.randint(1, 5),
                                     "received_at": "2026-03-01T02:00:00Z"}))
        if a % 5 == 0:
            actions.append((aid, {"action": "acknowledge", "alert_id": aid, "author": "ops", "reason": "crew out",
                                  "at": "2026-03-01T00:10:00Z"}))
    out.update({"alerts": alerts, "notifications": notifications, "feedback": feedback,
                "gridwatch.alert-actions": actions})
    return out


def _expected(records) -> dict:
    live = {}
    for key, rec in records["customers"]:
        live[key] = rec
    alerts, named = {}, set()
    for aid, rec in records["alerts"]:
        alerts[aid] = rec["status"]
        named.update((aid, c) for c in rec["customer_ids"])
    outcome = {}
    for _, rec in records["notifications"]:
        if rec["status"] != "sent":
            outcome[rec["notification_id"]] = rec["status"]
    return {"customers": sum(v is not None for v in live.values()), "alerts": alerts, "alert_customers": named,
            "notifications": len({r["notification_id"] for _, r in records["notifications"]}),
            "outcomes": sorted(outcome.items()), "feedback": len(records["feedback"]),
            "ratings": sum(r["rating"] for _, r in records["feedback"]),
            "actions": len(records["gridwatch.alert-actions"])}


ABORTED = "unexpected EOF on client connection with an open transaction"


def _aborted(log, pids: set[int]) -> int:
    """How often the server logged one of these backends' client vanishing inside a transaction (the default
    log_line_prefix '%m [%p] ' names the backend's pid); 0 without a log (a server the tests did not start)."""
    if log is None:
        return 0
    return sum(1 for line in log.read_text(errors="replace").splitlines()
               if ABORTED in line and any(f"[{pid}]" in line for pid in pids))


def _projector_pids(engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(text("SELECT pid FROM pg_stat_activity WHERE application_name = :a"),
                                {"a": APP}).scalars())


def _projector_backends(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :a"),
                            {"a": APP}).scalar()


def _in_transaction(engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = :a AND xact_start IS NOT NULL "
            "AND state <> 'idle'"), {"a": APP}).scalar())


def _committed(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.coalesce(func.sum(t.projector_offsets.c.next_offset), 0))).scalar()


def test_the_projector_killed_mid_batch_matches_the_topics(kafka_broker, history_engine, postgres_log, tmp_path):
    from kafka import KafkaConsumer, KafkaProducer

    from devtools.demo import Processes, gridwatch_argv
    from streams.topics import create_topics

    settings = dataclasses.replace(Settings(), bootstrap_servers=kafka_broker,
                                   topic_prefix=fresh_prefix("hist", kafka_broker), run_dir=tmp_path / "run")
    create_topics(settings)
    records = _records(random.Random(14))
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_list, acks="all", linger_ms=20)
    for topic, recs in records.items():
        for key, rec in recs:
            producer.send(settings.topic(topic), key=key.encode() if key else None,
                          value=None if rec is None else json.dumps(rec).encode())
    producer.send(settings.topic("alerts"), key=b"bad", value=b"{not json")
    producer.send(settings.topic("feedback"), key=b"C00001", value=json.dumps({"customer_id": "C00001"}).encode())
    producer.flush(60)
    producer.close()
    total = sum(len(v) for v in records.values()) + 2

    url = history_engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "GRIDWATCH_DATABASE_URL": url, "GRIDWATCH_TOPIC_PREFIX": settings.topic_prefix,
           "KAFKA_BOOTSTRAP_SERVERS": kafka_broker, "GRIDWATCH_RUN_DIR": str(settings.run_dir),
           "PYTHONUNBUFFERED": "1"}
    log = settings.run_dir / "projector.log"
    # not the projector's application_name
    watcher = create_engine(url, isolation_level="AUTOCOMMIT")
    procs = Processes()
    kills, aborted = 0, 0
    try:
        # kill -9 while a batch's transaction is open (seen in pg_stat_activity), until one kill provably
        # aborted an open transaction (the server logs each client that vanished inside one), at most 6 times;
        # on a server the tests did not start (no log to read) every kill is made the same way
        while kills < 6 and (aborted == 0 if postgres_log is not None else kills < 2):
            proc = procs.start("projector", gridwatch_argv("history", "project", "--batch", "25"), env, log)
            floor = _committed(watcher)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not (_committed(watcher) > floor and _in_transaction(watcher)):
                assert proc.poll() is None, log.read_text()[-3000:]
                time.sleep(0.005)
            assert _committed(watcher) < total, "the backlog was read before a kill: make it longer"
            pids = _projector_pids(watcher)  # the projector's own, not its report refresher's
            before = _aborted(postgres_log, pids)
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            procs.children.clear()
            kills += 1
            deadline = time.monotonic() + 30
            while _projector_backends(watcher) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)  # the server writes its log line as the backend notices the EOF
            aborted += _aborted(postgres_log, pids) > before
        assert aborted or postgres_log is None, f"none of {kills} kills landed inside a transaction"

        proc = procs.start("projector", gridwatch_argv("history", "project", "--batch", "25"), env, log)
        deadline = time.monotonic() + 180
        while _committed(watcher) < total and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        assert _committed(watcher) == total
    finally:
        procs.stop()

    expected = _expected(records)
    with watcher.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.customers)).scalar() == expected["customers"]
        assert dict(conn.execute(select(t.alerts.c.alert_id, t.alerts.c.status)).all()) == expected["alerts"]
        assert set(conn.execute(select(t.alert_customers)).all()) == expected["alert_customers"]
        assert conn.execute(select(func.count()).select_from(t.notifications)).scalar() == expected["notifications"]
        assert sorted(conn.execute(select(t.notifications.c.notification_id, t.notifications.c.outcome)
                                   .where(t.notifications.c.outcome.is_not(None))).all()) == expected["outcomes"]
        assert conn.execute(select(func.count(), func.sum(t.feedback.c.rating))).one() == (
            expected["feedback"], expected["ratings"])
        assert conn.execute(select(func.count()).select_from(t.alert_actions)).scalar() == expected["actions"]
        assert set(conn.execute(select(t.notifications.c.status)).scalars()) == {"sent"}
    watcher.dispose()

    # the two unreadable records are dead letters with the reason (a kill between sending one and committing
    # may repeat it: at least once, never lost)
    consumer = KafkaConsumer(settings.topic("gridwatch.dlq"), bootstrap_servers=settings.bootstrap_list,
                             auto_offset_reset="earliest", group_id=None, consumer_timeout_ms=5000)
    dead = [json.loads(m.value) for m in consumer]
    consumer.close()
    assert {(d["topic"].removeprefix(settings.topic_prefix), d["error"].split(":")[1].strip())
            for d in dead} == {("alerts", "not JSON"), ("feedback", "no feedback_id")}
    print(f"\n{total} records, {kills} kill(s) -9, {aborted} inside an open transaction")
