"""How the console reads its topics at start, on a real broker: notifications and feedback only as far back as
the model keeps them, everything else whole, and no second copy of the records beside the model."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest

from console.app import Console, FEEDS, start_feeds
from console.auth import Authenticator
from console.model import ConsoleModel
from gridwatch.config import CUSTOMERS, NOTIFICATIONS, Settings
from streams.topics import create_topics
from tests.prefixes import fresh_prefix

pytestmark = pytest.mark.integration


def test_the_console_reads_only_the_tail_of_notifications_and_keeps_one_copy(kafka_broker):
    from kafka import KafkaProducer

    settings = dataclasses.replace(Settings(), bootstrap_servers=kafka_broker,
                                   topic_prefix=fresh_prefix("feeds", kafka_broker))
    create_topics(settings)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_list, acks="all")
    for i in range(12):  # one key: one partition, in this order
        producer.send(settings.topic(NOTIFICATIONS), key=b"A1", value=json.dumps(
            {"notification_id": f"N{i:02d}", "alert_id": "A1", "customer_id": "C1", "status": "sent",
             "channel": "sms", "created_at": f"2026-07-01T04:{i:02d}:00Z"}).encode())
    for c in ("C1", "C2", "C3"):
        producer.send(settings.topic(CUSTOMERS), key=c.encode(), value=json.dumps(
            {"customer_id": c, "meter_id": "M" + c[1:], "feeder_id": "F1"}).encode())
    producer.flush(30)
    producer.close()

    async def go():
        console = Console(settings=settings, model=ConsoleModel(max_records=5), auth=Authenticator([]),
                          publisher=None, offsets=None)
        views = await start_feeds(settings, console, timeout=60)
        try:
            by_topic = {v.topic: v for v in views}
            assert set(by_topic) == {settings.topic(t) for t in FEEDS.values()}
            notes = by_topic[settings.topic(NOTIFICATIONS)]
            assert notes.skipped == 7  # 12 on the partition, the last 5 read
            assert [n["notification_id"] for n in console.model.notifications_of("A1")] == \
                ["N07", "N08", "N09", "N10", "N11"]
            assert sorted(console.model.customers) == ["C1", "C2", "C3"]
            assert by_topic[settings.topic(CUSTOMERS)].skipped == 0
            assert all(len(v) == 0 for v in views)  # the model is the only copy
        finally:
            for view in views:
                await view.stop()

    asyncio.run(go())


@pytest.mark.postgres
def test_with_a_history_store_the_console_reads_on_from_the_projection(kafka_broker, history_engine, monkeypatch):
    """The store's snapshot plus the topics from the projector's offsets is everything, each record once: the
    console holds the open alerts and those after the projection, none of the directory it can look up, and
    a customer published after the projection places an alert before the projector has it."""
    from kafka import KafkaProducer

    from console.app import _load_board
    from console.board_store import BoardStore, StoreDirectory
    from gridwatch.config import ALERTS
    from history.projector import Projector

    monkeypatch.setenv("GRIDWATCH_CONSOLE_RECENT_HOURS", "0")  # resolved alerts: looked up, not held
    settings = dataclasses.replace(Settings(), bootstrap_servers=kafka_broker,
                                   topic_prefix=fresh_prefix("board", kafka_broker))
    create_topics(settings)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_list, acks="all")

    def send(topic, key, value):
        producer.send(settings.topic(topic), key=key.encode(), value=json.dumps(value).encode())

    def customer(i, feeder):
        return {"customer_id": f"C{i}", "meter_id": f"M{i}", "transformer_id": f"T{i}", "feeder_id": feeder,
                "phone": f"+44790000000{i}"}

    def alert(aid, status, meter):
        return {"alert_id": aid, "kind": "undervoltage", "severity": "warning", "status": status,
                "scope": {"level": "meter", "id": meter}, "meter_ids": [meter], "customer_ids": ["C" + meter[1:]],
                "started_at": "2026-07-01T04:00:00Z", "detected_at": "2026-07-01T04:15:00Z", "evidence": {}}

    for i in (1, 2, 3):
        send(CUSTOMERS, f"C{i}", customer(i, f"F{i}"))
    send(ALERTS, "A1", alert("A1", "resolved", "M1"))
    send(ALERTS, "A2", alert("A2", "open", "M2"))
    producer.flush(30)
    Projector(history_engine, settings).run(until_caught_up=True)
    # after the projection: a new customer, and an alert on its meter
    send(CUSTOMERS, "C4", customer(4, "F4"))
    send(ALERTS, "A3", alert("A3", "open", "M4"))
    producer.flush(30)

    async def go():
        import time

        store = BoardStore(history_engine)
        model = ConsoleModel(directory=StoreDirectory())
        console = Console(settings=settings, model=model, auth=Authenticator([]), publisher=None, offsets=None,
                          store=store)
        start_at = await asyncio.to_thread(_load_board, store, model, settings, time.time())
        views = await start_feeds(settings, console, timeout=60, start_at=start_at)
        try:
            by_topic = {v.topic: v for v in views}
            assert by_topic[settings.topic(CUSTOMERS)].skipped == 3
            assert by_topic[settings.topic(ALERTS)].skipped == 2
            assert set(model.alerts) == {"A2", "A3"}  # A1 resolved: in the store only
            assert model.summary("A2")["feeder_id"] == "F2"  # as the store placed it
            assert model.summary("A3")["feeder_id"] == "F4"  # from the customer not projected yet
            assert model.customers == {}
            # a live alert on a projected customer's meter: looked up in the store before it is shown
            queue = console.hub.subscribe("t")
            producer.send(settings.topic(ALERTS), key=b"A5", value=json.dumps(alert("A5", "open", "M3")).encode())
            producer.flush(30)
            frame = (await asyncio.wait_for(queue.get(), 30)).decode()
            assert frame.startswith("event: alert\n") and '"alert_id":"A5"' in frame and '"feeder_id":"F3"' in frame
            detail = model.detail("A5", reveal_phones=True, evidence_url=None)
            assert detail["customers"][0]["phone"] == "+447900000003"
        finally:
            for view in views:
                await view.stop()
            producer.close()

    asyncio.run(go())
