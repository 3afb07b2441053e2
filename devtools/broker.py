"""A real single-node Apache Kafka broker (KRaft, combined broker + controller) without Docker.

Why this exists: the tests, the demo and a developer's laptop need a genuine Kafka broker, and not
every machine has a Docker engine. The broker's jars come from Maven Central (``devtools/kafka/pom.xml``)
through Maven, once, into a per-user cache; the broker runs from them with ``java`` as a detached
background process whose data, config, log and pid file live in the project's run directory
(``Settings().run_dir / "kafka"``, by default ``.run/kafka``). ``docker compose up`` is the
alternative where a Docker engine exists.

Only a broker this module started (recorded in its pid file, and checked to still be that java
process) is ever stopped; a broker that already answers on the bootstrap address is reused as is.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

from gridwatch.config import Settings
from gridwatch.localservice import STOP_GRACE_S, LocalService, ServiceError, port_open
from gridwatch.locks import locked

KAFKA_VERSION = "4.1.1"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"

# Everything binds to IPv4 loopback: 'localhost' may resolve to ::1 first and the broker must never
# be reachable from other machines.
BIND_HOST = "127.0.0.1"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
NODE_ID = 1
JVM_HEAP = ("-Xms256m", "-Xmx512m")  # the stock scripts use 1 GiB; a test broker needs far less
MVN_TIMEOUT_S = 1200.0
INSTALL_HINT = ("install Java 17+ and Maven (Debian/Ubuntu: `apt-get install openjdk-17-jre-headless maven`), "
                "or run the whole stack with `docker compose up` instead")


class BrokerError(ServiceError):
    """The local broker cannot be provided; the message says what to do about it."""


# ------------------------------------------------------------------------------------ the local broker

class LocalBroker(LocalService):
    """One project's broker: its files (all under ``run_dir/kafka``) and its java process."""

    subdir = "kafka"
    pid_name = "broker.pid"
    log_name = "broker.log"
    label = "the Kafka broker"
    error = BrokerError
    # stopped with SIGTERM (the default): a clean shutdown flushes logs and closes the controller

    def owns(self, args: list[str]) -> bool:
        """``java ... kafka.Kafka <our server.properties>``."""
        return ("kafka.Kafka" in args and str(self.server_properties) in args
                and bool(args) and Path(args[0]).name.startswith("java"))

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def server_properties(self) -> Path:
        return self.home / "server.properties"

    @property
    def log4j_config(self) -> Path:
        return self.home / "log4j2.properties"

    @property
    def formatted_marker(self) -> Path:
        # StorageTool writes meta.properties into every log dir it formats.
        return self.data_dir / "meta.properties"


