"""Where the history store is and how to reach it: the URL, an engine, and the schema migrated to head.

``GRIDWATCH_DATABASE_URL`` (``postgresql://user:password@host:5432/db``; the ``postgresql+psycopg`` driver is
used whatever the scheme says) names an existing PostgreSQL. Unset, the project's own local server is
started (or reused) under the run directory (:mod:`history.server`).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from gridwatch.config import Settings
from history import server

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: key of the advisory lock that serialises migrations of one database (any constant of our own)
MIGRATION_LOCK = 0x67726964


def normalize_url(url: str) -> str:
    """A PostgreSQL URL with the psycopg 3 driver; anything but PostgreSQL is refused."""
    u = make_url(url)
    if u.get_backend_name() != "postgresql":
        raise ValueError(f"the history store is PostgreSQL; GRIDWATCH_DATABASE_URL names {u.get_backend_name()!r}")
    return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def database_url(settings: Settings | None = None, *, start: bool = True) -> str:
    """GRIDWATCH_DATABASE_URL, else the local server's (started when ``start``; ServerError if it cannot be)."""
    settings = settings or Settings()
    if settings.database_url:
        return normalize_url(settings.database_url)
    url = server.local_url(settings)
    if url is None:
        if not start:
            raise server.ServerError("no GRIDWATCH_DATABASE_URL and the local PostgreSQL is not running: "
                                     "`gridwatch db start`")
        url = server.start(settings)
    return url


def redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def make_engine(url: str, **kwargs) -> Engine:
    return create_engine(normalize_url(url), pool_pre_ping=True, **kwargs)


def alembic_config(url: str | None = None):
    from alembic.config import Config  # alembic takes ~1.5 s to import: only when migrating

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def migrate(engine: Engine, revision: str = "head") -> str:
    """Upgrade the schema to ``revision`` under an advisory lock (several processes may start at once);
    returns the revision the database is at afterwards."""
    # alembic takes ~1.5 s to import: only when migrating, not in every gridwatch command
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
        try:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            conn.commit()
            current = MigrationContext.configure(conn).get_current_revision()
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
            conn.commit()
    return current or "base"


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext  # alembic: ~1.5 s to import, only here

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory  # alembic: ~1.5 s to import, only here

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def open_store(settings: Settings | None = None, *, application_name: str = "gridwatch") -> Engine:
    """An engine on the history database, its schema migrated to head (the local server started if needed)."""
    engine = make_engine(database_url(settings), connect_args={"application_name": application_name})
    migrate(engine)
    return engine
