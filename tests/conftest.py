"""Shared pytest fixtures."""

from __future__ import annotations

import os
from typing import Iterator

import pytest


# --- Kafka broker ------------------------------------------------------------------------------------
# Self-contained on purpose: other fixtures below may be added independently.

@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """The bootstrap address of a real Kafka broker for the whole test session.

    A broker that already answers on KAFKA_BOOTSTRAP_SERVERS is reused and left running. Otherwise one
    is started from the Maven Central jars (streams.broker.start) and stopped again at session end, so
    a test run leaves the machine as it found it. When none can be started the tests that need it skip
    with the reason, except under CI=true, where a missing broker must fail the run instead of
    quietly turning it green.
    """
    from gridwatch.config import Settings
    from streams import broker

    settings = Settings()
    if broker.is_reachable(settings.bootstrap_servers):
        yield settings.bootstrap_servers
        return
    try:
        outcome = broker.start(settings)
    except broker.BrokerError as exc:
        reason = f"no Kafka broker on {settings.bootstrap_servers} and none could be started: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    try:
        yield settings.bootstrap_servers
    finally:
        if outcome == "started":
            broker.stop(settings)


@pytest.fixture(scope="module", autouse=True)
def _drop_topics_of_the_module():
    """Delete the topics of every prefix this module's tests made (see tests/prefixes.py)."""
    yield
    from tests.prefixes import drop_made

    drop_made()
