"""Topic administration: create gridwatch's topics up front and check them before processing.

Why explicit: a table whose source topic has another partition count than its changelog fails with
PartitionsMismatch — or, worse, co-partitioned streams silently stop lining up. So every contract
and internal topic is created here with ``Settings.partitions`` partitions (the broker never
auto-creates topics), and ``verify_topics`` names every discrepancy with the command that fixes it.

Faust's own topics (a changelog per table, the leader-election topic) are created here too. Left to Faust,
they are created while the worker starts, after its consumer may already have fetched metadata without
them: a table write then compares its source topic's partitions with a changelog of "0 partitions" and
fails with PartitionsMismatch until the next metadata refresh, minutes later. Created up front, and checked
(leaders elected) before the worker starts, they are in the consumer's first metadata.

Uses kafka-python 3.x's KafkaAdminClient (the dict form of ``create_topics``; 2.x's NewTopic list
is deprecated there).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from typing import Iterator

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import KafkaError, KafkaTimeoutError, for_code

from gridwatch.config import COMPACTED_TOPICS, CONTRACT_TOPICS, INTERNAL_TOPICS, TABLES, Settings

ALL_TOPICS = CONTRACT_TOPICS + INTERNAL_TOPICS
REPLICATION_FACTOR = 1  # one broker locally and in docker-compose
ERR_TOPIC_ALREADY_EXISTS = 36
LEADER_WAIT_MS = 30000  # verify_topics: how long partitions of existing topics may take to get a leader


class TopicsError(RuntimeError):
    """gridwatch's topics are missing or misconfigured, or the broker cannot be reached."""


def topic_configs(name: str) -> dict[str, str]:
    """Topic-level configs: keyed snapshots (customers, the meter and phone directories) are compacted."""
    return {"cleanup.policy": "compact"} if name in COMPACTED_TOPICS else {}


def _spec(partitions: int, configs: dict[str, str]) -> dict:
    return {"num_partitions": partitions, "replication_factor": REPLICATION_FACTOR, "configs": configs}


def changelog_topic(settings: Settings, table: str) -> str:
    """The changelog topic Faust gives a table of the worker (``<app id>-<table>-changelog``)."""
    return f"{settings.app_id}-{table}-changelog"


def faust_topics(settings: Settings) -> dict[str, dict]:
    """Faust's own topics of the worker: a compacted changelog per table (as Faust makes them) with the
    worker's partitions, and the leader-election topic (one partition)."""
    specs = {changelog_topic(settings, t): _spec(settings.partitions, {"cleanup.policy": "compact"})
             for t in TABLES}
    specs[f"{settings.app_id}-__assignor-__leader"] = _spec(1, {})
    return specs


def topic_specs(settings: Settings) -> dict[str, dict]:
    """The CreateTopics request body, in kafka-python's dict form (pure, for tests)."""
    specs = {settings.topic(name): _spec(settings.partitions, topic_configs(name)) for name in ALL_TOPICS}
    return {**specs, **faust_topics(settings)}


def deployed_names(settings: Settings) -> list[str]:
    """Every topic gridwatch uses, as named on the cluster (with GRIDWATCH_TOPIC_PREFIX)."""
    return list(topic_specs(settings))


@contextlib.contextmanager
def _admin(settings: Settings) -> Iterator[KafkaAdminClient]:
    try:
        client = KafkaAdminClient(bootstrap_servers=settings.bootstrap_list, client_id="gridwatch-topics",
                                  bootstrap_timeout_ms=10000, request_timeout_ms=30000)
    except KafkaError as exc:
        raise TopicsError(f"cannot reach Kafka at {settings.bootstrap_servers} ({type(exc).__name__}): "
                          "start one with `gridwatch kafka start` or `docker compose up kafka`") from None
    try:
        yield client
    finally:
        client.close()


def _describe(client: KafkaAdminClient, names) -> dict[str, dict]:
    """name -> topic metadata for the topics that exist (missing ones are left out)."""
    found = {}
    for topic in client.describe_topics(list(names)):
        if topic.get("error_code", 0) == 0 and topic.get("name"):
            found[topic["name"]] = topic
    return found


def create_topics(settings: Settings | None = None) -> dict[str, str]:
    """Create every gridwatch topic that does not exist yet; name -> "created" or "exists".

    Idempotent: an existing topic is left exactly as it is, even if it differs (``verify_topics``
    reports that; changing partitions of a keyed topic would move keys, so it is not done silently).
    """
    settings = settings or Settings()
    names = deployed_names(settings)
    with _admin(settings) as client:
        existing = set(_describe(client, names))
        result = {name: "exists" for name in names if name in existing}
        wanted = {name: spec for name, spec in topic_specs(settings).items() if name not in existing}
        if wanted:
            response = client.create_topics(wanted, raise_errors=False)
            problems = []
            for topic in response["topics"]:
                code = topic.get("error_code", 0)
                if code == 0:
                    result[topic["name"]] = "created"
                elif code == ERR_TOPIC_ALREADY_EXISTS:  # created concurrently by someone else
                    result[topic["name"]] = "exists"
                else:
                    problems.append(f"{topic['name']}: {for_code(code).__name__} "
                                    f"{topic.get('error_message') or ''}".rstrip())
            if problems:
                raise TopicsError("could not create topics: " + "; ".join(problems))
            created = [name for name, state in result.items() if state == "created"]
            client.wait_for_topics(created, timeout_ms=30000)  # leaders elected before anyone produces
    return {name: result[name] for name in names}


