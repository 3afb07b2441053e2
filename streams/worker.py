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

The detection code is detectors/pipeline.py, the same the backtest runs; the stages only move its inputs
and states between Kafka topics and Faust tables. The app with its topics and tables is streams/app.py, and
each stage is a module that installs its agents on it:

    streams/directory.py   customers, phone-directory, meter-directory
    streams/detect.py      readings (in micro-batches), meter-events; the partitions' watermarks
    streams/topology.py    topology (meter-status -> outage detector and voltage correlators -> findings)
    streams/bills.py       bills (daily usage -> bill detectors, fits in a process pool -> findings)
    streams/alerts.py      lifecycle (findings + alert actions -> alerts), alert-fanout (-> notify requests)
    streams/notify.py      notify (the notification path), the release of deferred messages
    streams/replies.py     inbound, customer-replies, deliveries

This module is the ``gridwatch worker`` command: it puts them together and runs the app.
"""

from __future__ import annotations

import logging
import os
import threading

from faust.worker import Worker
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily

from detectors.registry import DetectorError, enabled
from gridwatch import config as topics
from gridwatch.config import Settings
from streams import alerts, app as streams_app, bills, detect, directory, notify, replies, topology
from streams.topics import TopicsError, cluster_id, verify_topics

log = logging.getLogger("gridwatch.worker")

#: ``gridwatch worker`` on SIGTERM: a graceful stop (commit offsets, close tables) gets this long, then the
#: process exits at once, which is safe: the next start recovers exactly as after a crash.
STOP_GRACE_S = float(os.environ.get("GRIDWATCH_STOP_GRACE_S", "7"))


def build_app(settings: Settings | None = None, *, web_port: int | None = None, cluster: str = "default"):
    """Assemble the Faust app: topics, tables and the agents of every stage.

    ``cluster`` (the Kafka cluster id) names the state directory: table state records changelog offsets of
    one cluster, and a worker pointed at another cluster (a fresh local broker, say) must not reuse it.
    """
    s = settings or Settings()
    detectors = enabled(s.detectors)  # a broken or unknown detector stops the start here, by name
    ctx = streams_app.create(s, detectors, web_port=web_port, cluster=cluster)
    log.info("detectors: %s", ", ".join(d.name for d in detectors))
    meter_entry = detect.install(ctx)
    directory.install(ctx, meter_entry)
    topology.install(ctx)
    bills.install(ctx)
    alerts.install(ctx)
    notify.install(ctx)
    replies.install(ctx)
    app, stats = ctx.app, ctx.stats

    if web_port is not None:
        @app.page("/metrics")
        async def worker_metrics(web, request):
            """This worker's retries, internal errors and dead letters (``worker_exposition``)."""
            return web.text(worker_exposition(stats), content_type="text/plain; version=0.0.4")

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
