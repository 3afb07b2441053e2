"""The local-server runner behind ``gridwatch kafka`` and ``gridwatch db`` (gridwatch/localservice.py), on real
child processes: a small Python sleeper stands in for the broker or PostgreSQL."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gridwatch.config import Settings
from gridwatch.localservice import LocalService, ServiceError, alive, read_int

# Writes "ready" into the file named by its first argument once it is set up, then sleeps. With "stubborn" as
# its second argument it ignores SIGTERM first, as a server stuck in its shutdown would.
SLEEPER = """
import signal, sys, time
if sys.argv[2] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("sleeper up", flush=True)
open(sys.argv[1], "w").write("ready")
time.sleep(120)
"""


class Sleeper(LocalService):
    subdir = "sleeper"
    pid_name = "sleeper.pid"
    log_name = "sleeper.log"
    label = "the sleeper"
    stop_grace_s = 1.0

    @property
    def marker(self) -> Path:
        return self.home / "ready"

    def owns(self, args: list[str]) -> bool:
        return len(args) >= 4 and args[1] == "-c" and args[3] == str(self.marker)

    def command(self, mode: str = "polite") -> list[str]:
        return [sys.executable, "-c", SLEEPER, str(self.marker), mode]


@pytest.fixture
def service(tmp_path) -> Sleeper:
    service = Sleeper.for_settings(Settings(run_dir=tmp_path))
    service.home.mkdir(parents=True)
    yield service
    pid = read_int(service.pid_file)
    if pid is not None and service.is_ours(pid):  # a failed test must not leave a sleeper behind
        service.terminate(pid)


def _start(service: Sleeper, mode: str = "polite") -> subprocess.Popen:
    proc = service.launch(service.command(mode))
    service.wait_ready(proc.pid, proc, service.marker.exists, timeout=30, since=time.monotonic())
    return proc


def test_paths_live_under_the_run_directory(tmp_path):
    service = Sleeper.for_settings(Settings(run_dir=tmp_path / "run"))
    assert service.home == (tmp_path / "run" / "sleeper").resolve()
    assert service.pid_file == service.home / "sleeper.pid"
    assert service.log_file == service.home / "sleeper.log"


def test_a_launched_server_is_managed_until_stopped(service):
    proc = _start(service)
    assert read_int(service.pid_file) == proc.pid
    assert service.managed_pid() == proc.pid
    assert "sleeper up" in service.log_file.read_text()

    assert service.stop() is True
    assert proc.returncode == -signal.SIGTERM  # the clean shutdown signal was enough
    assert not service.pid_file.exists()
    assert service.managed_pid() is None
    assert service.stop() is False  # nothing left to stop


def test_a_server_that_ignores_the_shutdown_signal_is_killed_after_the_grace_time(service):
    proc = _start(service, "stubborn")
    began = time.monotonic()
    assert service.stop() is True
    waited = time.monotonic() - began
    assert proc.returncode == -signal.SIGKILL
    assert waited >= service.stop_grace_s, "killed before the grace time was up"
    assert not alive(proc.pid)


def test_a_stale_pid_file_of_a_process_that_is_gone_is_cleared(service):
    gone = subprocess.Popen(service.command())
    gone.kill()
    gone.wait()
    service.pid_file.write_text(f"{gone.pid}\n")
    assert service.managed_pid() is None
    assert service.stop() is False
    assert not service.pid_file.exists()


def test_a_pid_that_now_belongs_to_another_process_is_never_signalled(service):
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        service.pid_file.write_text(f"{stranger.pid}\n")
        assert service.managed_pid() is None
        assert service.stop() is False
        assert stranger.poll() is None, "stop() signalled a process it did not start"
        assert not service.pid_file.exists()
    finally:
        stranger.kill()
        stranger.wait()


def test_garbage_in_the_pid_file_means_no_server(service):
    service.pid_file.write_text("not a pid\n")
    assert service.managed_pid() is None
    assert service.stop() is False


def test_a_zombie_is_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.05)
    try:
        assert not alive(child.pid)  # exited, not yet reaped: its pid still "exists"
    finally:
        child.wait()


def test_a_server_that_exits_before_it_is_ready_is_reported_with_its_log(service):
    proc = service.launch([sys.executable, "-c", "import sys; print('bad config line 3'); sys.exit(3)"])
    with pytest.raises(ServiceError) as exc_info:
        service.wait_ready(proc.pid, proc, lambda: False, timeout=30, since=time.monotonic())
    message = str(exc_info.value)
    assert message.startswith("the sleeper exited (code 3) before it was ready")
    assert "bad config line 3" in message
    assert not service.pid_file.exists()


def test_a_launched_server_not_ready_in_time_is_stopped(service):
    proc = service.launch(service.command())
    with pytest.raises(ServiceError, match="the sleeper was not ready after 1 s"):
        service.wait_ready(proc.pid, proc, lambda: False, timeout=1, since=time.monotonic())
    assert proc.returncode is not None
    assert not service.pid_file.exists()


def test_previous_log_is_kept_once(service):
    service.log_file.write_text("first run\n")
    service.rotate_log()
    assert service.log_file.with_name("sleeper.log.1").read_text() == "first run\n"
    assert not service.log_file.exists()
    assert service.log_tail() == "(no sleeper.log)"
