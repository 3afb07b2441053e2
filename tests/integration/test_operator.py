"""Operator commands against a real broker: the `gridwatch` CLI as a subprocess, read back with TopicView."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.prefixes import fresh_prefix

from gridwatch.config import ALERT_ACTIONS, ALERTS, SILENCES, Settings
from streams.topics import create_topics
from streams.topicview import TopicView, TopicViewError, read_all

pytestmark = pytest.mark.integration

GRIDWATCH = Path(sys.executable).with_name("gridwatch")


@pytest.fixture(scope="module")
def env_settings(kafka_broker):
    settings = dataclasses.replace(Settings(), bootstrap_servers=kafka_broker,
                                   topic_prefix=fresh_prefix("op", kafka_broker))
    create_topics(settings)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_broker, "GRIDWATCH_TOPIC_PREFIX": settings.topic_prefix}
    return env, settings


def gridwatch(env, *argv, check=True) -> subprocess.CompletedProcess:
    cmd = [str(GRIDWATCH)] if GRIDWATCH.exists() else [sys.executable, "-m", "gridwatch.cli"]
    proc = subprocess.run([*cmd, *argv], env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, f"{argv}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


async def view_snapshot(settings, topic, changes=None) -> dict:
    view = TopicView(settings, topic, on_change=None if changes is None else lambda k, v: changes.append((k, v)))
    await view.start()
    try:
        await view.wait_ready(30)
        assert view.ready
        return view.snapshot()
    finally:
        await view.stop()


def test_silence_add_list_expire_seen_by_a_topic_view(env_settings):
    env, settings = env_settings
    added = gridwatch(env, "silence", "add", "--scope", "feeder:F01", "--kinds", "undervoltage,overvoltage",
                      "--for", "2h", "--author", "ops-anna", "--reason", "planned work WO-17")
    silence_id = added.stdout.strip()
    assert silence_id.startswith("sil-")

    listed = json.loads(gridwatch(env, "silence", "list", "--json").stdout)
    mine = next(s for s in listed if s["silence_id"] == silence_id)
    assert mine["scope"] == {"level": "feeder", "id": "F01"}
    assert mine["kinds"] == ["undervoltage", "overvoltage"]
    assert mine["include_safety"] is False and mine["expired_at"] is None
    table = gridwatch(env, "silence", "list").stdout
    assert silence_id in table and "active" in table and "feeder:F01" in table

    changes: list = []
    seen = asyncio.run(view_snapshot(settings, SILENCES, changes))
    assert seen[silence_id] == mine
    assert (silence_id, mine) in changes

    gridwatch(env, "silence", "expire", silence_id, "--author", "ops-ben")
    seen = asyncio.run(view_snapshot(settings, SILENCES))
    assert seen[silence_id]["expired_by"] == "ops-ben" and seen[silence_id]["expired_at"]
    assert not any(s["silence_id"] == silence_id for s in json.loads(gridwatch(env, "silence", "list",
                                                                                "--json").stdout))
    assert any(s["silence_id"] == silence_id for s in json.loads(gridwatch(env, "silence", "list", "--all",
                                                                            "--json").stdout))
    again = gridwatch(env, "silence", "expire", silence_id, "--author", "ops-ben", check=False)
    assert again.returncode == 2 and "already expired" in again.stderr


def test_a_running_view_follows_new_records_and_tombstones(env_settings):
    env, settings = env_settings

    async def scenario():
        changes: list = []
        view = TopicView(settings, SILENCES, on_change=lambda k, v: changes.append((k, v)))
        await view.start()
        try:
            await view.wait_ready(30)
            sid = await asyncio.to_thread(lambda: gridwatch(env, "silence", "add", "--scope", "meter:M7", "--for",
                                                            "30m", "--author", "a", "--reason", "r").stdout.strip())
            for _ in range(100):
                if view.get(sid):
                    break
                await asyncio.sleep(0.1)
            assert view.get(sid)["scope"] == {"level": "meter", "id": "M7"}
            from kafka import KafkaProducer

            producer = KafkaProducer(bootstrap_servers=settings.bootstrap_list, acks="all")
            await asyncio.to_thread(lambda: producer.send(settings.topic(SILENCES), key=sid.encode(),
                                                          value=None).get(30))
            producer.close()
            for _ in range(100):
                if sid not in view:
                    break
                await asyncio.sleep(0.1)
            assert sid not in view and changes[-1] == (sid, None)
        finally:
            await view.stop()

    asyncio.run(scenario())


def test_alert_ack_and_resolve_publish_actions_keyed_by_alert_id(env_settings):
    env, settings = env_settings
    aid = f"undervoltage:transformer:T1:{uuid.uuid4().hex[:6]}"
    out = gridwatch(env, "alert", "ack", aid, "--author", "ops-anna", "--reason", "crew dispatched").stdout
    assert f"acknowledge of {aid} sent" in out
    gridwatch(env, "alert", "resolve", aid, "--author", "ops-ben", "--reason", "misread", "--no-fault")

    from kafka import KafkaConsumer

    consumer = KafkaConsumer(settings.topic(ALERT_ACTIONS), bootstrap_servers=settings.bootstrap_list,
                             group_id=None, auto_offset_reset="earliest", consumer_timeout_ms=5000)
    try:
        records = [(m.key.decode(), json.loads(m.value)) for m in consumer]
    finally:
        consumer.close()
    mine = [(k, v) for k, v in records if k == aid]
    assert [v["action"] for _, v in mine] == ["acknowledge", "resolve"]
    ack, resolve = mine[0][1], mine[1][1]
    assert {k: ack[k] for k in ("alert_id", "author", "reason")} == {
        "alert_id": aid, "author": "ops-anna", "reason": "crew dispatched"}
    assert ack["at"].endswith("Z") and "no_fault" not in ack
    assert resolve["no_fault"] is True and resolve["author"] == "ops-ben"

    bad = gridwatch(env, "alert", "ack", aid, "--author", " ", "--reason", "x", check=False)
    assert bad.returncode == 2 and "--author is required" in bad.stderr


def test_alert_list_and_read_all_show_the_latest_record_per_id(env_settings):
    env, settings = env_settings
    from kafka import KafkaProducer

    base = {"alert_id": "a1", "kind": "outage", "severity": "critical", "status": "open",
            "scope": {"level": "meter", "id": "M1"}, "meter_ids": ["M1"], "customer_ids": ["C1"],
            "started_at": "2026-07-01T08:00:00Z", "detected_at": "2026-07-01T08:05:00Z", "resolved_at": None,
            "evidence": {}}
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_list, acks="all")
    for record in (base, {**base, "alert_id": "a2"}, {**base, "status": "resolved",
                                                      "resolved_at": "2026-07-01T09:00:00Z"}):
        producer.send(settings.topic(ALERTS), key=record["alert_id"].encode(), value=json.dumps(record).encode())
    producer.flush(30)
    producer.close()

    latest = read_all(settings, ALERTS, timeout=30)
    assert latest["a1"]["status"] == "resolved" and latest["a2"]["status"] == "open"
    listed = json.loads(gridwatch(env, "alert", "list", "--status", "open", "--json").stdout)
    assert [a["alert_id"] for a in listed] == ["a2"]
    assert "a1" in gridwatch(env, "alert", "list").stdout


def test_missing_topic_and_unreachable_broker_are_clear_errors(env_settings):
    env, settings = env_settings
    with pytest.raises(TopicViewError, match="does not exist"):
        read_all(settings, "no-such-topic", timeout=10)

    async def start_missing():
        await TopicView(settings, "no-such-topic").start()

    with pytest.raises(TopicViewError, match="does not exist"):
        asyncio.run(start_missing())
    down = gridwatch({**env, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, "silence", "list", check=False)
    assert down.returncode == 2 and "cannot reach Kafka" in down.stderr
