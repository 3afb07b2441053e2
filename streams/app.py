"""The Faust app of ``gridwatch worker``: its topics and tables, declared once, and what its stages share.

:func:`create` makes the app and a :class:`Context`: the settings, the topics, the tables and the helpers
every stage uses (the stats, ``attempts`` / ``guard`` with their retries and dead letters).
Each stage module (streams/directory.py, detect.py, topology.py, bills.py, alerts.py, notify.py, replies.py)
installs its agents and timers on the app with ``install(ctx)``; streams/worker.py puts them
together and runs the app.

Topic and table names are part of the state: a table's changelog topic is named after the table, and a
renamed table starts empty.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as faust_aiokafka
from kafka.partitioner.default import murmur2

from detectors.api import Detector
from gridwatch import config as topics
from gridwatch.config import Settings
from gridwatch.contract import ContractError, dumps
from streams import deadletters
from streams.topics import consumer_gaps

log = logging.getLogger("gridwatch.worker")

#: A worker that stops heart-beating (killed, host gone) loses its partitions after this long. With static
#: membership a restarted worker takes them back at once, so this only bounds the time until the others
#: take over the partitions of a worker that does not come back. Not shorter: opening and recovering the
#: tables can keep a busy worker from heart-beating for over 10 s, and an expired session is a rebalance.
SESSION_TIMEOUT_S = float(os.environ.get("GRIDWATCH_SESSION_TIMEOUT_S", "30"))
#: How long the producer waits to fill a request (seconds, Faust's ``producer_linger``).
PRODUCER_LINGER_S = float(os.environ.get("GRIDWATCH_PRODUCER_LINGER_S", "0.005"))
#: The producer's batch per partition (bytes, Faust's ``producer_max_batch_size``; its default is 16 KB). A
#: readings batch ends with a changelog message per changed meter state: with 16 KB batches they went out in a
#: request per two or three states; with 512 KB in a request per linger (benchmarks/README.md, Issue 11).
PRODUCER_MAX_BATCH_BYTES = int(os.environ.get("GRIDWATCH_PRODUCER_MAX_BATCH_BYTES", "524288"))


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives ``key``: the same in every client."""
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


_dumps = dumps  # every record we publish: compact UTF-8 JSON, and never NaN or Infinity (allow_nan=False)



def group_instance_id(settings: Settings, datadir) -> str:
    """The worker's static group membership id: ``GRIDWATCH_WORKER_ID``, else one derived from the host
    and the state directory, so a worker restarted on the same state is the same member, and two workers
    with their own state directories (as on two hosts) are two members. Two live workers with one id fence
    each other (the broker refuses the older one), so a copied configuration cannot split a partition."""
    explicit = os.environ.get("GRIDWATCH_WORKER_ID")
    if explicit:
        return f"{settings.app_id}-{explicit}"
    digest = hashlib.sha256(str(Path(datadir).resolve()).encode()).hexdigest()[:12]
    return f"{settings.app_id}-{socket.gethostname()}-{digest}"


@dataclass
class Topics:
    """The worker's topics (raw bytes in and out: the stages decode and validate themselves)."""

    readings: Any
    events: Any
    customers: Any
    directory: Any
    status: Any
    alerts: Any
    requests: Any
    notifications: Any
    dlq: Any
    sent: Any
    daily: Any
    reports: Any
    phone_dir: Any
    inbound: Any
    replies: Any
    feedback: Any
    findings: Any
    actions: Any
    #: what detectors find and what operators do, both keyed by alert_id: one agent merges them
    lifecycle_src: Any
    #: what we sent and what the provider reports, both keyed by message SID: one agent joins them
    deliveries_src: Any


@dataclass
class Tables:
    """The worker's tables (RocksDB, a changelog topic each, named after the table)."""

    customers: Any
    meters: Any
    parked: Any
    parked_events: Any
    meter_state: Any
    transformers: Any
    feeders: Any
    bills: Any
    watermarks: Any
    outbox: Any
    deliveries: Any
    phones: Any
    deferred: Any
    lifecycle: Any
    contacts: Any


