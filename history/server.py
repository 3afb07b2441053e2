"""A local PostgreSQL server for the operations history, started and stopped by gridwatch itself.

Why this exists: the history store (``history/``) is a real PostgreSQL, and ``make demo`` / ``make test``
must work on a machine where nobody set one up. When ``GRIDWATCH_DATABASE_URL`` is unset, gridwatch runs
its own cluster the way ``devtools/broker.py`` runs Kafka (both through ``gridwatch/localservice.py``): data,
log, generated password and pid file in the run directory (``<run dir>/postgres``, by default
``.run/postgres``), listening on 127.0.0.1 only, password authentication (scram-sha-256) even there, and only
a server this module started (its pid file, checked to still be that ``postgres`` process on that data
directory) is ever stopped.

The server binaries are the installed PostgreSQL's (Debian/Ubuntu: ``apt-get install postgresql``, which
puts them in ``/usr/lib/postgresql/<major>/bin``; elsewhere ``initdb`` on PATH, or
``GRIDWATCH_POSTGRES_BIN``). README's "Operations history" section says why these and not a PyPI wheel.

PostgreSQL refuses to run as root. Started by root (CI, containers), the cluster runs as the unprivileged
``postgres`` account that Debian's package creates (``GRIDWATCH_POSTGRES_USER`` names another), which then
owns the data directory; the server is still stopped only by what started it.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from gridwatch.config import Settings
from gridwatch.localservice import LocalService, ServiceError, port_open, read_int

BIND_HOST = "127.0.0.1"
DEFAULT_PORT = 5433  # beside, not on, a system cluster's 5432
SUPERUSER = "gridwatch"
DATABASE = "gridwatch"
INSTALL_HINT = ("install the PostgreSQL server (Debian/Ubuntu: `apt-get install postgresql`), put its bin "
                "directory on PATH or in GRIDWATCH_POSTGRES_BIN, or point GRIDWATCH_DATABASE_URL at a "
                "PostgreSQL you run yourself")


class ServerError(ServiceError):
    """The local PostgreSQL cannot be provided; the message says what to do about it."""


class LocalServer(LocalService):
    """One project's PostgreSQL: its files (all under ``run_dir/postgres``) and its postmaster process."""

    subdir = "postgres"
    # postgres writes postmaster.pid into the data directory itself; this one is ours
    pid_name = "server.pid"
    log_name = "postgres.log"
    label = "postgres"
    error = ServerError
    stop_signal = signal.SIGINT  # PostgreSQL's "fast" shutdown: open transactions rolled back, a clean checkpoint

    def owns(self, args: list[str]) -> bool:
        """``postgres -D <our data dir>``."""
        return bool(args) and Path(args[0]).name == "postgres" and str(self.data_dir) in args

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def password_file(self) -> Path:
        return self.home / "password"

    @property
    def port_file(self) -> Path:
        return self.home / "port"


# ------------------------------------------------------------------------------------------ binaries

def find_bin_dir() -> Path:
    """The directory holding ``initdb`` and ``postgres``: GRIDWATCH_POSTGRES_BIN, Debian's newest, PATH."""
    explicit = os.environ.get("GRIDWATCH_POSTGRES_BIN")
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        majors = sorted((p for p in debian.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True)
        candidates += [p / "bin" for p in majors]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bin_dir in candidates:
        if (bin_dir / "initdb").is_file() and (bin_dir / "postgres").is_file():
            return bin_dir
    if explicit:
        raise ServerError(f"GRIDWATCH_POSTGRES_BIN={explicit} holds no initdb and postgres: {INSTALL_HINT}")
    raise ServerError(f"no PostgreSQL server binaries found: {INSTALL_HINT}")


def server_version(bin_dir: Path) -> str:
    out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, timeout=30)
    parts = out.stdout.split()
    return parts[2] if out.returncode == 0 and len(parts) > 2 else "unknown"


