"""The live board on the history store: what the console looks up in PostgreSQL instead of holding it.

With a database configured (``GRIDWATCH_DATABASE_URL``, or the local server of ``gridwatch db start``) the
console does not read the ``customers`` topic and every alert at start. It takes one consistent snapshot of
the store (:meth:`BoardStore.snapshot`, one REPEATABLE READ transaction): the offsets the projector has
committed and, as of those offsets, the alerts that are not resolved or whose latest record is recent. It then
reads ``alerts``, ``notifications`` and ``customers`` on from those offsets, so the store and what follows
it on the topics are everything, each record once. Customers are looked up when an alert or a detail needs
them (:class:`StoreDirectory`), past alerts and their messages when they are asked for, and the board's
figures are computed by the database (:meth:`BoardStore.figures`).

Every method here blocks (SQLAlchemy, psycopg): the console calls them in a thread, off its event loop.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any, Iterable

from sqlalchemy import text
from sqlalchemy.engine import Engine

from console.model import CUSTOMER_FIELDS, MESSAGE_STATUSES, _directory_entry, format_time
from history import db, server

__all__ = ["BoardStore", "StoreDirectory", "Snapshot", "open_board_store"]

log = logging.getLogger(__name__)

#: seconds a query of the board may take before PostgreSQL cancels it
STATEMENT_TIMEOUT_MS = 10_000
_COLUMNS = ", ".join(CUSTOMER_FIELDS)


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _iso(value: datetime | None) -> str | None:
    return format_time(value.timestamp()) if value is not None else None


class Snapshot:
    """What the board starts from: ``offsets`` (deployed topic -> {partition: next offset} the projector
    committed) and ``alerts`` (dicts with ``record``, ``first_ts``, ``updated_ts``, ``placed``) as of them."""

    def __init__(self, offsets: dict[str, dict[int, int]], alerts: list[dict]):
        self.offsets, self.alerts = offsets, alerts


class BoardStore:
    """The console's queries on the history store."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def _connect(self):
        conn = self.engine.connect()
        conn.execute(text(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}"))
        return conn

    # ------------------------------------------------------------------------------- the start

    def snapshot(self, since: float) -> Snapshot:
        """The projector's offsets and, in the same snapshot of the database, the alerts not resolved or
        whose latest record reached Kafka at or after ``since`` (epoch seconds)."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                conn.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS * 6}"))
                offsets: dict[str, dict[int, int]] = {}
                for topic, partition, nxt in conn.execute(
                        text("SELECT topic, partition, next_offset FROM projector_offsets")):
                    offsets.setdefault(topic, {})[partition] = nxt
                rows = conn.execute(text(
                    "SELECT record, first_record_at, last_record_at, feeder_id, transformer_ids FROM alerts "
                    "WHERE status <> 'resolved' OR last_record_at >= :since OR last_record_at IS NULL"),
                    {"since": datetime.fromtimestamp(since, timezone.utc)}).all()
        alerts = [{"record": r.record, "first_ts": _epoch(r.first_record_at), "updated_ts": _epoch(r.last_record_at),
                   "placed": (r.feeder_id, sorted(r.transformer_ids or []))} for r in rows]
        return Snapshot(offsets, alerts)

    def projected(self) -> dict[str, dict[int, int]]:
        """deployed topic -> {partition: next offset} the projector has committed."""
        with self._connect() as conn:
            out: dict[str, dict[int, int]] = {}
            for topic, partition, nxt in conn.execute(
                    text("SELECT topic, partition, next_offset FROM projector_offsets")):
                out.setdefault(topic, {})[partition] = nxt
            return out

    # ---------------------------------------------------------------------------- customers

    def customers(self, customer_ids: Iterable[str], meter_ids: Iterable[str]) -> list[tuple[str, dict]]:
        """``[(customer_id, directory entry)]`` of the customers named or on the meters named."""
        cids, mids = sorted(set(customer_ids)), sorted(set(meter_ids))
        if not cids and not mids:
            return []
        with self._connect() as conn:
            rows = conn.execute(text(
                f"SELECT customer_id, {_COLUMNS} FROM customers "
                "WHERE customer_id = ANY(:cids) OR meter_id = ANY(:mids)"), {"cids": cids, "mids": mids}).mappings()
            return [(r["customer_id"], _directory_entry(r)) for r in rows]

    # ------------------------------------------------------------------------------- an alert

    def alert(self, alert_id: str) -> dict | None:
        """An alert as the store holds it, with its notifications (as the topic's records: the decision,
        and the provider's outcome when there is one) and its feedback; None when it is not there."""
        with self._connect() as conn:
            row = conn.execute(text(
                "SELECT record, first_record_at, last_record_at, feeder_id, transformer_ids FROM alerts "
                "WHERE alert_id = :a"), {"a": alert_id}).one_or_none()
            if row is None:
                return None
            notes = []
            for n in conn.execute(text(
                    "SELECT notification_id, customer_id, channel, status, reason, created_at, sent_at, outcome, "
                    "outcome_at FROM notifications WHERE alert_id = :a ORDER BY created_at, notification_id"),
                    {"a": alert_id}).mappings():
                base = {"notification_id": n["notification_id"], "alert_id": alert_id,
                        "customer_id": n["customer_id"], "channel": n["channel"]}
                notes.append({**base, "status": n["status"], "reason": n["reason"],
                              "created_at": _iso(n["sent_at"] or n["created_at"])})
                if n["outcome"]:
                    notes.append({**base, "status": n["outcome"], "reason": None, "created_at": _iso(n["outcome_at"])})
            feedback = [{**{k: v for k, v in f.items() if k != "received_at"}, "received_at": _iso(f["received_at"])}
                        for f in conn.execute(text(
                            "SELECT feedback_id, customer_id, alert_id, intent, rating, channel, received_at "
                            "FROM feedback WHERE alert_id = :a ORDER BY received_at, feedback_id"),
                            {"a": alert_id}).mappings()]
        return {"alert_id": alert_id, "record": row.record, "first_ts": _epoch(row.first_record_at),
                "updated_ts": _epoch(row.last_record_at),
                "placed": (row.feeder_id, sorted(row.transformer_ids or [])),
                "notifications": notes, "feedback": feedback}

    # -------------------------------------------------------------------------------- figures

    def satisfaction(self) -> dict:
        """Ratings per alert kind over every rating the store holds, as
        :meth:`console.model.ConsoleModel.satisfaction` gives them over the ratings it holds."""
        with self._connect() as conn:
            return _satisfaction_rows(conn)

    def figures(self) -> dict:
        """The board's figures (:meth:`console.model.ConsoleModel.figures`) over everything the store holds.

        Detection delay ``detected_at - started_at``; fault to first message ``(first sent_at - the alert's
        first Kafka timestamp) + (detected_at - started_at)``, each part at least 0, as the model computes
        them; median and p95 by linear interpolation (``percentile_cont``, numpy's default, the model's).
        Messages: one row per notification id, so each counts under the state it is in now (sent: it was
        sent; delivered / failed: the provider's outcome or the decision), not under every state it passed
        (a message deferred and then sent counts as sent only)."""
        with self._connect() as conn:
            det = _spread(conn,
                          "SELECT GREATEST(0, extract(epoch FROM detected_at - started_at)) AS d FROM alerts "
                          "WHERE detected_at IS NOT NULL AND started_at IS NOT NULL")
            first = _spread(conn,
                            "SELECT GREATEST(0, extract(epoch FROM f.first_sent - a.first_record_at)) "
                            "     + GREATEST(0, extract(epoch FROM a.detected_at - a.started_at)) AS d "
                            "FROM alerts a JOIN (SELECT alert_id, min(sent_at) AS first_sent FROM notifications "
                            "                    WHERE sent_at IS NOT NULL GROUP BY alert_id) f USING (alert_id) "
                            "WHERE a.first_record_at IS NOT NULL AND a.detected_at IS NOT NULL "
                            "AND a.started_at IS NOT NULL")
            msgs = conn.execute(text(
                "SELECT count(*) FILTER (WHERE sent_at IS NOT NULL), "
                "count(*) FILTER (WHERE outcome = 'delivered'), count(*) FILTER (WHERE status = 'suppressed'), "
                "count(*) FILTER (WHERE status = 'failed' OR outcome = 'failed'), "
                "count(*) FILTER (WHERE status = 'deferred') FROM notifications")).one()
            reasons = conn.execute(text(
                "SELECT COALESCE(substring(btrim(reason) FROM '^[A-Za-z_]+'), 'unknown') AS r, count(*) "
                "FROM notifications WHERE status = 'suppressed' GROUP BY r ORDER BY r")).all()
            resolved, no_fault = conn.execute(text(
                "SELECT count(*) FILTER (WHERE status = 'resolved'), "
                "count(*) FILTER (WHERE status = 'resolved' AND no_fault) FROM alerts")).one()

        def stats(row) -> dict:
            rnd = (lambda v: None if v is None else round(float(v), 3))
            return {"n": int(row[0]), "median": rnd(row[1]), "p95": rnd(row[2])}

        messages: dict[str, Any] = dict(zip(MESSAGE_STATUSES, (int(v) for v in msgs)))
        messages["suppressed_by_reason"] = {r: int(n) for r, n in reasons}
        return {"detection_s": stats(det), "first_message_s": stats(first), "messages": messages,
                "false_alarms": {"resolved": int(resolved), "no_fault": int(no_fault),
                                 "rate": round(no_fault / resolved, 4) if resolved else None}}


def _satisfaction_rows(conn) -> dict:
    out: dict[str, dict] = {}
    for kind, rating, n in conn.execute(text(
            "SELECT COALESCE(a.kind, 'unknown'), f.rating, count(*) FROM feedback f "
            "LEFT JOIN alerts a ON a.alert_id = f.alert_id WHERE f.rating BETWEEN 1 AND 5 "
            "GROUP BY 1, 2 ORDER BY 1, 2")):
        entry = out.setdefault(kind, {"distribution": {str(r): 0 for r in range(1, 6)}})
        entry["distribution"][str(rating)] = int(n)
    result = {}
    for kind, entry in out.items():
        dist = entry["distribution"]
        total = sum(dist.values())
        mean = sum(int(r) * n for r, n in dist.items()) / total
        result[kind] = {"ratings": total, "mean": round(mean, 3), "distribution": dist}
    return result


class StoreDirectory:
    """The customer directory looked up in the history store, for the console's model.

    Three layers, newest first: ``overlay`` — the records the console read on the ``customers`` topic beyond
    what the projector had committed (so a change shows before it is projected), dropped once the projector
    has committed past them (:meth:`prune`); a bounded cache of customers looked up lately; and the store.
    Lookups are filled ahead by :meth:`fill` with rows fetched in a thread (:meth:`BoardStore.customers`);
    :meth:`get` and :meth:`of_meter` only read what is held (an alert's feeder is worked out from what
    :meth:`missing` said to fetch first). ``version`` does not change: an alert's place is worked out when
    its record arrives, not again each time some customer changes.
    """

    remote = True
    version = 0

    def __init__(self, cache_size: int = 100_000):
        self.cache_size = cache_size
        self._cache: OrderedDict[str, dict | None] = OrderedDict()  # customer id -> entry (None: not there)
        self._meters: OrderedDict[str, str | None] = OrderedDict()  # meter id -> customer id
        self._overlay: dict[str, tuple[dict | None, tuple[int, int] | None]] = {}
        self._overlay_meters: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._overlay) + len(self._cache)

    # -- fed by the topic beyond the projection
    def apply(self, cid: str, record: dict | None, position: tuple[int, int] | None = None) -> None:
        old = self._overlay.get(cid, (None, None))[0] or self._cache.get(cid)
        if old and self._overlay_meters.get(old.get("meter_id")) == cid:
            del self._overlay_meters[old["meter_id"]]
        entry = _directory_entry(record) if record is not None else None
        self._overlay[cid] = (entry, position)
        if entry and entry.get("meter_id"):
            self._overlay_meters[entry["meter_id"]] = cid

    def prune(self, projected: dict[int, int]) -> int:
        """Drop the overlay's records the projector has committed (partition -> next offset); how many."""
        gone = [cid for cid, (_, pos) in self._overlay.items()
                if pos is not None and pos[1] < projected.get(pos[0], 0)]
        for cid in gone:
            entry, _ = self._overlay.pop(cid)
            if entry and self._overlay_meters.get(entry.get("meter_id")) == cid:
                del self._overlay_meters[entry["meter_id"]]
            self._cache.pop(cid, None)  # the store has this record or a later one: look it up again
        return len(gone)

    # -- looked up
    def missing(self, customer_ids: Iterable[str], meter_ids: Iterable[str]) -> tuple[list[str], list[str]]:
        """The customer and meter ids neither the overlay nor the cache holds."""
        cids = [c for c in customer_ids if c not in self._overlay and c not in self._cache]
        mids = [m for m in meter_ids if not self._has_meter(m)]
        return cids, mids

    def _has_meter(self, meter_id: str) -> bool:
        if meter_id in self._overlay_meters:
            return True
        if meter_id not in self._meters:
            return False
        cid = self._meters[meter_id]
        return cid is None or cid in self._cache or cid in self._overlay

    def fill(self, rows: Iterable[tuple[str, dict]], customer_ids: Iterable[str] = (),
             meter_ids: Iterable[str] = ()) -> None:
        """Cache looked-up rows; the ids asked for and not found are cached as absent."""
        found_meters = set()
        for cid, entry in rows:
            self._remember(self._cache, cid, entry)
            if entry.get("meter_id"):
                self._remember(self._meters, entry["meter_id"], cid)
                found_meters.add(entry["meter_id"])
        for cid in customer_ids:
            if cid not in self._cache:
                self._remember(self._cache, cid, None)
        for mid in meter_ids:
            if mid not in found_meters and mid not in self._meters:
                self._remember(self._meters, mid, None)

    def _remember(self, cache: OrderedDict, key: str, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self.cache_size:
            cache.popitem(last=False)

    def get(self, cid: str) -> dict | None:
        if cid in self._overlay:
            return self._overlay[cid][0]
        return self._cache.get(cid)

    def of_meter(self, meter_id: str) -> dict | None:
        cid = self._overlay_meters.get(meter_id)
        if cid is None:
            cid = self._meters.get(meter_id)
        if cid is None:
            return None
        entry = self.get(cid)
        return entry if entry is not None and entry.get("meter_id") == meter_id else None


def _spread(conn, values_sql: str):
    """(count, median, p95) of the column ``d`` of ``values_sql``, by linear interpolation."""
    return conn.execute(text(
        "SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY d), "
        f"percentile_cont(0.95) WITHIN GROUP (ORDER BY d) FROM ({values_sql}) x")).one()


def open_board_store(settings) -> BoardStore | None:
    """The board's store on the configured database (migrated to head), None when none is configured; the
    console never starts a database itself. Raises when one is configured but cannot be used."""
    try:
        url = db.database_url(settings, start=False)
    except server.ServerError:
        return None
    engine = db.make_engine(url, connect_args={"application_name": "gridwatch-console", "connect_timeout": 5})
    db.migrate(engine)
    return BoardStore(engine)
