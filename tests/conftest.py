"""Shared pytest fixtures."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from tests.ci import unavailable


# --- Kafka broker ------------------------------------------------------------------------------------
# Self-contained on purpose: other fixtures below may be added independently.

@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """The bootstrap address of a real Kafka broker for the whole test session.

    A broker that already answers on KAFKA_BOOTSTRAP_SERVERS is reused and left running. Otherwise one
    is started from the Maven Central jars (devtools.broker.start) and stopped again at session end, so
    a test run leaves the machine as it found it. When none can be started the tests that need it skip
    with the reason, except under CI=true, where a missing broker must fail the run instead of
    quietly turning it green.
    """
    from gridwatch.config import Settings
    from devtools import broker

    settings = Settings()
    if broker.is_reachable(settings.bootstrap_servers):
        yield settings.bootstrap_servers
        return
    try:
        outcome = broker.start(settings)
    except broker.BrokerError as exc:
        unavailable(f"no Kafka broker on {settings.bootstrap_servers} and none could be started: {exc}")
    try:
        yield settings.bootstrap_servers
    finally:
        if outcome == "started":
            broker.stop(settings)


@pytest.fixture(scope="module", autouse=True)
def _drop_topics_of_the_module():
    """Delete the topics of every prefix this module's tests made (see tests/prefixes.py)."""
    yield
    from tests.prefixes import drop_made

    drop_made()


# --- PostgreSQL (the operations history) ----------------------------------------------------------------

@pytest.fixture(scope="session")
def postgres_admin_url(postgres_server) -> str:
    return postgres_server[0]


@pytest.fixture(scope="session")
def postgres_log(postgres_server):
    """The server's log file when the tests started the server themselves, else None."""
    return postgres_server[1]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[tuple[str, "Path | None"]]:
    """A real PostgreSQL for the whole test session: GRIDWATCH_DATABASE_URL when set, else a server of its own.

    Started from the installed server binaries (history.server) in a temporary run directory on a free
    port, and stopped at session end. When none can be started the tests that need it skip with the
    reason, except under CI=true, where that fails the run.
    """
    import dataclasses
    import socket

    from gridwatch.config import Settings
    from history import db, server

    if os.environ.get("GRIDWATCH_DATABASE_URL"):
        yield db.normalize_url(os.environ["GRIDWATCH_DATABASE_URL"]), None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    import shutil
    from pathlib import Path

    # inside the checkout, not pytest's temporary directory: run as root the server runs as 'postgres',
    # which cannot enter the root-only /tmp/pytest-of-root
    run_dir = Path(__file__).resolve().parent.parent / ".run" / f"test-postgres-{os.getpid()}"
    remove = run_dir
    try:
        server.check_reachable(run_dir / "postgres", server.run_as())
    except server.ServerError:  # a checkout under a root-only directory (/root/...): a traversable one
        import tempfile

        base = Path(tempfile.mkdtemp(prefix="gridwatch-pg-"))
        os.chmod(base, 0o711)
        run_dir, remove = base / "run", base
    settings = dataclasses.replace(Settings(), run_dir=run_dir, database_url=None)
    try:
        url = server.start(settings, port=port)
    except server.ServerError as exc:
        unavailable(f"no PostgreSQL could be started: {exc}")
    try:
        yield url, server.LocalServer.for_settings(settings).log_file
    finally:
        server.stop(settings)
        shutil.rmtree(remove, ignore_errors=True)


@pytest.fixture
def history_engine(postgres_admin_url):
    """A fresh database on the session's server, migrated to head; dropped afterwards."""
    import uuid

    from sqlalchemy.engine import make_url

    from history import db, server

    name = f"t_{uuid.uuid4().hex[:12]}"
    server.create_database(postgres_admin_url, name)
    url = make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    engine = db.make_engine(url)
    db.migrate(engine)
    yield engine
    engine.dispose()
    server.drop_database(postgres_admin_url, name)
