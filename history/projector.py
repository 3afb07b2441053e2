"""The projector: ``alerts``, ``notifications`` (with the provider's delivery receipts), ``feedback``,
``gridwatch.alert-actions`` and ``customers`` from Kafka into the history store.

Exactly-once into PostgreSQL without Kafka transactions: the projector reads every partition of those
topics itself (assigned, no consumer group), and each batch is ONE database transaction holding both the
rows and the next offset of every partition it read (``projector_offsets``). At start it seeks to the stored
offsets (the beginning where there are none). A crash anywhere — ``kill -9`` mid-batch included — leaves
either the whole batch with its offsets or neither, and the records after the last commit are read again.
The upserts are keyed by the records' ids and fold several records of one id the way they happened, so even
reading a record twice (a replay from the beginning) changes nothing.

One projector per database: it holds an advisory lock for as long as it runs; a second one waits.

A record that cannot be read (not JSON, no id) becomes a dead letter on ``gridwatch.dlq`` with the reason,
and the projector carries on; it is never dropped silently and never stops the projector.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from kafka import KafkaConsumer, TopicPartition
from kafka import KafkaProducer
from sqlalchemy import bindparam, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine

from gridwatch import config as names
from gridwatch.config import Settings
from gridwatch.timefmt import parse_datetime
from history import schema as t

log = logging.getLogger(__name__)

#: contract topic -> what it is called in the offsets table's logs and stats
TOPICS = (names.CUSTOMERS, names.ALERTS, names.NOTIFICATIONS, names.FEEDBACK, names.ALERT_ACTIONS)
PROJECTOR_LOCK = 0x67727072
#: a provider's receipt for a sent message (a later record with the same notification id)
RECEIPTS = ("delivered", "undelivered")
DEFAULT_BATCH = 2000


class BadRecord(ValueError):
    """A record the projector cannot read; it goes to the dead-letter topic with this message."""


def parse_ts(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise BadRecord(f"timestamp {value!r} is not a string")
    try:
        return parse_datetime(value)
    except ValueError:
        raise BadRecord(f"timestamp {value!r} is not RFC 3339 with a UTC offset") from None


def broker_ts(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc) if ms is not None and ms >= 0 else None


def _least(a, b):
    return b if a is None else a if b is None else min(a, b)


def _required(record: dict, key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value:
        raise BadRecord(f"no {key}")
    return value


# ------------------------------------------------------------------------------------ one batch's rows

@dataclass
class Batch:
    """The rows of one batch, folded per id in arrival order (records of one id share a partition)."""

    alerts: dict[str, dict] = field(default_factory=dict)
    alert_customers: set[tuple[str, str]] = field(default_factory=set)
    notifications: dict[str, dict] = field(default_factory=dict)
    feedback: dict[str, dict] = field(default_factory=dict)
    actions: list[dict] = field(default_factory=list)
    customers: dict[str, dict | None] = field(default_factory=dict)  # None: deleted (a tombstone)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    dead: list[tuple[Any, str]] = field(default_factory=list)
    count: int = 0

    # --- alerts: the latest record wins; the customers it ever named are kept (union) -----------------
    def alert(self, rec: dict, ts: datetime | None) -> None:
        aid = _required(rec, "alert_id")
        kind, status = _required(rec, "kind"), _required(rec, "status")
        scope = rec.get("scope") or {}
        evidence = rec.get("evidence") if isinstance(rec.get("evidence"), dict) else {}
        level, scope_id = scope.get("level"), scope.get("id")
        transformers = evidence.get("transformer_ids") or ([scope_id] if level == "transformer" else [])
        row = {
            "alert_id": aid, "kind": kind, "severity": rec.get("severity"), "status": status,
            "scope_level": level, "scope_id": scope_id,
            "feeder_id": scope_id if level == "feeder" else evidence.get("feeder_id"),
            "transformer_ids": [str(x) for x in transformers],
            "started_at": parse_ts(rec.get("started_at")), "detected_at": parse_ts(rec.get("detected_at")),
            "resolved_at": parse_ts(rec.get("resolved_at")),
            "acknowledged_at": parse_ts(rec.get("acknowledged_at")), "no_fault": bool(rec.get("no_fault")),
            "merged_into": evidence.get("merged_into"), "parent_alert_id": evidence.get("parent_alert_id"),
            "first_record_at": ts, "last_record_at": ts, "record": rec,
        }
        before = self.alerts.get(aid)
        if before is not None:
            row["first_record_at"] = _least(before["first_record_at"], ts)
        self.alerts[aid] = row
        customers = rec.get("customer_ids") or []
        if not isinstance(customers, list):
            raise BadRecord("customer_ids is not a list")
        self.alert_customers.update((aid, str(c)) for c in customers if c)

    # --- notifications: the decision (sent / suppressed / failed / deferred) and the provider's receipt
    def notification(self, rec: dict, ts: datetime | None) -> None:
        nid = _required(rec, "notification_id")
        status = _required(rec, "status")
        created = parse_ts(rec.get("created_at"))
        # the provider's receipt repeats the sent record with its outcome; a decision "failed" has no
        # provider message id (it never reached the provider)
        receipt = status in RECEIPTS or (status == "failed" and bool(rec.get("provider_message_id")))
        row = {
            "notification_id": nid, "alert_id": rec.get("alert_id"), "customer_id": rec.get("customer_id"),
            "channel": rec.get("channel"), "template": rec.get("template"),
            "status": "sent" if receipt else status, "reason": None if receipt else rec.get("reason"),
            "created_at": created, "sent_at": created if status == "sent" else None,
            "outcome": status if receipt else None, "outcome_at": created if receipt else None,
            "first_record_at": ts, "_decision": not receipt,
        }
        before = self.notifications.get(nid)
        self.notifications[nid] = row if before is None else merge_notification(before, row)

    def feedback_record(self, rec: dict, ts: datetime | None) -> None:
        fid = _required(rec, "feedback_id")
        rating = rec.get("rating")
        if rating is not None and (not isinstance(rating, int) or not 1 <= rating <= 5):
            raise BadRecord(f"rating {rating!r} is not 1-5")
        self.feedback[fid] = {
            "feedback_id": fid, "customer_id": rec.get("customer_id"), "alert_id": rec.get("alert_id"),
            "intent": rec.get("intent"), "rating": rating, "channel": rec.get("channel"),
            "opted_out": rec.get("opted_out"),
            "received_at": parse_ts(rec.get("received_at") or rec.get("created_at")),
        }

    def action(self, rec: dict, partition: int, offset: int) -> None:
        self.actions.append({
            "partition": partition, "offset": offset, "alert_id": rec.get("alert_id"),
            "action": rec.get("action"), "author": rec.get("author"), "reason": rec.get("reason"),
            "at": parse_ts(rec.get("at")), "no_fault": bool(rec.get("no_fault")),
        })

    def customer(self, key: str | None, rec: dict | None) -> None:
        if rec is None:  # a tombstone deletes the customer
            if not key:
                raise BadRecord("a tombstone without a key")
            self.customers[key] = None
            return
        cid = _required(rec, "customer_id")
        self.customers[cid] = {
            "customer_id": cid, "meter_id": rec.get("meter_id"), "transformer_id": rec.get("transformer_id"),
            "feeder_id": rec.get("feeder_id"), "segment": rec.get("segment"), "language": rec.get("language"),
            "timezone": rec.get("timezone"), "opted_out": bool(rec.get("opted_out")),
            "phone": rec.get("phone") if isinstance(rec.get("phone"), str) else None,
        }


def merge_notification(before: dict, after: dict) -> dict:
    """Two folded rows of one notification id, ``after`` the later: the same rule as the SQL upsert."""
    decision = after["_decision"]
    return {
        **{k: after[k] if after[k] is not None else before[k]
           for k in ("alert_id", "customer_id", "channel", "template")},
        "notification_id": before["notification_id"],
        "status": after["status"] if decision else before["status"],
        "reason": after["reason"] if decision else before["reason"],
        "created_at": _least(before["created_at"], after["created_at"]),
        "sent_at": before["sent_at"] or after["sent_at"],
        "outcome": after["outcome"] or before["outcome"],
        "outcome_at": after["outcome_at"] or before["outcome_at"],
        "first_record_at": _least(before["first_record_at"], after["first_record_at"]),
        "_decision": before["_decision"] or decision,
    }


# -------------------------------------------------------------------------------------- writing a batch

def _upsert(table, rows: list[dict], key: Iterable[str], update: dict | None = None) -> Any:
    stmt = insert(table).values(rows)
    key = list(key)
    if update is None:
        update = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in key}
    return stmt.on_conflict_do_update(index_elements=key, set_=update)


def write(conn: Connection, batch: Batch) -> None:
    """Every row and every offset of ``batch``, on ``conn`` inside the caller's transaction."""
    if batch.customers:
        live = [row for row in batch.customers.values() if row is not None]
        gone = [cid for cid, row in batch.customers.items() if row is None]
        if live:
            conn.execute(_upsert(t.customers, live, ["customer_id"]))
        if gone:
            conn.execute(delete(t.customers).where(t.customers.c.customer_id.in_(gone)))
    if batch.alerts:
        _fill_topology(conn, batch)
        rows = list(batch.alerts.values())
        stmt = insert(t.alerts).values(rows)
        update = {c.name: stmt.excluded[c.name] for c in t.alerts.columns if c.name != "alert_id"}
        update["first_record_at"] = func.least(t.alerts.c.first_record_at, stmt.excluded.first_record_at)
        conn.execute(stmt.on_conflict_do_update(index_elements=["alert_id"], set_=update))
    if batch.alert_customers:
        rows = [{"alert_id": a, "customer_id": c} for a, c in sorted(batch.alert_customers)]
        conn.execute(insert(t.alert_customers).values(rows).on_conflict_do_nothing())
    if batch.notifications:
        rows = [{k: v for k, v in row.items() if k != "_decision"} for row in batch.notifications.values()]
        decisions = {row["notification_id"]: row["_decision"] for row in batch.notifications.values()}
        for row in rows:
            row["decision"] = decisions[row["notification_id"]]
        conn.execute(text(NOTIFICATION_UPSERT), rows)
    if batch.feedback:
        conn.execute(_upsert(t.feedback, list(batch.feedback.values()), ["feedback_id"]))
    if batch.actions:
        conn.execute(insert(t.alert_actions).values(batch.actions).on_conflict_do_nothing())
    if batch.offsets:
        now = datetime.now(timezone.utc)
        rows = [{"topic": topic, "partition": p, "next_offset": off, "updated_at": now}
                for (topic, p), off in sorted(batch.offsets.items())]
        conn.execute(_upsert(t.projector_offsets, rows, ["topic", "partition"]))


