"""``gridwatch worker``: the Faust application — validate -> detect -> alert -> notify.

Stages and the topics between them (every arrow is a Kafka topic, so each stage can be scaled and
restarted on its own; tables live in RocksDB with a changelog topic each):

    customers ──> customers table ──> gridwatch.meter-directory ──> meters table (keyed by meter)
                                 ├──> gridwatch.meter-status (membership, keyed by feeder)
                                 └──> gridwatch.phone-directory ──> phones table (keyed by phone number)
    meter.readings ──validate──> meter detectors (per meter) ──> gridwatch.meter-status
                         │                (findings per batch + partition watermarks)
                         ├──> gridwatch.reports (weekly voltage compliance)
                         └──> gridwatch.daily-usage (per customer) ──> bill detector ──> alerts
                                                                 (Prophet fits in a process pool)
    meter.events ──validate──> gridwatch.meter-status (power fail / restore, keyed by feeder)
    gridwatch.meter-status ──> feeder stage: outage detector, voltage correlator per transformer ──> alerts
    alerts ──> gridwatch.notify-requests (one per customer, keyed by customer) ──> SMS ──> notifications
    gridwatch.inbound (replies, keyed by phone) ──> phones table ──> gridwatch.customer-replies (keyed by
        customer) ──> contacts table (opt-out by reply, alert of the last SMS) ──> feedback
    anything invalid ──> gridwatch.dlq

The detection code is detectors/pipeline.py, the same the backtest runs; this module only moves its
inputs and states between Kafka topics and Faust tables.

Per-message cost in Faust dominates, so a ``meter.readings`` message carries a batch of readings, and the
readings agent works in micro-batches of messages (streams/detect.py): each message is still decoded and
detected on its own, but a meter's state is written once per batch and the statuses go to the topology
stage as one message per feeder per batch.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import multiprocessing
import os
import socket
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.worker import Worker
from kafka.partitioner.default import murmur2
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily

from detectors.pipeline import CustomerStage, FeederStage, MeterStage, batch_gaps, directory_entry, profile_dict
from detectors.registry import DetectorError, enabled
from detectors.watermarks import PartitionClock, SettledNewest
from gridwatch import config as topics
from gridwatch.config import Settings
from gridwatch.contract import (ContractError, MeterEvent, Reading, decode_customer, decode_event, decode_key,
                                decode_readings, dumps, format_ts)
from notifiers.channels import build_notifier
from notifiers.pacing import Pacer
from notifiers.path import RESTORATION_KINDS, NotificationPath, Policy
from notifiers.privacy import mask_phone
from notifiers.replies import TERMINAL_STATUSES, advance_status, parse_reply
from notifiers.tips import usage_summary
from streams import deadletters
from streams.detect import (READINGS_BATCH, READINGS_BATCH_WITHIN_S, Directory, MeterStates, StatusBatch,
                            set_current_event)
from streams.lifecycle import apply_action, apply_finding
from streams.topics import TopicsError, cluster_id, consumer_gaps, verify_topics
from streams.topicview import TopicView
from streams.webhooks import STATUS_PATH

log = logging.getLogger("gridwatch.worker")

#: How far behind the start of the newest batch of its partition a reading may arrive and still be decided
#: on (see detectors/watermarks.py for how a partition's watermark is made).
ALLOWED_LATENESS_S = 900
#: A source partition with no new readings for this long (wall clock) is idle: its watermark moves up to
#: the newest reading this worker had seen this long ago, so a partition whose meters are all dark holds
#: nothing back, while a partition whose readings merely arrive later than the others' (a burst published
#: partition after partition, a worker re-reading after a restart) is never overtaken by less than this.
#: Only liveness uses the wall clock; what is decided is still a function of event time alone.
IDLE_PARTITION_WALL_S = 20.0
#: Broadcast a partition's progress when it moved this much event time, or after this much wall time.
WATERMARK_STEP_S = 900
WATERMARK_EVERY_S = 1.0
#: Readings of a meter not yet in the directory are held back, up to this many per meter (a week of
#: 15-minute readings); a message beyond that goes to the dead-letter topic (code ``unknown_meter``).
PARKED_MAX = 672
#: A meter new to the directory holds its partition's watermark below its held readings for this long (wall
#: time: its customer record is usually on its way), then by at most ALLOWED_LATENESS_S (detectors/watermarks.py).
HELD_GRACE_S = float(os.environ.get("GRIDWATCH_HELD_GRACE_S", "30"))
#: ... and up to this many per partition, all meters together (a message beyond: dead-lettered the same way)
PARKED_PARTITION_MAX = int(os.environ.get("GRIDWATCH_HELD_MAX", "20000"))
#: Held readings (and events) whose meter is still not in the directory when the partition's watermark is
#: this far past them (event time) are given up: dead-lettered as one replayable message, ``unknown_meter``.
PARKED_MAX_AGE_S = int(os.environ.get("GRIDWATCH_HELD_MAX_AGE_S", str(7 * 86400)))
#: A reading or event dated more than this after the wall clock is refused (``ts_in_future``): meter clocks
#: drift by minutes. Event time far *behind* the wall clock (a replay of old history) is never refused.
MAX_FUTURE_S = int(os.environ.get("GRIDWATCH_MAX_FUTURE_S", "900"))


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives ``key``: the same in every client."""
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


_dumps = dumps  # every record we publish: compact UTF-8 JSON, and never NaN or Infinity (allow_nan=False)


