"""Topic prefixes of the tests, so that their topics are deleted again.

Every test pipeline gets topics of its own (its prefix) on a possibly long-lived broker: about 40 topics
of 8 partitions each, Faust's changelogs included. A broker keeps files open and index files mapped for
every partition, so a suite that never deleted them would run the broker out of file descriptors (it
stops with "Too many open files") after a few dozen pipelines. ``fresh_prefix`` remembers each prefix it
hands out; ``tests/conftest.py`` deletes their topics when the test module is done (module scope, so a
module-scoped fixture's topics live as long as the fixture). Only prefixes made by this very process are
deleted, so test runs sharing one broker never touch each other's topics.
"""

from __future__ import annotations

import logging
import uuid

log = logging.getLogger(__name__)

_made: list[tuple[str, str]] = []  # (bootstrap servers, prefix)


def fresh_prefix(kind: str, bootstrap: str) -> str:
    """A new topic prefix such as ``it1f2e3d4c.``, deleted with its topics at the end of the test module."""
    prefix = f"{kind}{uuid.uuid4().hex[:8]}."
    _made.append((bootstrap, prefix))
    return prefix


def drop_made() -> None:
    """Delete the topics of every prefix handed out so far (best effort: a failure is logged, not raised)."""
    from kafka.admin import KafkaAdminClient

    while _made:
        bootstrap, prefix = _made.pop()
        try:
            client = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="gridwatch-tests",
                                      request_timeout_ms=30000)
        except Exception as exc:  # noqa: BLE001 - the broker may be gone already (a chaos test)
            log.warning("topics of %s not deleted: %s", prefix, exc)
            continue
        try:
            names = [t for t in client.list_topics() if t.startswith(prefix)]
            if names:
                client.delete_topics(names, timeout_ms=30000)
        except Exception as exc:  # noqa: BLE001
            log.warning("topics of %s not deleted: %s", prefix, exc)
        finally:
            client.close()
