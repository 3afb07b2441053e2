"""Topic admin against a real Kafka broker (the ``kafka_broker`` fixture starts one if none answers)."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from gridwatch.config import CONTRACT_TOPICS, INTERNAL_TOPICS, Settings
from devtools import broker
from streams import topics

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(kafka_broker) -> Settings:
    return Settings(bootstrap_servers=kafka_broker)


def test_broker_answers_and_reports_status(settings):
    assert broker.is_reachable(settings.bootstrap_servers)
    info = broker.status(settings)
    assert info["reachable"] is True
    assert info["version"] and info["version"].startswith("4.")


def test_create_topics_is_idempotent_and_verifies(settings):
    first = topics.create_topics(settings)
    assert set(first) == set(CONTRACT_TOPICS + INTERNAL_TOPICS) | set(topics.faust_topics(settings))
    assert set(first.values()) <= {"created", "exists"}
    second = topics.create_topics(settings)
    assert set(second.values()) == {"exists"}
    topics.verify_topics(settings)


def test_verify_reports_a_partition_mismatch(settings):
    topics.create_topics(settings)
    wrong = 3 if settings.partitions != 3 else 5
    with pytest.raises(topics.TopicsError) as exc_info:
        topics.verify_topics(dataclasses.replace(settings, partitions=wrong))
    message = str(exc_info.value)
    assert (f"topic 'meter.readings' has {settings.partitions} partitions, "
            f"gridwatch is configured for {wrong} (GRIDWATCH_PARTITIONS)") in message
    assert "topic 'alerts'" in message  # every problem at once, not just the first


def test_verify_lists_missing_wrong_partitions_and_wrong_cleanup_together(settings, monkeypatch):
    """A throwaway topic (3 partitions, delete policy) and a name that does not exist."""
    from kafka.admin import KafkaAdminClient

    scratch = f"gridwatch-test-{uuid.uuid4().hex[:8]}"
    missing = f"gridwatch-test-missing-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_list)
    try:
        admin.create_topics({scratch: {"num_partitions": 3, "replication_factor": 1}}, wait_for_metadata=True)
        monkeypatch.setattr(topics, "ALL_TOPICS", (scratch, missing))
        monkeypatch.setattr(topics, "COMPACTED_TOPICS", (scratch,))
        monkeypatch.setattr(topics, "faust_topics", lambda settings: {})
        with pytest.raises(topics.TopicsError) as exc_info:
            topics.verify_topics(dataclasses.replace(settings, partitions=8))
        message = str(exc_info.value)
        assert message.startswith("3 topic problem(s)")
        assert f"topic '{missing}' is missing: run `gridwatch topics create`" in message
        assert f"topic '{scratch}' has 3 partitions, gridwatch is configured for 8" in message
        assert f"topic '{scratch}' has cleanup.policy=delete, gridwatch needs compact" in message
    finally:
        admin.delete_topics([scratch], raise_errors=False)
        admin.close()
