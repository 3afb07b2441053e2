"""What the operations console knows: alerts, notifications, feedback, silences and the customer directory,
fed record by record, and the queries behind its API. Pure: no Kafka, no clock of its own.

``ConsoleModel.apply(topic, key, value, kafka_ts)`` takes one record of ``alerts``, ``notifications``,
``feedback``, ``gridwatch.silences`` or ``customers`` (the contract topic name, or the short names
``alerts`` / ``notifications`` / ``feedback`` / ``silences`` / ``customers``), ``value`` None for a
tombstone, and ``kafka_ts`` the record's Kafka timestamp in epoch **seconds** (None when unknown). It
returns the events to push to live subscribers: ``[(event, payload), ...]`` with event ``alert`` (the alert
summary), ``notification``, ``feedback`` or ``silence`` (the record). Alerts and silences keep the latest
record per id; notifications and feedback keep every record, the newest ``max_records`` of each.

Times: ``started_at`` / ``detected_at`` / ``resolved_at`` are event time (the readings' timestamps);
``created_at`` of a notification and the Kafka timestamps are wall time. They differ in a replay, which is
why :meth:`ConsoleModel.figures` says exactly how each figure combines them.
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter, defaultdict, deque
from datetime import datetime, timezone
from typing import Any, Iterable

from gridwatch import config as names, timefmt
from notifiers.privacy import mask_phone
from notifiers.silences import active as is_active, silence_state

__all__ = ["ConsoleModel", "MemoryDirectory", "STATUSES", "MESSAGE_STATUSES", "TOPIC_KINDS", "parse_time", "format_time",
           "quantile", "reason_category"]

STATUSES = ("open", "acknowledged", "resolved")
#: the statuses counted under ``messages`` in the figures
MESSAGE_STATUSES = ("sent", "delivered", "suppressed", "failed", "deferred")
TOPIC_KINDS = {
    names.ALERTS: "alerts", names.NOTIFICATIONS: "notifications", names.FEEDBACK: "feedback",
    names.SILENCES: "silences", names.CUSTOMERS: "customers",
    "alerts": "alerts", "notifications": "notifications", "feedback": "feedback", "silences": "silences",
    "customers": "customers",
}
MAX_RECORDS = 50_000

_REASON = re.compile(r"[A-Za-z_]+")


def parse_time(value: Any) -> float | None:
    """RFC 3339 (with an offset) or epoch seconds -> epoch seconds (float); None when absent or unreadable
    (:func:`gridwatch.timefmt.parse_time`)."""
    try:
        return timefmt.parse_time(value)
    except ValueError:
        return None


def format_time(epoch: float | None) -> str | None:
    """Epoch seconds -> RFC 3339 UTC, with milliseconds when there are any."""
    if epoch is None:
        return None
    dt = datetime.fromtimestamp(epoch, timezone.utc)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def quantile(sorted_values: list[float], q: float) -> float | None:
    """The ``q`` quantile with linear interpolation between closest ranks (numpy's default); None when empty."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _stats(values: Iterable[float]) -> dict:
    ordered = sorted(values)
    rnd = (lambda v: None if v is None else round(v, 3))
    return {"n": len(ordered), "median": rnd(quantile(ordered, 0.5)), "p95": rnd(quantile(ordered, 0.95))}


def reason_category(reason: Any) -> str:
    """The leading word of a decision's reason: ``"silenced sil-… by ana: …"`` -> ``"silenced"``,
    ``"budget: 3 messages in 24 h"`` -> ``"budget"``, ``"opted_out"`` -> ``"opted_out"``."""
    match = _REASON.match(str(reason or "").strip())
    return match.group(0) if match else "unknown"


def _count(value: Any) -> int:
    return len(value) if isinstance(value, (list, tuple)) else 0


#: what the console shows of a customer (and places them by); the rest of a directory record is not kept
CUSTOMER_FIELDS = ("meter_id", "transformer_id", "feeder_id", "phone", "language", "segment", "opted_out")
#: values many customers share, kept once
_SHARED = ("transformer_id", "feeder_id", "language", "segment")


def _directory_entry(record: dict) -> dict:
    """The fields of a customer record the console uses, with shared values interned: a million customers'
    records as decoded (every key a string of its own, contact details the console never shows) would be
    most of its memory."""
    out = {}
    for k in CUSTOMER_FIELDS:
        v = record.get(k)
        if v is not None:
            out[k] = sys.intern(v) if k in _SHARED and type(v) is str else v
    return out


class MemoryDirectory:
    """The whole customer directory in memory, fed from the ``customers`` topic read from its beginning: what
    the console holds without a database (small deployments, tests). ``version`` changes with every record,
    so summaries placed by the directory are recomputed when a customer moves."""

    remote = False

    def __init__(self):
        self.customers: dict[str, dict] = {}
        self._meter_customer: dict[str, str] = {}
        self.version = 0

    def __len__(self) -> int:
        return len(self.customers)

    def apply(self, cid: str, record: dict | None, position: tuple[int, int] | None = None) -> None:
        old = self.customers.pop(cid, None)
        if old is not None and self._meter_customer.get(old.get("meter_id")) == cid:
            del self._meter_customer[old["meter_id"]]
        if record is not None:
            entry = _directory_entry(record)
            self.customers[cid] = entry
            if entry.get("meter_id"):
                self._meter_customer[entry["meter_id"]] = cid
        self.version += 1

    def get(self, cid: str) -> dict | None:
        return self.customers.get(cid)

    def of_meter(self, meter_id: str) -> dict | None:
        cid = self._meter_customer.get(meter_id)
        return self.customers.get(cid) if cid else None


class ConsoleModel:
    """Everything the console shows, in memory. Not thread-safe: one event loop feeds and reads it."""

    def __init__(self, max_records: int = MAX_RECORDS, directory: Any = None):
        self.max_records = max_records
        #: where customers are looked up: :class:`MemoryDirectory` (default), or the history store's
        #: (:class:`console.board_store.StoreDirectory`), which holds only what was looked up lately
        self.directory = directory if directory is not None else MemoryDirectory()
        self.alerts: dict[str, dict] = {}
        self._first_ts: dict[str, float] = {}      # alert id -> Kafka timestamp of its first record
        self._updated_ts: dict[str, float] = {}    # alert id -> Kafka timestamp of its latest record
        self._alert_version: dict[str, int] = {}   # bumped on every record, for the summary cache
        self._summaries: dict[str, tuple[tuple, dict]] = {}
        #: alert id -> (feeder, transformers) as the history store placed it, for an alert loaded from there
        #: and not updated since
        self._placed: dict[str, tuple[str | None, list[str]]] = {}
        self.silences: dict[str, dict] = {}
        self._notifications: deque[dict] = deque()
        self._notes_by_alert: dict[str, deque[dict]] = defaultdict(deque)
        self._feedback: deque[dict] = deque()
        self._feedback_by_alert: dict[str, deque[dict]] = defaultdict(deque)
        #: (status, channel) -> notification records seen since start (a counter: never goes down)
        self.notification_counts: Counter = Counter()
        self._seq = 0

    # ------------------------------------------------------------------------------------- feeding

    @property
    def customers(self) -> dict[str, dict]:
        """The directory held in memory (without a database: every customer; with one: none)."""
        return getattr(self.directory, "customers", {})

    def apply(self, topic: str, key: str | None, value: Any, kafka_ts: float | None = None,
              position: tuple[int, int] | None = None) -> list[tuple[str, dict]]:
        kind = TOPIC_KINDS.get(topic)
        if kind is None:
            raise ValueError(f"the console does not read topic {topic!r}")
        if value is not None and not isinstance(value, dict):
            return []  # not a record of the contract: nothing to show
        if kind == "customers":
            return self._apply_customers(key, value, position)
        return getattr(self, f"_apply_{kind}")(key, value, kafka_ts)

    def load_alert(self, record: dict, first_ts: float | None, updated_ts: float | None,
                   placed: tuple[str | None, list[str]] | None = None) -> None:
        """An alert as the history store holds it (its latest record, the Kafka times of its first and latest
        records, and ``placed``: its feeder and transformers as the store worked them out), before the
        topic is read on from where the store's projection ended. Pushes nothing."""
        aid = record.get("alert_id")
        if not aid:
            return
        self._seq += 1
        self.alerts[aid] = record
        for d, ts in ((self._first_ts, first_ts), (self._updated_ts, updated_ts)):
            if ts is not None:
                d[aid] = ts
        self._alert_version[aid] = self._seq
        if placed is not None:
            self._placed[aid] = placed

    def evict(self, before: float) -> list[tuple[str, dict]]:
        """Forget resolved alerts whose latest record reached Kafka before ``before`` (epoch seconds): with
        a history store they are looked up there. Returns the deletions to push (the board then shows what
        a console started now would)."""
        old = [aid for aid, a in self.alerts.items()
               if a.get("status") == "resolved" and self._updated_ts.get(aid, 0.0) < before]
        for aid in old:
            self._forget(aid)
        return [("alert", {"alert_id": aid, "deleted": True}) for aid in old]

    def _forget(self, aid: str) -> None:
        self.alerts.pop(aid, None)
        for d in (self._first_ts, self._updated_ts, self._alert_version, self._summaries, self._placed):
            d.pop(aid, None)

    def _apply_alerts(self, key, value, ts):
        aid = (value or {}).get("alert_id") or key
        if not aid:
            return []
        self._seq += 1
        if value is None:
            if aid not in self.alerts:
                return []
            self._forget(aid)
            return [("alert", {"alert_id": aid, "deleted": True})]
        self.alerts[aid] = value
        self._placed.pop(aid, None)
        if ts is not None:
            self._first_ts[aid] = min(ts, self._first_ts.get(aid, ts))
            self._updated_ts[aid] = ts
        self._alert_version[aid] = self._seq
        return [("alert", self.summary(aid))]

    def _apply_customers(self, key, value, position):
        cid = key or (value or {}).get("customer_id")
        if cid:
            self.directory.apply(cid, value, position)
        return []

    def _apply_silences(self, key, value, ts):
        sid = key or (value or {}).get("silence_id")
        if not sid:
            return []
        if value is None:
            if self.silences.pop(sid, None) is None:
                return []
            return [("silence", {"silence_id": sid, "deleted": True})]
        if self.silences.get(sid) == value:
            return []  # the same record again (the console's own write, read back): nothing changed
        self.silences[sid] = value
        return [("silence", value)]

    def _apply_notifications(self, key, value, ts):
        if value is None:
            return []  # a tombstone deletes nothing from a history
        self._append(self._notifications, self._notes_by_alert, value)
        self.notification_counts[(str(value.get("status")), str(value.get("channel") or "sms"))] += 1
        return [("notification", value)]

    def _apply_feedback(self, key, value, ts):
        if value is None:
            return []
        self._append(self._feedback, self._feedback_by_alert, value)
        return [("feedback", value)]

    def _append(self, records: deque, by_alert: dict, record: dict) -> None:
        records.append(record)
        aid = record.get("alert_id")
        if aid:
            by_alert[aid].append(record)
        while len(records) > self.max_records:
            old = records.popleft()
            old_aid = old.get("alert_id")
            if old_aid and by_alert.get(old_aid) and by_alert[old_aid][0] is old:
                by_alert[old_aid].popleft()
                if not by_alert[old_aid]:
                    del by_alert[old_aid]

    # ------------------------------------------------------------------------------------- alerts

    def _customer_of_meter(self, meter_id: str) -> dict | None:
        return self.directory.of_meter(meter_id)

    @staticmethod
    def lookup_keys(alert: dict) -> tuple[list[str], list[str]]:
        """``(customer_ids, meter_ids)`` an alert's summary and detail look up in the directory."""
        cids = [c for c in alert.get("customer_ids") or [] if isinstance(c, str)]
        mids = [m for m in alert.get("meter_ids") or [] if isinstance(m, str)]
        return cids, mids

    def topology(self, alert: dict) -> tuple[str | None, list[str]]:
        """``(feeder_id, transformer_ids)`` of an alert: its own scope, and where its meters (else its
        customers) are in the customer directory. The feeder is the scope's for a feeder alert, else the
        feeder most of its meters are on."""
        scope = alert.get("scope") or {}
        transformers: set[str] = set()
        feeders: Counter = Counter()
        if scope.get("level") == "transformer" and scope.get("id"):
            transformers.add(scope["id"])
        found = [c for c in (self.directory.of_meter(m) for m in alert.get("meter_ids") or []) if c]
        if not found:
            found = [c for c in (self.directory.get(cid) for cid in alert.get("customer_ids") or []) if c]
        for customer in found:
            if customer.get("transformer_id"):
                transformers.add(customer["transformer_id"])
            if customer.get("feeder_id"):
                feeders[customer["feeder_id"]] += 1
        if scope.get("level") == "feeder" and scope.get("id"):
            feeder = scope["id"]
        else:
            feeder = min(feeders, key=lambda f: (-feeders[f], f)) if feeders else None
        return feeder, sorted(transformers)

    def summary(self, alert_id: str) -> dict | None:
        """The alert as a list row: its record's main fields, counts of meters and customers, feeder and
        transformers from the customer directory, and ``updated_at`` (Kafka time of its latest record)."""
        alert = self.alerts.get(alert_id)
        if alert is None:
            return None
        version = (self._alert_version.get(alert_id), self.directory.version)
        cached = self._summaries.get(alert_id)
        if cached is not None and cached[0] == version:
            return cached[1]
        placed = self._placed.get(alert_id)
        feeder, transformers = placed if placed is not None else self.topology(alert)
        row = {
            "alert_id": alert_id, "kind": alert.get("kind"), "severity": alert.get("severity"),
            "status": alert.get("status"), "scope": alert.get("scope"), "started_at": alert.get("started_at"),
            "detected_at": alert.get("detected_at"), "resolved_at": alert.get("resolved_at"),
            "n_meters": _count(alert.get("meter_ids")), "n_customers": _count(alert.get("customer_ids")),
            "feeder_id": feeder, "transformer_ids": transformers,
            "updated_at": format_time(self._updated_ts.get(alert_id)),
        }
        self._summaries[alert_id] = (version, row)
        return row

    def list_alerts(self, *, kind: Iterable[str] | None = None, severity: Iterable[str] | None = None,
                    status: Iterable[str] | None = None, feeder: Iterable[str] | None = None,
                    transformer: Iterable[str] | None = None, limit: int | None = None) -> dict:
        """``{"alerts": [summary, ...], "counts": {status: n}}``: newest detection first (then the latest
        update); every filter is a set of accepted values (None: any). ``counts`` are over the alerts that
        pass every filter except ``status``, before ``limit``."""
        kind, severity, status, feeder, transformer = (
            None if v is None else set(v) for v in (kind, severity, status, feeder, transformer))
        rows = []
        counts = {s: 0 for s in STATUSES}
        for aid in list(self.alerts):
            row = self.summary(aid)
            if kind is not None and row["kind"] not in kind:
                continue
            if severity is not None and row["severity"] not in severity:
                continue
            if feeder is not None and row["feeder_id"] not in feeder:
                continue
            if transformer is not None and not transformer.intersection(row["transformer_ids"]):
                continue
            if row["status"] in counts:
                counts[row["status"]] += 1
            if status is not None and row["status"] not in status:
                continue
            rows.append(row)
        rows.sort(key=lambda r: (parse_time(r["detected_at"]) or 0.0, parse_time(r["updated_at"]) or 0.0,
                                 r["alert_id"]), reverse=True)
        if limit is not None:
            rows = rows[:max(0, limit)]
        return {"alerts": rows, "counts": counts}

    def notifications_of(self, alert_id: str) -> list[dict]:
        """Every notification record of an alert still held, in the order they arrived."""
        return list(self._notes_by_alert.get(alert_id, ()))

    def feedback_of(self, alert_id: str) -> list[dict]:
        return list(self._feedback_by_alert.get(alert_id, ()))

    def first_sent(self, alert_id: str) -> dict | None:
        """The earliest (by ``created_at``) ``sent`` notification of an alert."""
        sent = [n for n in self._notes_by_alert.get(alert_id, ()) if n.get("status") == "sent"
                and parse_time(n.get("created_at")) is not None]
        return min(sent, key=lambda n: parse_time(n["created_at"])) if sent else None

    def timeline(self, alert_id: str) -> list[dict]:
        """``[{"event", "at", "by", "reason"}]`` in the order things happened to the alert: started (first
        abnormal reading), detected, notified (the first SMS sent), then each lifecycle change of the
        record's ``history``: acknowledged, resolved, reopened (open again after a resolution)."""
        alert = self.alerts.get(alert_id)
        if alert is None:
            return []
        history = [h for h in alert.get("history") or [] if isinstance(h, dict)]
        out = [{"event": "started", "at": alert.get("started_at"), "by": None, "reason": None}]
        first = history[0] if history and history[0].get("status") == "open" else None
        out.append({"event": "detected", "at": alert.get("detected_at"),
                    "by": (first or {}).get("by") or "detector", "reason": (first or {}).get("reason")})
        sent = self.first_sent(alert_id)
        if sent is not None:
            out.append({"event": "notified", "at": sent.get("created_at"), "by": sent.get("channel") or "sms",
                        "reason": None})
        rest = history[1:] if first is not None else history
        if history:
            for h in rest:
                event = {"open": "reopened", "acknowledged": "acknowledged", "resolved": "resolved"}.get(
                    h.get("status"))
                if event:
                    out.append({"event": event, "at": h.get("at"), "by": h.get("by"), "reason": h.get("reason")})
        else:  # a record without a history: what its fields say
            if alert.get("acknowledged_at"):
                out.append({"event": "acknowledged", "at": alert["acknowledged_at"],
                            "by": alert.get("acknowledged_by"), "reason": alert.get("ack_reason")})
            if alert.get("status") == "resolved":
                out.append({"event": "resolved", "at": alert.get("resolved_at"),
                            "by": alert.get("resolved_by") or "detector", "reason": alert.get("resolution_reason")})
        return out

    def customers_of(self, alert_id: str, *, reveal_phones: bool) -> list[dict]:
        """The alert's customers (then any other customer who was messaged about it), each with their
        notifications: one entry per ``notification_id`` with its latest status, and every record of it in
        ``history``. Phone numbers are masked unless ``reveal_phones``."""
        alert = self.alerts.get(alert_id) or {}
        order: list[str] = [c for c in alert.get("customer_ids") or [] if isinstance(c, str)]
        notes: dict[str, dict[str, dict]] = {}
        for n in self._notes_by_alert.get(alert_id, ()):
            cid, nid = n.get("customer_id"), n.get("notification_id")
            if not cid or not nid:
                continue
            if cid not in order:
                order.append(cid)
            entry = notes.setdefault(cid, {}).get(nid)
            if entry is None:
                entry = {"notification_id": nid, "channel": n.get("channel"), "status": None, "reason": None,
                         "body": None, "created_at": None, "provider_message_id": None, "history": []}
                notes[cid][nid] = entry
            entry.update(status=n.get("status"), reason=n.get("reason"), created_at=n.get("created_at"))
            if n.get("body"):
                entry["body"] = n["body"]
            if n.get("provider_message_id"):
                entry["provider_message_id"] = n["provider_message_id"]
            entry["history"].append({"status": n.get("status"), "reason": n.get("reason"),
                                     "created_at": n.get("created_at")})
        out = []
        seen = set()
        for cid in order:
            if cid in seen:
                continue
            seen.add(cid)
            c = self.directory.get(cid) or {}
            phone = c.get("phone")
            out.append({
                "customer_id": cid,
                "phone": (phone if reveal_phones else mask_phone(phone)) if phone else None,
                "language": c.get("language"), "segment": c.get("segment"), "meter_id": c.get("meter_id"),
                "transformer_id": c.get("transformer_id"), "feeder_id": c.get("feeder_id"),
                "opted_out": c.get("opted_out"), "known": bool(c),
                "notifications": list(notes.get(cid, {}).values()),
            })
        return out

    def detail(self, alert_id: str, *, reveal_phones: bool, evidence_url: str | None) -> dict | None:
        alert = self.alerts.get(alert_id)
        if alert is None:
            return None
        return {"alert": alert, "summary": self.summary(alert_id), "evidence_svg": evidence_url,
                "timeline": self.timeline(alert_id),
                "customers": self.customers_of(alert_id, reveal_phones=reveal_phones),
                "feedback": self.feedback_of(alert_id)}

    def detail_with(self, stored: dict, *, reveal_phones: bool, evidence_url: str | None) -> dict | None:
        """:meth:`detail` with what the history store holds of the alert (``stored``: ``record``, ``first_ts``,
        ``updated_ts``, ``placed``, ``notifications`` and ``feedback`` as records) joined to what the console
        holds: the held record and times win; of notifications and feedback the held records, and the
        stored ones of ids not held before them."""
        aid = stored.get("alert_id") or (stored.get("record") or {}).get("alert_id")
        record = self.alerts.get(aid) or stored.get("record")
        if record is None:
            return None
        probe = ConsoleModel(max_records=self.max_records, directory=self.directory)
        if aid in self.alerts:
            probe.load_alert(record, self._first_ts.get(aid), self._updated_ts.get(aid), self._placed.get(aid))
        else:
            probe.load_alert(record, stored.get("first_ts"), stored.get("updated_ts"), stored.get("placed"))
        held = list(self._notes_by_alert.get(aid, ()))
        held_ids = {n.get("notification_id") for n in held}
        for n in [n for n in stored.get("notifications") or [] if n.get("notification_id") not in held_ids] + held:
            probe._append(probe._notifications, probe._notes_by_alert, n)
        seen = {f.get("feedback_id") for f in self._feedback_by_alert.get(aid, ())}
        for f in [f for f in stored.get("feedback") or [] if f.get("feedback_id") not in seen] + \
                list(self._feedback_by_alert.get(aid, ())):
            probe._append(probe._feedback, probe._feedback_by_alert, f)
        return probe.detail(aid, reveal_phones=reveal_phones, evidence_url=evidence_url)

    # ------------------------------------------------------------------------------------ silences

    def list_silences(self, now: float) -> list[dict]:
        """Every silence with ``active`` (in force at ``now``) and ``state`` (active, scheduled, expired,
        ended), latest start first."""
        out = [{**s, "active": is_active(s, now), "state": silence_state(s, now)} for s in self.silences.values()]
        out.sort(key=lambda s: (str(s.get("starts_at")), str(s.get("silence_id"))), reverse=True)
        return out

    # ------------------------------------------------------------------------------------ feedback

    def list_feedback(self, limit: int | None = None) -> list[dict]:
        """Feedback records, newest first (the order they reached the console, reversed)."""
        out = list(reversed(self._feedback))
        return out if limit is None else out[:max(0, limit)]

    def satisfaction(self) -> dict:
        """Per alert kind: ``{"ratings": n, "mean": x, "distribution": {"1": n, ..., "5": n}}`` over the
        ratings (1-5) held; a rating's ``alert_id`` names the alert, whose kind it counts for ("unknown" when
        the alert is not known)."""
        by_kind: dict[str, list[int]] = defaultdict(list)
        for f in self._feedback:
            rating = f.get("rating")
            if isinstance(rating, bool) or not isinstance(rating, (int, float)) or not 1 <= rating <= 5:
                continue
            alert = self.alerts.get(f.get("alert_id") or "")
            by_kind[(alert or {}).get("kind") or "unknown"].append(int(rating))
        out = {}
        for kind, ratings in sorted(by_kind.items()):
            dist = Counter(ratings)
            out[kind] = {"ratings": len(ratings), "mean": round(sum(ratings) / len(ratings), 3),
                         "distribution": {str(r): dist.get(r, 0) for r in range(1, 6)}}
        return out

    # ------------------------------------------------------------------------------------- figures

    def detection_delays(self) -> list[float]:
        """``detected_at - started_at`` (event time, seconds) of every alert that has both."""
        out = []
        for alert in self.alerts.values():
            started, detected = parse_time(alert.get("started_at")), parse_time(alert.get("detected_at"))
            if started is not None and detected is not None:
                out.append(max(0.0, detected - started))
        return out

    def first_message_delays(self) -> list[float]:
        """Fault to first message, in seconds, per alert with a ``sent`` notification:

            (created_at of its first sent notification - Kafka timestamp of the alert's first record)
          + (detected_at - started_at)

        The first term is wall time (from the alert reaching Kafka to the message leaving), the second
        event time (from the first abnormal reading to its recognition). Each clock is only subtracted from
        itself, so the figure holds in a replay, where event time and wall time are far apart. The wall
        part is counted as 0 when clocks of different hosts put the message before the alert."""
        out = []
        for aid, alert in self.alerts.items():
            first_ts = self._first_ts.get(aid)
            sent = self.first_sent(aid)
            started, detected = parse_time(alert.get("started_at")), parse_time(alert.get("detected_at"))
            if first_ts is None or sent is None or started is None or detected is None:
                continue
            wall = max(0.0, parse_time(sent["created_at"]) - first_ts)
            out.append(wall + max(0.0, detected - started))
        return out

    def message_figures(self) -> dict:
        """Messages (distinct ``notification_id``) that reached each status among the records held; one
        deferred and later sent counts under both. ``suppressed_by_reason``: suppressed messages by the
        leading word of their reason (opted_out, silenced, budget, duplicate_of, inhibited …)."""
        reached: dict[str, set] = {s: set() for s in MESSAGE_STATUSES}
        reasons: dict[str, str] = {}
        for n in self._notifications:
            status, nid = n.get("status"), n.get("notification_id")
            if status in reached and nid:
                reached[status].add(nid)
                if status == "suppressed":
                    reasons[nid] = reason_category(n.get("reason"))
        out: dict[str, Any] = {s: len(reached[s]) for s in MESSAGE_STATUSES}
        out["suppressed_by_reason"] = dict(sorted(Counter(reasons.values()).items()))
        return out

    def false_alarms(self) -> dict:
        """Resolved alerts, those an operator resolved as ``no_fault``, and their share (null when none is
        resolved)."""
        resolved = [a for a in self.alerts.values() if a.get("status") == "resolved"]
        no_fault = sum(1 for a in resolved if a.get("no_fault") is True)
        return {"resolved": len(resolved), "no_fault": no_fault,
                "rate": round(no_fault / len(resolved), 4) if resolved else None}

    def figures(self) -> dict:
        return {"detection_s": _stats(self.detection_delays()),
                "first_message_s": _stats(self.first_message_delays()),
                "messages": self.message_figures(),
                "false_alarms": self.false_alarms()}

    def alert_counts(self) -> Counter:
        """(kind, status) -> number of alerts (latest record each)."""
        return Counter((str(a.get("kind")), str(a.get("status"))) for a in self.alerts.values())
