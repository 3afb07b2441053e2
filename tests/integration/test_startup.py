"""A worker's first minutes on a fresh set of topics, internal errors in the notify stage, and re-driving
dead letters (`gridwatch dlq`), on the real broker with the real worker and SMS sandbox."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest

from gridwatch.config import Settings
from tests.integration.conftest import free_port
from tests.prefixes import fresh_prefix

pytestmark = pytest.mark.integration

ALERT_ID = "outage:transformer:T0001:2026-07-01T18:00:00Z"


def outage(customers: list[dict]) -> dict:
    return {"alert_id": ALERT_ID, "kind": "outage", "severity": "critical", "status": "open",
            "scope": {"level": "transformer", "id": "T0001"}, "meter_ids": [c["meter_id"] for c in customers],
            "customer_ids": [c["customer_id"] for c in customers], "started_at": "2026-07-01T18:00:00Z",
            "detected_at": "2026-07-01T18:03:00Z", "resolved_at": None,
            "evidence": {"meters_out": len(customers), "meters_total": len(customers)}}


def utility(meters: int, seed: int = 3) -> list[dict]:
    """Customers of one transformer, no quiet hours (so every opted-in one is told at once)."""
    from devtools.simulator import SimConfig, Simulator

    custs = Simulator(SimConfig(seed=seed, feeders=1, transformers_per_feeder=1, meters_per_transformer=meters,
                                regions="EU")).customers()
    for c in custs:
        c["preferences"]["quiet_hours"] = ["00:00", "00:00"]
    return custs


def one_customer(pipeline) -> dict:
    cust = next(c for c in utility(4) if not c["opted_out"])
    pipeline.send("customers", cust["customer_id"], cust)
    pipeline.read("gridwatch.meter-directory", lambda rs: len(rs) >= 1)
    return cust


def records_on(settings: Settings, name: str) -> int:
    """How many records the topic holds (its end offsets), so "none" is read from the broker, not a poll."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_list, group_id=None)
    try:
        topic = settings.topic(name)
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def dlq_cli(pipeline, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "gridwatch.cli", "dlq", *args], env=pipeline.env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_the_notice_reaches_every_opted_in_customer_on_ten_fresh_starts(kafka_broker, tmp_path):
    """Ten times in a row: fresh topics, a worker started at once, the customers and an outage alert
    published right away. Each time every opted-in customer gets the notice, and nothing is dead-lettered
    (before the fix, the first table writes could fail with PartitionsMismatch on a changelog the worker's
    consumer did not know yet, and every notify request went to the DLQ)."""
    from kafka import KafkaProducer

    from devtools.demo import Processes, gridwatch_argv, wait_http
    from streams.topics import create_topics
    from tests.integration.conftest import Pipeline

    customers = utility(6)
    told = {c["customer_id"] for c in customers if not c["opted_out"]}
    assert told and len(told) < len(customers)  # some are opted out: they must not be told
    port = free_port()
    base = dataclasses.replace(Settings(), bootstrap_servers=kafka_broker, sandbox_url=f"http://127.0.0.1:{port}",
                               webhook_url=None, twilio_account_sid=None, twilio_auth_token=None)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWILIO_")}
    env.update(KAFKA_BOOTSTRAP_SERVERS=kafka_broker, GRIDWATCH_SANDBOX_URL=base.sandbox_url, PYTHONUNBUFFERED="1")
    env.pop("GRIDWATCH_WEBHOOK_URL", None)
    sandbox = Processes()
    sandbox.start("sandbox", gridwatch_argv("sandbox", "--port", str(port)), env, tmp_path / "sandbox.log")
    producer = KafkaProducer(bootstrap_servers=base.bootstrap_list, acks="all", linger_ms=5)
    timings, stopping = [], []
    try:
        assert wait_http(base.sandbox_url + "/sandbox/messages", 30), "SMS sandbox did not start"
        for run in range(10):
            started = time.monotonic()
            settings = dataclasses.replace(base, topic_prefix=fresh_prefix("st", base.bootstrap_servers),
                                           run_dir=tmp_path / f"run{run}")
            create_topics(settings)
            run_env = {**env, "GRIDWATCH_TOPIC_PREFIX": settings.topic_prefix,
                       "GRIDWATCH_RUN_DIR": str(settings.run_dir)}
            procs = Processes()
            procs.start("worker", gridwatch_argv("worker"), run_env, settings.run_dir / "worker.log")
            pipe = Pipeline(settings, run_env, procs)
            try:
                for c in customers:  # at once: the worker is still starting
                    pipe.send("customers", c["customer_id"], c)
                pipe.send("alerts", ALERT_ID, outage(customers))
                pipe.flush()
                notes = pipe.read("notifications", lambda rs: {r["customer_id"] for r in rs} >= {
                    c["customer_id"] for c in customers}, timeout=150)
                sent = [n["customer_id"] for n in notes if n["status"] == "sent"]
                assert sorted(sent) == sorted(told), f"start {run + 1}: {notes}"
                assert records_on(settings, "gridwatch.dlq") == 0, f"start {run + 1}"
                log = pipe.log_tail("worker", 2000)
                assert "metadata: every topic of the worker known with its partitions" in log, f"start {run + 1}"
                assert "metadata: topics known with the wrong partition count" not in log, f"start {run + 1}"
                timings.append(time.monotonic() - started)
            except AssertionError:
                sys.stderr.write(f"\n--- start {run + 1}: worker.log (tail) ---\n{pipe.log_tail('worker', 80)}\n")
                raise
            finally:
                pipe.producer.close()
                for _name, proc in procs.children:  # stops while the next one starts; reaped below
                    proc.send_signal(signal.SIGTERM)
                stopping.extend(proc for _name, proc in procs.children)
        print("start to every notice (s): " + ", ".join(f"{t:.1f}" for t in timings))
        import json
        import urllib.request

        with urllib.request.urlopen(base.sandbox_url + "/sandbox/messages", timeout=5) as r:
            data = json.loads(r.read())
        messages = data["messages"] if isinstance(data, dict) else data
        assert len(messages) == 10 * len(told)  # once per start and opted-in customer, never twice
    finally:
        producer.close()
        for proc in stopping:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        sandbox.stop()


