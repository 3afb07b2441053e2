"""The console's history API: alerts by period, feeder, transformer, kind and status with search and
pagination, one alert's record of what happened, the reliability indices and the customer figures — all
read from the history store (PostgreSQL, filled by ``gridwatch history project``), each as JSON or CSV.

The console never starts a database: it uses ``GRIDWATCH_DATABASE_URL`` or the local server that ``gridwatch
db start`` (or ``make demo``) runs, found on the first history request; without one these paths answer
503 with what to do, and the live board is unaffected. Queries run in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import and_, desc, func, or_, select, tuple_
from sqlalchemy.engine import Engine

from console.errors import ApiError  # the console's JSON error, answered by its middleware
from console.openapi import UNAUTHORIZED, _error, _json
from gridwatch.timefmt import parse_datetime
from history import customer_figures, db, reliability, reports, schema as t, server

PAGE_DEFAULT, PAGE_MAX = 50, 1000
CUSTOMER_TABLES = ("first_message", "told_before_report", "delivery", "replies", "satisfaction", "opt_out")


@dataclass
class HistoryStore:
    """The engine, made on first use (and again after a failure)."""

    settings: Any
    engine: Engine | None = None
    static_dir: Path | None = None  # the console's pages (history.html)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def get(self) -> Engine:
        if self.engine is not None:
            return self.engine
        async with self.lock:
            if self.engine is None:
                self.engine = await asyncio.to_thread(self._open)
        return self.engine

    def _open(self) -> Engine:
        try:
            engine = db.make_engine(db.database_url(self.settings, start=False),
                                    connect_args={"application_name": "gridwatch-console"})
            db.migrate(engine)
        except (server.ServerError, ValueError) as exc:
            raise _api_error(503, f"history store unavailable: {exc}") from None
        except Exception as exc:  # the database refuses connections, …
            raise _api_error(503, f"history store unavailable: {type(exc).__name__}") from None
        return engine


HISTORY = web.AppKey("history", HistoryStore)


def install(app: web.Application, settings, engine: Engine | None = None, *,
            static_dir: Path | None = None) -> None:
    """Add the history paths to the console's app (``engine``: a given one, e.g. in tests; ``static_dir``:
    where the console's pages are)."""
    app[HISTORY] = HistoryStore(settings, engine, static_dir=static_dir)
    r = app.router
    r.add_get("/history", history_page)
    r.add_get("/api/history/alerts", list_alerts)
    r.add_get("/api/history/alerts/{alert_id}", alert_record)
    r.add_get("/api/history/reliability", reliability_report)
    r.add_get("/api/history/customers", customer_report)


# ------------------------------------------------------------------------------------------- helpers

def _api_error(status: int, message: str) -> Exception:
    return ApiError(status, message)


def _bad(message: str) -> Exception:
    return _api_error(400, message)


def _values(request: web.Request, name: str) -> list[str] | None:
    raw = request.query.getall(name, [])
    values = sorted({v.strip() for item in raw for v in item.split(",") if v.strip()})
    return values or None


