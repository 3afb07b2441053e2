"""The notify stage: ``gridwatch.notify-requests`` (one per alert and customer, keyed by customer) -> the
notification path (notifiers/path.py) -> SMS / email / webhook -> ``notifications``.

Every decision is the notification path's; this module gives it its state in the worker's tables (the
``TableEnv`` below: outbox, deferred, contacts, ...), the operators' silences and the channels, and sends the
release requests of messages held for quiet hours when their time comes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from gridwatch import config as topics
from notifiers.channels import build_notifier
from notifiers.pacing import Pacer
from notifiers.path import NotificationPath, Policy
from notifiers.tips import usage_summary
from streams.app import Context, _dumps
from streams.topicview import TopicView
from streams.webhooks import STATUS_PATH

log = logging.getLogger("gridwatch.worker")


def install(ctx: Context) -> None:
    """The ``notify`` agent and the timer that releases deferred messages."""
    app, s, stats, faults = ctx.app, ctx.settings, ctx.stats, ctx.faults
    attempts, guard = ctx.attempts, ctx.guard
    requests_t, notifications_t, sent_t = ctx.topics.requests, ctx.topics.notifications, ctx.topics.sent
    customers_tb, contacts_tb, outbox_tb = ctx.tables.customers, ctx.tables.contacts, ctx.tables.outbox
    bills_tb, deferred_tb = ctx.tables.bills, ctx.tables.deferred
    pacer = Pacer(s.sms_per_second)

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

    @app.on_partitions_revoked.connect
    async def forget_partitions(app, revoked, **kwargs):
        owned.difference_update((tp.topic, tp.partition) for tp in revoked)

    @app.on_before_shutdown.connect
    async def close_notifier(app, **kwargs):
        for n in notifiers.values():
            await n.close()
        await silences_view.stop()
