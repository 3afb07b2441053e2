"""A running pipeline for integration tests: real broker, real worker process, real SMS sandbox.

Every pipeline gets its own topic prefix, consumer group and state directory, so tests never see each
other's data, even on a long-lived broker.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import time

import pytest

from tests.prefixes import fresh_prefix

from gridwatch.config import Settings



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceLogs:
    """For fixtures holding ``procs`` (devtools.demo.Processes) whose logs are ``settings.run_dir/<name>.log``."""

    def poll(self, topic: str, until, timeout: float, decode) -> list:
        """``decode(message)`` of every message of ``topic`` from the start (None: left out), once ``until(those)``
        holds; fails after ``timeout`` seconds, or as soon as a service has exited."""
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(self.topic(topic), bootstrap_servers=self.settings.bootstrap_list,
                                 group_id=None, auto_offset_reset="earliest", enable_auto_commit=False)
        records: list = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=500).values():
                    records.extend(r for r in map(decode, batch) if r is not None)
                if until(records):
                    return records
                self.assert_alive()
        finally:
            consumer.close()
        raise AssertionError(f"{topic}: condition not met within {timeout:.0f}s; got {len(records)} records:\n"
                             + "\n".join(json.dumps(r)[:300] for r in records[-20:]))

    def assert_alive(self) -> None:
        for name, proc in self.procs.children:
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 60) -> str:
        path = self.settings.run_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class Pipeline(ServiceLogs):
    def __init__(self, settings: Settings, env: dict, procs):
        self.settings, self.env, self.procs = settings, env, procs
        from kafka import KafkaProducer

        self.producer = KafkaProducer(bootstrap_servers=settings.bootstrap_list, acks="all", linger_ms=5)

    def topic(self, name: str) -> str:
        return self.settings.topic(name)

    def send(self, topic: str, key: str | None, value) -> None:
        if isinstance(value, (dict, list)):
            value = json.dumps(value).encode()
        elif isinstance(value, str):
            value = value.encode()
        self.producer.send(self.topic(topic), key=key.encode() if key is not None else None, value=value)

    def flush(self) -> None:
        self.producer.flush(30)

    def read(self, topic: str, until, timeout: float = 180.0) -> list[dict]:
        """Records of ``topic`` (decoded JSON) once ``until(records)`` holds; fails after ``timeout``."""
        return self.poll(topic, until, timeout, lambda m: json.loads(m.value))

    def settle(self, topic: str, seconds: float = 5.0) -> list[dict]:
        """Everything on ``topic`` once nothing new has arrived for ``seconds`` (to assert "no more")."""
        last, seen = -1, []
        while True:
            seen = self.read_to_end(topic)
            if len(seen) == last:
                return seen
            last = len(seen)
            time.sleep(seconds)

    def read_to_end(self, topic: str, timeout: float = 60.0) -> list[dict]:
        """Every record of ``topic`` up to its end offsets as of now: all partitions read to their end, not
        just what the first poll happened to bring (which, on a loaded machine, can be some partitions)."""
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=self.settings.bootstrap_list, group_id=None,
                                 enable_auto_commit=False)
        try:
            name = self.topic(topic)
            tps = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            ends = consumer.end_offsets(tps)
            records: list[dict] = []
            deadline = time.monotonic() + timeout
            while any(consumer.position(tp) < ends[tp] for tp in tps):
                if time.monotonic() > deadline:
                    raise AssertionError(f"{topic}: not read to its end offsets within {timeout:.0f}s")
                for batch in consumer.poll(timeout_ms=500).values():
                    records.extend(json.loads(m.value) for m in batch)
            return records
        finally:
            consumer.close()

    def wait_for_group(self, members: int, timeout: float = 180.0) -> None:
        """Until the workers' consumer group is Stable with ``members`` members: a rebalance after data has
        started to flow hands partitions over mid-stream, and the new owner re-reads what was not committed."""
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.settings.bootstrap_list, client_id="gridwatch-tests")
        group, seen = self.settings.app_id, None
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                seen = admin.describe_groups([group])[group]
                if seen.get("group_state") == "Stable" and len(seen.get("members") or ()) == members:
                    return
                self.assert_alive()
                time.sleep(1)
        finally:
            admin.close()
        raise AssertionError(f"group {group} not stable with {members} members within {timeout:.0f}s: "
                             f"{seen and (seen.get('group_state'), len(seen.get('members') or ()))}")

    def sandbox_messages(self) -> list[dict]:
        import urllib.request

        with urllib.request.urlopen(self.settings.sandbox_url + "/sandbox/messages", timeout=5) as r:
            data = json.loads(r.read())
        return data["messages"] if isinstance(data, dict) else data

    def add_worker(self, name: str) -> None:
        """Another worker in the same consumer group, with its own state directory (as on another host)."""
        from devtools.demo import gridwatch_argv

        env = {**self.env, "GRIDWATCH_RUN_DIR": str(self.settings.run_dir / name)}
        self.procs.start(name, gridwatch_argv("worker"), env, self.settings.run_dir / f"{name}.log")

    def stop_worker(self, sig=None, timeout: float = 60.0) -> None:
        """Stop the worker: SIGTERM gracefully, SIGKILL as a crash."""
        import signal

        name, proc = next((n, p) for n, p in self.procs.children if n == "worker")
        proc.send_signal(sig or signal.SIGTERM)
        proc.wait(timeout=timeout)
        self.procs.children.remove((name, proc))

    def start_worker(self) -> None:
        from devtools.demo import gridwatch_argv

        self.procs.start("worker", gridwatch_argv("worker"), self.env, self.settings.run_dir / "worker.log")

    def restart_worker(self, sig=None) -> None:
        """Stop the worker (SIGTERM: gracefully; SIGKILL: a crash) and start a new one on the same state."""
        self.stop_worker(sig)
        self.start_worker()

    def wait_committed(self, topic: str, timeout: float = 120.0) -> None:
        """Until the workers' group has committed ``topic`` up to its end offsets as of now. A worker stopped
        after that re-reads none of it, however its stop goes (one cut short by the stop grace is a crash)."""
        from kafka import KafkaConsumer, TopicPartition
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.settings.bootstrap_list, client_id="gridwatch-tests")
        consumer = KafkaConsumer(bootstrap_servers=self.settings.bootstrap_list, group_id=None,
                                 enable_auto_commit=False)
        group, name = self.settings.app_id, self.topic(topic)
        try:
            tps = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
            ends = {tp: end for tp, end in consumer.end_offsets(tps).items() if end}
            deadline = time.monotonic() + timeout
            while True:
                got = admin.list_group_offsets({group: None}).get(group) or {}
                behind = {tp.partition: (getattr(got.get(tp), "offset", None), end) for tp, end in ends.items()
                          if (getattr(got.get(tp), "offset", None) or 0) < end}
                if not behind:
                    return
                assert time.monotonic() < deadline, f"{topic} not committed within {timeout:.0f}s: {behind}"
                self.assert_alive()
                time.sleep(1)
        finally:
            consumer.close()
            admin.close()


@pytest.fixture
def pipeline(kafka_broker, tmp_path, request):
    """Topics, SMS sandbox and worker for one test; torn down afterwards, logs shown on failure."""
    from devtools.demo import Processes, gridwatch_argv, wait_http
    from streams.topics import create_topics

    port, hook_port = free_port(), free_port()
    settings = dataclasses.replace(
        Settings(), bootstrap_servers=kafka_broker, topic_prefix=fresh_prefix("it", kafka_broker),
        run_dir=tmp_path / "run", sandbox_url=f"http://127.0.0.1:{port}",
        webhook_url=f"http://127.0.0.1:{hook_port}", twilio_account_sid=None, twilio_auth_token=None)
    create_topics(settings)
    env = {**os.environ, "GRIDWATCH_TOPIC_PREFIX": settings.topic_prefix, "GRIDWATCH_RUN_DIR": str(settings.run_dir),
           "GRIDWATCH_SANDBOX_URL": settings.sandbox_url, "KAFKA_BOOTSTRAP_SERVERS": kafka_broker,
           "GRIDWATCH_WEBHOOK_URL": settings.webhook_url,
           # the webhook channel may post to this machine's sandbox receiver (loopback is refused otherwise)
           "GRIDWATCH_WEBHOOK_ALLOW": "127.0.0.1/32",
           "PYTHONUNBUFFERED": "1"}
    for var in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER", "TWILIO_MESSAGING_SERVICE_SID"):
        env.pop(var, None)
    procs = Processes()
    marker = request.node.get_closest_marker("sandbox_args")
    extra = list(marker.args) if marker else []
    procs.start("sandbox", gridwatch_argv("sandbox", "--port", str(port), *extra), env,
                settings.run_dir / "sandbox.log")
    assert wait_http(settings.sandbox_url + "/sandbox/messages", 30), "SMS sandbox did not start"
    procs.start("webhooks", gridwatch_argv("webhooks", "--port", str(hook_port)), env,
                settings.run_dir / "webhooks.log")
    assert wait_http(settings.webhook_url + "/health", 30), "webhooks did not start"
    worker_env = request.node.get_closest_marker("worker_env")
    procs.start("worker", gridwatch_argv("worker"), {**env, **(worker_env.kwargs if worker_env else {})},
                settings.run_dir / "worker.log")
    pipe = Pipeline(settings, env, procs)
    yield pipe
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    pipe.producer.close()
    procs.stop()
    if failed:
        sys.stderr.write("\n--- worker.log (tail) ---\n" + pipe.log_tail("worker", 120) + "\n")
    # every pipeline's logs (worker, sandbox, webhooks, and whatever else the test ran in its run_dir)
    from tests.integration.logscan import scan

    findings = scan(settings.run_dir)
    if findings:
        pytest.fail("personal data or secrets in the logs:\n" + "\n".join(findings[:50]), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
