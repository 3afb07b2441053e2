"""The alerts stage: ``gridwatch.findings`` + ``gridwatch.alert-actions`` -> the alert lifecycle -> ``alerts``
-> one ``gridwatch.notify-requests`` message per customer.

The lifecycle rules themselves are notifiers/lifecycle.py (pure, shared with the console); this module keeps
the latest record per alert in the ``lifecycle`` table and publishes what they return.
"""

from __future__ import annotations

import json
import logging

from notifiers.path import notify_requests
from streams import deadletters
from streams.app import Context, _dumps
from notifiers.lifecycle import apply_action, apply_finding

log = logging.getLogger("gridwatch.worker")


async def publish_alerts(ctx: Context, records: list[dict]) -> None:
    """Alert records of the detectors (the topology and bill stages) to ``gridwatch.findings``: the
    lifecycle agent below merges them with the operators' actions."""
    for rec in records:
        ctx.stats[f"alerts_{rec['status']}"] += 1
        log.info("alert %s %s %s scope=%s:%s meters=%d", rec["status"], rec["kind"], rec["alert_id"],
                 rec["scope"]["level"], rec["scope"]["id"], len(rec["meter_ids"]))
        await ctx.topics.findings.send(key=rec["alert_id"].encode(), value=_dumps(rec))


def install(ctx: Context) -> None:
    """The ``lifecycle`` and ``alert-fanout`` agents."""
    app, stats, faults = ctx.app, ctx.stats, ctx.faults
    attempts, guard, dead_letter = ctx.attempts, ctx.guard, ctx.dead_letter
    lifecycle_src, findings_t, alerts_t = ctx.topics.lifecycle_src, ctx.topics.findings, ctx.topics.alerts
    requests_t = ctx.topics.requests
    lifecycle_tb = ctx.tables.lifecycle

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

    @app.agent(alerts_t, name="alert-fanout")
    async def on_alerts(stream):
        """Each alert record to its customers: who hears of it is the notification path's decision
        (``notify_requests``), sent as one request per customer on the customer's partition."""
        async for event in attempts(stream, "alert-fanout"):
            msg = event.message
            async with guard(msg, "alert-fanout"):
                for request in notify_requests(json.loads(msg.value)):
                    await requests_t.send(key=request["customer_id"].encode(), value=_dumps(request))
