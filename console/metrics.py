"""``GET /metrics``: Prometheus text exposition, computed on each scrape.

From the console's model: ``gridwatch_alerts{kind,status}`` (alerts by their latest record),
``gridwatch_notifications_total{status,channel}`` (notification records read since the console started,
which reads the topic from its beginning), ``gridwatch_detection_latency_seconds`` (histogram of
``detected_at - started_at``, event time), ``gridwatch_console_up``.

From Kafka, one bounded query per scrape (:class:`KafkaOffsets`): ``gridwatch_readings_messages_total``
(sum of the end offsets of ``meter.readings``), ``gridwatch_dlq_records_total`` (the same for
``gridwatch.dlq``), ``gridwatch_consumer_lag{topic}`` (the worker's consumer group ``Settings().app_id``:
end offset minus committed offset, summed over the partitions of each topic; a partition of the input
topics with no commit yet counts from its first offset). ``gridwatch_kafka_up`` is 1 when that query
answered in time, else 0 and the Kafka families are left out: a broker problem never fails the scrape
(the lag alone is left out when only the group's coordinator does not answer).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.utils import floatToGoString

from gridwatch import config as names
from gridwatch.config import Settings

__all__ = ["KafkaFigures", "KafkaOffsets", "DETECTION_BUCKETS", "render"]

log = logging.getLogger(__name__)

#: detection latency buckets, seconds: 1 min ... 1 day
DETECTION_BUCKETS = (60, 180, 300, 600, 900, 1800, 2700, 3600, 7200, 14400, 43200, 86400)
QUERY_TIMEOUT_S = 5.0


@dataclass
class KafkaFigures:
    readings_messages: int
    dlq_records: int
    #: deployed topic name -> lag; None when the group's offsets could not be read
    lag: dict[str, int] | None = field(default_factory=dict)


class KafkaOffsets:
    """Offsets for the Kafka families: one long-lived admin client and consumer (no group), started on
    the first scrape and rebuilt after a failure."""

    def __init__(self, settings: Settings, timeout_s: float = QUERY_TIMEOUT_S):
        self.settings = settings
        self.timeout_s = timeout_s
        self._admin = None
        self._consumer = None
        self._lock = asyncio.Lock()

    async def query(self) -> KafkaFigures | None:
        """The figures, or None when Kafka did not answer within the timeout (logged, never raised)."""
        async with self._lock:
            try:
                return await asyncio.wait_for(self._query(), self.timeout_s)
            except Exception as exc:  # noqa: BLE001 - a scrape must not fail on the broker
                log.warning("metrics: Kafka offsets not available (%s: %s)", type(exc).__name__, exc)
                await self.close()
                return None

    async def _start(self) -> None:
        if self._admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.bootstrap_list,
                                        client_id="gridwatch-console-metrics")
            await admin.start()
            self._admin = admin
        if self._consumer is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap_list, group_id=None,
                                        enable_auto_commit=False, client_id="gridwatch-console-metrics")
            await consumer.start()
            self._consumer = consumer

    async def _partitions(self, topics: list[str]) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for topic in await self._admin.describe_topics(topics):
            name = topic.get("topic") or topic.get("name")
            if name in topics and topic.get("error_code", 0) == 0:
                found[name] = sorted(p["partition"] for p in topic.get("partitions") or [])
        return found

    async def _query(self) -> KafkaFigures:
        await self._start()
        s = self.settings
        readings, dlq, events = s.topic(names.READINGS), s.topic(names.DLQ), s.topic(names.EVENTS)
        parts = await self._partitions([readings, dlq, events])
        committed = await self._committed(s.app_id)
        tps = {TopicPartition(t, p) for t, ps in parts.items() for p in ps}
        tps.update(tp for tp, meta in (committed or {}).items() if meta.offset >= 0)
        ends = await self._consumer.end_offsets(sorted(tps)) if tps else {}
        figures = KafkaFigures(readings_messages=sum(off for tp, off in ends.items() if tp.topic == readings),
                               dlq_records=sum(off for tp, off in ends.items() if tp.topic == dlq), lag=None)
        if committed is None:
            return figures
        uncommitted = [TopicPartition(t, p) for t in (readings, events) for p in parts.get(t, [])
                       if committed.get(TopicPartition(t, p)) is None or committed[TopicPartition(t, p)].offset < 0]
        starts = await self._consumer.beginning_offsets(uncommitted) if uncommitted else {}
        lag: dict[str, int] = {}
        for tp, meta in committed.items():
            if meta.offset >= 0 and tp in ends:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, ends[tp] - meta.offset)
        for tp in uncommitted:
            if tp in ends:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, ends[tp] - starts.get(tp, 0))
        figures.lag = dict(sorted(lag.items()))
        return figures

    async def _committed(self, group: str, attempts: int = 4):
        """The group's committed offsets, or None when its coordinator does not answer (a new cluster
        creates the offsets topic on the first request): the lag is then left out, the rest reported."""
        for attempt in range(attempts):
            try:
                return await self._admin.list_consumer_group_offsets(group)
            except KafkaError as exc:
                if attempt == attempts - 1:
                    log.info("metrics: consumer group %s offsets not available (%s)", group, type(exc).__name__)
                    return None
                await asyncio.sleep(0.25 * (attempt + 1))
        return None

    async def close(self) -> None:
        admin, self._admin = self._admin, None
        consumer, self._consumer = self._consumer, None
        for client, stop in ((admin, "close"), (consumer, "stop")):
            if client is not None:
                try:
                    await getattr(client, stop)()
                except Exception:  # noqa: BLE001 - already broken
                    pass


class _Collector:
    def __init__(self, model, kafka: KafkaFigures | None):
        self.model, self.kafka = model, kafka

    def collect(self):
        model, kafka = self.model, self.kafka
        up = GaugeMetricFamily("gridwatch_console_up", "1 while the operations console is serving")
        up.add_metric([], 1)
        yield up
        kup = GaugeMetricFamily("gridwatch_kafka_up", "1 when the console's Kafka offsets query answered in time")
        kup.add_metric([], 1 if kafka is not None else 0)
        yield kup
        if kafka is not None:
            yield CounterMetricFamily("gridwatch_readings_messages_total",
                                      "Messages on meter.readings (sum of the partitions' end offsets)",
                                      value=kafka.readings_messages)
            yield CounterMetricFamily("gridwatch_dlq_records_total",
                                      "Records on the dead-letter topic (sum of the partitions' end offsets)",
                                      value=kafka.dlq_records)
            lag = GaugeMetricFamily("gridwatch_consumer_lag",
                                    "Records the worker's consumer group has not committed yet, per topic",
                                    labels=["topic"])
            for topic, n in (kafka.lag or {}).items():
                lag.add_metric([topic], n)
            if kafka.lag is not None:
                yield lag
        alerts = GaugeMetricFamily("gridwatch_alerts", "Alerts by kind and status (latest record of each)",
                                   labels=["kind", "status"])
        for (kind, status), n in sorted(model.alert_counts().items()):
            alerts.add_metric([kind, status], n)
        yield alerts
        notes = CounterMetricFamily("gridwatch_notifications_total",
                                    "Notification records by status and channel", labels=["status", "channel"])
        for (status, channel), n in sorted(model.notification_counts.items()):
            notes.add_metric([status, channel], n)
        yield notes
        delays = model.detection_delays()
        buckets = [(floatToGoString(b), sum(1 for d in delays if d <= b)) for b in DETECTION_BUCKETS]
        buckets.append(("+Inf", len(delays)))
        yield HistogramMetricFamily("gridwatch_detection_latency_seconds",
                                    "Alert detection latency: detected_at - started_at, in event time",
                                    buckets=buckets, sum_value=sum(delays))


def render(model, kafka: KafkaFigures | None, accept: str | None = None) -> tuple[bytes, str]:
    """``(body, content type)`` of the exposition for ``model`` and the Kafka figures (None: Kafka down),
    in the format the ``Accept`` header asks for (Prometheus text by default, OpenMetrics on request)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(model, kafka))
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