# A receipt (decision false) never overwrites the decision's status or reason; the first send time and
# the earliest creation are kept; the latest outcome wins (a status only moves forward on the wire).
NOTIFICATION_UPSERT = """
INSERT INTO notifications AS n (notification_id, alert_id, customer_id, channel, template, status, reason,
                                created_at, sent_at, outcome, outcome_at, first_record_at)
VALUES (:notification_id, :alert_id, :customer_id, :channel, :template, :status, :reason,
        :created_at, :sent_at, :outcome, :outcome_at, :first_record_at)
ON CONFLICT (notification_id) DO UPDATE SET
  alert_id = COALESCE(EXCLUDED.alert_id, n.alert_id),
  customer_id = COALESCE(EXCLUDED.customer_id, n.customer_id),
  channel = COALESCE(EXCLUDED.channel, n.channel),
  template = COALESCE(EXCLUDED.template, n.template),
  status = CASE WHEN :decision THEN EXCLUDED.status ELSE n.status END,
  reason = CASE WHEN :decision THEN EXCLUDED.reason ELSE n.reason END,
  created_at = LEAST(n.created_at, EXCLUDED.created_at),
  sent_at = COALESCE(n.sent_at, EXCLUDED.sent_at),
  outcome = COALESCE(EXCLUDED.outcome, n.outcome),
  outcome_at = COALESCE(EXCLUDED.outcome_at, n.outcome_at),
  first_record_at = LEAST(n.first_record_at, EXCLUDED.first_record_at)
"""