def cache_dir() -> Path:
    """The per-user jar cache, shared by every checkout: ``$XDG_CACHE_HOME/gridwatch/kafka-<version>``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gridwatch" / f"kafka-{KAFKA_VERSION}"


def libs_dir() -> Path:
    return cache_dir() / "libs"


# ------------------------------------------------------------------------------------ configuration

def parse_bootstrap(bootstrap: str) -> tuple[str, int]:
    """The first ``host:port`` of a bootstrap list (port 9092 when omitted)."""
    first = next((s.strip() for s in bootstrap.split(",") if s.strip()), "")
    if not first:
        raise BrokerError("KAFKA_BOOTSTRAP_SERVERS is empty")
    if first.startswith("["):  # [::1]:9092
        host, _, rest = first[1:].partition("]")
        port = rest.lstrip(":") or "9092"
    else:
        host, _, port = first.rpartition(":") if ":" in first else (first, "", "9092")
    try:
        return host, int(port)
    except ValueError:
        raise BrokerError(f"cannot read a port from bootstrap server {first!r}") from None


def broker_ports(settings: Settings) -> tuple[int, int]:
    """(client port, controller port) for the local broker.

    The controller port is the client port + 1 unless GRIDWATCH_KAFKA_CONTROLLER_PORT says otherwise.
    """
    host, client_port = parse_bootstrap(settings.bootstrap_servers)
    if host not in LOCAL_HOSTS:
        raise BrokerError(
            f"KAFKA_BOOTSTRAP_SERVERS points at {host}:{client_port}, not at this machine: start that "
            f"broker there, or unset KAFKA_BOOTSTRAP_SERVERS to run a local one on {BIND_HOST}:9092")
    raw = os.environ.get("GRIDWATCH_KAFKA_CONTROLLER_PORT")
    try:
        controller_port = int(raw) if raw else client_port + 1
    except ValueError:
        raise BrokerError(f"GRIDWATCH_KAFKA_CONTROLLER_PORT={raw!r} is not a port number") from None
    if controller_port == client_port:
        raise BrokerError(f"the controller port must differ from the client port {client_port}")
    return client_port, controller_port


def server_properties(*, client_port: int, controller_port: int, data_dir: Path,
                      host: str = BIND_HOST, node_id: int = NODE_ID) -> str:
    """The broker's server.properties: one KRaft node sized for a 2-core test machine.

    Pure (no I/O) so it can be tested. Replication factors are 1 because there is one node; the
    internal topics get few partitions (defaults are 50 each) and the log cleaner a small dedupe
    buffer (default allocates 128 MiB at start), which keeps start-up fast and memory small.
    Topics are never auto-created, so a missing topic is an error instead of a silent
    1-partition topic that later breaks Faust's co-partitioning.
    """
    props = {
        "process.roles": "broker,controller",
        "node.id": node_id,
        "controller.quorum.voters": f"{node_id}@{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{client_port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{client_port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": 1,
        "offsets.topic.num.partitions": 4,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "transaction.state.log.num.partitions": 4,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        "group.initial.rebalance.delay.ms": 0,
        "log.cleaner.dedupe.buffer.size": 2097152,
        "num.network.threads": 2,
        "num.io.threads": 2,
        "background.threads": 2,
        "num.recovery.threads.per.data.dir": 1,
    }
    lines = ["# Generated by devtools/broker.py on every start: edit that file, not this one."]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


LOG4J2_PROPERTIES = """\
# Generated by devtools/broker.py: the broker logs to stdout, which start() sends to broker.log.
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.clients.name = org.apache.kafka.clients
logger.clients.level = warn
"""


# ------------------------------------------------------------------------------------------ probing

def _api_versions(host: str, port: int, timeout: float) -> dict[int, tuple[int, int]] | None:
    """Send a Kafka ApiVersions v0 request; the broker's API version ranges, or None if not Kafka.

    Hand-rolled because it is a dozen bytes each way and tells "a Kafka broker answers" apart from
    "some process holds the port" without starting a client with its own threads.
    """
    client_id = b"gridwatch-probe"
    correlation_id = 0x6757
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(struct.pack(">i", len(body)) + body)
            size = struct.unpack(">i", _recv_exact(sock, 4))[0]
            if not 10 <= size <= 1_000_000:
                return None
            payload = _recv_exact(sock, size)
    except (OSError, ValueError, struct.error):
        return None
    corr, error_code, count = struct.unpack_from(">ihi", payload, 0)
    # 35 = UNSUPPORTED_VERSION still proves a Kafka broker answered (it lists what it does support).
    if corr != correlation_id or error_code not in (0, 35) or not 0 <= count <= 1000:
        return None
    versions = {}
    for i in range(count):
        key, lo, hi = struct.unpack_from(">hhh", payload, 10 + 6 * i)
        versions[key] = (lo, hi)
    return versions


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(n - got)
        if not chunk:
            raise ValueError("connection closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def is_reachable(bootstrap: str, timeout: float = 1.0) -> bool:
    """True when a Kafka broker answers on the first ``host:port`` of ``bootstrap``.

    A TCP connect followed by an ApiVersions round trip: a KRaft broker opens its client port only
    once it is ready, and the round trip rules out an unrelated process on the port.
    """
    try:
        host, port = parse_bootstrap(bootstrap)
    except BrokerError:
        return False
    return _api_versions(host, port, timeout) is not None


def managed_pid(settings: Settings | None = None) -> int | None:
    """The pid of the broker this project started and that still runs, else None."""
    return LocalBroker.for_settings(settings or Settings()).managed_pid()


# ------------------------------------------------------------------------------------------ tooling

def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BrokerError(f"`{tool}` is not on PATH, and the local Kafka broker needs it: {INSTALL_HINT}")
    return path


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def ensure_jars(*, quiet: bool = False) -> Path:
    """The directory holding the broker's jars, resolving them from Maven Central on first use.

    The stamp file is written only after Maven succeeded and records the pom's digest, so a
    half-finished download (or an edited pom) is resolved again from scratch.
    """
    libs = libs_dir()
    stamp = cache_dir() / ".complete"
    digest = _pom_digest()
    if stamp.is_file() and stamp.read_text().strip() == digest and any(libs.glob("*.jar")):
        return libs
    mvn = _require("mvn")
    with locked(cache_dir().parent / f".kafka-{KAFKA_VERSION}.lock"):
        if stamp.is_file() and stamp.read_text().strip() == digest and any(libs.glob("*.jar")):
            return libs  # another process finished it while we waited
        if not quiet:
            print(f"resolving Kafka {KAFKA_VERSION} jars from Maven Central (first run only)…", flush=True)
        started = time.monotonic()
        stamp.unlink(missing_ok=True)
        shutil.rmtree(libs, ignore_errors=True)
        libs.mkdir(parents=True)
        cmd = [mvn, "-q", "-B", "-f", str(POM), f"{DEPENDENCY_PLUGIN}:copy-dependencies",
               "-DincludeScope=runtime", f"-DoutputDirectory={libs}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=MVN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise BrokerError(f"Maven did not finish resolving the Kafka jars in {MVN_TIMEOUT_S:.0f} s") from None
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise BrokerError(f"Maven could not resolve the Kafka {KAFKA_VERSION} jars "
                              f"(exit {proc.returncode}):\n{tail}")
        jars = list(libs.glob("*.jar"))
        if not any(j.name == f"kafka_2.13-{KAFKA_VERSION}.jar" for j in jars):
            raise BrokerError(f"Maven finished but kafka_2.13-{KAFKA_VERSION}.jar is not in {libs}")
        stamp.write_text(digest + "\n")
        if not quiet:
            size_mb = sum(j.stat().st_size for j in jars) / 1e6
            print(f"resolved {len(jars)} jars ({size_mb:.0f} MB) into {libs} "
                  f"in {time.monotonic() - started:.1f} s", flush=True)
    return libs


def _java_base(java: str, libs: Path, paths: LocalBroker, *heap: str) -> list[str]:
    return [java, *heap, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={paths.log4j_config}",
            "-cp", f"{libs}{os.sep}*"]


def _new_cluster_id() -> str:
    """A KRaft cluster id as Kafka makes them: URL-safe base64 of 16 random bytes, no padding."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):  # would be read as an option on the command line
            return cid


