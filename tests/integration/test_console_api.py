"""`gridwatch console` as a subprocess on a real broker: an alert produced to `alerts` shows in the API and
is pushed on /api/events within 2 s, an acknowledgement reaches gridwatch.alert-actions, /metrics answers."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import time
import urllib.error
import urllib.request
import uuid

import aiohttp
import pytest

from tests.prefixes import fresh_prefix

from gridwatch.config import ALERT_ACTIONS, ALERTS, CUSTOMERS, NOTIFICATIONS, READINGS, Settings
from devtools.demo import Processes, gridwatch_argv
from streams.topics import create_topics
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

OP_TOKEN = "it-operator-token-1"
VIEW_TOKEN = "it-viewer-token-2"
OP = {"Authorization": f"Bearer {OP_TOKEN}"}


def get(url: str, headers: dict | None = None, timeout: float = 5) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_up(url: str, proc, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"console exited with {proc.returncode}")
        try:
            if get(url + "api/me", OP, timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("console did not start")


class JsonProducer:
    """kafka-python's producer with str keys and JSON values."""

    def __init__(self, producer):
        self.producer = producer

    def send(self, topic: str, key: str, value: dict):
        return self.producer.send(topic, key=key.encode(), value=json.dumps(value, ensure_ascii=False).encode())

    def flush(self, timeout: float) -> None:
        self.producer.flush(timeout)

    def close(self) -> None:
        self.producer.close()


@pytest.fixture
def console(kafka_broker, tmp_path):
    settings = dataclasses.replace(Settings(), bootstrap_servers=kafka_broker,
                                   topic_prefix=fresh_prefix("con", kafka_broker))
    create_topics(settings)
    from kafka import KafkaProducer

    producer = JsonProducer(KafkaProducer(bootstrap_servers=settings.bootstrap_list, acks="all"))
    # something already on the topics before the console starts: it reads them from the beginning
    producer.send(settings.topic(CUSTOMERS), key="C1", value={
        "customer_id": "C1", "meter_id": "M1", "transformer_id": "T1", "feeder_id": "F1", "segment": "residential",
        "phone": "+8613812348000", "language": "zh-CN", "timezone": "Asia/Shanghai", "nominal_voltage": 220})
    producer.send(settings.topic(READINGS), key="M1", value={"meter_id": "M1", "ts": "2026-07-01T04:15:00Z",
                                                              "v_avg": 190.0})
    producer.flush(30)
    port = free_port()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_broker, "GRIDWATCH_TOPIC_PREFIX": settings.topic_prefix,
           "GRIDWATCH_CONSOLE_USERS": f"ana:operator:{OP_TOKEN},vic:viewer:{VIEW_TOKEN}", "PYTHONUNBUFFERED": "1"}
    env.pop("GRIDWATCH_CONSOLE_USERS_FILE", None)
    procs = Processes()
    log = tmp_path / "console.log"
    proc = procs.start("console", gridwatch_argv("console", "--port", str(port)), env, log)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_up(url, proc)
        yield settings, url, producer, log
    except BaseException:
        print(log.read_text(errors="replace")[-4000:])
        raise
    finally:
        producer.close()
        procs.stop()
    text = log.read_text(errors="replace")
    assert f"console: {url}" in text
    assert OP_TOKEN not in text and "+8613812348000" not in text  # no secrets, no phone numbers in its output


def alert_record(aid: str) -> dict:
    return {"alert_id": aid, "kind": "undervoltage", "severity": "warning", "status": "open",
            "scope": {"level": "transformer", "id": "T1"}, "meter_ids": ["M1"], "customer_ids": ["C1"],
            "started_at": "2026-07-01T04:15:00Z", "detected_at": "2026-07-01T04:30:00Z", "resolved_at": None,
            "evidence": {"trace": {"unit": "V", "standard": "GB/T 12325", "nominal": 220, "band": [198.0, 235.4],
                                   "meter_id": "M1", "points": [["2026-07-01T04:00:00Z", 221.0, 220.0, 222.0],
                                                                ["2026-07-01T04:15:00Z", 190.0, 189.0, 191.0]]}},
            "history": [{"status": "open", "at": "2026-07-01T04:30:00Z", "by": "detector", "reason": None}]}