def _fill_topology(conn: Connection, batch: Batch) -> None:
    """An alert whose record names no feeder (a meter or transformer voltage alert) takes its customers'."""
    missing = {aid for aid, row in batch.alerts.items() if not row["feeder_id"] or not row["transformer_ids"]}
    if not missing:
        return
    wanted = {c for a, c in batch.alert_customers if a in missing}
    directory = {cid: (row["feeder_id"], row["transformer_id"])
                 for cid, row in batch.customers.items() if row is not None and cid in wanted}
    lookup = wanted - set(directory)
    if lookup:
        q = select(t.customers.c.customer_id, t.customers.c.feeder_id, t.customers.c.transformer_id).where(
            t.customers.c.customer_id.in_(bindparam("ids", expanding=True)))
        for cid, feeder, transformer in conn.execute(q, {"ids": sorted(lookup)}):
            directory[cid] = (feeder, transformer)
    for aid in missing:
        row = batch.alerts[aid]
        mine = [directory[c] for a, c in batch.alert_customers if a == aid and c in directory]
        if not row["feeder_id"]:
            feeders = sorted({f for f, _ in mine if f})
            row["feeder_id"] = feeders[0] if len(feeders) == 1 else None
        if not row["transformer_ids"]:
            row["transformer_ids"] = sorted({tr for _, tr in mine if tr})


