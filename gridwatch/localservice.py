"""A server gridwatch runs for itself in the background: the local Kafka broker, the local PostgreSQL.

Both live the same way, so the way is written once here: their files sit in one directory of the run
directory (``<run dir>/<name>``: config, data, log, and a pid file of ours), a start launches the server
detached with its output in the log and waits until it answers, and a stop acts only on the pid in the pid
file, and only while that pid is still the very process we launched (its command line is checked, so a
reused pid or a server started some other way is never touched): first the server's own shutdown signal, a
grace time, then SIGKILL. What differs (how the server is prepared, how "it answers" is probed, which
command line is ours) stays with the server's module (``devtools/broker.py``, ``history/server.py``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Self

from gridwatch.config import Settings
from gridwatch.locks import locked

STOP_GRACE_S = 30.0

# Popen handles of servers started by this very process, so a stop can reap them (no zombie whose pid still
# "exists") and Python does not warn about a child it never waited for.
_CHILDREN: dict[int, subprocess.Popen] = {}


class ServiceError(RuntimeError):
    """A local server cannot be provided; the message says what to do about it."""


# --------------------------------------------------------------------------------------------- processes

def alive(pid: int) -> bool:
    """The process exists and is not a zombie (reaping it first if it is our own child)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def cmdline(pid: int) -> list[str]:
    """The process's arguments (``/proc``, else ``ps``); empty when it is gone or cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return []
    except OSError:
        return []
    try:  # no procfs (macOS): ask ps
        out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True,
                             text=True, timeout=5).stdout
        return out.split()
    except (OSError, subprocess.SubprocessError):
        return []


def read_int(path: Path) -> int | None:
    """The integer a small file of ours holds (a pid, a port), or None when it is missing or not one."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# ------------------------------------------------------------------------------------------------ service

@dataclass(frozen=True)
class LocalService:
    """One local server's directory and its process; a subclass names its files and says which process is ours.

    A subclass sets ``subdir`` (its directory under the run directory), ``pid_name`` and ``log_name`` (files in
    it), ``label`` (for messages: "the Kafka broker"), ``error`` (the exception its callers catch),
    ``stop_signal`` (the server's clean shutdown) and implements :meth:`owns`.
    """

    home: Path

    subdir: ClassVar[str]
    pid_name: ClassVar[str]
    log_name: ClassVar[str]
    label: ClassVar[str]
    error: ClassVar[type[Exception]] = ServiceError
    stop_signal: ClassVar[int] = signal.SIGTERM
    stop_grace_s: ClassVar[float] = STOP_GRACE_S

    @classmethod
    def for_settings(cls, settings: Settings) -> Self:
        return cls(Path(settings.run_dir).expanduser().resolve() / cls.subdir)

    @property
    def pid_file(self) -> Path:
        return self.home / self.pid_name

    @property
    def log_file(self) -> Path:
        return self.home / self.log_name

    def owns(self, args: list[str]) -> bool:
        """Whether a process with these arguments is this server (and not whatever now has a reused pid)."""
        raise NotImplementedError

    def is_ours(self, pid: int) -> bool:
        return alive(pid) and self.owns(cmdline(pid))

    def managed_pid(self) -> int | None:
        """The pid of the server this project started and that still runs, else None."""
        pid = read_int(self.pid_file)
        return pid if pid is not None and self.is_ours(pid) else None

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Held while starting, so two processes never prepare or launch the same server at once."""
        return locked(self.home / ".lock")

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return f"(no {self.log_name})"
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def rotate_log(self) -> None:
        """Keep the previous run's log as ``<log>.1`` for a post-mortem."""
        if self.log_file.exists():
            self.log_file.replace(self.log_file.with_name(self.log_name + ".1"))

    def launch(self, cmd: list[str], **popen_kwargs) -> subprocess.Popen:
        """Start ``cmd`` in its own session, in ``home``, its output appended to the log; record its pid."""
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(cmd, cwd=self.home, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                                    **popen_kwargs)
        _CHILDREN[proc.pid] = proc
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc

    def wait_ready(self, pid: int, proc: subprocess.Popen | None, ready: Callable[[], bool], timeout: float,
                   since: float, poll_s: float = 0.1) -> None:
        """Return once ``ready()`` is true; raise ``error`` with the log's end if the process dies first or
        ``timeout`` seconds from ``since`` pass (a process we launched, ``proc``, is then stopped)."""
        deadline = since + timeout
        while True:
            if ready():
                return
            if not alive(pid):
                code = proc.returncode if proc is not None else "?"
                self.pid_file.unlink(missing_ok=True)
                raise self.error(f"{self.label} exited (code {code}) before it was ready; "
                                 f"end of {self.log_file}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                if proc is not None:
                    self.terminate(pid)
                    self.pid_file.unlink(missing_ok=True)
                raise self.error(f"{self.label} was not ready after {timeout:.0f} s; "
                                 f"end of {self.log_file}:\n{self.log_tail()}")
            time.sleep(poll_s)

    def terminate(self, pid: int) -> None:
        """``stop_signal`` (the server's clean shutdown), SIGKILL once ``stop_grace_s`` has passed."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, self.stop_signal)
        deadline = time.monotonic() + self.stop_grace_s
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while alive(pid) and time.monotonic() < deadline + 10:
                time.sleep(0.1)
        child = _CHILDREN.pop(pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)

    def stop(self) -> bool:
        """Stop the server this project started; True if one was stopped.

        Acts only on the pid in the pid file, and only while that pid is still our server: a stale pid file
        (the process is gone, or its pid now belongs to another) is removed and nothing is signalled.
        """
        pid = read_int(self.pid_file)
        if pid is None:
            return False
        if not self.is_ours(pid):
            self.pid_file.unlink(missing_ok=True)
            return False
        self.terminate(pid)
        self.pid_file.unlink(missing_ok=True)
        return True
