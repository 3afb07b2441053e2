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