# ----------------------------------------------------------------------------------------- the process

def decode(msg) -> tuple[str | None, Any]:
    key = msg.key.decode("utf-8", "replace") if msg.key is not None else None
    if msg.value is None:
        return key, None
    try:
        value = json.loads(msg.value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRecord(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRecord("not a JSON object")
    return key, value


class Projector:
    """Reads the five topics on ``settings``' cluster (with its topic prefix) into ``engine``'s database."""

    def __init__(self, engine: Engine, settings: Settings | None = None, *, batch_size: int = DEFAULT_BATCH,
                 on_batch: Callable[[Batch], None] | None = None, on_commit: Callable[[Batch], None] | None = None):
        self.engine, self.settings = engine, settings or Settings()
        self.on_commit = on_commit
        self.batch_size, self.on_batch = batch_size, on_batch
        self.topic_names = {self.settings.topic(n): n for n in TOPICS}
        self.stats = {"records": 0, "batches": 0, "dead_letters": 0}
        self._consumer = self._producer = None
        self._lock_conn = None

    # -- setup
    def _acquire(self, stop: threading.Event | None) -> None:
        conn = self.engine.connect()
        waited = False
        while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": PROJECTOR_LOCK}).scalar():
            conn.rollback()
            if not waited:
                log.info("another projector holds this database; waiting for it to stop")
                waited = True
            if stop is not None and stop.wait(1.0):
                conn.close()
                raise InterruptedError
            elif stop is None:
                time.sleep(1.0)
        conn.commit()
        self._lock_conn = conn

    def _assign(self) -> None:
        consumer = KafkaConsumer(bootstrap_servers=self.settings.bootstrap_list, group_id=None,
                                 enable_auto_commit=False, auto_offset_reset="earliest",
                                 client_id="gridwatch-history", max_poll_records=self.batch_size)
        partitions = []
        for name in self.topic_names:
            found = consumer.partitions_for_topic(name)
            if not found:
                consumer.close()
                raise RuntimeError(f"topic {name!r} does not exist on {self.settings.bootstrap_servers}: "
                                   "run `gridwatch topics create`")
            partitions += [TopicPartition(name, p) for p in sorted(found)]
        consumer.assign(partitions)
        with self.engine.begin() as conn:  # committed, not rolled back: an abort means a lost batch
            stored = {(r.topic, r.partition): r.next_offset for r in conn.execute(select(t.projector_offsets))}
        for tp in partitions:
            if (tp.topic, tp.partition) in stored:
                consumer.seek(tp, stored[(tp.topic, tp.partition)])
            else:
                consumer.seek_to_beginning(tp)
        self._consumer = consumer

    # -- one batch
    def step(self, timeout_ms: int = 500) -> int:
        """Read one batch and commit it with its offsets; the number of records it held."""
        polled = self._consumer.poll(timeout_ms=timeout_ms, max_records=self.batch_size)
        if not polled:
            return 0
        batch = Batch()
        for tp, messages in sorted(polled.items(), key=lambda kv: (kv[0].topic, kv[0].partition)):
            name = self.topic_names[tp.topic]
            for msg in messages:
                batch.count += 1
                batch.offsets[(tp.topic, tp.partition)] = msg.offset + 1
                try:
                    self._apply(batch, name, msg)
                except BadRecord as exc:
                    batch.dead.append((msg, str(exc)))
        if batch.dead:
            self._dead_letters(batch.dead)
        with self.engine.begin() as conn:
            write(conn, batch)
            if self.on_batch is not None:
                self.on_batch(batch)
        self.stats["records"] += batch.count
        self.stats["batches"] += 1
        if self.on_commit is not None:
            self.on_commit(batch)
        return batch.count

    @staticmethod
    def _apply(batch: Batch, name: str, msg) -> None:
        key, rec = decode(msg)
        ts = broker_ts(getattr(msg, "timestamp", None))
        if name == names.CUSTOMERS:
            batch.customer(key, rec)
        elif rec is None:
            raise BadRecord("a null value")
        elif name == names.ALERTS:
            batch.alert(rec, ts)
        elif name == names.NOTIFICATIONS:
            batch.notification(rec, ts)
        elif name == names.FEEDBACK:
            batch.feedback_record(rec, ts)
        elif name == names.ALERT_ACTIONS:
            batch.action(rec, msg.partition, msg.offset)

    def _dead_letters(self, dead: list) -> None:
        if self._producer is None:
            self._producer = KafkaProducer(bootstrap_servers=self.settings.bootstrap_list, acks="all")
        for msg, error in dead:
            log.warning("dead letter %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, error)
            self._producer.send(self.settings.topic(names.DLQ), key=msg.key, value=json.dumps({
                "topic": msg.topic, "partition": msg.partition, "offset": msg.offset,
                "key": msg.key.decode("utf-8", "replace") if msg.key is not None else None,
                "payload": msg.value.decode("utf-8", "replace") if msg.value is not None else None,
                "error": f"history projector: {error}"}).encode())
        # on the broker before the batch's offsets are committed: a crash in between repeats the dead
        # letter, it never loses it
        self._producer.flush(30)
        self.stats["dead_letters"] += len(dead)

    # -- the loop
    def run(self, stop: threading.Event | None = None, *, until_caught_up: bool = False) -> dict:
        """Project until ``stop`` is set (or, with ``until_caught_up``, until every partition is read to its end)."""
        try:
            self._acquire(stop)
        except InterruptedError:
            return self.stats
        try:
            self._assign()
            while stop is None or not stop.is_set():
                got = self.step()
                if until_caught_up and got == 0 and self.caught_up():
                    break
        finally:
            self.close()
        return self.stats

    def caught_up(self) -> bool:
        assigned = self._consumer.assignment()
        ends = self._consumer.end_offsets(list(assigned))
        return all(self._consumer.position(tp) >= end for tp, end in ends.items())

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._producer is not None:
            self._producer.close()
            self._producer = None
        if self._lock_conn is not None:
            self._lock_conn.close()  # ends the session: the advisory lock goes with it
            self._lock_conn = None