def _utc_now() -> str:
    """Wall-clock time of a record we create (RFC 3339, UTC): when it happened, not event time."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def feedback_record(customer_id: str | None, inbound: dict, reply, *, from_masked: str | None = None,
                    alert_id: str | None = None, opted_out: bool | None = None) -> dict:
    """The ``feedback`` record of one inbound SMS (``inbound`` as the webhook published it, without the
    numbers; ``reply`` from :func:`notifiers.replies.parse_reply`)."""
    return {"feedback_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"inbound|{inbound['sid']}")),
            "customer_id": customer_id, "from_masked": from_masked if customer_id is None else None,
            "channel": "sms", "provider_message_id": inbound["sid"], "body": inbound.get("body") or "",
            "intent": reply.feedback_intent, "rating": reply.rating, "alert_id": alert_id,
            "opted_out": opted_out, "received_at": _rfc3339(inbound.get("received_at") or time.time()),
            "created_at": _utc_now()}


#: Inbound message SIDs remembered per customer, so a webhook the provider retried counts once.
SEEN_REPLIES = 20
#: replies that get an answer: HELP (who we are, how to stop), "still out" (logged, crews told), a rating
ANSWERED_INTENTS = ("help", "still_out", "rating")


def transformer_watermark(parts: set[int], view: dict[str, int]) -> int | None:
    """Event time up to which every partition carrying one of the transformer's meters has progressed.

    A partition never heard from holds decisions back (idle partitions are advanced by their owner, see
    ``IDLE_PARTITION_WALL_S``), so a lagging partition can never be overtaken, however large the skew.
    """
    known = [view.get(str(p)) for p in parts]
    if not known or any(w is None for w in known):
        return None
    return min(known)


#: A worker that stops heart-beating (killed, host gone) loses its partitions after this long. With static
#: membership a restarted worker takes them back at once, so this only bounds the time until the others
#: take over the partitions of a worker that does not come back. Not shorter: opening and recovering the
#: tables can keep a busy worker from heart-beating for over 10 s, and an expired session is a rebalance.
SESSION_TIMEOUT_S = float(os.environ.get("GRIDWATCH_SESSION_TIMEOUT_S", "30"))
#: How long the producer waits to fill a request (seconds, Faust's ``producer_linger``).
PRODUCER_LINGER_S = float(os.environ.get("GRIDWATCH_PRODUCER_LINGER_S", "0.005"))
#: The producer's batch per partition (bytes, Faust's ``producer_max_batch_size``; its default is 16 KB). A
#: meter state is ~6 KB: with 16 KB batches the end of a readings batch went out in a request per two or
#: three states; with 512 KB in a request per linger (benchmarks/README.md, Issue 11).
PRODUCER_MAX_BATCH_BYTES = int(os.environ.get("GRIDWATCH_PRODUCER_MAX_BATCH_BYTES", "524288"))
#: ``gridwatch worker`` on SIGTERM: a graceful stop (commit offsets, close tables) gets this long, then the
#: process exits at once, which is safe: the next start recovers exactly as after a crash.
STOP_GRACE_S = float(os.environ.get("GRIDWATCH_STOP_GRACE_S", "7"))


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


def build_app(settings: Settings | None = None, *, web_port: int | None = None, cluster: str = "default"):
    """Assemble the Faust app: topics, tables and the agents of every stage.

    ``cluster`` (the Kafka cluster id) names the state directory: table state records changelog offsets of
    one cluster, and a worker pointed at another cluster (a fresh local broker, say) must not reuse it.
    """
    s = settings or Settings()
    detectors = enabled(s.detectors)  # a broken or unknown detector stops the start here, by name
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
    )
    app.conf.table_standby_replicas = 0

    def topic(name):
        return app.topic(s.topic(name), key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw", partitions=n, allow_empty=True)

    readings_t, events_t, customers_t = topic(topics.READINGS), topic(topics.EVENTS), topic(topics.CUSTOMERS)
    directory_t, status_t = topic(topics.METER_DIRECTORY), topic(topics.METER_STATUS)
    alerts_t, requests_t = topic(topics.ALERTS), topic(topics.NOTIFY_REQUESTS)
    notifications_t, dlq_t = topic(topics.NOTIFICATIONS), topic(topics.DLQ)
    sent_t, daily_t, reports_t = topic(topics.SENT), topic(topics.DAILY_USAGE), topic(topics.REPORTS)
    phone_dir_t, inbound_t = topic(topics.PHONE_DIRECTORY), topic(topics.INBOUND)
    replies_t, feedback_t = topic(topics.CUSTOMER_REPLIES), topic(topics.FEEDBACK)
    findings_t, actions_t = topic(topics.FINDINGS), topic(topics.ALERT_ACTIONS)
    # what detectors find and what operators do, both keyed by alert_id: one agent merges them
    lifecycle_src = app.topic(s.topic(topics.FINDINGS), s.topic(topics.ALERT_ACTIONS), key_type=bytes,
                              value_type=bytes, key_serializer="raw", value_serializer="raw", partitions=n,
                              allow_empty=True)
    # what we sent and what the provider reports, both keyed by message SID: one agent joins them
    deliveries_src = app.topic(s.topic(topics.SENT), s.topic(topics.PROVIDER_EVENTS), key_type=bytes,
                               value_type=bytes, key_serializer="raw", value_serializer="raw", partitions=n,
                               allow_empty=True)

    def table(name, help_):
        return app.Table(name, default=None, partitions=n, key_type=str, help=help_)

    customers_tb = table("customers", "customer_id -> customer record")
    meters_tb = table("meters", "meter_id -> directory entry (customer, transformer, feeder, nominal V)")
    parked_tb = table("parked", "meter_id -> readings held until the meter is in the directory")
    parked_events_tb = table("parked-events", "meter_id -> meter events held until the meter is in the directory")
    meter_state_tb = table("meter-state", "meter_id -> {detector name: state} of the meter detectors")
    transformers_tb = table("transformers", "transformer_id -> voltage correlator state")
    feeders_tb = table("feeders", "feeder_id -> members and outage detector state")
    bills_tb = table("bills", "customer_id -> {detector name: state} of the daily-usage detectors")
    watermarks_tb = table("watermarks", "p<dest partition> -> {source partition: event time}; "
                                        "c<readings partition> -> its clock's reference and claims")
    outbox_tb = table("outbox", "alert|customer|channel -> delivery claim and outcome")
    deliveries_tb = table("deliveries", "message SID -> what was sent, its provider status, early callbacks")
    phones_tb = table("phones", "phone number -> {customer_id}: who an inbound SMS is from")
    deferred_tb = table("deferred", "customer_id -> {outbox key: notify request held for quiet hours, due}")
    lifecycle_tb = table("lifecycle", "alert_id -> the alert as last published, with the operator's actions")
    contacts_tb = table("contacts", "customer_id -> opt-out by SMS reply, alert of the last SMS, recent replies")

    meter_stage, feeder_stage = MeterStage(detectors), FeederStage(detectors)
    customer_stage = CustomerStage(detectors)
    log.info("detectors: %s", ", ".join(d.name for d in detectors))
    stats: Counter = Counter()
    clocks: dict[int, PartitionClock] = {}  # readings partition -> its event-time progress (in memory)
    wm_sent: dict[int, tuple[int, float]] = {}  # readings partition -> (last broadcast watermark, wall time)
    last_active: dict[int, float] = {}     # readings partition -> wall time of its last batch
    read_upto: dict[int, int] = {}         # readings partition -> offset after the last message processed
    held_checked: dict[int, int] = {}      # readings partition -> watermark at which to look for expired held
    newest_seen = SettledNewest(IDLE_PARTITION_WALL_S)  # how far a quiet partition may move

    def clock(p: int) -> PartitionClock:
        if p not in clocks:
            c = clocks[p] = PartitionClock(lateness_s=ALLOWED_LATENESS_S, hold_grace_s=HELD_GRACE_S)
            # readings and events held for meters not in the directory outlive a restart in their tables:
            # they hold the new clock's watermark back as they held the old one's (their grace starts again)
            for tb in (parked_tb, parked_events_tb):
                for meter_id, held in list(tb.items()):
                    if held and partition_for(meter_id, n) == p:
                        c.park(meter_id, min(r["ts"] for r in held), len(held))
            c.restore(watermarks_tb.get(f"c{p}"))
        return clocks[p]

    def save_clock(p: int) -> None:
        """Keep what the partition's clock needs after a restart (PartitionClock.saved), when it changed."""
        saved = clock(p).saved()
        if saved is not None:
            watermarks_tb[f"c{p}"] = saved

    by_partition: dict[int, set[str]] = {}  # meter-status partition -> feeder ids, built lazily
    pool_box: list = []
    pacer = Pacer(s.sms_per_second)

    faults = deadletters.Faults.from_env()  # failures injected by tests only (GRIDWATCH_FAULTS)
    if faults.left:
        log.warning("GRIDWATCH_FAULTS is set: injecting %s", faults.left)

    async def dead_letter(msg, error: str, reason: str = deadletters.REFUSED, stage: str = "",
                          code: str | None = None) -> None:
        await dead_letter_raw(msg.topic, msg.partition, msg.offset, msg.key, msg.value, error, reason, stage, code)

    async def dead_letter_raw(topic_name, partition, offset, key, value, error: str, reason: str, stage: str,
                              code: str | None = None) -> None:
        """One dead letter: ``reason`` is the category (invalid, internal, refused: what to do about it),
        ``code`` says why in a word (ts_in_future, unknown_meter, not_finite ...)."""
        code = code or deadletters.DEFAULT_CODES[reason]
        stats["dlq"] += 1
        stats[f"dlq_{code}"] += 1
        log.warning("dead letter (%s, %s) %s[%s]@%s: %s", reason, code, topic_name, partition, offset, error[:300])
        k, v = deadletters.letter(topic=topic_name, partition=partition, offset=offset, key=key, value=value,
                                  error=error, reason=reason, stage=stage, code=code)
        await dlq_t.send(key=k, value=_dumps(v))

    async def stage_dead_letter(msg, exc: BaseException, reason: str, stage: str) -> None:
        if isinstance(exc, ContractError):
            await dead_letter(msg, str(exc), reason, stage, exc.code)
        elif reason == deadletters.INVALID:
            await dead_letter(msg, f"invalid input in {stage}: {exc!r}", reason, stage)
        else:
            log.error("%s: internal error at %s[%s]@%s not passed by the retry deadline: %r", stage, msg.topic,
                      msg.partition, msg.offset, exc)
            stats[f"errors_{stage}"] += 1
            await dead_letter(msg, f"internal error in {stage}: {exc!r}", reason, stage)

    def retries(stage: str) -> deadletters.StageRetries:
        if stage not in stage_retries:
            def on_retry(msg, attempt, exc, wait):
                stats[f"retries_{stage}"] += 1
                log.warning("%s: internal error at %s[%s]@%s (attempt %d), retrying in %.1f s: %r", stage,
                            msg.topic, msg.partition, msg.offset, attempt, wait, exc,
                            exc_info=exc if attempt == 1 else None)  # the traceback once per input

            stage_retries[stage] = deadletters.StageRetries(
                stage, on_retry=on_retry, dead_letter=lambda msg, exc, reason: stage_dead_letter(msg, exc, reason,
                                                                                                  stage))
        return stage_retries[stage]

    stage_retries: dict[str, deadletters.StageRetries] = {}

    def attempts(stream, stage: str):
        """The stage's events: each once, or again after back-off while guard() retries it."""
        return retries(stage).events(stream.events())

    def guard(msg, stage: str):
        """Per message: an invalid input becomes a dead letter at once; an internal error (a table write, a
        send, a broker or metadata error) is retried with back-off (its stream yields the message again,
        see ``attempts``), logged and counted (``retries_<stage>``), and dead-lettered only once
        GRIDWATCH_RETRY_DEADLINE_S has passed (streams/deadletters.py ``StageRetries``). The agent carries
        on either way. (An exception escaping a Faust agent would still acknowledge the message.)"""
        return retries(stage).guard(msg)

    @app.on_partitions_assigned.connect
    async def check_metadata(app, assigned, **kwargs):
        """Say whether the consumer knows every topic with its partitions (streams/topics.py: why)."""
        gaps = consumer_gaps(app, s)
        if gaps:
            log.error("metadata: topics known with the wrong partition count, table writes on them fail "
                      "until the next metadata refresh: %s", "; ".join(gaps))
        else:
            log.info("metadata: every topic of the worker known with its partitions")

    def not_in_future(partition: int, meter_id: str, readings: list) -> None:
        """Refuse (``ts_in_future``) a batch dated after the wall clock, or ahead of the rest of its partition
        (detectors/watermarks.py): processed, it would move the partition's watermark past what the other
        meters have yet to send, and their silence would look like an outage."""
        first, last = min(r.ts for r in readings), max(r.ts for r in readings)
        if last > time.time() + MAX_FUTURE_S:
            stats["ts_in_future"] += 1
            raise ContractError(f"ts {format_ts(last)} is ahead of the wall clock (by more than {MAX_FUTURE_S} s)",
                                "ts_in_future")
        c = clock(partition)
        ref = c.ahead(meter_id, first, last, len(readings), min(r.interval_s for r in readings))
        if ref is not None:
            c.claim(meter_id, last)
            save_clock(partition)
            stats["ts_in_future"] += 1
            raise ContractError(f"readings {format_ts(first)} .. {format_ts(last)} of {meter_id!r} are ahead of the "
                                f"rest of partition {partition}, which has got to {format_ts(ref)}", "ts_in_future")

    def count_held() -> None:
        stats["held_readings"] = sum(c.held for c in clocks.values())
        stats["held_meters"] = sum(len(c.parked_count) for c in clocks.values())

    async def give_up_held(partition: int) -> None:
        """Readings held for meters still not in the directory long after the partition moved on: one
        replayable dead letter per meter and topic, code ``unknown_meter``."""
        c = clock(partition)
        for meter_id in c.expired(PARKED_MAX_AGE_S):
            held, held_events = parked_tb.pop(meter_id, None), parked_events_tb.pop(meter_id, None)
            c.unpark(meter_id)
            why = (f"meter {meter_id!r} is still not in the customer directory {PARKED_MAX_AGE_S} s of event "
                   f"time after its oldest held reading")
            if held:
                await dead_letter_raw(readings_t.get_topic_name(), partition, None, meter_id.encode(), _dumps(
                    [{**r, "ts": format_ts(r["ts"])} for r in held]), why, deadletters.REFUSED, "readings", "unknown_meter")
            for ev in held_events or ():
                await dead_letter_raw(events_t.get_topic_name(), partition, None, meter_id.encode(), _dumps(
                    {**ev, "ts": format_ts(ev["ts"])}), why, deadletters.REFUSED, "meter-events", "unknown_meter")
        count_held()

    # -- customers and the meter directory --------------------------------------------------------
    @app.agent(customers_t, name="customers")
    async def on_customers(stream):
        async for event in attempts(stream, "customers"):
            msg = event.message
            async with guard(msg, "customers"):
                # an invalid record is dead-lettered here, before anything changes: the previous one stays
                cust = decode_customer(msg.key, msg.value)
                cid = decode_key(msg.key) or ""
                if not cid:
                    raise ContractError("customers: a record without a key (customer_id)")
                old = customers_tb.get(cid)
                # what changed is sent first, the table written last: a retry (streams/deadletters.py) or a
                # re-read after a crash sends the same upserts and tombstones again, which are idempotent
                if old and (cust is None or old["meter_id"] != cust["meter_id"]
                            or old["transformer_id"] != cust["transformer_id"]
                            or old["feeder_id"] != cust["feeder_id"]):
                    await status_t.send(key=old["feeder_id"].encode(), value=_dumps(
                        {"type": "member", "meter_id": old["meter_id"], "transformer_id": old["transformer_id"],
                         "removed": True}))
                    if cust is None or old["meter_id"] != cust["meter_id"]:
                        await directory_t.send(key=old["meter_id"].encode(), value=None)
                if old and (cust is None or old["phone"] != cust["phone"]):
                    await phone_dir_t.send(key=old["phone"].encode(), value=None)
                if cust is not None:
                    entry = directory_entry(cust)
                    # membership first, so the correlator knows the meter before any status of it; both sent
                    # at once (force) rather than at the next commit, so readings wait as little as possible
                    await status_t.send(key=cust["feeder_id"].encode(), value=_dumps(
                        {"type": "member", **entry, "partition": partition_for(cust["meter_id"], n)}), force=True)
                    await directory_t.send(key=cust["meter_id"].encode(), value=_dumps(entry), force=True)
                    if old is None or old["phone"] != cust["phone"]:
                        await phone_dir_t.send(key=cust["phone"].encode(), value=_dumps({"customer_id": cid}))
                if cust is None:
                    customers_tb.pop(cid, None)
                else:
                    customers_tb[cid] = cust
                stats["customers"] += 1

    @app.agent(phone_dir_t, name="phone-directory")
    async def on_phone_directory(stream):
        async for event in attempts(stream, "phone-directory"):
            msg = event.message
            async with guard(msg, "phone-directory"):
                phone = msg.key.decode("utf-8")
                if msg.value is None:
                    phones_tb.pop(phone, None)
                else:
                    phones_tb[phone] = json.loads(msg.value)

    @app.agent(directory_t, name="meter-directory")
    async def on_directory(stream):
        async for event in attempts(stream, "meter-directory"):
            msg = event.message
            async with guard(msg, "meter-directory"):
                meter_id = msg.key.decode("utf-8")
                if msg.value is None:
                    directory.pop(meter_id)
                    continue
                directory.set(meter_id, json.loads(msg.value))
                held = parked_tb.get(meter_id)
                if held:
                    parked_tb.pop(meter_id, None)
                    # same partition number as the readings: both topics are keyed by meter_id
                    clock(msg.partition).unpark(meter_id)
                    log.info("meter %s is in the directory now: deciding on its %d held readings", meter_id, len(held))
                    statuses = StatusBatch()
                    await detect(msg.partition, [Reading(**r) for r in held], event, statuses)
                    await send_statuses(statuses)
                    meter_states.write(meter_id)  # (same partition as this event's: both keyed by meter_id)
                    save_clock(msg.partition)
                held_events = parked_events_tb.get(meter_id)
                if held_events:
                    parked_events_tb.pop(meter_id, None)
                    clock(msg.partition).unpark(meter_id)
                    for ev in held_events:
                        await forward_event(meters_tb[meter_id], MeterEvent(**ev))
                if held or held_events:
                    count_held()
                    await broadcast_watermark(msg.partition, force=True)

    # -- readings -> per-meter voltage state ---------------------------------------------------------
    meter_states = MeterStates(meter_state_tb)
    directory = Directory(meters_tb)  # the readings agent's view of the meters table (streams/detect.py)
    pending_status = StatusBatch()

    async def detect(partition: int, readings: list, event, statuses: StatusBatch) -> None:
        """One message's readings through the meter stage; its state and its status (in ``statuses``) wait
        for the end of the batch (``flush_detect``, streams/detect.py)."""
        meter_id = readings[0].meter_id
        entry = directory.get(meter_id)
        if entry is None:
            held = list(parked_tb.get(meter_id) or [])
            c = clock(partition)
            # Not silently dropped: the caller dead-letters the message, which can be replayed once the
            # customer record exists.
            if len(held) + len(readings) > PARKED_MAX:
                raise ContractError(f"meter {meter_id!r} is not in the customer directory and already has "
                                    f"{len(held)} readings held for it (limit {PARKED_MAX})", "unknown_meter")
            if c.held + len(readings) > PARKED_PARTITION_MAX:
                raise ContractError(f"meter {meter_id!r} is not in the customer directory and partition {partition} "
                                    f"already holds {c.held} readings for such meters (limit {PARKED_PARTITION_MAX})",
                                    "unknown_meter")
            if not held:
                log.warning("meter %s is not in the customer directory: holding its readings until it is "
                            "(partition %d holds %d)", meter_id, partition, c.held + len(readings))
            held.extend({f: getattr(r, f) for f in r.__slots__} for r in readings)
            parked_tb[meter_id] = held
            stats["parked"] += len(readings)
            c.park(meter_id, min(r["ts"] for r in held), len(readings))
            count_held()
            return
        before = meter_states.get(meter_id) or {}
        after, findings, days = meter_stage.process(before, readings, entry)
        first, newest = min(r.ts for r in readings), max(r.ts for r in readings)
        last = before.get("_last_ts")
        after["_last_ts"] = newest if last is None else max(last, newest)
        reports = [f for f in findings if f["status"] == "report"]
        findings = [f for f in findings if f["status"] != "report"]
        # what goes out first, the state last: a retry (or a re-read) of a message that got half way sends
        # again rather than finding its readings already in the state (dropped as duplicates)
        for rep in reports:
            stats["reports"] += 1
            await reports_t.send(key=meter_id.encode(), value=_dumps({**rep, "customer_id": entry["customer_id"]}))
        if days:
            await daily_t.send(key=entry["customer_id"].encode(), value=_dumps({"meter_id": meter_id, "days": days}))
        meter_states.put(meter_id, after, event)
        clock(partition).batch(meter_id, first, newest)  # saved by the caller (save_clock), once per batch
        stats["readings"] += len(readings)
        if "voltage" in after:
            stats["duplicates"] += after["voltage"]["duplicates"] - before.get("voltage", {}).get("duplicates", 0)
        if last is None or newest > last or findings:
            profile = meter_stage.context(entry).profile
            statuses.add(entry["feeder_id"], {
                "type": "status", "meter_id": meter_id, "customer_id": entry["customer_id"],
                "transformer_id": entry["transformer_id"], "partition": partition,
                "first_ts": first, "ts": after["_last_ts"],
                "interval_s": min(r.interval_s for r in readings), "gaps": batch_gaps(readings),
                "transitions": findings, "profile": profile_dict(profile),
            })

    async def send_statuses(statuses: StatusBatch) -> None:
        for fid, value in statuses.messages():
            await status_t.send(key=fid.encode(), value=_dumps(value))
        statuses.clear()

    async def flush_detect(use_event) -> None:
        """The end of a batch: its status messages (one per feeder), then the meter states it changed."""
        await send_statuses(pending_status)
        stats["state_writes"] += meter_states.flush(use_event)

    async def broadcast_watermark(partition: int, force: bool = False) -> None:
        """Tell every correlator partition how far this readings partition has certainly got."""
        wm = clock(partition).watermark()
        sent, when = wm_sent.get(partition, (-(10**12), 0.0))
        if wm is None or wm <= sent:
            return
        now = time.monotonic()
        if not force and wm - sent < WATERMARK_STEP_S and now - when < WATERMARK_EVERY_S:
            return
        wm_sent[partition] = (wm, now)
        body = _dumps({"type": "watermark", "partition": partition, "ts": wm})
        for dest in range(n):
            await status_t.send(key=b"~watermark", value=body, partition=dest)

    @app.timer(interval=5.0)
    async def quiet_partitions():
        """Readings partitions of this worker with no batch for a while stop holding decisions back.

        Only when nothing is waiting on them: a partition the consumer has not got round to (a backlog) is
        behind, not quiet — moving it up would make its meters look silent (an outage that is not one).
        """
        tps = [tp for tp in app.assignor.assigned_actives() if tp.topic == readings_t.get_topic_name()]
        newest_seen.observe(max((c.newest for c in clocks.values() if c.newest is not None), default=None))
        # only up to what was newest IDLE_PARTITION_WALL_S ago: a partition whose readings are merely not
        # there yet (a burst still being published, a worker just restarted) must not be overtaken
        settled = newest_seen.settled()
        if settled is None or not tps:
            return
        quiet = time.monotonic() - IDLE_PARTITION_WALL_S
        idle = [tp for tp in tps if last_active.get(tp.partition, 0) <= quiet]
        if not idle:
            return
        try:
            ends = await app.consumer.highwaters(*idle)
        except Exception as exc:  # noqa: BLE001 - try again at the next tick
            log.warning("quiet partitions: end offsets unavailable (%s)", exc)
            return
        for tp in sorted(idle, key=lambda tp: tp.partition):
            p = tp.partition
            done = read_upto.get(p)
            if done is None:
                done = await app.consumer.position(tp)
            if done is None or done < (ends.get(tp) or 0):
                continue
            c = clock(p)
            if c.parked:
                log.warning("partition %d: %d meter(s) still not in the directory; deciding without them",
                            p, len(c.parked))
            c.quiet(settled, drop_parked=True)
            await broadcast_watermark(p, force=True)

    @app.agent(readings_t, name="readings")
    async def on_readings(stream):
        """Micro-batches (streams/detect.py): each message is decoded and detected on its own, under its own
        guard (an invalid one is dead-lettered, an internal error retried in place); the batch's status
        messages, meter states and watermarks go out once at its end, before its events are acknowledged."""
        use_event = set_current_event  # table writes go to the partition of the current event
        stage = retries("readings")
        async for events in stream.take_events(READINGS_BATCH, READINGS_BATCH_WITHIN_S):
            stats["batches"] += 1
            touched: dict[int, object] = {}
            for event in events:
                msg = event.message
                use_event(event)
                touched[msg.partition] = event

                async def one(msg=msg, event=event):
                    readings = decode_readings(msg.key, msg.value)
                    not_in_future(msg.partition, readings[0].meter_id, readings)
                    await detect(msg.partition, readings, event, pending_status)

                await stage.run(msg, one)
                read_upto[msg.partition] = msg.offset + 1
            now = time.monotonic()
            for p in touched:
                last_active[p] = now

            async def end_of_batch():
                await flush_detect(use_event)
                for p, event in touched.items():
                    use_event(event)
                    save_clock(p)
                    await broadcast_watermark(p)
                    c = clock(p)
                    if c.parked and (c.watermark() or 0) >= held_checked.get(p, -(10**12)):
                        held_checked[p] = (c.watermark() or 0) + WATERMARK_STEP_S
                        await give_up_held(p)

            await stage.run_until_done(events[-1].message, end_of_batch)

    async def forward_event(entry: dict, ev) -> None:
        await status_t.send(key=entry["feeder_id"].encode(), value=_dumps(
            {"type": "event", "meter_id": ev.meter_id, "ts": ev.ts, "event": ev.type}), force=True)

    @app.agent(events_t, name="meter-events")
    async def on_events(stream):
        async for event in attempts(stream, "meter-events"):
            msg = event.message
            async with guard(msg, "meter-events"):
                ev = decode_event(msg.key, msg.value)
                if ev.ts > time.time() + MAX_FUTURE_S:  # (events move no watermark: only the wall clock bounds them)
                    stats["ts_in_future"] += 1
                    raise ContractError(f"ts {format_ts(ev.ts)} is ahead of the wall clock (by more than "
                                        f"{MAX_FUTURE_S} s)", "ts_in_future")
                stats["events"] += 1
                if ev.type not in ("power_fail", "power_restore"):
                    continue  # kept on the topic; no detector uses other types yet
                # the meter vouches for this time: lets the others' readings after a dark spell in (watermarks.py)
                clock(msg.partition).claim(ev.meter_id, ev.ts)
                save_clock(msg.partition)
                entry = meters_tb.get(ev.meter_id)
                if entry is not None:
                    await forward_event(entry, ev)
                    continue
                # the directory entry may still be on its way (as for readings): hold the event, and hold
                # this partition's watermark below it, until the meter is known
                held = list(parked_events_tb.get(ev.meter_id) or [])
                c = clock(msg.partition)
                if len(held) >= PARKED_MAX or c.held >= PARKED_PARTITION_MAX:
                    raise ContractError(f"event of meter {ev.meter_id!r}, which is not in the customer directory "
                                        f"and already has {len(held)} events held for it (partition "
                                        f"{msg.partition}: {c.held})", "unknown_meter")
                parked_events_tb[ev.meter_id] = held + [{"meter_id": ev.meter_id, "ts": ev.ts, "type": ev.type}]
                c.park(ev.meter_id, ev.ts)
                count_held()
                stats["events_parked"] += 1

    # -- per-transformer correlation -> alerts -----------------------------------------------------
    async def publish_alerts(records: list[dict]) -> None:
        for rec in records:
            stats[f"alerts_{rec['status']}"] += 1
            log.info("alert %s %s %s scope=%s:%s meters=%d", rec["status"], rec["kind"], rec["alert_id"],
                     rec["scope"]["level"], rec["scope"]["id"], len(rec["meter_ids"]))
            await findings_t.send(key=rec["alert_id"].encode(), value=_dumps(rec))

    def transformers_of(feeder: dict) -> dict[str, dict]:
        tids = sorted({m["transformer_id"] for m in feeder["members"].values()})
        return {t: transformers_tb.get(t) for t in tids}

    async def decide(feeder: dict, view: dict) -> dict:
        """Advance one feeder to its watermark: outages first, then voltage with outage meters muted."""
        wm = transformer_watermark(feeder_stage.partitions(feeder), view)
        if wm is None or (feeder.get("decided") is not None and wm <= feeder["decided"]):
            return feeder
        new, changed, records = feeder_stage.advance(feeder, transformers_of(feeder), wm)
        for tid, tst in changed.items():
            transformers_tb[tid] = tst
        await publish_alerts(records)
        return {**new, "decided": wm}

    async def apply_statuses(feeder: dict, items: list[dict], vkey: str) -> dict:
        """The statuses of one batch, one by one as if each had come alone, with each transformer's state read
        once and written once: the feeder is decided after a status only when its watermark moved past the
        feeder's last decision (as ``decide`` after each single message would)."""
        states: dict[str, dict] = {}
        view = None
        for body in items:
            tid = body["transformer_id"]
            tst = states.get(tid) or transformers_tb.get(tid) or feeder_stage.correlator.new_state(tid)
            states[tid] = feeder_stage.status(tst, body)
            if view is None:
                view = watermarks_tb.get(vkey) or {}
                wm = transformer_watermark(feeder_stage.partitions(feeder), view)
                if wm is not None and (feeder.get("decided") is None or wm > feeder["decided"]):
                    for t, st in states.items():
                        transformers_tb[t] = st
                    states.clear()
                    feeder = await decide(feeder, view)
        for t, st in states.items():
            transformers_tb[t] = st
        return feeder

    @app.agent(status_t, name="topology")
    async def on_status(stream):
        async for event in attempts(stream, "topology"):
            msg = event.message
            async with guard(msg, "topology"):
                body = json.loads(msg.value)
                dest = msg.partition
                vkey = f"p{dest}"
                if body["type"] == "watermark":
                    view = dict(watermarks_tb.get(vkey) or {})
                    src = str(body["partition"])
                    if body["ts"] > view.get(src, -(10**12)):
                        view[src] = body["ts"]
                        watermarks_tb[vkey] = view
                    # decided even when the view already has it: a worker killed after storing the view but
                    # before every feeder's decision reached its table reads this message again, and no
                    # later watermark may ever come (the end of the feed); a feeder already decided up to
                    # it returns at once (decide)
                    if dest not in by_partition:
                        by_partition[dest] = {k for k, v in feeders_tb.items() if v and v.get("p") == dest}
                    for fid in sorted(by_partition[dest]):
                        st = feeders_tb.get(fid)
                        new = await decide(st, view)
                        if new is not st:
                            feeders_tb[fid] = new
                    continue
                fid = msg.key.decode("utf-8")
                stored = feeders_tb.get(fid)
                feeder = stored or {**feeder_stage.new_feeder(fid), "p": dest}
                if body["type"] == "member":
                    tid = body["transformer_id"]
                    feeder, transformers_tb[tid] = feeder_stage.member(feeder, transformers_tb.get(tid), body)
                elif body["type"] == "status":
                    tid = body["transformer_id"]
                    tst = transformers_tb.get(tid) or feeder_stage.correlator.new_state(tid)
                    transformers_tb[tid] = feeder_stage.status(tst, body)
                elif body["type"] == "statuses":  # a batch's statuses of this feeder (streams/detect.py)
                    feeder = await apply_statuses(feeder, body["items"], vkey)
                elif body["type"] == "event":
                    ev = MeterEvent(body["meter_id"], body["ts"], body["event"])
                    feeder = feeder_stage.events(feeder, [ev], transformers_of(feeder))
                feeder = await decide(feeder, watermarks_tb.get(vkey) or {})
                if feeder is not stored:  # a reading's status changes only its transformer: no feeder write
                    feeders_tb[fid] = feeder
                by_partition.setdefault(dest, set()).add(fid)

    # -- daily usage per customer -> bill detector (model fits in a process pool) --------------------
    def fit_pool():
        if not pool_box:
            # spawn, not fork: the worker has threads (Kafka, RocksDB) a forked child must not inherit
            pool_box.append(ProcessPoolExecutor(max_workers=max(1, s.fit_processes),
                                                mp_context=multiprocessing.get_context("spawn")))
        return pool_box[0]

    @app.agent(daily_t, name="bills")
    async def on_days(stream):
        loop = asyncio.get_running_loop()
        async for event in attempts(stream, "bills"):
            msg = event.message
            async with guard(msg, "bills"):
                cid = msg.key.decode("utf-8")
                body = json.loads(msg.value)
                cust = customers_tb.get(cid)
                if cust is None:
                    raise ContractError(f"daily usage of customer {cid!r}, who is not in the customers table")
                states, records, requests = customer_stage.process(bills_tb.get(cid), body["days"], cust)
                for name, payload in requests:
                    started = time.monotonic()
                    result = await loop.run_in_executor(fit_pool(), customer_stage.fit_function(name), payload)
                    stats["fits"] += 1
                    stats["fit_ms"] += int((time.monotonic() - started) * 1000)
                    states, recs = customer_stage.apply(states, name, result, cust)
                    records += recs
                await publish_alerts(records)  # (before the state: a retry re-sends the same findings)
                bills_tb[cid] = states

    # -- findings + operator actions -> the alert lifecycle -> alerts ----------------------------------
    @app.agent(lifecycle_src, name="lifecycle")
    async def on_lifecycle(stream):
        """What the detectors find and what operators (and customers' "still out") do to an alert, merged on
        the alert's partition: open -> acknowledged -> resolved, as records on ``alerts``."""
        async for event in attempts(stream, "lifecycle"):
            msg = event.message
            async with guard(msg, "lifecycle"):
                aid = msg.key.decode("utf-8")
                body = json.loads(msg.value)
                current = lifecycle_tb.get(aid)
                if msg.topic == findings_t.get_topic_name():
                    rec = apply_finding(current, body)
                else:
                    rec, error = apply_action(current, body)
                    if error:
                        await dead_letter(msg, f"alert action refused: {error}", deadletters.REFUSED, "lifecycle",
                                          "action_refused")
                        continue
                    stats[f"actions_{body.get('action')}"] += 1
                    if rec is not None and rec["alert_id"] != aid:  # a new alert (a reopened outage)
                        await findings_t.send(key=rec["alert_id"].encode(), value=_dumps(rec))
                        continue
                if rec is None:
                    continue
                # the record first, the state last: a retry after a failed write sends it again (the
                # notification path's outbox keeps its customers from being told twice), never not at all
                await alerts_t.send(key=aid.encode(), value=_dumps(rec))
                faults.hit("lifecycle.table-write")
                lifecycle_tb[aid] = rec

    # -- alerts -> one request per customer -> SMS -> notifications ----------------------------------
    @app.agent(alerts_t, name="alert-fanout")
    async def on_alerts(stream):
        async for event in attempts(stream, "alert-fanout"):
            msg = event.message
            async with guard(msg, "alert-fanout"):
                alert = json.loads(msg.value)
                if alert["status"] in ("open", "acknowledged"):  # (customers already told: dropped in group)
                    for cid in alert["customer_ids"]:
                        await requests_t.send(key=cid.encode(), value=_dumps({"alert": alert, "customer_id": cid}))
                elif (alert["status"] == "resolved" and alert["kind"] in RESTORATION_KINDS
                      and not alert.get("no_fault")):  # an operator's "no fault": nothing came back
                    # "power is back" for those told of the outage and no longer dark (see on_requests); an
                    # alert merged into a larger one only closes (no message: the larger one's end will say it)
                    merged = bool(alert["evidence"].get("merged_into"))
                    dark = set(alert["evidence"].get("still_out_customer_ids") or ())
                    for cid in alert["customer_ids"]:
                        if merged or cid not in dark:
                            await requests_t.send(key=cid.encode(), value=_dumps(
                                {"alert": alert, "customer_id": cid,
                                 "phase": "closed" if merged else "resolved"}))

    class TableEnv:
        """The notification path's state (notifiers/path.py ``Env``) in this worker's tables."""

        policy = Policy.from_settings(s)

        def customer(self, cid):
            return customers_tb.get(cid)

        def contact(self, cid):
            return contacts_tb.get(cid) or {}

        def set_contact(self, cid, value):
            contacts_tb[cid] = value

        def outbox(self, key):
            return outbox_tb.get(key)

        def set_outbox(self, key, value):
            faults.hit("notify.table-write")
            if value.get("state") == "done":
                faults.hit("notify.kill-before-done")
            outbox_tb[key] = value

        def usage(self, cid):
            return usage_summary(bills_tb.get(cid))

        def silences(self):
            return silences_view.values()

        def notifier(self, channel):
            if channel not in notifiers:
                callback = s.webhook_url.rstrip("/") + STATUS_PATH if s.webhook_url else None
                notifiers[channel] = build_notifier(s, channel, status_callback=callback,
                                                    validity_period_s=s.sms_validity_s)
            return notifiers[channel]

        def now(self):
            return time.time()

        async def flush(self):
            await app.producer.flush()

        async def hold(self, cid, key, entry):
            deferred_tb[cid] = {**(deferred_tb.get(cid) or {}), key: entry}
            released.discard(key)  # held (again): released when its own time comes
            stats["notifications_deferred"] += 1

        def held_request(self, cid, key):
            return (deferred_tb.get(cid) or {}).get(key)

        def drop_held(self, cid, key):
            held = dict(deferred_tb.get(cid) or {})
            released.discard(key)
            if held.pop(key, None) is not None:
                deferred_tb[cid] = held

        async def release_held(self, cid, why):
            for key, entry in (deferred_tb.get(cid) or {}).items():
                if entry.get("why") == why:
                    await requests_t.send(key=cid.encode(), value=_dumps({"customer_id": cid, "release": key}))

        async def emit(self, rec):
            if rec["status"] != "deferred":
                stats[f"notifications_{rec['status']}"] += 1
            await notifications_t.send(key=rec["customer_id"].encode(), value=_dumps(rec))
            if rec["provider_message_id"] and rec["channel"] == "sms":  # status callbacks join on it
                await sent_t.send(key=rec["provider_message_id"].encode(), value=_dumps(rec))

        async def recorded(self, rec, since):
            """Whether ``rec`` is on the notifications topic: its customer's partition is read from the
            first record written at ``since`` (epoch s) or later to its end. Only after a crash between
            keeping an outcome and marking its key done; its ``sent`` companion (the deliveries join
            takes it once) is written again when the record is found, as it may not have been."""
            name = notifications_t.get_topic_name()
            tp = app.producer.key_partition(name, rec["customer_id"].encode())
            tp = TopicPartition(name, tp.partition)
            consumer = AIOKafkaConsumer(bootstrap_servers=s.bootstrap_list, group_id=None,
                                        enable_auto_commit=False, client_id=f"{s.app_id}-recorded")
            await consumer.start()
            deadline = time.monotonic() + 60.0
            try:
                consumer.assign([tp])
                end = (await consumer.end_offsets([tp]))[tp]
                start = (await consumer.offsets_for_times({tp: int(since * 1000)}))[tp]
                if start is None:
                    return False
                consumer.seek(tp, start.offset)
                found = False
                while not found and await consumer.position(tp) < end:
                    if time.monotonic() > deadline:  # an internal error: the request is retried
                        raise RuntimeError(f"{name}[{tp.partition}] not read to its end within 60 s")
                    for batch in (await consumer.getmany(tp, timeout_ms=1000)).values():
                        for m in batch:
                            if m.offset >= end:
                                break
                            try:
                                r = json.loads(m.value)
                            except ValueError:
                                continue
                            if (r.get("notification_id"), r.get("status"), r.get("created_at")) == (
                                    rec["notification_id"], rec["status"], rec["created_at"]):
                                found = True
            finally:
                await consumer.stop()
            if found and rec["provider_message_id"] and rec["channel"] == "sms":
                await sent_t.send(key=rec["provider_message_id"].encode(), value=_dumps(rec))
            stats["notifications_recorded_before"] += found
            return found

        async def pace(self, channel):
            if channel == "sms":
                await pacer.wait()

        def owns(self):
            """Fencing: the request's partition is still this worker's (checked right before a claim, a
            send and a record; a rebalance in between hands the request to the partition's new owner)."""
            return current_tp[0] is None or current_tp[0] in owned

    notifiers: dict = {}
    path = NotificationPath(TableEnv())
    # operator silences: the whole topic on every worker (any customer may fall under any silence)
    silences_view = TopicView(s, topics.SILENCES, client_id=f"{s.app_id}-silences")

    def opted_out(cid: str, cust: dict | None) -> bool:
        """Opted out in the customer record, or by texting STOP (and not START since)."""
        return bool((cust or {}).get("opted_out") or (contacts_tb.get(cid) or {}).get("opted_out"))

    @app.agent(requests_t, name="notify")
    async def on_requests(stream):
        """One request per alert and customer, through the notification path (notifiers/path.py):
        route -> group -> inhibit -> silence -> dedup -> budget -> render -> deliver -> record."""
        try:
            await silences_view.start()
            await silences_view.wait_ready(60.0)  # every operator silence known before the first decision
        except Exception as exc:  # noqa: BLE001
            log.error("operator silences not read (%s): deciding without them until they are", exc)
        async for event in attempts(stream, "notify"):
            msg = event.message
            async with guard(msg, "notify"):
                current_tp[0] = (msg.topic, msg.partition)
                for d in await path.handle(json.loads(msg.value)):
                    if str(d.record.get("reason") or "").startswith("fenced"):
                        # the partition moved mid-request: its owner (maybe this worker again, after the
                        # rebalance) takes the request up from its partition and settles any claim
                        stats["notify_fenced"] += 1
                        log.warning("notify: partition %s moved during a request for customer %s; handed "
                                    "to its owner", msg.partition, d.customer_id)
                        await asyncio.sleep(1.0)
                        await requests_t.send(key=msg.key, value=_dumps({**d.request, "channel": d.channel}))

    released: set[str] = set()  # outbox keys whose release was asked for, until decided or held again (in memory)
    owned: set[tuple[str, int]] = set()  # (topic, partition) this worker owns, from the rebalance signals
    current_tp: list = [None]            # the notify request being handled: its (topic, partition)

    @app.on_partitions_assigned.connect
    async def own_partitions(app, assigned, **kwargs):
        owned.clear()
        owned.update((tp.topic, tp.partition) for tp in assigned)

    @app.timer(interval=5.0)
    async def release_deferred():
        """Deferred messages whose time has come go back through the notify stage. Tables change only
        inside their stream, so this only asks: a release request on the customer's partition."""
        now = time.time()
        for cid, held in list(deferred_tb.items()):
            for okey, entry in (held or {}).items():
                if entry["due"] <= now and okey not in released:
                    released.add(okey)
                    # the hold it releases: one re-read after a crash must not release a later hold
                    await requests_t.send(key=cid.encode(), value=_dumps(
                        {"customer_id": cid, "release": okey, "due": entry["due"]}))

    # -- customers' replies -> opt-out / opt-in and feedback -------------------------------------------
    @app.agent(inbound_t, name="inbound")
    async def on_inbound(stream):
        """An inbound SMS, on the partition of its sender's number: who sent it is a local table read."""
        async for event in attempts(stream, "inbound"):
            msg = event.message
            async with guard(msg, "inbound"):
                sender = (msg.key or b"").decode("utf-8")
                body = json.loads(msg.value)
                anonymous = {k: v for k, v in body.items() if k not in ("from", "to")}
                entry = phones_tb.get(sender)
                if entry is None:
                    stats["feedback_unknown_sender"] += 1
                    log.info("inbound SMS %s from %s, which is no customer's number", body.get("sid"),
                             mask_phone(sender))
                    rec = feedback_record(None, anonymous, parse_reply(body.get("body") or ""),
                                          from_masked=mask_phone(sender))
                    await feedback_t.send(key=None, value=_dumps(rec))
                    continue
                cid = entry["customer_id"]
                await replies_t.send(key=cid.encode(), value=_dumps({**anonymous, "customer_id": cid}))

    @app.agent(replies_t, name="customer-replies")
    async def on_replies(stream):
        """A known customer's SMS, on the customer's partition (the notify agent's): STOP / START change
        what the notify agent does, and every message becomes a ``feedback`` record."""
        async for event in attempts(stream, "customer-replies"):
            msg = event.message
            async with guard(msg, "customer-replies"):
                cid = msg.key.decode("utf-8")
                body = json.loads(msg.value)
                contact = dict(contacts_tb.get(cid) or {})
                seen = list(contact.get("seen") or [])
                if body["sid"] in seen:
                    continue  # the provider retried its webhook
                reply = parse_reply(body.get("body") or "")
                if reply.intent == "stop":
                    contact["opted_out"] = True
                elif reply.intent == "start":
                    contact["opted_out"] = False
                contact["seen"] = (seen + [body["sid"]])[-SEEN_REPLIES:]
                rec = feedback_record(cid, body, reply, alert_id=contact.get("last_alert_id"),
                                      opted_out=bool((customers_tb.get(cid) or {}).get("opted_out")
                                                     or contact.get("opted_out")))
                stats[f"feedback_{rec['intent']}"] += 1
                log.info("reply %s from customer %s: %s", body["sid"], cid, rec["intent"])
                await feedback_t.send(key=cid.encode(), value=_dumps(rec))
                # an answer, through the notification path — decided now: a START right behind an opted-out
                # customer's rating must not turn that rating's answer back on
                if reply.intent in ANSWERED_INTENTS and not rec["opted_out"]:
                    await requests_t.send(key=cid.encode(), value=_dumps({"customer_id": cid, "alert": {
                        "alert_id": f"reply:{body['sid']}", "kind": f"reply_{reply.intent}",
                        "severity": "info", "status": "open", "scope": {"level": "customer", "id": cid},
                        "customer_ids": [cid]}}))
                last, cust = contact.get("last_alert_id"), customers_tb.get(cid)
                if reply.intent == "still_out" and last and cust:
                    # "still out" after "power is back": the outage is reopened for this customer's meter
                    await actions_t.send(key=last.encode(), value=_dumps({
                        "action": "reopen", "alert_id": last, "customer_id": cid, "meter_id": cust["meter_id"],
                        "at": rec["received_at"], "author": "customer", "reason": "customer reports power still off"}))
                # the table last: a retry after a failed send finds the reply not yet seen and sends again
                # (feedback and the reopened alert have ids of their own, answers go through the outbox)
                contacts_tb[cid] = contact

    @app.agent(deliveries_src, name="deliveries")
    async def on_deliveries(stream):
        """Status callbacks joined with what was sent: the final outcome becomes a notifications record.

        Callbacks arrive out of order, twice, or before our own record of the send: a status only moves
        forward, and early callbacks wait in the table for the send they belong to.
        """
        async for event in attempts(stream, "deliveries"):
            msg = event.message
            async with guard(msg, "deliveries"):
                sid = msg.key.decode("utf-8")
                body = json.loads(msg.value)
                d = dict(deliveries_tb.get(sid) or {"notification": None, "status": None, "early": []})
                if msg.topic == sent_t.get_topic_name():
                    d["notification"], d["status"] = body, d["status"] or "queued"
                    events, d["early"] = d["early"], []
                else:
                    events = [body]
                for ev in events:
                    if d["notification"] is None:
                        d["early"] = d["early"] + [ev]
                        continue
                    new = advance_status(d["status"], ev["status"])
                    if new is None:
                        continue
                    d["status"] = new
                    if new in TERMINAL_STATUSES:
                        n = d["notification"]
                        outcome = {"delivered": "delivered", "read": "delivered", "undelivered": "undelivered",
                                   "failed": "failed"}[new]
                        rec = {**n, "status": outcome,
                               "reason": f"provider error {ev['error_code']}" if ev.get("error_code") else None,
                               "created_at": _utc_now()}
                        stats[f"notifications_{outcome}"] += 1
                        await notifications_t.send(key=n["customer_id"].encode(), value=_dumps(rec))
                deliveries_tb[sid] = d

    @app.on_partitions_revoked.connect
    async def forget_partitions(app, revoked, **kwargs):
        """After a rebalance the in-memory views are rebuilt from the tables for what this worker owns."""
        by_partition.clear()
        meter_states.forget()
        directory.forget()
        owned.difference_update((tp.topic, tp.partition) for tp in revoked)
        for tp in revoked:
            if tp.topic == readings_t.get_topic_name():
                newest_seen.clear()  # it may come from a partition no longer ours
                for d in (clocks, wm_sent, last_active, read_upto, held_checked):
                    d.pop(tp.partition, None)

    @app.on_before_shutdown.connect
    async def close_notifier(app, **kwargs):
        for n in notifiers.values():
            await n.close()
        await silences_view.stop()
        if pool_box:
            pool_box[0].shutdown(wait=False, cancel_futures=True)

    @app.timer(interval=10.0)
    async def report():
        if stats:
            log.info("progress: %s", ", ".join(f"{k}={v}" for k, v in sorted(stats.items())))

    if web_port is not None:
        @app.page("/metrics")
        async def worker_metrics(web, request):
            """This worker's retries, internal errors and dead letters (``worker_exposition``)."""
            return web.text(worker_exposition(stats), content_type="text/plain; version=0.0.4")

    app.gridwatch_stats = stats
    return app