def run_as() -> pwd.struct_passwd | None:
    """The account the server runs as when we are root (postgres refuses root), else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("GRIDWATCH_POSTGRES_USER", "postgres")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise ServerError(
            f"running as root, and PostgreSQL refuses to run as root; the account {name!r} to run it as does "
            f"not exist: Debian's `apt-get install postgresql` creates 'postgres', or set "
            f"GRIDWATCH_POSTGRES_USER to an unprivileged account") from None


def _popen_kwargs(account: pwd.struct_passwd | None) -> dict:
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def check_reachable(home: Path, account: pwd.struct_passwd | None) -> None:
    """Root runs the server as ``account``, which must be able to walk down to the run directory."""
    if account is None:
        return
    for parent in reversed(home.parents):
        if not parent.exists():
            break  # the rest is made by us, world-traversable (umask 022)
        st = parent.stat()
        if st.st_uid != account.pw_uid and not st.st_mode & 0o001:
            raise ServerError(f"PostgreSQL runs as {account.pw_name!r} (we are root), which cannot enter {parent} "
                              f"(mode {st.st_mode & 0o777:o}): use a run directory (GRIDWATCH_RUN_DIR) it can reach")


def _chown_tree(path: Path, account: pwd.struct_passwd | None) -> None:
    if account is None:
        return
    os.chown(path, account.pw_uid, account.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            with contextlib.suppress(FileNotFoundError):
                os.lchown(os.path.join(root, name), account.pw_uid, account.pw_gid)


def managed_pid(settings: Settings | None = None) -> int | None:
    """The pid of the server this project started and that still runs, else None."""
    return LocalServer.for_settings(settings or Settings()).managed_pid()


# -------------------------------------------------------------------------------------------- public

def url_for(paths: LocalServer, port: int, database: str = DATABASE) -> str:
    password = paths.password_file.read_text().strip()
    return f"postgresql+psycopg://{SUPERUSER}:{quote(password, safe='')}@{BIND_HOST}:{port}/{database}"


def local_url(settings: Settings | None = None) -> str | None:
    """The URL of this project's local server when it runs, else None."""
    settings = settings or Settings()
    paths = LocalServer.for_settings(settings)
    port = read_int(paths.port_file)
    if managed_pid(settings) is None or port is None:
        return None
    return url_for(paths, port)