def _format_storage(java: str, libs: Path, paths: LocalBroker) -> None:
    """Format the data directory once; a formatted one keeps its cluster id and data."""
    if paths.formatted_marker.is_file():
        return
    cmd = _java_base(java, libs, paths, "-Xmx256m") + [
        "kafka.tools.StorageTool", "format", "-t", _new_cluster_id(),
        "-c", str(paths.server_properties), "-g"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise BrokerError(f"formatting Kafka storage in {paths.data_dir} failed:\n{tail}")


# ------------------------------------------------------------------------------------------- public

def start(settings: Settings | None = None, timeout: float = 120) -> str:
    """Make a Kafka broker answer on the configured bootstrap address.

    Returns "reused" when one already answers (nothing is started, whoever owns it) and "started"
    when this call launched one. Raises BrokerError if java/mvn is missing, the port is held by
    something that is not Kafka, or the broker dies or is not ready within ``timeout`` seconds.
    """
    settings = settings or Settings()
    if is_reachable(settings.bootstrap_servers):
        return "reused"
    client_port, controller_port = broker_ports(settings)
    paths = LocalBroker.for_settings(settings)
    paths.home.mkdir(parents=True, exist_ok=True)

    with paths.lock():
        pid = paths.managed_pid()
        if pid is not None:
            # Ours, still starting (another process launched it): wait for it rather than launch twice.
            _wait_ready(settings, paths, pid, None, timeout, time.monotonic())
            return "reused"
        paths.pid_file.unlink(missing_ok=True)  # stale
        for port, what in ((client_port, "client"), (controller_port, "controller")):
            if port_open(BIND_HOST, port, 0.5):
                raise BrokerError(
                    f"{BIND_HOST}:{port} (the Kafka {what} port) is held by a process that is not a "
                    f"Kafka broker: free it, or set KAFKA_BOOTSTRAP_SERVERS / "
                    f"GRIDWATCH_KAFKA_CONTROLLER_PORT to other ports")

        java = _require("java")
        libs = ensure_jars()
        paths.server_properties.write_text(server_properties(
            client_port=client_port, controller_port=controller_port, data_dir=paths.data_dir))
        paths.log4j_config.write_text(LOG4J2_PROPERTIES)
        _format_storage(java, libs, paths)

        paths.rotate_log()
        cmd = _java_base(java, libs, paths, *JVM_HEAP) + ["kafka.Kafka", str(paths.server_properties)]
        launched = time.monotonic()
        proc = paths.launch(cmd)
        _wait_ready(settings, paths, proc.pid, proc, timeout, launched)
    return "started"


def _wait_ready(settings: Settings, paths: LocalBroker, pid: int, proc: subprocess.Popen | None,
                timeout: float, since: float) -> None:
    paths.wait_ready(pid, proc, lambda: is_reachable(settings.bootstrap_servers, timeout=0.5), timeout, since,
                     poll_s=0.2)
    host, port = parse_bootstrap(settings.bootstrap_servers)
    print(f"broker ready on {host}:{port} in {time.monotonic() - since:.1f} s "
          f"(pid {pid}, log {paths.log_file})", flush=True)


def stop(settings: Settings | None = None) -> bool:
    """Stop the broker this project started; True if one was stopped.

    Acts only on the pid in our pid file, and only while that pid is still the java process running
    kafka.Kafka with our server.properties: a broker started any other way is never touched.
    """
    return LocalBroker.for_settings(settings or Settings()).stop()


def status(settings: Settings | None = None) -> dict:
    """What answers on the bootstrap address and whether this project manages it."""
    settings = settings or Settings()
    paths = LocalBroker.for_settings(settings)
    pid = managed_pid(settings)
    try:
        host, port = parse_bootstrap(settings.bootstrap_servers)
        versions = _api_versions(host, port, 1.0)
    except BrokerError:
        versions = None
    version = None
    if pid is not None:
        version = KAFKA_VERSION
    elif versions is not None:
        version = _infer_version(versions)
    return {
        "bootstrap": settings.bootstrap_servers,
        "reachable": versions is not None,
        "managed_pid": pid,
        "version": version,
        "run_dir": str(paths.home),
        "log": str(paths.log_file) if pid is not None else None,
        "jars_cached": (cache_dir() / ".complete").is_file(),
    }


def _infer_version(versions: dict[int, tuple[int, int]]) -> str:
    """A broker not started by us: its release, as kafka-python infers it from the API ranges."""
    try:
        # an internal module of kafka-python, which may move: imported here so only this status line can fail
        from kafka.protocol.broker_version_data import infer_broker_version_from_api_versions
        inferred = infer_broker_version_from_api_versions(versions)
        return ".".join(map(str, inferred)) + " (inferred)"
    except Exception:  # an internal of kafka-python; the status must not fail over it
        return "unknown"


# ---------------------------------------------------------------------------------------------- CLI

def _cli(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A ``gridwatch kafka`` action: what the broker cannot do is one ``error: ...`` line and exit 1."""
    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except BrokerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return run


@_cli
def _cmd_start(args: argparse.Namespace) -> int:
    if start(timeout=args.timeout) == "reused":
        print(f"a Kafka broker already answers on {Settings().bootstrap_servers}: reusing it")
    return 0


@_cli
def _cmd_stop(args: argparse.Namespace) -> int:
    print("stopped the local Kafka broker" if stop()
          else "no Kafka broker started by gridwatch is running (nothing stopped)")
    return 0


@_cli
def _cmd_status(args: argparse.Namespace) -> int:
    info = status()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        owner = f"started by gridwatch, pid {info['managed_pid']}" if info["managed_pid"] else "not ours"
        state = f"reachable, Kafka {info['version']}, {owner}" if info["reachable"] else "not reachable"
        print(f"{info['bootstrap']}: {state}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``gridwatch kafka start|stop|status``."""
    parser = subparsers.add_parser(
        "kafka", help="run a local single-node Apache Kafka broker (no Docker needed)",
        description=f"Run a real Apache Kafka {KAFKA_VERSION} broker (KRaft, one node) on {BIND_HOST} from "
                    "jars Maven resolves from Maven Central once. Data, config and broker.log live in "
                    "<run dir>/kafka (GRIDWATCH_RUN_DIR, default .run). Needs java, and mvn on the first run.")
    actions = parser.add_subparsers(dest="kafka_command", metavar="ACTION", required=True)

    p = actions.add_parser(
        "start", help="start the broker unless one already answers on KAFKA_BOOTSTRAP_SERVERS",
        description="Start the local broker in the background and wait until it is ready. Reuses a broker "
                    "that already answers. The first run downloads ~40 MB of jars with Maven.")
    p.add_argument("--timeout", type=float, default=120, help="seconds to wait for readiness (default 120)")
    p.set_defaults(func=_cmd_start)

    p = actions.add_parser(
        "stop", help="stop the broker gridwatch started (never one it did not start)",
        description="Stop the broker recorded in <run dir>/kafka/broker.pid with SIGTERM, SIGKILL after "
                    f"{STOP_GRACE_S:.0f} s.")
    p.set_defaults(func=_cmd_stop)

    p = actions.add_parser(
        "status", help="show whether a broker answers and whether gridwatch manages it",
        description="Probe KAFKA_BOOTSTRAP_SERVERS and report reachability, version and the managed pid.")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=_cmd_status)