#: Counters of the worker's ``stats`` served at ``/metrics`` on ``--web-port``: (stats key prefix, metric, label).
WORKER_COUNTERS = (
    ("retries_", "gridwatch_worker_retries", "stage", "internal errors retried, by stage"),
    ("errors_", "gridwatch_worker_internal_errors", "stage", "internal errors dead-lettered after the retry deadline"),
    ("dlq_", "gridwatch_worker_dead_letters", "code", "dead letters this worker sent, by code"),
)


def worker_exposition(stats) -> str:
    """Prometheus text of this worker's counters (since it started) named in ``WORKER_COUNTERS``."""
    class Collector:
        def collect(self):
            for prefix, name, label, help_ in WORKER_COUNTERS:
                family = CounterMetricFamily(name, help_, labels=[label])
                for key, value in sorted(stats.items()):
                    if key.startswith(prefix):
                        family.add_metric([key[len(prefix):]], value)
                yield family

    registry = CollectorRegistry()
    registry.register(Collector())
    return generate_latest(registry).decode("utf-8")


def run(args) -> int:
    settings = Settings()
    try:
        enabled(settings.detectors)
    except DetectorError as exc:
        print(f"gridwatch worker: {exc}")
        return 2
    try:
        verify_topics(settings)
        cluster = cluster_id(settings)
    except TopicsError as exc:
        print(f"gridwatch worker: {exc}")
        return 2
    app = build_app(settings, web_port=args.web_port, cluster=cluster)
    unlisted = sorted(set(app.tables) - set(topics.TABLES))
    if unlisted:  # its changelog would be left to Faust to create while the worker starts: a race
        print(f"gridwatch worker: table(s) {', '.join(unlisted)} missing from gridwatch.config.TABLES")
        return 2
    worker = _bounded_stop_worker()(app, loglevel=args.loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0


def _bounded_stop_worker():
    """Faust's Worker, whose stop on SIGTERM / SIGINT is bounded by :data:`STOP_GRACE_S`.

    Faust's own stop waits for the broker (offset commits, the producer's flush, leaving the group) without
    a bound: tens of seconds with a broker that is slow to answer, minutes without one. Nothing depends on
    that stop being graceful: outbox claims reach the broker before a message leaves and offsets are
    committed after processing, so a stop cut short is a crash, which recovery covers."""
    class BoundedStopWorker(Worker):
        def _schedule_shutdown(self, signum) -> None:
            if not self._signal_stop_time:
                timer = threading.Timer(STOP_GRACE_S, _exit_now, args=(signum,))
                timer.daemon = True
                timer.start()
            super()._schedule_shutdown(signum)

    return BoundedStopWorker


def _exit_now(signum) -> None:
    log.warning("graceful stop on %s not finished after %.0f s: exiting now (the next start recovers as "
                "after a crash)", getattr(signum, "name", signum), STOP_GRACE_S)
    logging.shutdown()
    os._exit(0)


def register(sub) -> None:
    p = sub.add_parser("worker", help="run the stream worker: validate -> detect -> alert -> notify",
                       description="Run the Faust worker. Kafka from KAFKA_BOOTSTRAP_SERVERS; SMS through "
                                   "Twilio when TWILIO_* are set, else the local SMS sandbox.")
    p.add_argument("--web-port", type=int, default=None,
                   help="serve Faust's web endpoints on this port (off by default)")
    p.add_argument("--loglevel", default="info", help="log level (default info)")
    p.set_defaults(func=run)
