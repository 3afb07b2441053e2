"""Chaos on a real broker: ``kill -9`` of the worker 10 times and one stop/start of the broker during a
scenario with voltage faults and outages, compared with an undisturbed run of the same scenario.

The broker is one this test starts itself (``devtools.broker`` on free 127.0.0.1 ports, its data under the
test's temporary directory), so stopping it touches nothing else. Both runs use it, each with its own topic
prefix, SMS sandbox, webhooks service and worker. Restart-to-resume times are printed (``-s`` shows them)
and written to ``chaos-recovery.json`` in the test's temporary directory.

What must hold (README "Guarantees"): no SMS twice at the provider; every provider message with exactly one
``sent`` record; a decision for every customer of every alert, none left unsettled; and the same alerts and
notifications as the undisturbed run. Both runs' notifications are written to ``undisturbed-notifications.json``
and ``chaos-notifications.json`` in the test's temporary directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
import uuid
from collections import Counter

import pytest

from gridwatch.config import Settings
from tests.ci import unavailable
from tests.integration.conftest import Pipeline, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

KILLS = 10
FAULTS = ("transformer_undervoltage:T0001@+2h/2h", "feeder_outage:F002@+5h/45m",
          "meter_overvoltage:M000016@+7h/1h", "transformer_outage:T0001@+9h/30m")
# shorter than the defaults so that a claim interrupted by a kill is settled within the test; one SMS a
# second (and a provider answering 0.3 s late) so that the sends take long enough for kills to land mid-send
ENV = {"GRIDWATCH_SEND_DEADLINE_S": "5", "GRIDWATCH_PROVIDER_LIST_LAG_S": "2", "GRIDWATCH_SMS_PER_SECOND": "1"}


def scenario():
    from devtools.simulator import SimConfig, Simulator

    return Simulator(SimConfig(seed=7, feeders=2, transformers_per_feeder=2, meters_per_transformer=6,
                               regions="CN,EU", hours=12, faults=FAULTS))


@pytest.fixture
def own_broker(tmp_path, monkeypatch):
    """A broker of this test's own, on free ports: the one it may stop and start."""
    from devtools import broker

    client, controller = free_port(), free_port()
    monkeypatch.setenv("GRIDWATCH_KAFKA_CONTROLLER_PORT", str(controller))
    settings = dataclasses.replace(Settings(), bootstrap_servers=f"127.0.0.1:{client}",
                                   run_dir=tmp_path / "broker")
    try:
        broker.start(settings)
    except broker.BrokerError as exc:
        unavailable(f"no broker of its own for the chaos test: {exc}")
    yield settings
    broker.stop(settings)


def start_pipeline(broker_settings: Settings, run_dir, name: str) -> Pipeline:
    """Topics, SMS sandbox (every answer 0.3 s late, so kills land mid-send), webhooks and a worker."""
    from devtools.demo import Processes, gridwatch_argv, wait_http
    from streams.topics import create_topics

    port, hook_port = free_port(), free_port()
    settings = dataclasses.replace(
        broker_settings, topic_prefix=f"{name}{uuid.uuid4().hex[:6]}.", run_dir=run_dir,
        sandbox_url=f"http://127.0.0.1:{port}", webhook_url=f"http://127.0.0.1:{hook_port}",
        twilio_account_sid=None, twilio_auth_token=None)
    create_topics(settings)
    env = {**os.environ, **ENV, "GRIDWATCH_TOPIC_PREFIX": settings.topic_prefix,
           "GRIDWATCH_RUN_DIR": str(run_dir), "GRIDWATCH_SANDBOX_URL": settings.sandbox_url,
           "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "GRIDWATCH_WEBHOOK_URL": settings.webhook_url,
           "PYTHONUNBUFFERED": "1"}
    for var in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER", "TWILIO_MESSAGING_SERVICE_SID"):
        env.pop(var, None)
    procs = Processes()
    procs.start("sandbox", gridwatch_argv("sandbox", "--port", str(port), "--delay", "0.3"), env,
                run_dir / "sandbox.log")
    assert wait_http(settings.sandbox_url + "/sandbox/messages", 30), "SMS sandbox did not start"
    procs.start("webhooks", gridwatch_argv("webhooks", "--port", str(hook_port)), env, run_dir / "webhooks.log")
    assert wait_http(settings.webhook_url + "/health", 30), "webhooks did not start"
    procs.start("worker", gridwatch_argv("worker"), env, run_dir / "worker.log")
    return Pipeline(settings, env, procs)


