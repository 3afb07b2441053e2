"""What customers saw, per month (UTC), beside the reliability indices: how fast they were told, whether before
they could report the fault themselves, what became of the messages, what they answered, how satisfied they
were and whether messages drove them to opt out.

Definitions (all from the history store):

* **fault to first message** of an alert: its detection delay in event time (``detected_at - started_at``)
  plus the wall time from the alert's first record on Kafka to its first sent message — event time and wall
  time differ in replays, so they are never subtracted from each other (as the console's figures do);
  p50 and p95 over the alerts of a kind that started in the month and reached at least one customer;
* **told before they could report it**: of the customers an outage named, the share sent its notice within
  ``report_window_s`` (default 15 minutes, about when customers begin to call) of the fault, by that measure;
* **delivery outcomes**: notifications created in the month by decision (sent, suppressed, failed, deferred)
  and, for sent ones, the provider's outcome (delivered, undelivered, failed, or none yet), per channel;
* **replies**: feedback received in the month by intent;
* **satisfaction**: ratings (1-5) received in the month by the rated alert's kind and the customer's segment;
* **opt-out after messages**: of the customers sent a message in the month, the share who opted out (STOP)
  within ``optout_window_days`` (7) after one of those messages.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

REPORT_WINDOW_S = 900
OPTOUT_WINDOW_DAYS = 7

_FIRST_MESSAGE = """
WITH first_sent AS (
  SELECT n.alert_id, min(n.sent_at) AS sent_at FROM notifications n
  WHERE n.sent_at IS NOT NULL GROUP BY n.alert_id
), delays AS (
  SELECT a.kind, to_char(a.started_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month,
         extract(epoch FROM a.detected_at - a.started_at)
         + greatest(0, extract(epoch FROM f.sent_at - a.first_record_at)) AS seconds
  FROM alerts a JOIN first_sent f ON f.alert_id = a.alert_id
  WHERE a.started_at >= :lo AND a.started_at < :hi AND a.detected_at IS NOT NULL
)
SELECT month, kind, count(*) AS alerts,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS p50_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds) AS p95_s
FROM delays GROUP BY month, kind ORDER BY month, kind
"""

_TOLD_FIRST = """
WITH affected AS (
  SELECT a.alert_id, ac.customer_id, a.started_at, a.detected_at, a.first_record_at,
         to_char(a.started_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month
  FROM alerts a JOIN alert_customers ac ON ac.alert_id = a.alert_id
  WHERE a.kind = 'outage' AND NOT a.no_fault AND a.started_at >= :lo AND a.started_at < :hi
), told AS (
  SELECT x.month, x.alert_id, x.customer_id,
         -- GREATEST ignores NULLs: a customer never sent anything must stay NULL, not get the detection delay
         min(CASE WHEN n.sent_at IS NOT NULL THEN extract(epoch FROM x.detected_at - x.started_at)
             + greatest(0, extract(epoch FROM n.sent_at - x.first_record_at)) END) AS seconds
  FROM affected x LEFT JOIN notifications n
    ON n.alert_id = x.alert_id AND n.customer_id = x.customer_id AND n.sent_at IS NOT NULL
  GROUP BY x.month, x.alert_id, x.customer_id
)
SELECT month, count(*) AS affected, count(seconds) AS told,
       count(*) FILTER (WHERE seconds <= :window_s) AS told_before_report
FROM told GROUP BY month ORDER BY month
"""

_DELIVERY = """
SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month, channel, status,
       coalesce(outcome, CASE WHEN status = 'sent' THEN 'no receipt' END) AS outcome, count(*) AS n
FROM notifications WHERE created_at >= :lo AND created_at < :hi
GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
"""

_REPLIES = """
SELECT to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month, coalesce(intent, 'other') AS intent,
       count(*) AS n
FROM feedback WHERE received_at >= :lo AND received_at < :hi GROUP BY 1, 2 ORDER BY 1, 2
"""

_SATISFACTION = """
SELECT to_char(f.received_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month, coalesce(a.kind, '(unknown)') AS kind,
       coalesce(c.segment, '(unknown)') AS segment, count(*) AS ratings, avg(f.rating)::float AS mean_rating,
       count(*) FILTER (WHERE f.rating >= 4) AS satisfied
FROM feedback f LEFT JOIN alerts a ON a.alert_id = f.alert_id LEFT JOIN customers c ON c.customer_id = f.customer_id
WHERE f.rating IS NOT NULL AND f.received_at >= :lo AND f.received_at < :hi
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""

_OPT_OUT = """
WITH messaged AS (
  SELECT to_char(sent_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month, customer_id, min(sent_at) AS first_sent,
         max(sent_at) AS last_sent
  FROM notifications WHERE sent_at >= :lo AND sent_at < :hi AND customer_id IS NOT NULL GROUP BY 1, 2
), opted AS (
  SELECT DISTINCT m.month, m.customer_id
  FROM feedback f JOIN messaged m ON m.customer_id = f.customer_id
  WHERE f.intent = 'opt_out' AND f.received_at >= m.first_sent
    AND f.received_at < m.last_sent + make_interval(days => :days)
)
SELECT m.month, count(*) AS messaged, count(o.customer_id) AS opted_out
FROM messaged m LEFT JOIN opted o ON o.month = m.month AND o.customer_id = m.customer_id
GROUP BY m.month ORDER BY m.month
"""


def _rows(conn: Connection, sql: str, params: dict) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(text(sql), params)]


TABLES = ("first_message", "told_before_report", "delivery", "replies", "satisfaction", "opt_out")


def report(conn: Connection, *, year: int | None = None, report_window_s: int = REPORT_WINDOW_S,
           optout_window_days: int = OPTOUT_WINDOW_DAYS) -> dict[str, Any]:
    """The year's figures: computed from the raw rows, except the months whose raw notifications were pruned
    (history/retention.py), whose rows were kept when they were pruned."""
    year = year or datetime.now(timezone.utc).year
    rep = compute(conn, datetime(year, 1, 1, tzinfo=timezone.utc), datetime(year + 1, 1, 1, tzinfo=timezone.utc),
                  report_window_s=report_window_s, optout_window_days=optout_window_days)
    frozen = dict(conn.execute(text("SELECT month, body FROM figures_months WHERE month LIKE :y ORDER BY month"),
                               {"y": f"{year:04d}-%"}).all())
    if frozen:
        for table in TABLES:
            rows = [r for r in rep[table] if r["month"] not in frozen]
            rows += [r for body in frozen.values() for r in body.get(table, [])]
            rep[table] = sorted(rows, key=lambda r: r["month"])  # stable: a month's rows keep their order
    return {"year": year, **rep}


def compute(conn: Connection, lo: datetime, hi: datetime, *, report_window_s: int = REPORT_WINDOW_S,
            optout_window_days: int = OPTOUT_WINDOW_DAYS) -> dict[str, Any]:
    """The figures of the months in [lo, hi), from the raw rows."""
    conn.execute(text("SET LOCAL work_mem = '64MB'"))  # until the transaction ends
    params = {"lo": lo, "hi": hi}
    first = _rows(conn, _FIRST_MESSAGE, params)
    for r in first:
        r["p50_s"], r["p95_s"] = round(float(r["p50_s"]), 3), round(float(r["p95_s"]), 3)
    told = _rows(conn, _TOLD_FIRST, {**params, "window_s": report_window_s})
    for r in told:
        r["share_told_before_report"] = round(r["told_before_report"] / r["affected"], 6) if r["affected"] else None
    sat = _rows(conn, _SATISFACTION, params)
    for r in sat:
        r["mean_rating"] = round(r["mean_rating"], 3)
    opt = _rows(conn, _OPT_OUT, {**params, "days": optout_window_days})
    for r in opt:
        r["opt_out_rate"] = round(r["opted_out"] / r["messaged"], 6) if r["messaged"] else None
    return {"report_window_s": report_window_s, "optout_window_days": optout_window_days,
            "first_message": first, "told_before_report": told, "delivery": _rows(conn, _DELIVERY, params),
            "replies": _rows(conn, _REPLIES, params), "satisfaction": sat, "opt_out": opt}