class Context:
    """What the stages share: the app, settings, topics, tables, counters and the per-message guard."""

    def __init__(self, app: faust.App, settings: Settings, detectors: list[Detector], topics_: Topics,
                 tables: Tables) -> None:
        self.app, self.settings, self.topics, self.tables = app, settings, topics_, tables
        self.detectors = detectors  # the enabled detectors, in the order of their stages
        self.partitions = settings.partitions
        self.stats: Counter = Counter()
        self.faults = deadletters.Faults.from_env()  # failures injected by tests only (GRIDWATCH_FAULTS)
        if self.faults.left:
            log.warning("GRIDWATCH_FAULTS is set: injecting %s", self.faults.left)
        self.stage_retries: dict[str, deadletters.StageRetries] = {}

    async def dead_letter(self, msg, error: str, reason: str = deadletters.REFUSED, stage: str = "",
                          code: str | None = None) -> None:
        await self.dead_letter_raw(msg.topic, msg.partition, msg.offset, msg.key, msg.value, error, reason, stage,
                                   code)

    async def dead_letter_raw(self, topic_name, partition, offset, key, value, error: str, reason: str,
                              stage: str, code: str | None = None) -> None:
        """One dead letter: ``reason`` is the category (invalid, internal, refused: what to do about it),
        ``code`` says why in a word (ts_in_future, unknown_meter, not_finite ...)."""
        code = code or deadletters.DEFAULT_CODES[reason]
        self.stats["dlq"] += 1
        self.stats[f"dlq_{code}"] += 1
        log.warning("dead letter (%s, %s) %s[%s]@%s: %s", reason, code, topic_name, partition, offset, error[:300])
        k, v = deadletters.letter(topic=topic_name, partition=partition, offset=offset, key=key, value=value,
                                  error=error, reason=reason, stage=stage, code=code)
        await self.topics.dlq.send(key=k, value=_dumps(v))

    async def stage_dead_letter(self, msg, exc: BaseException, reason: str, stage: str) -> None:
        if isinstance(exc, ContractError):
            await self.dead_letter(msg, str(exc), reason, stage, exc.code)
        elif reason == deadletters.INVALID:
            await self.dead_letter(msg, f"invalid input in {stage}: {exc!r}", reason, stage)
        else:
            log.error("%s: internal error at %s[%s]@%s not passed by the retry deadline: %r", stage, msg.topic,
                      msg.partition, msg.offset, exc)
            self.stats[f"errors_{stage}"] += 1
            await self.dead_letter(msg, f"internal error in {stage}: {exc!r}", reason, stage)

    def retries(self, stage: str) -> deadletters.StageRetries:
        if stage not in self.stage_retries:
            stats = self.stats

            def on_retry(msg, attempt, exc, wait):
                stats[f"retries_{stage}"] += 1
                log.warning("%s: internal error at %s[%s]@%s (attempt %d), retrying in %.1f s: %r", stage,
                            msg.topic, msg.partition, msg.offset, attempt, wait, exc,
                            exc_info=exc if attempt == 1 else None)  # the traceback once per input

            self.stage_retries[stage] = deadletters.StageRetries(
                stage, on_retry=on_retry, dead_letter=lambda msg, exc, reason: self.stage_dead_letter(
                    msg, exc, reason, stage))
        return self.stage_retries[stage]

    def attempts(self, stream, stage: str):
        """The stage's events: each once, or again after back-off while guard() retries it."""
        return self.retries(stage).events(stream.events())

    def guard(self, msg, stage: str):
        """Per message: an invalid input becomes a dead letter at once; an internal error (a table write, a
        send, a broker or metadata error) is retried with back-off (its stream yields the message again,
        see ``attempts``), logged and counted (``retries_<stage>``), and dead-lettered only once
        GRIDWATCH_RETRY_DEADLINE_S has passed (streams/deadletters.py ``StageRetries``). The agent carries
        on either way. (An exception escaping a Faust agent would still acknowledge the message.)"""
        return self.retries(stage).guard(msg)