def test_console_follows_kafka_and_publishes_actions(console):
    settings, url, producer, log = console
    aid = f"undervoltage:transformer:T1:{uuid.uuid4().hex[:6]}"

    # live: subscribe first, then produce; the push arrives well within 2 s
    async def subscribe_then_produce():
        async with aiohttp.ClientSession(headers=OP) as http:
            async with http.get(url + "api/events") as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
                assert (await r.content.readline()).startswith(b"retry:")
                t0 = time.monotonic()
                await asyncio.get_running_loop().run_in_executor(None, lambda: (
                    producer.send(settings.topic(ALERTS), key=aid, value=alert_record(aid)), producer.flush(10)))
                produced = time.monotonic()
                event = None
                while True:
                    line = (await asyncio.wait_for(r.content.readline(), 5)).decode()
                    if line.startswith("event: "):
                        event = line[7:].strip()
                    elif line.startswith("data: ") and event == "alert":
                        data = json.loads(line[6:])
                        if data.get("alert_id") == aid:
                            return data, time.monotonic() - produced, produced - t0

    summary, pushed_after, _ = asyncio.run(subscribe_then_produce())
    assert pushed_after < 2.0, f"pushed {pushed_after:.2f} s after it reached Kafka"
    assert summary["feeder_id"] == "F1" and summary["transformer_ids"] == ["T1"] and summary["n_customers"] == 1

    # the REST view has it too (polled: it must be there within 2 s of being produced)
    status, body = get(url + "api/alerts", OP)
    alerts = json.loads(body)
    assert status == 200 and [a["alert_id"] for a in alerts["alerts"]] == [aid]
    assert alerts["counts"] == {"open": 1, "acknowledged": 0, "resolved": 0}

    # a second alert: seen by polling the list within 2 s
    aid2 = aid + "-2"
    producer.send(settings.topic(ALERTS), key=aid2, value={**alert_record(aid2), "kind": "overvoltage"})
    producer.flush(10)
    t0 = time.monotonic()
    while True:
        ids = [a["alert_id"] for a in json.loads(get(url + "api/alerts?kind=overvoltage", OP)[1])["alerts"]]
        if ids == [aid2]:
            break
        assert time.monotonic() - t0 < 2.0, "the alert did not show in /api/alerts within 2 s"
        time.sleep(0.05)

    # details: the operator sees the phone, the viewer a masked one; the evidence chart renders
    quoted = urllib.request.quote(aid, safe=":")
    detail = json.loads(get(url + f"api/alerts/{quoted}", OP)[1])
    assert detail["customers"][0]["phone"] == "+8613812348000"
    viewer = json.loads(get(url + f"api/alerts/{quoted}", {"Authorization": f"Bearer {VIEW_TOKEN}"})[1])
    assert viewer["customers"][0]["phone"] == "+86138****8000"
    status, svg = get(url + detail["evidence_svg"].lstrip("/"), OP)
    assert status == 200 and svg.startswith(b"<?xml") and b"<svg" in svg

    # a notification for it: pushed and counted
    producer.send(settings.topic(NOTIFICATIONS), key="C1", value={
        "notification_id": "n-1", "alert_id": aid, "customer_id": "C1", "channel": "sms", "language": "zh-CN",
        "body": "GridWatch", "status": "sent", "reason": None, "provider_message_id": "SM1",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    producer.flush(10)

    # acknowledge through the API: the action is on gridwatch.alert-actions, keyed by the alert id
    request = urllib.request.Request(url + f"api/alerts/{quoted}/acknowledge", method="POST",
                                     data=json.dumps({"reason": "crew dispatched"}).encode(),
                                     headers={**OP, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=20) as r:
        assert r.status == 202
        accepted = json.loads(r.read())
    assert accepted["action"]["author"] == "ana"
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(settings.topic(ALERT_ACTIONS), bootstrap_servers=settings.bootstrap_list,
                             group_id=None, auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        found = []
        deadline = time.monotonic() + 30
        while not found and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                found += [(m.key.decode(), json.loads(m.value)) for m in batch]
    finally:
        consumer.close()
    assert found == [(aid, accepted["action"])]
    assert found[0][1]["action"] == "acknowledge" and found[0][1]["reason"] == "crew dispatched"

    # a viewer cannot; no credentials: 401
    basic = "Basic " + base64.b64encode(f"vic:{VIEW_TOKEN}".encode()).decode()
    request = urllib.request.Request(url + f"api/alerts/{quoted}/acknowledge", method="POST",
                                     data=b'{"reason": "x"}', headers={"Authorization": basic})
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(request, timeout=10)
    assert denied.value.code == 403
    assert get(url + "api/alerts")[0] == 401 and get(url + "metrics")[0] == 401

    # metrics: every family, from the model and from Kafka (the first scrapes of a new cluster may find the
    # group coordinator still starting: then they say so, and a later one has everything)
    deadline = time.monotonic() + 30
    while True:
        status, text = get(url + "metrics", OP, timeout=15)
        text = text.decode()
        assert status == 200
        if ("gridwatch_kafka_up 1.0" in text and "gridwatch_consumer_lag{" in text) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for family in ("gridwatch_readings_messages_total 1.0", "gridwatch_dlq_records_total 0.0", "gridwatch_kafka_up 1.0",
                   "gridwatch_console_up 1.0", "# TYPE gridwatch_consumer_lag gauge",
                   f'gridwatch_consumer_lag{{topic="{settings.topic(READINGS)}"}} 1.0',
                   'gridwatch_alerts{kind="undervoltage",status="open"} 1.0',
                   'gridwatch_notifications_total{channel="sms",status="sent"} 1.0',
                   "gridwatch_detection_latency_seconds_count 2.0"):
        assert family in text, f"{family}\n{text}\n{log.read_text(errors='replace')[-3000:]}"
    figures = json.loads(get(url + "api/figures", OP)[1])
    assert figures["detection_s"]["median"] == 900.0 and figures["first_message_s"]["n"] == 1
