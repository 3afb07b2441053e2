"""The worker refuses to start on missing topics, and the demo runs end to end."""

from __future__ import annotations

import os
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


def test_demo_shows_an_alert_and_sms(kafka_broker, tmp_path):
    """`gridwatch demo` (what `make demo` runs) on the test broker, in its own topic prefix and sandbox port."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_broker,
           "GRIDWATCH_TOPIC_PREFIX": fresh_prefix("demo", kafka_broker),
           "GRIDWATCH_SANDBOX_URL": f"http://127.0.0.1:{free_port()}",
           "GRIDWATCH_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}"}
    for var in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
        env.pop(var, None)
    proc = subprocess.run([sys.executable, "-m", "gridwatch.cli", "demo", "--duration", "75",
                           "--run-dir", str(tmp_path / "demo"), "--console-port", str(free_port())], env=env, capture_output=True, text=True,
                          timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "Kafka: reusing" in out
    assert "ALERT open     undervoltage at transformer" in out
    assert "ALERT resolved undervoltage at transformer" in out
    assert "ALERT open     overvoltage at meter" in out
    assert "SMS   sent" in out and "检测到" in out and "opted_out" in out
    assert "first SMS" in out
    assert "ALERT open     outage at transformer" in out and "ALERT resolved outage at transformer" in out
    assert "Power cut" in out and "back on" in out  # the notice, then "power is back"
    # open records: undervoltage, overvoltage, the outage (its silent meters in it from the first record:
    # most of its transformer gasped), and the outage a customer reopened by answering "OUT" to "power is back"
    assert "summary: alerts open 4, alerts resolved 3, SMS sent" in out
    assert "REPLY" in out and "rating 5" in out and "still_out" in out
    assert "console: http://127.0.0.1:" in out and "sign in: operator / " in out
    assert "SMS   delivered" in out  # signed status callbacks came back through `gridwatch webhooks`
