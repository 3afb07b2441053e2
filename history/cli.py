"""``gridwatch db …`` (the history store: start, stop, status, url, migrate, backup) and ``gridwatch history
…`` (the projector and the reports)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from kafka.errors import KafkaError

from history import customer_figures, db, reliability, reports, retention, server
from history.projector import Projector
from history.reports import Refresher


def _cmd_url(args) -> int:
    try:
        url = db.database_url(start=False)
    except server.ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(url if args.show_password else db.redacted(url))
    return 0


def _cmd_migrate(args) -> int:
    try:
        engine = db.make_engine(db.database_url())
    except (server.ServerError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    before = db.current_revision(engine)
    after = db.migrate(engine, args.revision)
    print(f"history schema: {before or 'empty'} -> {after}")
    return 0


def _cmd_backup(args) -> int:
    try:
        server.backup(db.database_url(start=False), Path(args.out))
    except (server.ServerError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} (restore: pg_restore --clean --if-exists -d <url> {args.out})")
    return 0


def _cmd_project(args) -> int:
    try:
        engine = db.open_store(application_name="gridwatch-history-projector")
    except (server.ServerError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # its own connections, named apart from the projector's in pg_stat_activity
    refresher = Refresher(db.make_engine(engine.url.render_as_string(hide_password=False),
                                         connect_args={"application_name": "gridwatch-history-reports"}))
    refresher.start()
    refresher.changed()  # the cached reports are brought up to date once at start
    projector = Projector(engine, batch_size=args.batch, on_commit=lambda batch: refresher.changed())
    print(f"projecting into {engine.url.render_as_string(hide_password=True)}", flush=True)
    try:
        stats = projector.run(stop, until_caught_up=args.once)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KafkaError as exc:
        print(f"error: cannot read Kafka at {projector.settings.bootstrap_servers} ({type(exc).__name__}: {exc}): "
              "start it with `gridwatch kafka start`", file=sys.stderr)
        return 1
    finally:
        refresher.stop()
    print(json.dumps(stats), flush=True)
    return 0


def _cmd_report(args) -> int:
    engine = db.open_store()
    with engine.connect() as conn:
        report = {"reliability": reliability.report(conn, year=args.year, feeder=args.feeder),
                  "customers": customer_figures.report(conn, year=args.year)}
    print(json.dumps(report, indent=2, default=str))
    return 0


def _cmd_refresh(args) -> int:
    engine = db.open_store()
    with engine.connect() as conn:
        years = [args.year] if args.year else reports.years_with_data(conn)
    for year in years:
        took = reports.refresh(engine, year)
        print(f"{year}: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in took.items()), flush=True)
    return 0


def _cmd_prune(args) -> int:
    try:
        days = args.keep_days if args.keep_days is not None else retention.keep_days_from_env()
    except ValueError as exc:
        print(f"gridwatch history prune: {exc}", file=sys.stderr)
        return 2
    if days is None or days < 1:
        print(f"gridwatch history prune: give --keep-days N (N >= 1) or set {retention.ENV}", file=sys.stderr)
        return 2
    print(json.dumps(retention.prune(db.open_store(), days)), flush=True)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "db", help="the operations history's PostgreSQL: start, stop, status, url, migrate, backup",
        description="With GRIDWATCH_DATABASE_URL unset, gridwatch runs its own PostgreSQL under <run dir>/postgres "
                    "on 127.0.0.1:GRIDWATCH_POSTGRES_PORT (5433) from the installed server binaries.")
    actions = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    server.register_actions(actions)
    p = actions.add_parser("url", help="print the database URL in use (password hidden)",
                           description="GRIDWATCH_DATABASE_URL, or the running local server's URL.")
    p.add_argument("--show-password", action="store_true", help="print the password too")
    p.set_defaults(func=_cmd_url)
    p = actions.add_parser("migrate", help="upgrade the history schema (Alembic) to the newest revision",
                           description="Apply the Alembic migrations in history/migrations; safe to run again.")
    p.add_argument("revision", nargs="?", default="head", help="target revision (default head)")
    p.set_defaults(func=_cmd_migrate)
    p = actions.add_parser("backup", help="pg_dump the history database to a file",
                           description="A custom-format pg_dump; restore it with pg_restore.")
    p.add_argument("out", help="the dump file to write")
    p.set_defaults(func=_cmd_backup)

    parser = subparsers.add_parser(
        "history", help="the operations history: the projector, reliability and customer reports",
        description="Project alerts, notifications, feedback, alert actions and customers from Kafka into "
                    "PostgreSQL (GRIDWATCH_DATABASE_URL, else the local server), and report from it.")
    actions = parser.add_subparsers(dest="history_command", metavar="ACTION", required=True)
    p = actions.add_parser("project", help="run the projector (Kafka -> PostgreSQL, exactly once)",
                           description="Reads the five topics from the offsets stored with the rows; Ctrl-C stops it.")
    p.add_argument("--batch", type=int, default=2000, help="records per transaction at most (default 2000)")
    p.add_argument("--once", action="store_true", help="stop when every partition has been read to its end")
    p.set_defaults(func=_cmd_project)
    p = actions.add_parser("refresh", help="compute the cached reports the console answers from",
                           description="What the projector does in the background every GRIDWATCH_REPORT_REFRESH_S "
                                       "(60) seconds after new rows: the reliability report and the customer "
                                       "figures of every year with data (or --year), kept in report_cache.")
    p.add_argument("--year", type=int, default=None, help="one year only")
    p.set_defaults(func=_cmd_refresh)
    p = actions.add_parser("prune", help="delete raw notifications of old months, keeping their figures",
                           description="Whole months that ended more than --keep-days (default "
                                       "GRIDWATCH_HISTORY_KEEP_DAYS) ago: their customer figures are kept in "
                                       "figures_months, then their notifications deleted. The projector does "
                                       "this before each refresh when GRIDWATCH_HISTORY_KEEP_DAYS is set.")
    p.add_argument("--keep-days", type=int, default=None, help="days of raw notifications to keep")
    p.set_defaults(func=_cmd_prune)
    p = actions.add_parser("report", help="IEEE 1366 reliability indices and customer figures as JSON",
                           description="Per month and year to date, per feeder and for the system.")
    p.add_argument("--year", type=int, default=None, help="the year (default: the current one)")
    p.add_argument("--feeder", default=None, help="one feeder only")
    p.set_defaults(func=_cmd_report)
