"""What comes back from the provider: customers' replies and the delivery statuses of what was sent.

- ``gridwatch.inbound`` (keyed by the sender's number) -> the ``phones`` table says which customer ->
  ``gridwatch.customer-replies`` (keyed by customer, on the notify stage's partition) -> the ``contacts``
  table (STOP / START, replies seen, the alert of the last message) -> ``feedback``, and an answer through
  the notify stage;
- ``gridwatch.sent`` + ``gridwatch.provider-events`` (keyed by message SID) -> the ``deliveries`` table ->
  the final outcome of each message on ``notifications``.
"""

from __future__ import annotations

import json
import logging

from gridwatch.timefmt import utc_now
from notifiers.privacy import mask_phone
from notifiers.replies import TERMINAL_STATUSES, advance_status, answer_reply, feedback_record, parse_reply
from streams.app import Context, _dumps

log = logging.getLogger("gridwatch.worker")


def install(ctx: Context) -> None:
    """The ``inbound``, ``customer-replies`` and ``deliveries`` agents."""
    app, stats = ctx.app, ctx.stats
    attempts, guard = ctx.attempts, ctx.guard
    inbound_t, replies_t, feedback_t = ctx.topics.inbound, ctx.topics.replies, ctx.topics.feedback
    requests_t, actions_t, notifications_t = ctx.topics.requests, ctx.topics.actions, ctx.topics.notifications
    deliveries_src, sent_t = ctx.topics.deliveries_src, ctx.topics.sent
    phones_tb, customers_tb, contacts_tb = ctx.tables.phones, ctx.tables.customers, ctx.tables.contacts
    deliveries_tb = ctx.tables.deliveries

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
        """A known customer's SMS, on the customer's partition (the notify agent's): what it does is
        ``answer_reply``'s decision (STOP / START, an answer, a reopened outage); this sends and keeps it."""
        async for event in attempts(stream, "customer-replies"):
            msg = event.message
            async with guard(msg, "customer-replies"):
                cid = msg.key.decode("utf-8")
                body = json.loads(msg.value)
                out = answer_reply(cid, body, contacts_tb.get(cid), customers_tb.get(cid))
                if out is None:
                    continue  # the provider retried its webhook
                stats[f"feedback_{out.feedback['intent']}"] += 1
                log.info("reply %s from customer %s: %s", body["sid"], cid, out.feedback["intent"])
                await feedback_t.send(key=cid.encode(), value=_dumps(out.feedback))
                if out.answer is not None:  # through the notification path, as any message
                    await requests_t.send(key=cid.encode(), value=_dumps(out.answer))
                if out.reopen is not None:
                    await actions_t.send(key=out.reopen["alert_id"].encode(), value=_dumps(out.reopen))
                # the table last: a retry after a failed send finds the reply not yet seen and sends again
                # (feedback and the reopened alert have ids of their own, answers go through the outbox)
                contacts_tb[cid] = out.contact

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
                               "created_at": utc_now()}
                        stats[f"notifications_{outcome}"] += 1
                        await notifications_t.send(key=n["customer_id"].encode(), value=_dumps(rec))
                deliveries_tb[sid] = d
