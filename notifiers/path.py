"""The notification path: from one notify request to recorded decisions, as an ordered list of stages.

    route -> group -> inhibit -> silence -> dedup -> budget -> render -> deliver (retry) -> record

:data:`STAGES` is that list, and :meth:`NotificationPath.handle` runs it; nothing else decides whether a
customer is messaged. The worker's notify stage (``streams/notify.py``) only feeds it requests (one per alert
and customer, on the customer's partition) and gives it its state through :class:`Env` — Faust tables there,
plain dicts in the unit tests — so the same code runs in both.

Each stage looks at one :class:`Decision` (one customer, one channel) and returns one of

* ``GO``     — on to the next stage;
* ``RECORD`` — stop here and record the decision as it stands (``suppressed`` or ``failed`` with a reason);
* ``HOLD``   — not now: record ``deferred`` and keep the request until ``decision.due`` (or an earlier
  release), when it comes back through the whole path;
* ``DROP``   — nothing to record: this decision was taken before (a re-delivered request) or the request
  only closed an outage.

Never twice: the outbox entry of a decision is keyed by (alert, customer, channel, template) — template is
the notice or the restoration (``|resolved``) — and written *claimed* to the table's changelog on the
broker before the message leaves (``deliver``); after a claim the outcome is kept there too (*recording*:
the whole record, with the provider's message id) before the record is written, and the key is *done*
once the record is on the broker (``record``). A request that finds its key done is dropped; one that finds
it claimed (a worker died between sending and recording) is reconciled with the provider instead of being
sent again (``dedup``); one that finds it recording writes the kept record unless it is on the broker
already (``group``), so a crash at any point gives one record per outcome.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Protocol

from gridwatch import kinds
from gridwatch.timefmt import parse_datetime
from notifiers import templates
from notifiers.base import NotifierError
from notifiers.channels import address, channels_for
from notifiers.quiet import DEFERRABLE_KINDS, quiet_until
from notifiers.silences import SAFETY_KINDS, is_safety, matching

__all__ = ["Decision", "Env", "NotificationPath", "Policy", "STAGES", "GO", "RECORD", "HOLD", "DROP",
           "RESTORATION_KINDS", "HELD_DURING_OUTAGE", "SAFETY_KINDS", "VOLTAGE_KINDS", "is_safety",
           "notify_requests"]

GO, RECORD, HOLD, DROP = "go", "record", "hold", "drop"

#: Alert kinds whose end is worth a message of its own ("power is back"): an outage gives each customer
#: exactly two messages per channel, the notice and the restoration.
RESTORATION_KINDS = kinds.having("restoration")
#: inhibit: kinds held while the customer is in an outage (released when it ends, or after max_hold_s)
HELD_DURING_OUTAGE = kinds.having("held_during_outage")
#: inhibit: kinds never sent to a customer who is in an outage (the outage explains them)
VOLTAGE_KINDS = kinds.having("inhibited_by_outage")
#: answers to a customer's own SMS (HELP, "still out", a rating): sent whatever the budget or quiet hours
REPLY_PREFIX = "reply_"


def notify_requests(alert: dict) -> list[dict]:
    """Who hears of one ``alerts`` record: a notify request per customer (keyed by customer on
    ``gridwatch.notify-requests``), each then decided by the path like any other.

    An open or acknowledged alert goes to every customer it names (those already told are dropped in
    ``group``). The resolution of a restoration kind ("power is back") goes to its customers no longer dark
    (``group`` then drops those never told of the outage), never after an operator's "no fault" (nothing
    came back); an alert merged into a larger one only closes (``phase`` "closed": no message, the larger
    one's end will say it). Anything else: no request.
    """
    if alert["status"] in ("open", "acknowledged"):
        return [{"alert": alert, "customer_id": cid} for cid in alert["customer_ids"]]
    if alert["status"] == "resolved" and alert["kind"] in RESTORATION_KINDS and not alert.get("no_fault"):
        merged = bool(alert["evidence"].get("merged_into"))
        dark = set(alert["evidence"].get("still_out_customer_ids") or ())
        return [{"alert": alert, "customer_id": cid, "phase": "closed" if merged else "resolved"}
                for cid in alert["customer_ids"] if merged or cid not in dark]
    return []


@dataclass
class Policy:
    """The path's settings (``Settings`` fields of the same meaning; see README "Configuration")."""

    budget_messages: int = 3          # per customer per budget window, across every kind (safety exempt)
    budget_window_s: int = 86400
    dedup_window_s: int = 43200       # the same kind for the same scope again within this: not re-sent
    max_hold_s: int = 86400           # a message held for an outage goes out after this at the latest
    send_deadline_s: float = 30.0     # retries of one send stop when the next would start after this
    list_lag_s: float = 30.0          # a created message is in the provider's list at the latest this late
    max_segments: int = 2             # SMS body budget, in segments
    brand: str = "GridWatch"

    @classmethod
    def from_settings(cls, s: Any) -> "Policy":
        return cls(budget_messages=s.budget_messages, budget_window_s=s.budget_window_s,
                   dedup_window_s=s.dedup_window_s, send_deadline_s=s.send_deadline_s,
                   max_segments=s.sms_max_segments,
                   list_lag_s=float(getattr(s, "provider_list_lag_s", cls.list_lag_s)))


class Env(Protocol):
    """What the path reads and writes. Tables are per customer (the request's partition) except the outbox
    (per key) and silences (everyone's, the same on every worker)."""

    def customer(self, cid: str) -> dict | None: ...
    def contact(self, cid: str) -> dict: ...                  # opt-out by reply, outages, recent sends
    def set_contact(self, cid: str, value: dict) -> None: ...
    def outbox(self, key: str) -> dict | None: ...
    def set_outbox(self, key: str, value: dict) -> None: ...
    def usage(self, cid: str) -> dict | None: ...             # the bills table's state of the customer
    def silences(self) -> list[dict]: ...
    def notifier(self, channel: str) -> Any: ...              # a notifiers.base.Notifier
    def now(self) -> float: ...                               # wall clock: quiet hours, budgets, deadlines
    async def flush(self) -> None: ...                        # the outbox claim reaches the broker
    async def hold(self, cid: str, key: str, entry: dict) -> None: ...   # keep a request (deferred table)
    def held_request(self, cid: str, key: str) -> dict | None: ...       # a kept request (None: released)
    def drop_held(self, cid: str, key: str) -> None: ...                 # forget it: decided
    async def release_held(self, cid: str, why: str) -> None: ...        # release what ``why`` held
    async def emit(self, record: dict) -> None: ...           # a notifications record (and what was sent)
    async def recorded(self, record: dict, since: float) -> bool: ...    # that record, on the broker?
    async def pace(self, channel: str) -> None: ...           # wait for the sender's rate
    # optional: ``owns() -> bool``, False once this worker no longer owns the request's partition (a
    # rebalance gave it to another): then nothing is claimed, sent or recorded here (fencing)


@dataclass
class Decision:
    """One customer, one channel: what the stages found out so far, and the record it becomes."""

    request: dict
    alert: dict
    customer_id: str
    customer: dict | None
    channel: str
    phase: str = "notice"              # notice | resolved | closed | reply
    key: str = ""                      # outbox key
    claim: dict | None = None          # an unfinished claim found in the outbox (a send was interrupted)
    due: float | None = None           # HOLD: when to try again
    hold_why: str | None = None        # HOLD: "quiet" | "outage" | "budget" | "settle" | "notice"
    outcome: str | None = None         # the stage outcome that ended the path (GO: it ran to the end)
    body: str | None = None
    subject: str | None = None
    data: dict | None = None
    record: dict = field(default_factory=dict)

    def stop(self, outcome: str, status: str, reason: str | None) -> str:
        self.record.update(status=status, reason=reason)
        return outcome


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- the stages --------------------------------------------------------------------------------------
async def route(d: Decision, env: Env) -> str:
    """Who and how: the customer must be known; the channel was chosen from their preferences
    (:func:`NotificationPath.decisions`)."""
    if d.customer is None:
        return d.stop(RECORD, "failed", "unknown_customer")
    return GO


async def group(d: Decision, env: Env) -> str:
    """One message per customer per incident: the key of this decision; an outage's end only for those
    told of it; a child outage (meters still dark after their feeder came back) not told again, nor an
    incident told under an alert that was merged into it; an alert merged into a larger one only closes.
    Also keeps the customer's open outages for ``inhibit``."""
    alert, cid = d.alert, d.customer_id
    if alert.get("kind") in RESTORATION_KINDS:
        await _track_outage(d, env)
        if d.phase == "closed":
            return DROP
    d.key = f"{alert['alert_id']}|{cid}|{d.channel}" + ("|resolved" if d.phase == "resolved" else "")
    d.record["notification_id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, d.key))
    found = env.outbox(d.key)
    state = (found or {}).get("state")
    if state == "done":
        return DROP  # decided before: whatever re-delivered the request, the customer hears it once
    if state == "recording":
        return await _finish(d, env, found)  # decided, the record maybe written: never decided again
    d.claim = found
    if d.claim is not None:
        return GO  # in flight when a worker died: reconciled in dedup, never decided anew
    told = _notice_sent(d, env)
    pending = None if told else _notice_in_flight(d, env)
    if pending is not None:
        # the notice this decision rests on is claimed but not settled (a send interrupted by a crash):
        # "told or not" is not known yet, so it waits for the notice's outcome instead of guessing
        d.due, d.hold_why = env.now() + _settle_interval(env), "notice"
        return d.stop(HOLD, "deferred", f"waiting for the notice of {pending} to be settled")
    if d.phase == "resolved" and not told:
        return d.stop(RECORD, "suppressed", "no_notice_to_resolve")
    if d.phase == "notice" and told and told != alert["alert_id"]:
        return d.stop(RECORD, "suppressed", f"notified_for {told}")
    return GO


async def inhibit(d: Decision, env: Env) -> str:
    """An outage explains everything else: voltage messages are not sent to a customer who has no power,
    and bill alerts wait until the power is back (the catch-up reads settle too).

    "No power" is judged in event time, so that it does not depend on whether the outage's end or the
    voltage alert was read first: a voltage alert that started while one of the customer's outages was on
    (its start to its end) is suppressed; one that started while an outage is still open waits for that
    outage's end to tell (``held: in outage``); one that started before an outage, or after its end, goes
    on."""
    if d.claim is not None or d.phase != "notice":
        return GO
    c = env.contact(d.customer_id)
    outs = [a for a in c.get("outages") or [] if a != d.alert["alert_id"]]
    kind = d.alert.get("kind")
    if kind in VOLTAGE_KINDS:
        return _inhibit_voltage(d, env, c, outs)
    if not outs:
        return GO
    if kind in HELD_DURING_OUTAGE and not d.request.get("released_outage"):
        d.due, d.hold_why = env.now() + _policy(env).max_hold_s, "outage"
        return d.stop(HOLD, "deferred", f"held: in outage {outs[0]}")
    return GO


def _inhibit_voltage(d: Decision, env: Env, c: dict, outs: list[str]) -> str:
    at = _epoch(d.alert.get("started_at"))
    windows = c.get("outage_windows") or {}
    for aid in outs:  # still open here: did it end before this began? known only once it has ended
        start = _epoch((windows.get(aid) or {}).get("start"))
        if at is None or start is None or start <= at:
            if d.request.get("released_outage"):  # held as long as an outage may be (max_hold_s): no power
                return d.stop(RECORD, "suppressed", f"inhibited: in outage {aid}")
            d.due, d.hold_why = env.now() + _policy(env).max_hold_s, "outage"
            return d.stop(HOLD, "deferred", f"held: in outage {aid}")
    for aid, w in windows.items():
        if aid == d.alert["alert_id"] or aid in outs:
            continue
        start, end = _epoch(w.get("start")), _epoch(w.get("end"))
        if at is None or start is None or (start <= at and (end is None or at < end)):
            return d.stop(RECORD, "suppressed", f"inhibited: in outage {aid}")  # (an unknown end: in it)
    return GO


async def silence(d: Decision, env: Env) -> str:
    """Opt-outs (always), operator silences (by scope, kinds and time window; safety only when the silence
    says so), quiet hours in the customer's timezone for what is not urgent (deferred, not dropped)."""
    if d.claim is not None:
        return GO
    if _opted_out(d, env):
        return d.stop(RECORD, "suppressed", "opted_out")
    if _is_reply(d):
        return GO
    hit = matching(env.silences(), d.alert, d.customer, env.now())
    if hit is not None:
        return d.stop(RECORD, "suppressed",
                      f"silenced {hit['silence_id']} by {hit['author']}: {hit['reason']}")
    if d.alert.get("kind") in DEFERRABLE_KINDS and not d.request.get("released_quiet"):
        due = quiet_until(d.customer, env.now())
        if due is not None:
            d.due, d.hold_why = due, "quiet"
            return d.stop(HOLD, "deferred", f"quiet_hours until {_rfc3339(due)}")
    return GO


async def dedup(d: Decision, env: Env) -> str:
    """Never twice. An interrupted send (claimed, no outcome) is looked up at the provider: found ->
    recorded as sent, certainly absent -> sent now (unless opted out meanwhile), unknown -> failed and not
    sent. And the same kind for the same scope sent to this customer within the dedup window (a fault
    that flaps opens new alerts) is not sent again."""
    if d.claim is not None:
        return await _reconcile(d, env)
    if d.phase != "notice" or _is_reply(d) or d.alert.get("kind") in RESTORATION_KINDS:
        return GO
    scope = d.alert.get("scope") or {}
    now = env.now()
    for s in env.contact(d.customer_id).get("recent") or []:
        if (s.get("kind") == d.alert.get("kind") and s.get("scope") == [scope.get("level"), scope.get("id")]
                and s.get("channel") == d.channel and now - s.get("at", 0) < _policy(env).dedup_window_s):
            return d.stop(RECORD, "suppressed", f"duplicate_of {s['alert_id']}")
    return GO


async def budget(d: Decision, env: Env) -> str:
    """At most ``budget_messages`` messages per customer per window, across all kinds; safety messages, the
    restoration of an outage and answers to the customer's own SMS are exempt (they count, though). A
    deferrable message over budget waits for room, anything else is suppressed."""
    if d.claim is not None or d.phase != "notice" or _is_reply(d) or is_safety(d.alert):
        return GO
    p, now = _policy(env), env.now()
    sent = sorted(t for t in env.contact(d.customer_id).get("sent_at") or [] if now - t < p.budget_window_s)
    if len(sent) < p.budget_messages:
        return GO
    reason = f"budget: {len(sent)} messages in {p.budget_window_s // 3600} h"
    if d.alert.get("kind") in DEFERRABLE_KINDS:
        d.due, d.hold_why = sent[len(sent) - p.budget_messages] + p.budget_window_s, "budget"
        return d.stop(HOLD, "deferred", f"{reason}, until {_rfc3339(d.due)}")
    return d.stop(RECORD, "suppressed", reason)


async def render(d: Decision, env: Env) -> str:
    """The text, in the customer's language and for their segment, with a tip from their own usage."""
    if d.body is not None:
        return GO  # reconciled: the body was rendered when it was claimed
    _render_into(d, env)
    return GO


async def deliver(d: Decision, env: Env) -> str:
    """Claim in the outbox (on the broker before anything leaves), then send, retrying what certainly did
    not reach the provider (429, 503, refused connections) with back-off under a deadline; permanent errors
    (21211, 21610, 21612, 21614, 21635, other 4xx) are not retried. What may have reached the provider (a
    timeout, a 5xx after the message was created) is looked up before anything else happens (:func:`_settle`):
    found -> sent, proven absent -> sent again, unknown -> the claim stays and is settled later. Nothing is
    claimed or sent by a worker that no longer owns the request's partition."""
    if d.record.get("status") == "sent":
        return GO  # reconciled: the provider had it
    if not _owns(env):
        return _fenced(d)
    p = _policy(env)
    notifier = env.notifier(d.channel)
    now = env.now()
    # ``until``: no attempt of this claim is in flight after it (the last starts before the deadline and
    # takes at most the notifier's timeout) -- what a successor needs to prove a message absent
    env.set_outbox(d.key, {"state": "claimed", "at": now, "body": d.body,
                           "until": now + p.send_deadline_s + _attempt_s(notifier)})
    await env.flush()
    deadline = time.monotonic() + p.send_deadline_s
    delay, attempt = 1.0, 0
    while True:
        attempt += 1
        await env.pace(d.channel)
        if not _owns(env):  # checked right before each attempt: a rebalance may have moved the partition
            return _fenced(d)
        try:
            delivery = await notifier.send(_address(d), d.body, subject=d.subject, data=d.data,
                                           key=d.record["notification_id"])
        except NotifierError as exc:
            idempotent = getattr(notifier, "idempotent", False)
            if exc.maybe_sent and not idempotent and getattr(notifier, "reconcilable", True):
                d.claim = env.outbox(d.key) or {}
                outcome, found, why = await _settle(d, env, env.now() + p.list_lag_s)
                if outcome == "sent":
                    d.record.update(status="sent", provider_message_id=found.provider_message_id,
                                    reason=f"reconciled: sent, though the answer was lost ({exc})")
                    return GO
                if outcome == "unsettled":
                    return _unsettled(d, env, why)
                again = True  # proven absent: not sent, so it may be sent (again) under the deadline
            else:
                again = exc.retryable and (not exc.maybe_sent or idempotent)
            wait = delay * (0.5 + random.random())  # jitter: many workers backing off do not move in step
            if not again or time.monotonic() + wait >= deadline:
                why = "outcome unknown, not retried" if exc.maybe_sent and not again else "provider error"
                code = exc.code or exc.status
                tail = f" after {attempt} attempts" if attempt > 1 else ""
                return d.stop(GO, "failed", f"{why}{' ' + str(code) if code else ''}{tail}: {exc}")
            await asyncio.sleep(wait)
            delay *= 2
        else:
            d.record.update(status="sent", provider_message_id=delivery.provider_message_id,
                            reason=f"sent after {attempt} attempts" if attempt > 1 else None)
            return GO


async def record(d: Decision, env: Env) -> str:
    """Every decision becomes a ``notifications`` record; the outbox key is done; a sent message counts
    toward the budget and the dedup window and is what a reply ("still out", a rating) refers to.

    After a claim the outcome is first kept in the outbox (*recording*: the record itself, and what it
    counts for the customer) and on the broker, then the record is written and on the broker, then the key
    is done. A crash before the outcome is kept leaves the claim (settled with the provider again); after
    it, the re-run writes the kept record unless it finds it on the broker (:func:`_finish`): one record
    per outcome, never a done key without its record, and the budget counts a message once."""
    now = env.now()
    if d.key and d.record["status"] == "sent" and not _owns(env):
        return _fenced(d)  # sent, then the partition moved: its new owner settles the claim with the provider
    d.record["body"] = d.body
    d.record["created_at"] = _rfc3339(now)
    if d.key and (env.outbox(d.key) or {}).get("state") == "claimed":
        env.set_outbox(d.key, {"state": "recording", "status": d.record["status"], "at": now,
                               "record": dict(d.record), "counts": _counts(d)})
        _count(d, env, now)
        await env.flush()
        await env.emit(d.record)
        await env.flush()
    else:
        await env.emit(d.record)
        _count(d, env, now)
    env.set_outbox(d.key, {"state": "done", "status": d.record["status"]})
    await _told(d, env)
    return GO


async def _finish(d: Decision, env: Env, kept: dict) -> str:
    """A decision whose outcome was kept (*recording*) before a crash: its record is written unless the
    broker has it already, its counts are applied (once), the key is done. Nothing is decided or sent."""
    if not _owns(env):
        return _fenced(d)
    d.record = dict(kept["record"])
    d.body = d.record.get("body")
    if not await env.recorded(d.record, kept.get("at", 0) - WORKER_SKEW_S):
        await env.emit(d.record)
        await env.flush()
    _count(d, env, kept.get("at", env.now()), kept.get("counts"))
    env.set_outbox(d.key, {"state": "done", "status": d.record["status"]})
    await _told(d, env)
    return DROP


def _counts(d: Decision) -> dict | None:
    """What a sent message counts for its customer (budget, dedup window, replies, lookups)."""
    if d.record["status"] != "sent":
        return None
    scope = d.alert.get("scope") or {}
    return {"provider_message_id": d.record.get("provider_message_id"), "reply": _is_reply(d),
            "alert_id": d.alert["alert_id"], "kind": d.alert.get("kind"), "channel": d.channel,
            "scope": [scope.get("level"), scope.get("id")]}


def _count(d: Decision, env: Env, at: float, counts: dict | None = None) -> None:
    """Apply a sent message to its customer's contact state, once per outbox key however often a crash
    makes this run again."""
    counts = counts if counts is not None else _counts(d)
    if counts is None:
        return
    c = dict(env.contact(d.customer_id))
    if d.key and d.key in (c.get("counted") or ()):
        return
    now, p = env.now(), _policy(env)
    c["sent_at"] = [t for t in c.get("sent_at") or [] if now - t < p.budget_window_s] + [at]
    if counts.get("provider_message_id"):  # what a lookup must not take for another message
        c["sids"] = ((c.get("sids") or []) + [counts["provider_message_id"]])[-KNOWN_SIDS:]
    if not counts.get("reply"):
        c["recent"] = [s for s in c.get("recent") or [] if now - s.get("at", 0) < p.dedup_window_s] + [
            {"alert_id": counts["alert_id"], "kind": counts["kind"], "channel": counts["channel"],
             "scope": counts["scope"], "at": at}]
        if counts["channel"] == "sms":
            c["last_alert_id"] = counts["alert_id"]
    if d.key:
        c["counted"] = ((c.get("counted") or []) + [d.key])[-KNOWN_SIDS:]
    env.set_contact(d.customer_id, c)


async def _told(d: Decision, env: Env) -> None:
    """A notice decided: what waited for it (the outage's "power is back") comes back now."""
    if d.phase == "notice" and d.key:
        await env.release_held(d.customer_id, "notice")


#: the path, in order; README "The notification path" shows the same list
STAGES: tuple[Callable[[Decision, Env], Awaitable[str]], ...] = (
    route, group, inhibit, silence, dedup, budget, render, deliver, record)


class NotificationPath:
    """Runs :data:`STAGES` for every channel of a request. ``env`` must also carry ``policy`` (a
    :class:`Policy`)."""

    def __init__(self, env: Env, policy: Policy | None = None) -> None:
        self.env = env
        env.policy = policy or getattr(env, "policy", None) or Policy()  # type: ignore[attr-defined]

    def decisions(self, req: dict) -> list[Decision]:
        """route, the part that fans out: one decision per channel the customer chose (SMS by default)."""
        cid = req["customer_id"]
        cust = self.env.customer(cid)
        alert = req["alert"]
        phase = req.get("phase") or ("reply" if str(alert.get("kind", "")).startswith(REPLY_PREFIX)
                                     else "notice")
        if req.get("channel"):  # a held request comes back for the channel it was held on
            channels = [req["channel"]]
        else:
            channels = ["sms"] if cust is None or phase == "reply" else channels_for(cust)
        out = []
        for channel in channels:
            rec = {"notification_id": None, "alert_id": alert["alert_id"], "customer_id": cid,
                   "channel": channel, "language": (cust or {}).get("language", "en"), "body": None,
                   "status": None, "reason": None, "provider_message_id": None}
            out.append(Decision(request=req, alert=alert, customer_id=cid, customer=cust, channel=channel,
                                phase=phase, record=rec))
        return out

    async def handle(self, req: dict) -> list[Decision]:
        """Run the path for one request; returns the decisions with their outcome (for logs and tests).

        ``{"customer_id", "release": key}`` brings back a held request (its quiet hours are over, the outage
        that held it ended, the budget has room): it runs the whole path again, marked as released."""
        released = None
        if "release" in req:
            cid, released = req["customer_id"], req["release"]
            entry = self.env.held_request(cid, released)
            if entry is None or ("due" in req and req["due"] != entry.get("due")):
                return []  # released before, or held again since this release was asked for
            req = {**entry["request"], f"released_{entry.get('why', 'quiet')}": True}
        done = []
        for d in self.decisions(req):
            for stage in STAGES:
                d.outcome = outcome = await stage(d, self.env)
                if outcome == GO:
                    continue
                if outcome == RECORD:
                    await record(d, self.env)
                elif outcome == HOLD:
                    await self.env.hold(d.customer_id, d.key, {"request": {**req, "channel": d.channel},
                                                               "due": d.due, "why": d.hold_why})
                    d.record["created_at"] = _rfc3339(self.env.now())
                    await self.env.emit(d.record)
                break
            done.append(d)
        # a held request is forgotten only once it is decided: a crash before that leaves it held, and it
        # is released again (a request taken out first and lost in a crash would never be decided)
        if released is not None and not any(d.outcome == HOLD or _was_fenced(d) for d in done):
            self.env.drop_held(req["customer_id"], released)
        return done


# -- helpers -----------------------------------------------------------------------------------------
def _policy(env: Env) -> Policy:
    return env.policy  # type: ignore[attr-defined]


def _is_reply(d: Decision) -> bool:
    return d.phase == "reply"


def _opted_out(d: Decision, env: Env) -> bool:
    """Opted out in the customer record, or by texting STOP (and not START since)."""
    return bool((d.customer or {}).get("opted_out") or env.contact(d.customer_id).get("opted_out"))


def _address(d: Decision) -> str:
    return address(d.customer, d.channel)


def _notice_sent(d: Decision, env: Env) -> str | None:
    """The alert whose notice this customer was sent: this one, the outage it is a child of, or one merged
    into it (an incident that turned out to be part of this one: evidence ``merged_from``)."""
    ev = d.alert.get("evidence") or {}
    for aid in (d.alert["alert_id"], ev.get("parent_alert_id"), *(ev.get("merged_from") or ())):
        if aid and (env.outbox(f"{aid}|{d.customer_id}|{d.channel}") or {}).get("status") == "sent":
            return aid
    return None


def _notice_in_flight(d: Decision, env: Env) -> str | None:
    """The alert (this one for "power is back", else the outage it is a child of or one merged into it)
    whose notice to this customer is claimed and not yet settled: its outcome is not known yet."""
    ev = d.alert.get("evidence") or {}
    own = (d.alert["alert_id"],) if d.phase == "resolved" else ()
    for aid in (*own, ev.get("parent_alert_id"), *(ev.get("merged_from") or ())):
        if aid and (env.outbox(f"{aid}|{d.customer_id}|{d.channel}") or {}).get("state") == "claimed":
            return aid
    return None


async def _track_outage(d: Decision, env: Env) -> None:
    """Keep the customer's open outages (for inhibit); when the last one ends, release what it held."""
    c = env.contact(d.customer_id)
    before = set(c.get("outages") or ())
    outs = set(before)
    aid = d.alert["alert_id"]
    # each outage's time in event time, for inhibit: {"start", "end"} (end None: open, or not known)
    windows = {k: dict(v) for k, v in (c.get("outage_windows") or {}).items()}
    if d.phase in ("resolved", "closed"):
        parent = (d.alert.get("evidence") or {}).get("parent_alert_id")
        outs -= {aid, parent}
        windows[aid] = {"start": d.alert.get("started_at"), "end": d.alert.get("resolved_at")}
        if parent in windows:  # this customer's power was out from the parent's start to this end
            windows[parent]["end"] = d.alert.get("resolved_at")
    elif d.alert.get("status") in ("open", "acknowledged"):
        outs.add(aid)
        windows[aid] = {"start": d.alert.get("started_at"), "end": None}
    windows = dict(list(windows.items())[-OUTAGE_WINDOWS:])
    if outs != before or windows != (c.get("outage_windows") or {}):
        env.set_contact(d.customer_id, {**c, "outages": sorted(outs), "outage_windows": windows})
        if not outs and outs != before:
            await env.release_held(d.customer_id, "outage")


def _render_into(d: Decision, env: Env) -> None:
    p, cust, alert = _policy(env), d.customer, d.alert
    d.record["template"] = f"{alert.get('kind')}/{d.phase}@{templates.TEMPLATE_VERSION}"
    if d.phase == "reply":
        what = alert["kind"][len(REPLY_PREFIX):]
        text = {"help": templates.help_text, "still_out": templates.still_out_text,
                "rating": templates.rating_thanks_text}[what]
        d.body = text(cust, brand=p.brand)
        return
    shown = dict(alert)
    if d.phase == "resolved":
        shown["status"] = "resolved"
    usage = env.usage(d.customer_id)
    if d.channel == "email":
        d.subject, d.body = templates.render_email(shown, cust, usage=usage, brand=p.brand)
        return
    d.body = templates.render(shown, cust, brand=p.brand, usage=usage, max_segments=p.max_segments)
    if d.channel == "webhook":
        d.data = {"notification_id": d.record["notification_id"], "customer_id": d.customer_id,
                  "phase": d.phase, "text": d.body, "alert": _for_one_customer(alert)}


def _for_one_customer(alert: dict) -> dict:
    """The alert as one customer may see it: no other customers' ids."""
    keep = ("alert_id", "kind", "severity", "status", "scope", "started_at", "detected_at", "resolved_at")
    out = {k: alert.get(k) for k in keep}
    out["evidence"] = {k: v for k, v in (alert.get("evidence") or {}).items() if "customer" not in k}
    return out


async def _reconcile(d: Decision, env: Env) -> str:
    """A claim without an outcome: a worker died (or lost the partition) between claiming and recording.
    Settled with the provider, never decided anew: found -> recorded sent; proven absent -> sent now
    (unless opted out meanwhile); unknown -> the claim stays and the request comes back later."""
    notifier = env.notifier(d.channel)
    if getattr(notifier, "idempotent", False):
        return GO  # re-sending with the same key cannot reach the customer twice
    d.body = d.claim.get("body")
    if d.body is None:
        _render_into(d, env)
    if not getattr(notifier, "reconcilable", True):
        return d.stop(RECORD, "failed", "outcome unknown after a restart, not resent: the channel cannot "
                                        "be asked what it accepted")
    if not _owns(env):
        return _fenced(d)
    p = _policy(env)
    at = d.claim.get("at", 0)
    until = d.claim.get("until", at + p.send_deadline_s + _attempt_s(notifier))
    outcome, found, why = await _settle(d, env, until + p.list_lag_s + WORKER_SKEW_S)
    if outcome == "sent":
        later = d.request.get("released_settle")
        d.record.update(status="sent", provider_message_id=found.provider_message_id,
                        reason="reconciled: the provider had it" if later else "reconciled: sent before a restart")
        return GO
    if outcome == "unsettled":
        return _unsettled(d, env, why)
    if _opted_out(d, env):
        d.body = None
        return d.stop(RECORD, "suppressed", "opted_out")
    return GO


#: outages whose time a customer's contact state keeps (the latest)
OUTAGE_WINDOWS = 20


def _epoch(text: str | None) -> float | None:
    """Epoch seconds of an RFC 3339 time, None when there is none (or it cannot be read)."""
    try:
        return parse_datetime(text).timestamp() if text else None
    except ValueError:
        return None


#: how many lookups one settling makes at most before it gives the claim back to be settled later
SETTLE_LOOKUPS = 6
#: how far the clocks of two workers may disagree (a claim's ``until`` is the claiming worker's clock)
WORKER_SKEW_S = 5.0
#: message ids remembered per customer, so a lookup never takes an earlier message for this one
KNOWN_SIDS = 50
#: an attempt lasts at most this long when the notifier does not say (``timeout_s``)
DEFAULT_ATTEMPT_S = 15.0


async def _settle(d: Decision, env: Env, absent_after: float) -> tuple[str, Any, str | None]:
    """Look the claimed message up at the provider: ``("sent", delivery, None)``, ``("absent", None,
    None)`` -- only once the provider's list, read after ``absent_after`` (no attempt in flight and the
    list's lag past), does not have it -- or ``("unsettled", None, why)``. Failed lookups (429, 5xx,
    timeouts) are retried with back-off under the send deadline; waiting for ``absent_after`` happens here
    when it is near, else the claim is given back to be settled later."""
    p, notifier = _policy(env), env.notifier(d.channel)
    deadline = time.monotonic() + p.send_deadline_s
    exclude = tuple(env.contact(d.customer_id).get("sids") or ())
    delay, why = 1.0, None
    for _ in range(SETTLE_LOOKUPS):
        try:
            found = await notifier.find_sent(_address(d), d.body, d.claim.get("at", 0), exclude=exclude)
        except NotifierError as exc:
            why = f"provider lookup failed: {exc}"
            if not exc.retryable:
                break
            wait = delay * (0.5 + random.random())
            delay *= 2
        else:
            if found is not None:
                return "sent", found, None
            left = absent_after - env.now()
            if left <= 0:
                return "absent", None, None
            why = f"not listed by the provider yet; absent only if still not listed at {_rfc3339(absent_after)}"
            wait = left + 0.5
        if time.monotonic() + wait >= deadline:
            break
        await asyncio.sleep(wait)
    return "unsettled", None, why


def _settle_interval(env: Env) -> float:
    """How long an unsettled claim (or what waits for one) is held before it is looked at again."""
    return max(5.0, min(60.0, _policy(env).list_lag_s))


def _unsettled(d: Decision, env: Env, why: str | None) -> str:
    """The claim stays as it is (neither sent again nor given up): the request is held and comes back
    through the path, to be settled with the provider then."""
    d.due = env.now() + _settle_interval(env)
    d.hold_why = "settle"
    return d.stop(HOLD, "deferred", f"unsettled, checked again at {_rfc3339(d.due)}: {why}")


def _owns(env: Env) -> bool:
    owns = getattr(env, "owns", None)
    return True if owns is None else bool(owns())


def _fenced(d: Decision) -> str:
    """This worker no longer owns the partition: nothing more is done here; the new owner re-reads the
    request, finds the claim (if any) and settles it."""
    d.record.update(status=None, reason="fenced: the partition moved to another worker")
    return DROP


def _was_fenced(d: Decision) -> bool:
    return str(d.record.get("reason") or "").startswith("fenced")


def _attempt_s(notifier: Any) -> float:
    return float(getattr(notifier, "timeout_s", None) or DEFAULT_ATTEMPT_S)