@pytest.mark.worker_env(GRIDWATCH_FAULTS="notify.table-write=2")
def test_a_failed_table_write_in_the_notify_stage_is_retried_and_the_sms_goes_out_once(pipeline):
    cust = one_customer(pipeline)
    pipeline.send("alerts", ALERT_ID, outage([cust]))
    pipeline.read("notifications", lambda rs: any(r["status"] == "sent" for r in rs))
    notes = [n for n in pipeline.settle("notifications", seconds=3) if n["status"] != "delivered"]
    assert [(n["customer_id"], n["status"]) for n in notes] == [(cust["customer_id"], "sent")]
    assert len(pipeline.sandbox_messages()) == 1
    assert records_on(pipeline.settings, "gridwatch.dlq") == 0
    log = pipeline.log_tail("worker", 400)
    assert "(attempt 1), retrying" in log and "(attempt 2), retrying" in log and "injected fault" in log
    assert "(attempt 3)" not in log


@pytest.mark.worker_env(GRIDWATCH_FAULTS="lifecycle.table-write=2")
def test_a_failed_table_write_in_the_lifecycle_stage_is_retried_and_the_sms_goes_out_once(pipeline):
    """Every stage retries an internal error the same way (streams/deadletters.py ``StageRetries``): here
    the lifecycle stage's table write fails twice. The alert record is sent before the write, so each
    attempt sends it (three identical records); the notification path tells the customer once, nothing is
    dead-lettered, and the write did land: the operator's acknowledgement finds the alert."""
    cust = one_customer(pipeline)
    pipeline.send("gridwatch.findings", ALERT_ID, outage([cust]))
    pipeline.read("notifications", lambda rs: any(r["status"] == "sent" for r in rs))
    pipeline.send("gridwatch.alert-actions", ALERT_ID, {"action": "acknowledge", "alert_id": ALERT_ID,
                                                        "author": "ops", "reason": "crew sent",
                                                        "at": "2026-07-01T18:05:00Z"})
    alerts = pipeline.read("alerts", lambda rs: any(r["status"] == "acknowledged" for r in rs))
    assert [r["status"] for r in alerts] == ["open"] * 3 + ["acknowledged"] and alerts[0] == alerts[1] == alerts[2]
    notes = [n for n in pipeline.settle("notifications", seconds=3) if n["status"] != "delivered"]
    assert [(n["customer_id"], n["status"]) for n in notes] == [(cust["customer_id"], "sent")]
    assert len(pipeline.sandbox_messages()) == 1
    assert records_on(pipeline.settings, "gridwatch.dlq") == 0
    log = pipeline.log_tail("worker", 400)
    assert "lifecycle: internal error" in log and "(attempt 2), retrying" in log and "injected fault" in log
    assert "(attempt 3)" not in log
    deadline = time.monotonic() + 30  # the progress line is written every 10 s
    while "retries_lifecycle=2" not in pipeline.log_tail("worker", 400) and time.monotonic() < deadline:
        time.sleep(1)
    assert "retries_lifecycle=2" in pipeline.log_tail("worker", 400)


