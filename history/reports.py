"""The reports kept ready: computed from the raw rows in the background, read by the console at once.

At a utility's size a year's reliability report takes minutes to compute from the raw rows (README,
Measured), far too long for a page. So the projector refreshes ``report_cache`` — the reliability report
(every feeder: one feeder's view is a slice of it) and the customer figures, per year — at most every
``GRIDWATCH_REPORT_REFRESH_S`` seconds (60) after new rows arrived, in a thread of its own with its own
connection, so projecting never waits for it. The console answers from the cache with ``computed_at``
and computes on request only when a year has no cached report (or when asked with ``fresh=1``). Each feeder's
slice of the reliability report is kept in a row of its own (``report_slices``, written in the same transaction),
so one feeder's report reads a few kilobytes instead of the whole year's report of every feeder.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine

from history import customer_figures, reliability, schema as t
from history import retention

log = logging.getLogger(__name__)
NAMES = ("reliability", "customers")


def compute(conn: Connection, name: str, year: int) -> dict[str, Any]:
    if name == "reliability":
        return reliability.report(conn, year=year)
    if name == "customers":
        return customer_figures.report(conn, year=year)
    raise ValueError(f"no report {name!r}")


def refresh(engine: Engine, year: int, names=NAMES) -> dict[str, float]:
    """Compute and keep the reports of ``year``; seconds each took."""
    took = {}
    for name in names:
        began = time.monotonic()
        with engine.connect() as conn:
            body = json.loads(json.dumps(compute(conn, name, year), default=str))
            # the report's temporary table and settings end here; a commit, not a rollback, so that the
            # database's rollback count keeps meaning "a transaction was aborted"
            conn.commit()
        seconds = time.monotonic() - began
        row = {"name": name, "year": year, "computed_at": datetime.now(timezone.utc), "seconds": seconds,
               "body": body}
        stmt = insert(t.report_cache).values(row)
        with engine.begin() as conn:
            conn.execute(stmt.on_conflict_do_update(index_elements=["name", "year"],
                                                    set_={k: stmt.excluded[k] for k in row if k not in ("name", "year")}))
            # one feeder's view, kept beside the whole report (same transaction: never out of step with it)
            conn.execute(t.report_slices.delete().where(t.report_slices.c.name == name,
                                                        t.report_slices.c.year == year))
            slices = [{"name": name, "year": year, "scope": feeder, "body": feeder_slice(body, feeder)}
                      for feeder in ((body.get("feeders") or {}) if name == "reliability" else {})]
            if slices:
                conn.execute(insert(t.report_slices), slices)
        took[name] = seconds
    return took


def feeder_slice(rep: dict, feeder: str) -> dict:
    """One feeder's view of the whole reliability report (as reliability.report(feeder=…) makes it)."""
    out = {**rep, "feeder": feeder}
    for part in ("", "excluding_major_event_days"):
        body = rep.get(part) if part else rep
        if not body:
            continue
        periods = body["feeders"].get(feeder, {})
        view = {"system": periods, "feeders": {feeder: periods} if periods else {}}
        if part:
            out[part] = view
        else:
            out.update(view)
    return out


def cached(conn: Connection, name: str, year: int, feeder: str | None = None) -> dict[str, Any] | None:
    """The kept report of ``year`` (None: none kept yet); with ``feeder``, that feeder's slice of it, read from
    its own small row (a feeder the report does not name is sliced from the whole)."""
    c = t.report_cache.c
    if feeder is not None:
        s = t.report_slices.c
        row = conn.execute(select(s.body, c.computed_at, c.seconds)
                           .join_from(t.report_slices, t.report_cache, (s.name == c.name) & (s.year == c.year))
                           .where(s.name == name, s.year == year, s.scope == feeder)).first()
        if row is None:
            whole = cached(conn, name, year)
            return None if whole is None else feeder_slice(whole, feeder)
    else:
        row = conn.execute(select(c.body, c.computed_at, c.seconds).where(c.name == name, c.year == year)).first()
        if row is None:
            return None
    return {**row.body, "computed_at": row.computed_at.isoformat(), "compute_seconds": round(row.seconds, 3)}


def years_with_data(conn: Connection) -> list[int]:
    rows = conn.execute(text(
        "SELECT DISTINCT extract(year FROM started_at AT TIME ZONE 'UTC')::int AS y FROM alerts "
        "WHERE started_at IS NOT NULL UNION "
        "SELECT DISTINCT extract(year FROM created_at AT TIME ZONE 'UTC')::int FROM notifications "
        "WHERE created_at IS NOT NULL ORDER BY 1")).scalars().all()
    return [int(y) for y in rows]


class Refresher:
    """Refreshes the cached reports of the years that changed, at most every ``interval_s``, in a thread."""

    def __init__(self, engine: Engine, interval_s: float | None = None, keep_days: int | None = None):
        """``keep_days``: also prune raw notifications older than that (history/retention.py) before each
        refresh; default ``GRIDWATCH_HISTORY_KEEP_DAYS`` (unset: never)."""
        self.engine = engine
        self.keep_days = retention.keep_days_from_env() if keep_days is None else keep_days
        self.interval_s = float(os.environ.get("GRIDWATCH_REPORT_REFRESH_S", "60")) if interval_s is None else interval_s
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refreshes = 0

    def changed(self) -> None:
        self._dirty.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="report-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait()
            if self._stop.is_set():
                return
            self._dirty.clear()
            try:
                if self.keep_days is not None:  # before the reports, so they read the kept months
                    retention.prune(self.engine, self.keep_days)
                with self.engine.connect() as conn:
                    years = years_with_data(conn)
                    conn.commit()
                for year in years:
                    took = refresh(self.engine, year)
                    log.info("reports of %s refreshed (%s)", year,
                             ", ".join(f"{k} {v:.1f} s" for k, v in took.items()))
                self.refreshes += 1
            except Exception:  # the next change tries again; projecting goes on regardless
                log.exception("refreshing the reports failed")
            if self._stop.wait(self.interval_s):
                return