def consumer_gaps(app, settings: Settings) -> list[str]:
    """Topics of the worker that its (started) Faust consumer knows with another partition count than they
    have: a table writing to one of them fails with PartitionsMismatch. Empty when all is well."""
    gaps = []
    for name, spec in topic_specs(settings).items():
        known = app.consumer.topic_partitions(name)  # None: not subscribed by this consumer
        if known is not None and known != spec["num_partitions"]:
            gaps.append(f"{name} ({known} partitions known, {spec['num_partitions']} expected)")
    return gaps


def cluster_id(settings: Settings | None = None) -> str:
    """The Kafka cluster's id: local state (RocksDB offsets) is only valid against the cluster it came from."""
    settings = settings or Settings()
    with _admin(settings) as client:
        return client.describe_cluster()["cluster_id"]


def verify_topics(settings: Settings | None = None) -> None:
    """Raise TopicsError listing every missing topic, wrong partition count or wrong cleanup policy."""
    settings = settings or Settings()
    problems: list[str] = []
    specs = topic_specs(settings)
    with _admin(settings) as client:
        found = _describe(client, specs)
        for name, spec in specs.items():
            topic = found.get(name)
            if topic is None:
                problems.append(f"topic '{name}' is missing: run `gridwatch topics create`")
                continue
            count, wanted = len(topic.get("partitions") or []), spec["num_partitions"]
            if count != wanted:
                problems.append(
                    f"topic '{name}' has {count} partitions, gridwatch is configured for "
                    f"{wanted} (GRIDWATCH_PARTITIONS): set GRIDWATCH_PARTITIONS={count} "
                    f"or recreate the topic")
        if found and not problems:
            # every partition led, so the worker's first metadata knows all of them (topics just created
            # by someone else may still be electing leaders)
            try:
                client.wait_for_topics(list(found), timeout_ms=LEADER_WAIT_MS)
            except KafkaTimeoutError as exc:
                problems.append(f"topics without a leader after {LEADER_WAIT_MS // 1000} s: {exc}")
        compacted = [settings.topic(name) for name in COMPACTED_TOPICS if settings.topic(name) in found]
        compacted += [name for name, spec in faust_topics(settings).items()
                      if spec["configs"].get("cleanup.policy") == "compact" and name in found]
        if compacted:
            resources = [ConfigResource(ConfigResourceType.TOPIC, name, ["cleanup.policy"]) for name in compacted]
            configs = client.describe_configs(resources, config_filter="all").get("topic", {})
            for name in compacted:
                policy = (configs.get(name, {}).get("cleanup.policy") or {}).get("value") or "delete"
                if "compact" not in policy.split(","):
                    problems.append(f"topic '{name}' has cleanup.policy={policy}, gridwatch needs compact: "
                                    f"recreate it with `gridwatch topics create`")
    if problems:
        raise TopicsError(f"{len(problems)} topic problem(s) on {settings.bootstrap_servers}:\n  - "
                          + "\n  - ".join(problems))


# ---------------------------------------------------------------------------------------------- CLI

def _quiet_client_logs(args: argparse.Namespace) -> None:
    """kafka-python logs every connection at INFO; a command's own one-line result says enough (-v shows all)."""
    if not getattr(args, "verbose", False):
        logging.getLogger("kafka").setLevel(logging.CRITICAL)


def _cmd_create(args: argparse.Namespace) -> int:
    _quiet_client_logs(args)
    try:
        result = create_topics()
    except TopicsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    width = max(map(len, result))
    for name, state in result.items():
        print(f"{name:<{width}}  {state}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    _quiet_client_logs(args)
    settings = Settings()
    try:
        verify_topics(settings)
    except TopicsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"all {len(deployed_names(settings))} topics present with {settings.partitions} partitions "
          f"(the leader-election topic: 1)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``gridwatch topics create|verify``."""
    parser = subparsers.add_parser(
        "topics", help="create or verify gridwatch's Kafka topics",
        description="Manage the contract and internal topics on KAFKA_BOOTSTRAP_SERVERS, and the worker's Faust "
                    "topics (table changelogs, leader election). Every topic has GRIDWATCH_PARTITIONS partitions "
                    "(default 8; the leader-election topic 1); customers, the meter and phone directories and the "
                    "changelogs are compacted.")
    actions = parser.add_subparsers(dest="topics_command", metavar="ACTION", required=True)
    p = actions.add_parser(
        "create", help="create the topics that are missing (existing ones are left alone)",
        description="Create every gridwatch topic that does not exist yet. Safe to run again.")
    p.set_defaults(func=_cmd_create)
    p = actions.add_parser(
        "verify", help="check every topic exists with the configured partitions and cleanup policy",
        description="Exit 1 listing every missing or misconfigured topic, with the command that fixes it.")
    p.set_defaults(func=_cmd_verify)