class Probe:
    """One bad ``meter.readings`` message per partition, each unique; the worker has resumed every partition
    when all of them are in the dead-letter topic."""

    def __init__(self, pipe: Pipeline):
        from kafka import KafkaConsumer

        from streams.app import partition_for

        self.pipe, self.round = pipe, 0
        n = pipe.settings.partitions
        self.keys = [next(f"probe-{p}-{i}" for i in range(10_000) if partition_for(f"probe-{p}-{i}", n) == p)
                     for p in range(n)]
        self.consumer = KafkaConsumer(pipe.topic("gridwatch.dlq"), bootstrap_servers=pipe.settings.bootstrap_list,
                                      group_id=None, auto_offset_reset="earliest", enable_auto_commit=False)

    def resumed_after(self, t0: float, timeout: float = 180) -> float:
        """Send the probe; seconds from ``t0`` until the worker processed all of it."""
        self.round += 1
        want = {f"probe {self.round} {k}" for k in self.keys}
        for k in self.keys:
            self.pipe.send("meter.readings", k, f"probe {self.round} {k}")
        self.pipe.flush()
        deadline = time.monotonic() + timeout
        while want:
            assert time.monotonic() < deadline, f"{len(want)} partitions not resumed within {timeout:.0f} s"
            self.pipe.assert_alive()
            for batch in self.consumer.poll(timeout_ms=200).values():
                want -= {json.loads(m.value).get("payload") for m in batch}
        return time.monotonic() - t0

    def close(self):
        self.consumer.close()


def kill_and_restart(pipe: Pipeline) -> float:
    """kill -9, then a new worker on the same state; returns the monotonic time of its start."""
    pipe.stop_worker(signal.SIGKILL, timeout=30)
    t0 = time.monotonic()
    pipe.start_worker()
    return t0


def outcome(pipe: Pipeline, resolved: int) -> dict:
    """Alerts and notifications once ``resolved`` alerts are resolved and the pipeline is quiet."""
    pipe.read("alerts", lambda rs: len({r["alert_id"] for r in rs if r["status"] == "resolved"}) >= resolved,
              timeout=240)
    time.sleep(25)  # longer than the idle-partition time (20 s): the last decisions are taken
    alerts, notes = pipe.settle("alerts", 8), pipe.settle("notifications", 8)
    deadline = time.monotonic() + 120
    while unsettled(notes) and time.monotonic() < deadline:
        time.sleep(5)  # a claim interrupted by a kill is settled on a later pass (README "Guarantees")
        notes = pipe.settle("notifications", 8)
    final = {}
    for a in alerts:
        final[a["alert_id"]] = a
    return {
        "alerts": {(a["alert_id"], a["status"]) for a in alerts},
        "final": final,
        "sent": {n["notification_id"] for n in notes if n["status"] == "sent"},
        "notes": notes,
        "sms": pipe.sandbox_messages(),
    }


def unsettled(notes: list[dict]) -> set[str]:
    """Notifications whose last word is still ``deferred`` (a claim not yet settled with the provider)."""
    last = {}
    for n in notes:
        if n["status"] != "delivered":
            last[n["notification_id"]] = n["status"]
    return {i for i, st in last.items() if st == "deferred"}