class IdempotentProducer(faust_aiokafka.Producer):
    """Faust's producer with Kafka's idempotence on (Faust turns it on only inside transactions).

    Without it a produce request whose answer is lost — the broker restarted or the connection dropped after
    the broker appended the batch — is sent again by the producer's retry and appended twice: one SMS with two
    `sent` records on `notifications`, an alert record twice. With it the broker drops the retried batch by
    its producer id and sequence number.
    """

    def _settings_extra(self) -> dict[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class SeekFirstRecovery(Recovery):
    """Faust's recovery, with the flow off until the stream partitions are seeked to their committed offsets.

    Faust's ``on_recovery_completed`` resumes the stream partitions and then seeks them, with the flow still
    on from reading the changelogs: what the fetcher got in between was handed to the agents, then handed to
    them again from the committed offset after the seek. A worker that recovers tables (on a new host, or
    taking partitions over from another worker) while messages wait processed its first ones twice:
    readings counted as duplicates, a meter event forwarded twice. With the flow off, the fetcher hands
    nothing over until Faust turns it on again at the end, after its seek — as during the rest of a
    rebalance."""

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        self.app.consumer.stop_flow()
        self.app.flow_control.suspend()
        await super().on_recovery_completed(generation_id)


class TableManager(faust.tables.TableManager):
    """Faust's table manager with :class:`SeekFirstRecovery` as its recovery."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = SeekFirstRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


class Transport(faust_aiokafka.Transport):
    Producer = IdempotentProducer


def create(settings: Settings, detectors: list[Detector], *, web_port: int | None = None,
           cluster: str = "default") -> Context:
    """The Faust app with every topic and table of the worker, and the :class:`Context` of its stages.

    ``cluster`` (the Kafka cluster id) names the state directory: table state records changelog offsets of
    one cluster, and a worker pointed at another cluster (a fresh local broker, say) must not reuse it.
    """
    s = settings
    n = s.partitions
    datadir = s.run_dir / "worker" / cluster / s.app_id  # state of one cluster and app id (topic prefix)
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        s.app_id,
        broker=[f"kafka://{b}" for b in s.bootstrap_list],
        store="rocksdb://",
        datadir=str(datadir),
        topic_partitions=n,
        topic_replication_factor=1,
        web_enabled=web_port is not None,
        web_port=web_port or 6066,
        web_host="127.0.0.1",
        consumer_auto_offset_reset="earliest",
        # Table keys and values; topics set their own (raw) serializers. JSON keys stay str after recovery.
        key_serializer="json",
        value_serializer="json",
        # Recovery in seconds (README "Guarantees"): a static group member keeps its partitions when it is
        # restarted under the same instance id, so the replacement of a killed worker resumes at once
        # instead of waiting for the dead member's session to expire; a worker gone for good is dropped
        # from the group after the session timeout.
        consumer_group_instance_id=group_instance_id(s, datadir),
        # the readings agent's end of batch sends a changelog message per meter: let the producer gather
        # them into fewer, larger requests (milliseconds of latency on every send)
        producer_linger=PRODUCER_LINGER_S,
        producer_max_batch_size=PRODUCER_MAX_BATCH_BYTES,
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=min(3.0, SESSION_TIMEOUT_S / 5),
        TableManager=TableManager,
    )
    app.conf.table_standby_replicas = 0
    app.transport = Transport(app.conf.broker_consumer, app)  # before anything creates the producer

    def topic(name):
        return app.topic(s.topic(name), key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw", partitions=n, allow_empty=True)

    t = Topics(
        readings=topic(topics.READINGS), events=topic(topics.EVENTS), customers=topic(topics.CUSTOMERS),
        directory=topic(topics.METER_DIRECTORY), status=topic(topics.METER_STATUS),
        alerts=topic(topics.ALERTS), requests=topic(topics.NOTIFY_REQUESTS),
        notifications=topic(topics.NOTIFICATIONS), dlq=topic(topics.DLQ),
        sent=topic(topics.SENT), daily=topic(topics.DAILY_USAGE), reports=topic(topics.REPORTS),
        phone_dir=topic(topics.PHONE_DIRECTORY), inbound=topic(topics.INBOUND),
        replies=topic(topics.CUSTOMER_REPLIES), feedback=topic(topics.FEEDBACK),
        findings=topic(topics.FINDINGS), actions=topic(topics.ALERT_ACTIONS),
        lifecycle_src=app.topic(s.topic(topics.FINDINGS), s.topic(topics.ALERT_ACTIONS), key_type=bytes,
                                value_type=bytes, key_serializer="raw", value_serializer="raw", partitions=n,
                                allow_empty=True),
        deliveries_src=app.topic(s.topic(topics.SENT), s.topic(topics.PROVIDER_EVENTS), key_type=bytes,
                                 value_type=bytes, key_serializer="raw", value_serializer="raw", partitions=n,
                                 allow_empty=True),
    )

    def table(name, help_):
        return app.Table(name, default=None, partitions=n, key_type=str, help=help_)

    tb = Tables(
        customers=table("customers", "customer_id -> customer record"),
        meters=table("meters", "meter_id -> directory entry (customer, transformer, feeder, nominal V)"),
        parked=table("parked", "meter_id -> readings held until the meter is in the directory"),
        parked_events=table("parked-events", "meter_id -> meter events held until the meter is in the directory"),
        meter_state=table("meter-state", "meter_id -> {detector name: state} of the meter detectors"),
        transformers=table("transformers", "transformer_id -> voltage correlator state"),
        feeders=table("feeders", "feeder_id -> members and outage detector state"),
        bills=table("bills", "customer_id -> {detector name: state} of the daily-usage detectors"),
        watermarks=table("watermarks", "p<dest partition> -> {source partition: event time}; "
                                       "c<readings partition> -> its clock's reference and claims"),
        outbox=table("outbox", "alert|customer|channel -> delivery claim and outcome"),
        deliveries=table("deliveries", "message SID -> what was sent, its provider status, early callbacks"),
        phones=table("phones", "phone number -> {customer_id}: who an inbound SMS is from"),
        deferred=table("deferred", "customer_id -> {outbox key: notify request held for quiet hours, due}"),
        lifecycle=table("lifecycle", "alert_id -> the alert as last published, with the operator's actions"),
        contacts=table("contacts", "customer_id -> opt-out by SMS reply, alert of the last SMS, recent replies"),
    )
    ctx = Context(app, s, detectors, t, tb)

    @app.on_partitions_assigned.connect
    async def check_metadata(app, assigned, **kwargs):
        """Say whether the consumer knows every topic with its partitions (streams/topics.py: why)."""
        gaps = consumer_gaps(app, s)
        if gaps:
            log.error("metadata: topics known with the wrong partition count, table writes on them fail "
                      "until the next metadata refresh: %s", "; ".join(gaps))
        else:
            log.info("metadata: every topic of the worker known with its partitions")

    @app.timer(interval=10.0)
    async def report():
        if ctx.stats:
            log.info("progress: %s", ", ".join(f"{k}={v}" for k, v in sorted(ctx.stats.items())))

    return ctx

