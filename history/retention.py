"""How long raw notifications are kept, and the monthly figures that outlive them.

The ``notifications`` table is the bulk of the store (one row per message: millions a year at a utility's size);
the reports need it only through the customer figures' monthly rows. With ``GRIDWATCH_HISTORY_KEEP_DAYS`` (or
``gridwatch history prune --keep-days N``) set, whole months (UTC) that ended more than N days ago are pruned:
first that month's rows of every customer-figures table are computed from the raw rows and kept in
``figures_months``, then, in the same transaction, the month's notifications are deleted — except those of an
alert that started after the cut (an alert's messages go with the alert). The customer figures of a kept month
are read from ``figures_months`` from then on, never recomputed; everything else (alerts, their customers,
feedback, actions, the directory, and so the reliability indices) is kept for good. Unset, nothing is pruned.

One alert's record (``/api/history/alerts/{id}``) lists the messages still kept: an older alert's list is empty.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timedelta, timezone

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine

from history import customer_figures, schema as t

log = logging.getLogger(__name__)
ENV = "GRIDWATCH_HISTORY_KEEP_DAYS"


def keep_days_from_env() -> int | None:
    """``GRIDWATCH_HISTORY_KEEP_DAYS`` as a number of days (None: unset, keep everything); ValueError if bad."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    try:
        days = int(raw)
    except ValueError:
        raise ValueError(f"{ENV} must be a whole number of days, not {raw!r}") from None
    if days < 1:
        raise ValueError(f"{ENV} must be at least 1 (unset it to keep every notification)")
    return days


def cut(keep_days: int, now: datetime | None = None) -> datetime:
    """The first day (UTC) of the month of ``now - keep_days``: months before it are pruned."""
    horizon = (now or datetime.now(timezone.utc)) - timedelta(days=keep_days)
    return datetime(horizon.year, horizon.month, 1, tzinfo=timezone.utc)


def _months(lo: datetime, hi: datetime) -> list[datetime]:
    out, m = [], lo
    while m < hi:
        out.append(m)
        m = datetime(m.year + (m.month == 12), m.month % 12 + 1, 1, tzinfo=timezone.utc)
    return out


def prune(engine: Engine, keep_days: int, now: datetime | None = None) -> dict:
    """Keep the figures of the months before the cut, then delete their raw notifications; returns what was
    done. Safe to run again (and concurrently with the projector: one transaction)."""
    before = cut(keep_days, now)
    with engine.begin() as conn:
        oldest = conn.execute(text("SELECT min(created_at) FROM notifications WHERE created_at < :cut"),
                              {"cut": before}).scalar()
        if oldest is None:
            return {"cut": before.date().isoformat(), "months_kept": [], "notifications_deleted": 0}
        first = datetime(oldest.year, oldest.month, 1, tzinfo=timezone.utc)
        frozen = set(conn.execute(text("SELECT month FROM figures_months")).scalars())
        kept = []
        for month in _months(first, before):
            key = month.strftime("%Y-%m")
            if key in frozen:
                continue
            nxt = _months(month, before + timedelta(days=32))[1]
            rows = customer_figures.compute(conn, month, nxt)
            body = json.loads(json.dumps({k: [r for r in rows[k] if r["month"] == key]
                                          for k in customer_figures.TABLES}, default=str))
            conn.execute(insert(t.figures_months).values(month=key, frozen_at=datetime.now(timezone.utc),
                                                         body=body).on_conflict_do_nothing())
            kept.append(key)
        deleted = conn.execute(text(
            "DELETE FROM notifications n WHERE n.created_at < :cut AND NOT EXISTS "
            "(SELECT 1 FROM alerts a WHERE a.alert_id = n.alert_id AND a.started_at >= :cut)"),
            {"cut": before}).rowcount
    log.info("history retention: notifications before %s pruned (%d rows); figures kept for %s",
             before.date(), deleted, ", ".join(kept) or "no new month")
    return {"cut": before.date().isoformat(), "months_kept": kept, "notifications_deleted": deleted}