@pytest.mark.worker_env(GRIDWATCH_FAULTS="notify.kill-before-done=1")
def test_a_worker_killed_after_its_record_before_the_key_was_done_writes_no_second_record(pipeline):
    """kill -9 (the worker kills itself) right after a `sent` record reached the broker and before its outbox
    key was marked done: the next worker finds the outcome kept in the outbox and the record on the topic,
    and writes no second record (before: it reconciled the claim and wrote `sent` twice)."""
    cust = one_customer(pipeline)
    pipeline.send("alerts", ALERT_ID, outage([cust]))
    (name, proc), = [(n, p) for n, p in pipeline.procs.children if n == "worker"]
    assert proc.wait(timeout=120) == -signal.SIGKILL, "the worker did not reach the kill point"
    pipeline.restart_worker(signal.SIGKILL)  # a new worker on the same state (the old one is gone)
    deadline = time.monotonic() + 120
    while "notifications_recorded_before=1" not in pipeline.log_tail("worker", 400):
        assert time.monotonic() < deadline, "the new worker did not look for the record on the topic"
        pipeline.assert_alive()
        time.sleep(1)
    notes = [n for n in pipeline.settle("notifications", seconds=3) if n["status"] != "delivered"]
    (sms,) = pipeline.sandbox_messages()
    assert [(n["customer_id"], n["status"], n["provider_message_id"]) for n in notes] == [
        (cust["customer_id"], "sent", sms["sid"])]


@pytest.mark.worker_env(GRIDWATCH_FAULTS="notify.table-write=1", GRIDWATCH_RETRY_DEADLINE_S="0")
def test_dlq_replay_of_a_dead_lettered_notify_request_sends_the_sms_once(pipeline):
    """With no retry time left (deadline 0) the one failed table write dead-letters the request as
    ``internal``; once the cause is gone, `dlq replay` brings it back: one SMS; a second replay sends
    nothing, and even a forced one (--again) is dropped by the notification path's outbox."""
    cust = one_customer(pipeline)
    pipeline.send("alerts", ALERT_ID, outage([cust]))
    (dead,) = pipeline.read("gridwatch.dlq", lambda rs: rs, timeout=120)
    assert (dead["topic"], dead["stage"], dead["reason"]) == (pipeline.topic("gridwatch.notify-requests"),
                                                            "notify", "internal")
    assert "injected fault" in dead["error"] and dead["key"] == cust["customer_id"]
    assert pipeline.sandbox_messages() == []

    # the same bad input twice (as after a crash before the commit): recognisably one input, shown once
    for _ in range(2):
        pipeline.send("meter.readings", "M000001", "{not json")
    pipeline.flush()
    bad = [r for r in pipeline.read("gridwatch.dlq", lambda rs: len(rs) >= 3, timeout=120) if r["reason"] == "invalid"]
    assert bad[0]["dlq_id"] == bad[1]["dlq_id"] and bad[0]["offset"] != bad[1]["offset"]
    assert bad[0]["reason"] == "invalid" and bad[0]["payload"] == "{not json"

    listed = dlq_cli(pipeline, "list")
    assert f"{pipeline.topic('gridwatch.notify-requests')}" in listed and "internal  pending" in listed
    assert f"{bad[0]['dlq_id'][:12]}  invalid   pending   x2" in listed and listed.count(bad[0]["dlq_id"][:12]) == 1
    out = dlq_cli(pipeline, "replay", "--topic", "gridwatch.notify-requests")
    assert "1 dead letter(s) replayed" in out
    pipeline.read("notifications", lambda rs: any(r["status"] == "sent" for r in rs))
    assert len(pipeline.sandbox_messages()) == 1

    assert "0 dead letter(s) replayed" in dlq_cli(pipeline, "replay", "--topic", "gridwatch.notify-requests")
    assert "internal  replayed" in dlq_cli(pipeline, "list")
    assert "1 dead letter(s) replayed" in dlq_cli(pipeline, "replay", "--reason", "internal", "--again")
    notes = [n for n in pipeline.settle("notifications", seconds=3) if n["status"] != "delivered"]
    assert [n["status"] for n in notes] == ["sent"]
    assert len(pipeline.sandbox_messages()) == 1
    assert records_on(pipeline.settings, "gridwatch.dlq") == 3  # the notify request and the bad input twice


def test_the_worker_refuses_to_start_without_a_changelog_topic_and_says_which(kafka_broker, tmp_path):
    """Every topic but one table's changelog: the worker does not start processing (exit 2) and names it."""
    from kafka.admin import KafkaAdminClient

    from streams.topics import changelog_topic, topic_specs

    settings = dataclasses.replace(Settings(), bootstrap_servers=kafka_broker,
                                   topic_prefix=fresh_prefix("nocl", kafka_broker))
    specs = topic_specs(settings)
    missing = changelog_topic(settings, "contacts")
    del specs[missing]
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_list)
    try:
        admin.create_topics(specs, wait_for_metadata=True)
    finally:
        admin.close()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_broker, "GRIDWATCH_RUN_DIR": str(tmp_path),
           "GRIDWATCH_TOPIC_PREFIX": settings.topic_prefix}
    proc = subprocess.run([sys.executable, "-m", "gridwatch.cli", "worker"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"topic '{missing}' is missing: run `gridwatch topics create`" in proc.stdout
    assert "1 topic problem(s)" in proc.stdout