def _time(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        return parse_datetime(raw, naive_utc=True)
    except ValueError:
        raise _bad(f"{name} must be an RFC 3339 time or a date (YYYY-MM-DD), not {raw!r}") from None


def _int(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad(f"{name} must be a whole number, not {raw!r}") from None
    if not lo <= value <= hi:
        raise _bad(f"{name} must be between {lo} and {hi}")
    return value


def _wants_csv(request: web.Request) -> bool:
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise _bad("format must be json or csv")
    return fmt == "csv"


def _csv(rows: list[dict], filename: str) -> web.Response:
    out = io.StringIO()
    columns = list(dict.fromkeys(k for row in rows for k in row))
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


def _jsonable(row: dict) -> dict:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def _encode_cursor(started_at: datetime | None, alert_id: str) -> str:
    raw = json.dumps([started_at.isoformat() if started_at else None, alert_id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(raw: str) -> tuple[datetime, str]:
    try:
        started, aid = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        return parse_datetime(started), str(aid)
    except (ValueError, TypeError):
        raise _bad("cursor is not one this API gave out") from None


async def _run(request: web.Request, fn, *args):
    engine = await request.app[HISTORY].get()

    def work():
        with engine.connect() as conn:
            return fn(conn, *args)
    return await asyncio.to_thread(work)


# ------------------------------------------------------------------------------------------ handlers

async def history_page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(request.app[HISTORY].static_dir / "history.html", headers={"Cache-Control": "no-store"})


ALERT_COLUMNS = (t.alerts.c.alert_id, t.alerts.c.kind, t.alerts.c.severity, t.alerts.c.status,
                 t.alerts.c.scope_level, t.alerts.c.scope_id, t.alerts.c.feeder_id, t.alerts.c.transformer_ids,
                 t.alerts.c.started_at, t.alerts.c.detected_at, t.alerts.c.resolved_at, t.alerts.c.no_fault)


def alert_query(*, since=None, until=None, feeders=None, transformers=None, kinds=None, statuses=None,
                search=None, cursor=None, limit=PAGE_DEFAULT):
    """Newest first (started_at, then alert_id), keyset-paginated: ``cursor`` is the last row of the page before."""
    started = t.alerts.c.started_at
    conditions = [started.is_not(None)]
    if since is not None:
        conditions.append(started >= since)
    if until is not None:
        conditions.append(started < until)
    if feeders:
        conditions.append(t.alerts.c.feeder_id.in_(feeders))
    if transformers:
        conditions.append(t.alerts.c.transformer_ids.overlap(transformers))
    if kinds:
        conditions.append(t.alerts.c.kind.in_(kinds))
    if statuses:
        conditions.append(t.alerts.c.status.in_(statuses))
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append(or_(t.alerts.c.alert_id.ilike(pattern), t.alerts.c.scope_id.ilike(pattern),
                              t.alerts.c.feeder_id.ilike(pattern)))
    if cursor is not None:
        conditions.append(tuple_(started, t.alerts.c.alert_id) < tuple_(cursor[0], cursor[1]))
    customers = (select(func.count()).where(t.alert_customers.c.alert_id == t.alerts.c.alert_id)
                 .scalar_subquery().label("customers"))
    return (select(*ALERT_COLUMNS, customers).where(and_(*conditions))
            .order_by(desc(started), desc(t.alerts.c.alert_id)).limit(limit))


async def list_alerts(request: web.Request) -> web.Response:
    limit = _int(request, "limit", PAGE_DEFAULT, 1, PAGE_MAX)
    cursor = _decode_cursor(request.query["cursor"]) if request.query.get("cursor") else None
    query = alert_query(since=_time(request, "from"), until=_time(request, "to"),
                        feeders=_values(request, "feeder"), transformers=_values(request, "transformer"),
                        kinds=_values(request, "kind"), statuses=_values(request, "status"),
                        search=(request.query.get("q") or "").strip() or None, cursor=cursor, limit=limit + 1)
    rows = await _run(request, lambda conn: [dict(r._mapping) for r in conn.execute(query)])
    more = len(rows) > limit
    rows = rows[:limit]
    if _wants_csv(request):
        return _csv(rows, "alerts.csv")
    nxt = _encode_cursor(rows[-1]["started_at"], rows[-1]["alert_id"]) if more and rows else None
    return web.json_response({"items": [_jsonable(r) for r in rows], "next_cursor": nxt})


def _alert_record(conn, aid: str) -> dict | None:
    row = conn.execute(select(t.alerts.c.record, t.alerts.c.first_record_at, t.alerts.c.last_record_at)
                       .where(t.alerts.c.alert_id == aid)).first()
    if row is None:
        return None
    customers = conn.execute(select(t.alert_customers.c.customer_id).where(t.alert_customers.c.alert_id == aid)
                             .order_by(t.alert_customers.c.customer_id)).scalars().all()
    notes = conn.execute(select(t.notifications.c.status, t.notifications.c.outcome, func.count())
                         .where(t.notifications.c.alert_id == aid)
                         .group_by(t.notifications.c.status, t.notifications.c.outcome)).all()
    actions = conn.execute(select(t.alert_actions.c.action, t.alert_actions.c.author, t.alert_actions.c.reason,
                                  t.alert_actions.c.at).where(t.alert_actions.c.alert_id == aid)
                           .order_by(t.alert_actions.c.at)).all()
    ratings = conn.execute(select(func.count(t.feedback.c.rating), func.avg(t.feedback.c.rating))
                           .where(t.feedback.c.alert_id == aid)).one()
    return {"record": row.record, "first_record_at": row.first_record_at.isoformat() if row.first_record_at else None,
            "customers_ever_affected": customers,
            "notifications": [{"status": s, "outcome": o, "count": n} for s, o, n in notes],
            "actions": [_jsonable(dict(a._mapping)) for a in actions],
            "ratings": {"count": ratings[0], "mean": float(ratings[1]) if ratings[1] is not None else None}}


async def alert_record(request: web.Request) -> web.Response:
    aid = request.match_info["alert_id"]
    found = await _run(request, _alert_record, aid)
    if found is None:
        raise _api_error(404, f"no alert {aid!r} in the history")
    return web.json_response(found)


def _year(request: web.Request) -> int:
    return _int(request, "year", datetime.now(timezone.utc).year, 1970, 9999)


def _fresh(request: web.Request) -> bool:
    return request.query.get("fresh", "") in ("1", "true")


def _report(conn, name: str, year: int, fresh: bool, feeder: str | None = None) -> dict:
    """The kept report (history/reports.py) unless there is none or a fresh one is asked for; with
    ``feeder``, that feeder's slice."""
    rep = None if fresh else reports.cached(conn, name, year, feeder)
    if rep is None:
        rep = json.loads(json.dumps(reports.compute(conn, name, year), default=str))
        rep["computed_at"] = datetime.now(timezone.utc).isoformat()
        if feeder is not None:
            rep = reports.feeder_slice(rep, feeder)
    return rep


async def reliability_report(request: web.Request) -> web.Response:
    year, feeder, fresh = _year(request), (request.query.get("feeder") or None), _fresh(request)
    rep = await _run(request, lambda conn: _report(conn, "reliability", year, fresh, feeder))
    rep["ranking"] = sorted(({"feeder_id": f, **v["ytd"]} for f, v in rep["feeders"].items()),
                            key=lambda r: (-(r["saidi"] or 0), r["feeder_id"]))
    if _wants_csv(request):
        return _csv(reliability.monthly_rows(rep), f"reliability-{year}.csv")
    return web.json_response(rep)


async def customer_report(request: web.Request) -> web.Response:
    year = _year(request)
    fresh = _fresh(request)
    rep = await _run(request, lambda conn: _report(conn, "customers", year, fresh))
    if _wants_csv(request):
        table = request.query.get("table")
        if table not in CUSTOMER_TABLES:
            raise _bad(f"CSV needs table= one of {', '.join(CUSTOMER_TABLES)}")
        return _csv(rep[table], f"{table}-{year}.csv")
    return web.json_response(rep)


# ------------------------------------------------------------------------------------------- OpenAPI

def openapi_paths() -> dict[str, Any]:
    def q(name, description, schema=None):
        return {"name": name, "in": "query", "required": False, "description": description,
                "schema": schema or {"type": "string"}}

    fmt = q("format", "json (default) or csv (a file to download)", {"enum": ["json", "csv"]})
    year = q("year", "the year (default the current one, UTC)", {"type": "integer"})
    fresh = q("fresh", "1: compute now instead of answering from the report kept by the projector "
                       "(`computed_at` says when that was)", {"enum": ["0", "1"]})
    unavailable = _error("The history store cannot be reached (no GRIDWATCH_DATABASE_URL and no local server).")
    number = {"type": ["number", "null"]}
    indices = {"type": "object", "properties": {
        "customers_served": {"type": "integer"}, "customer_interruptions": {"type": "integer"},
        "customer_minutes_interrupted": {"type": "number"}, "momentary_customer_interruptions": {"type": "integer"},
        "saifi": number, "saidi": number, "caidi": number, "maifi": number,
        "cemi_1": number, "cemi_2": number, "cemi_3": number}}
    periods = {"type": "object", "description": "YYYY-MM (UTC months with interruptions) and ytd",
               "additionalProperties": indices}
    row = {"type": "array", "items": {"type": "object"}}
    csv_body = {"text/csv": {"schema": {"type": "string"}}}
    return {
        "/api/history/alerts": {"get": {
            "summary": "Alerts from the history store, newest first, with filters, search and pagination",
            "parameters": [q("from", "started at or after (RFC 3339 or YYYY-MM-DD)"),
                           q("to", "started before"), q("feeder", "feeder ids, comma-separated"),
                           q("transformer", "transformer ids, comma-separated"), q("kind", "kinds, comma-separated"),
                           q("status", "open, acknowledged, resolved; comma-separated"),
                           q("q", "search: part of the alert id, scope id or feeder id"),
                           q("limit", f"page size, 1-{PAGE_MAX} (default {PAGE_DEFAULT})", {"type": "integer"}),
                           q("cursor", "next_cursor of the previous page"), fmt],
            "responses": {"200": {"description": "One page", "content": {
                "application/json": {"schema": {"type": "object", "required": ["items", "next_cursor"], "properties": {
                    "items": row, "next_cursor": {"type": ["string", "null"]}}}}, **csv_body}},
                "400": _error("A filter cannot be read."), "401": UNAUTHORIZED, "503": unavailable}}},
        "/api/history/alerts/{alert_id}": {"get": {
            "summary": "One alert's latest record, every customer it ever named, its notifications, actions, ratings",
            "parameters": [{"name": "alert_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _json({"type": "object"}, "The alert's history"),
                          "401": UNAUTHORIZED, "404": _error("Not in the history."), "503": unavailable}}},
        "/api/history/reliability": {"get": {
            "summary": "IEEE 1366 reliability indices per feeder and system, per month and year to date",
            "description": "SAIFI, SAIDI, CAIDI, MAIFI (momentary: at most 5 minutes), CEMI-n and customer minutes "
                           "interrupted, from the outage incidents and the customers they named; the 2.5 beta "
                           "major event days when a year of history exists; `ranking`: feeders by SAIDI year to "
                           "date. CSV: one row per scope and period.",
            "parameters": [year, q("feeder", "one feeder only"), fresh, fmt],
            "responses": {"200": {"description": "The report", "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "year": {"type": "integer"}, "system": periods,
                    "feeders": {"type": "object", "additionalProperties": periods},
                    "major_event_days": {"type": "object"}, "ranking": row}}}, **csv_body}},
                "400": _error("year or format cannot be read."), "401": UNAUTHORIZED, "503": unavailable}}},
        "/api/history/customers": {"get": {
            "summary": "What customers saw, per month: fault to first message, told before they could report, "
                       "delivery outcomes, replies, satisfaction by kind and segment, opt-outs after messages",
            "parameters": [year, fresh, fmt, q("table", f"with format=csv: one of {', '.join(CUSTOMER_TABLES)}")],
            "responses": {"200": {"description": "The figures", "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    name: row for name in CUSTOMER_TABLES}}}, **csv_body}},
                "400": _error("year, format or table cannot be read."), "401": UNAUTHORIZED, "503": unavailable}}},
    }
