"""The worker refuses to start on missing topics, reads a backlog once when it starts, and the demo runs end
to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.prefixes import fresh_prefix

from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration


def test_worker_refuses_to_start_without_its_topics(kafka_broker, tmp_path):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_broker, "GRIDWATCH_RUN_DIR": str(tmp_path),
           "GRIDWATCH_TOPIC_PREFIX": fresh_prefix("missing", kafka_broker)}
    proc = subprocess.run([sys.executable, "-m", "gridwatch.cli", "worker"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert "meter.readings' is missing: run `gridwatch topics create`" in proc.stdout


def alert_lines(out: str) -> set[tuple[str, str, str]]:
    """(status, kind, scope level) of every ALERT line: what happened, whatever the order and however often
    the at-least-once pipeline repeated a record."""
    return set(re.findall(r"^ALERT (\w+)\s+(\w+) at (\w+) ", out, re.M))


def test_demo_shows_an_alert_and_sms(kafka_broker, tmp_path):
    """`gridwatch demo` (what `make demo` runs) on the test broker, in its own topic prefix and sandbox port,
    until its story is over (`--until-settled`), not for a fixed time: on a loaded machine the first SMS alone
    can take more than a minute."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_broker,
           "GRIDWATCH_TOPIC_PREFIX": fresh_prefix("demo", kafka_broker),
           "GRIDWATCH_SANDBOX_URL": f"http://127.0.0.1:{free_port()}",
           "GRIDWATCH_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}"}
    for var in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
        env.pop(var, None)
    proc = subprocess.run([sys.executable, "-m", "gridwatch.cli", "demo", "--until-settled", "--duration", "300",
                           "--run-dir", str(tmp_path / "demo"), "--console-port", str(free_port())], env=env,
                          capture_output=True, text=True, timeout=420)
    out = proc.stdout
    print(out)  # shown when an assertion below fails
    assert proc.returncode == 0, proc.stderr
    assert "settled " in out and "not settled" not in out
    assert "Kafka: reusing" in out
    assert "console: http://127.0.0.1:" in out and "sign in: operator / " in out
    # the alerts opened: undervoltage (transformer), overvoltage (meter), the outage (transformer, from its
    # first record: most of its transformer gasped, so no meter-level outage before it), and the outage a
    # customer reopened by answering "OUT" to "power is back" (meter); resolved: the first three. The order of
    # their records varies with the load, and a record may come twice (at-least-once): neither changes this
    # set, nor the summary, which counts each alert once per status.
    assert alert_lines(out) == {("open", "undervoltage", "transformer"), ("resolved", "undervoltage", "transformer"),
                                ("open", "overvoltage", "meter"), ("resolved", "overvoltage", "meter"),
                                ("open", "outage", "transformer"), ("resolved", "outage", "transformer"),
                                ("open", "outage", "meter")}
    assert "reported by the customer after the restoration" in out
    assert "summary: alerts open 4, alerts resolved 3, SMS sent" in out
    assert "SMS   sent" in out and "检测到" in out and "opted_out" in out
    assert "first SMS" in out
    assert "Power cut" in out and "back on" in out  # the notice, then "power is back"
    assert "REPLY" in out and "rating 5" in out and "still_out" in out
    assert "SMS   delivered" in out  # signed status callbacks came back through `gridwatch webhooks`


def test_a_worker_started_on_a_backlog_hands_each_message_to_its_agents_once(pipeline):
    """A worker whose tables are recovered from their changelogs (a new host here; a worker taking partitions
    over from another alike) fetches while it recovers, and Faust resumed the stream partitions before it
    seeked them to their committed offsets: what was fetched in between reached the agents, then again from
    the committed offset (streams/app.py ``SeekFirstRecovery``). A reading seen twice is counted by the
    detectors as a duplicate (and skipped)."""
    import shutil

    from devtools.simulator import SimConfig, Simulator, publish

    from tests.integration.test_meter_state_formats import newest_readings, wait_states
    from tests.integration.test_pipeline import PrefixedSink

    sim = Simulator(SimConfig(seed=11, feeders=1, transformers_per_feeder=1, meters_per_transformer=4, hours=24,
                              batch=4))
    records = list(sim.timed_records())
    half = min(i for i, r in enumerate(records) if r[0] >= sim.start + 12 * 3600)

    publish(records[:half], PrefixedSink(pipeline), progress=False)
    wait_states(pipeline, newest_readings(records[:half]))
    pipeline.wait_committed("meter.readings")  # nothing of the first half is read again
    pipeline.stop_worker()
    shutil.rmtree(pipeline.settings.run_dir / "worker")  # a new host: every table from its changelog
    pipeline.start_worker()
    publish(records[half:], PrefixedSink(pipeline), progress=False, flush_after=None)  # while it starts
    want = newest_readings(records)
    states = wait_states(pipeline, want)
    assert {m: (st["voltage"]["duplicates"], st["sag_swell"]["skipped"]) for m, st in states.items()} == {
        m: (0, 0) for m in want}