def test_kill_9_ten_times_and_a_broker_restart_change_nothing(own_broker, tmp_path):
    from devtools import broker
    from devtools.simulator import publish
    from tests.integration.test_pipeline import PrefixedSink

    started = time.monotonic()
    records = list(scenario().timed_records())

    # the undisturbed run
    ref = start_pipeline(own_broker, tmp_path / "ref", "ref")
    try:
        publish(records, PrefixedSink(ref), progress=False)
        expected = outcome(ref, resolved=3)
    finally:
        ref.producer.close()
        ref.procs.stop()
    assert expected["sent"] and len(expected["alerts"]) >= 6, expected["alerts"]
    kinds = {aid.split(":")[0] for aid, _ in expected["alerts"]}
    assert {"outage", "undervoltage", "overvoltage"} <= kinds, kinds

    # the same scenario with 10 kills and a broker restart
    pipe = start_pipeline(own_broker, tmp_path / "chaos", "chaos")
    probe = Probe(pipe)
    resumes, broker_resume = [], None
    try:
        probe.resumed_after(time.monotonic())  # the first worker is up before the scenario starts
        # the same input as the undisturbed run, all at once: what differs is only the disturbance
        publish(records, PrefixedSink(pipe), progress=False)
        for i in range(KILLS):
            time.sleep(1.0 + (i % 3))  # 1 .. 3 s into the work of the new worker
            t0 = kill_and_restart(pipe)
            resumes.append(probe.resumed_after(t0))
            if i == KILLS // 2:  # the broker goes away under the running worker, and comes back
                broker.stop(own_broker)
                time.sleep(3)
                broker.start(own_broker)
                broker_resume = probe.resumed_after(time.monotonic())
        got = outcome(pipe, resolved=3)
    finally:
        probe.close()
        pipe.producer.close()
        pipe.procs.stop()

    report = {"restart_to_resume_s": [round(r, 1) for r in resumes],
              "broker_start_to_resume_s": round(broker_resume, 1), "test_s": round(time.monotonic() - started)}
    (tmp_path / "chaos-recovery.json").write_text(json.dumps(report))
    for name, run in (("undisturbed", expected), ("chaos", got)):  # what a failure below is read from
        (tmp_path / f"{name}-notifications.json").write_text(json.dumps(run["notes"], indent=1))
    sys.stderr.write(f"\nchaos: {json.dumps(report)}\n")

    # no SMS twice at the provider: none to a number twice with one text
    sms = got["sms"]
    assert not [k for k, c in Counter((m["to"], m["body"]) for m in sms).items() if c > 1]
    # nothing lost: every customer of every alert opened has a decision
    decided = {(n["alert_id"], n["customer_id"]) for n in got["notes"]
               if n["status"] in ("sent", "suppressed", "failed")}
    opened = {(aid, c) for aid, a in got["final"].items() for c in a["customer_ids"]}
    assert opened <= decided, f"no decision for {sorted(opened - decided)}"

    # the same alerts as without the disturbance
    assert got["alerts"] == expected["alerts"], (
        f"alerts differ from the undisturbed run: only with the chaos {sorted(got['alerts'] - expected['alerts'])}, "
        f"only without {sorted(expected['alerts'] - got['alerts'])}")
    assert {aid: sorted(a["customer_ids"]) for aid, a in got["final"].items()} == {
        aid: sorted(a["customer_ids"]) for aid, a in expected["final"].items()}

    # the same notifications as without the disturbance: each provider message with exactly one `sent`
    # record, every `sent` record with its message, none left unsettled, the same ones sent
    sent_records = Counter(n["provider_message_id"] for n in got["notes"] if n["status"] == "sent")
    assert sent_records == Counter({m["sid"]: 1 for m in sms}), (
        f"`sent` records per provider message: {dict(sent_records)}, messages: {sorted(m['sid'] for m in sms)}")
    assert len(sms) == len(got["sent"]), f"{len(sms)} messages at the provider, {len(got['sent'])} sent notifications"
    assert not unsettled(got["notes"]), f"unsettled claims: {unsettled(got['notes'])}"
    differ = {}
    for n in got["notes"] + expected["notes"]:
        if n["notification_id"] in got["sent"] ^ expected["sent"]:
            which = "chaos" if any(n is g for g in got["notes"]) else "undisturbed"
            differ.setdefault(n["notification_id"], []).append(
                (which, n["alert_id"], n["customer_id"], n["status"], n.get("reason")))
    assert got["sent"] == expected["sent"], f"sent in one run and not in the other: {differ}"
    assert len(sms) == len(expected["sms"])