def _init_cluster(bin_dir: Path, paths: LocalServer, account) -> None:
    """initdb once: a superuser ``gridwatch`` with a generated password, scram-sha-256, UTF-8, no locale."""
    if (paths.data_dir / "PG_VERSION").is_file():
        return
    began = time.monotonic()
    shutil.rmtree(paths.data_dir, ignore_errors=True)  # a half-made one from an interrupted initdb
    paths.password_file.write_text(secrets.token_urlsafe(24) + "\n")
    os.chmod(paths.password_file, 0o600)
    pwfile = paths.home / ".initdb-pw"
    pwfile.write_text(paths.password_file.read_text())
    _chown_tree(paths.home, account)
    try:
        proc = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(paths.data_dir), "-U", SUPERUSER, f"--pwfile={pwfile}",
             "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale", "--no-instructions"],
            capture_output=True, text=True, timeout=300, cwd=paths.home, **_popen_kwargs(account))
    finally:
        pwfile.unlink(missing_ok=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ServerError(f"initdb in {paths.data_dir} failed:\n{tail}")
    print(f"postgres: initialised {paths.data_dir} in {time.monotonic() - began:.1f} s"
          + (f" (runs as {account.pw_name}: PostgreSQL refuses root)" if account else ""), flush=True)


def start(settings: Settings | None = None, *, port: int | None = None, timeout: float = 60) -> str:
    """Make this project's PostgreSQL run; returns its URL (postgresql+psycopg://…/gridwatch).

    Reuses the server this project already runs; otherwise initialises ``<run dir>/postgres/data`` (once)
    and starts ``postgres`` there on ``port`` (GRIDWATCH_POSTGRES_PORT, default 5433), waits until it
    accepts connections and creates the ``gridwatch`` database. Raises ServerError with what to do.
    """
    settings = settings or Settings()
    paths = LocalServer.for_settings(settings)
    port = port or int(os.environ.get("GRIDWATCH_POSTGRES_PORT", DEFAULT_PORT))
    paths.home.mkdir(parents=True, exist_ok=True)
    with paths.lock():
        pid = paths.managed_pid()
        running_port = read_int(paths.port_file)
        if pid is not None and running_port is not None:
            _wait_ready(paths, pid, None, running_port, timeout, time.monotonic())
            return url_for(paths, running_port)
        paths.pid_file.unlink(missing_ok=True)
        if port_open(BIND_HOST, port):
            raise ServerError(f"{BIND_HOST}:{port} is held by another process: set GRIDWATCH_POSTGRES_PORT to a "
                              f"free port, or GRIDWATCH_DATABASE_URL to use that server")
        bin_dir = find_bin_dir()
        account = run_as()
        check_reachable(paths.home, account)
        _init_cluster(bin_dir, paths, account)
        # a server killed hard leaves postmaster.pid behind; postgres itself checks whether it is stale
        paths.rotate_log()
        paths.log_file.touch()
        _chown_tree(paths.home, account)
        os.chmod(paths.data_dir, 0o700)
        cmd = [str(bin_dir / "postgres"), "-D", str(paths.data_dir), "-p", str(port),
               "-c", f"listen_addresses={BIND_HOST}", "-c", f"unix_socket_directories={paths.home}",
               "-c", "max_connections=50", "-c", "shared_buffers=64MB", "-c", "fsync=on"]
        launched = time.monotonic()
        proc = paths.launch(cmd, **_popen_kwargs(account))
        paths.port_file.write_text(f"{port}\n")
        _wait_ready(paths, proc.pid, proc, port, timeout, launched)
        create_database(url_for(paths, port, "postgres"), DATABASE)
        print(f"postgres {server_version(bin_dir)} ready on {BIND_HOST}:{port} in "
              f"{time.monotonic() - launched:.1f} s (pid {proc.pid}, data {paths.data_dir})", flush=True)
        return url_for(paths, port)


def _wait_ready(paths: LocalServer, pid: int, proc, port: int, timeout: float, since: float) -> None:
    password = paths.password_file.read_text().strip()

    def accepts() -> bool:
        try:
            with psycopg.connect(host=BIND_HOST, port=port, user=SUPERUSER, password=password,
                                 dbname="postgres", connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    paths.wait_ready(pid, proc, accepts, timeout, since)


def create_database(admin_url: str, name: str) -> bool:
    """CREATE DATABASE ``name`` unless it exists (through the server's ``postgres`` database); True if made."""
    u = make_url(admin_url)
    with psycopg.connect(host=u.host, port=u.port, user=u.username, password=u.password,
                         dbname=u.database or "postgres", autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # made concurrently
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    return False


def drop_database(admin_url: str, name: str) -> None:
    u = make_url(admin_url)
    with psycopg.connect(host=u.host, port=u.port, user=u.username, password=u.password,
                         dbname="postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def stop(settings: Settings | None = None) -> bool:
    """Stop the server this project started (its pid file, still that postgres); True if one was stopped."""
    return LocalServer.for_settings(settings or Settings()).stop()


def status(settings: Settings | None = None) -> dict:
    settings = settings or Settings()
    paths = LocalServer.for_settings(settings)
    pid = managed_pid(settings)
    return {"managed_pid": pid, "port": read_int(paths.port_file) if pid else None,
            "data_dir": str(paths.data_dir), "log": str(paths.log_file),
            "initialised": (paths.data_dir / "PG_VERSION").is_file()}


def backup(url: str, out: Path) -> None:
    """``pg_dump`` of the history database in the custom format (restore with ``pg_restore``)."""
    u = make_url(url)
    try:
        pg_dump = str(find_bin_dir() / "pg_dump")
    except ServerError:
        pg_dump = shutil.which("pg_dump") or ""
    if not pg_dump:
        raise ServerError(f"pg_dump not found: {INSTALL_HINT}")
    env = {**os.environ, "PGPASSWORD": u.password or ""}
    proc = subprocess.run([pg_dump, "-Fc", "-h", u.host or BIND_HOST, "-p", str(u.port or 5432),
                           "-U", u.username or "", "-f", str(out), u.database or DATABASE],
                          capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise ServerError(f"pg_dump failed: {proc.stderr.strip()[-2000:]}")


# ----------------------------------------------------------------------------------------------- CLI

def _cmd_start(args) -> int:
    try:
        start(timeout=args.timeout)
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_stop(args) -> int:
    print("stopped the local PostgreSQL" if stop()
          else "no PostgreSQL started by gridwatch is running (nothing stopped)")
    return 0


def _cmd_status(args) -> int:
    info = status()
    if args.json:
        print(json.dumps(info, indent=2))
    elif info["managed_pid"]:
        print(f"local PostgreSQL running on {BIND_HOST}:{info['port']} (pid {info['managed_pid']}, "
              f"data {info['data_dir']})")
    else:
        print(f"no local PostgreSQL running (data {info['data_dir']}"
              f"{', initialised' if info['initialised'] else ''})")
    return 0


def register_actions(actions) -> None:
    """``gridwatch db start|stop|status`` (added by history.cli)."""
    p = actions.add_parser(
        "start", help="start the local PostgreSQL (when GRIDWATCH_DATABASE_URL is unset)",
        description="Initialise <run dir>/postgres once and start PostgreSQL there on 127.0.0.1:"
                    "GRIDWATCH_POSTGRES_PORT (5433), as the 'postgres' account when run as root.")
    p.add_argument("--timeout", type=float, default=60, help="seconds to wait for readiness (default 60)")
    p.set_defaults(func=_cmd_start)
    p = actions.add_parser("stop", help="stop the local PostgreSQL gridwatch started (never another)",
                           description="Fast shutdown of the server in <run dir>/postgres/server.pid.")
    p.set_defaults(func=_cmd_stop)
    p = actions.add_parser("status", help="whether the local PostgreSQL runs",
                           description="Show the local server's pid, port and data directory.")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=_cmd_status)
