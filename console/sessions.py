"""The console's sessions in PostgreSQL (the history store's database), so a restart signs nobody out.

:class:`PostgresSessions` is the :class:`console.auth.SessionStore` the console uses when a database is
configured (``GRIDWATCH_DATABASE_URL``, or the local server ``gridwatch db start`` runs). Reads happen once, at
start; writes (a sign-in, a sign-out, an expiry, a use at most once a minute per session) go through one
background thread in the order they were made, so a request never waits for the database. A write that fails is
logged and dropped: the session still works in this process, it only may not survive the next restart.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine

from console.auth import StoredSession
from history import schema as t
from history import db, server

log = logging.getLogger(__name__)


class PostgresSessions:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-sessions")
        self._last: Future | None = None

    def load(self) -> list[StoredSession]:
        s = t.console_sessions
        with self.engine.connect() as conn:
            rows = conn.execute(select(s.c.key, s.c.user_name, s.c.user_key, s.c.csrf, s.c.created,
                                       s.c.last_seen)).all()
        return [StoredSession(*row) for row in rows]

    def save(self, session: StoredSession) -> None:
        stmt = insert(t.console_sessions).values(
            key=session.key, user_name=session.user_name, user_key=session.user_key, csrf=session.csrf,
            created=session.created, last_seen=session.last_seen).on_conflict_do_nothing()
        self._write(lambda conn: conn.execute(stmt))

    def touch(self, key: str, last_seen: float) -> None:
        s = t.console_sessions
        stmt = update(s).where(s.c.key == key, s.c.last_seen < last_seen).values(last_seen=last_seen)
        self._write(lambda conn: conn.execute(stmt))

    def delete(self, keys: list[str]) -> None:
        stmt = delete(t.console_sessions).where(t.console_sessions.c.key.in_(list(keys)))
        self._write(lambda conn: conn.execute(stmt))

    def _write(self, work: Callable) -> None:
        self._last = self._writer.submit(self._run, work)

    def _run(self, work: Callable) -> None:
        try:
            with self.engine.begin() as conn:
                work(conn)
        except Exception as exc:  # the database went away: the session lives on in memory
            log.warning("console: a session was not written to the database (%s)", type(exc).__name__)

    def flush(self) -> None:
        """Wait until every write made so far is done."""
        if self._last is not None:
            self._last.result()

    def close(self) -> None:
        self._writer.shutdown(wait=True)


def open_sessions(settings) -> PostgresSessions | None:
    """The session store on the configured database (migrated to head), or None when there is none (sessions
    then live in memory only); the console never starts a database itself."""
    try:
        url = db.database_url(settings, start=False)
    except server.ServerError:
        return None
    engine = db.make_engine(url, connect_args={"application_name": "gridwatch-console"})
    db.migrate(engine)
    return PostgresSessions(engine)
