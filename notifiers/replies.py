"""What comes back from the SMS provider: delivery status callbacks and customers' replies.

Plain functions, no I/O, so the webhook service and its tests share one definition of the rules:

- :func:`signature_ok`: Twilio signs every webhook request (``X-Twilio-Signature``: HMAC-SHA1 of the full
  URL and the sorted form parameters, with the account's auth token); anything unsigned or mis-signed is
  refused. The check is the twilio library's own ``RequestValidator``.
- :func:`advance_status`: status callbacks arrive out of order and more than once; a message's status only
  ever moves forward (queued → sending → sent → delivered / undelivered / failed), so a late "sent" after
  "delivered" and a repeated "delivered" change nothing.
- :func:`parse_reply`: what a customer's reply means — opt-out and opt-in keywords (Twilio's standard set,
  plus 退订 / TD for zh-CN), HELP, "OUT" / "still out" after a restoration notice, a 1–5 rating.
- :func:`answer_reply`: what a known customer's reply does — opt out or back in, its ``feedback`` record,
  whether it is answered (through the notification path) and whether it reopens an outage.
"""

from __future__ import annotations

import re
import time
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Mapping

from twilio.request_validator import RequestValidator

from gridwatch.timefmt import format_time, utc_now

__all__ = ["ANSWERED_INTENTS", "FEEDBACK_INTENTS", "SEEN_REPLIES", "STATUS_RANK", "TERMINAL_STATUSES", "Reply",
           "ReplyOutcome", "advance_status", "answer_reply", "feedback_record", "parse_reply", "signature_ok"]


def signature_ok(auth_token: str, url: str, params: Mapping[str, str], signature: str | None) -> bool:
    """True when ``signature`` is Twilio's signature of this request (full public URL + form params)."""
    if not signature or not auth_token:
        return False
    return bool(RequestValidator(auth_token).validate(url, dict(params), signature))


# Twilio's message statuses in the order a message moves through them; the last three are final.
STATUS_RANK = {"accepted": 0, "scheduled": 0, "queued": 1, "sending": 2, "sent": 3,
               "delivered": 4, "undelivered": 4, "failed": 4, "read": 5}
TERMINAL_STATUSES = frozenset({"delivered", "undelivered", "failed", "read"})


def advance_status(current: str | None, incoming: str) -> str | None:
    """The new status if ``incoming`` moves the message forward, else ``None`` (stale or duplicate).

    A final status is never replaced by another final one: the first outcome Twilio reported stands.
    """
    if incoming not in STATUS_RANK:
        return None
    if current is None:
        return incoming
    if current in TERMINAL_STATUSES and incoming != "read":
        return None
    return incoming if STATUS_RANK[incoming] > STATUS_RANK.get(current, -1) else None


# Twilio's default opt-out / opt-in / help keywords (single word, case-insensitive), and the Chinese ones.
STOP_WORDS = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "optout", "revoke",
                        "退订", "td", "t", "取消"})
START_WORDS = frozenset({"start", "yes", "unstop", "optin", "订阅", "开通"})
HELP_WORDS = frozenset({"help", "info", "帮助", "bz"})
STILL_OUT = re.compile(r"^(out|still\s*out|still\s+no\s+power|no\s+power|仍然停电|还在停电|还没来电|没电|停电)$")
_RATING = re.compile(r"^([1-5])(\s*(/\s*5|stars?|分|星))?$")


@dataclass(frozen=True)
class Reply:
    """``intent``: stop | start | help | still_out | rating | other; ``rating`` 1–5 for a rating."""
    intent: str
    rating: int | None = None

    @property
    def feedback_intent(self) -> str:
        """The intent as the ``feedback`` topic names it (opt_out, opt_in, help, still_out, rating, other)."""
        return FEEDBACK_INTENTS[self.intent]


#: parse_reply's intent -> the ``intent`` of a ``feedback`` record
FEEDBACK_INTENTS = {"stop": "opt_out", "start": "opt_in", "help": "help", "still_out": "still_out",
                    "rating": "rating", "other": "other"}


def parse_reply(body: str) -> Reply:
    text = unicodedata.normalize("NFKC", body or "").strip().lower()
    text = re.sub(r"[\s.!。！,，]+$", "", text)
    if text in STOP_WORDS:
        return Reply("stop")
    if text in START_WORDS:
        return Reply("start")
    if text in HELP_WORDS:
        return Reply("help")
    if STILL_OUT.match(text):
        return Reply("still_out")
    m = _RATING.match(text)
    if m:
        return Reply("rating", int(m.group(1)))
    return Reply("other")


#: Inbound message SIDs remembered per customer, so a webhook the provider retried counts once.
SEEN_REPLIES = 20
#: replies that get an answer: HELP (who we are, how to stop), "still out" (logged, crews told), a rating
ANSWERED_INTENTS = ("help", "still_out", "rating")




def feedback_record(customer_id: str | None, inbound: dict, reply: Reply, *, from_masked: str | None = None,
                    alert_id: str | None = None, opted_out: bool | None = None) -> dict:
    """The ``feedback`` record of one inbound SMS (``inbound`` as the webhook published it, without the
    numbers; ``reply`` from :func:`parse_reply`)."""
    return {"feedback_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"inbound|{inbound['sid']}")),
            "customer_id": customer_id, "from_masked": from_masked if customer_id is None else None,
            "channel": "sms", "provider_message_id": inbound["sid"], "body": inbound.get("body") or "",
            "intent": reply.feedback_intent, "rating": reply.rating, "alert_id": alert_id,
            "opted_out": opted_out, "received_at": format_time(inbound.get("received_at") or time.time()),
            "created_at": utc_now()}


@dataclass(frozen=True)
class ReplyOutcome:
    """What one known customer's reply does (:func:`answer_reply`); the caller sends and stores it."""
    #: the customer's ``contacts`` entry after the reply (opt-out by STOP / START, the replies seen)
    contact: dict
    #: the ``feedback`` record
    feedback: dict
    #: the notify request of the answer (through the notification path, so STOP and the outbox still
    #: apply), or None when the reply gets none
    answer: dict | None
    #: the ``gridwatch.alert-actions`` record reopening the outage ("still out" after "power is back"), or None
    reopen: dict | None


def answer_reply(customer_id: str, inbound: dict, contact: dict | None, customer: dict | None) -> ReplyOutcome | None:
    """One SMS of a known customer (``inbound`` as the webhook published it, without the numbers), given the
    customer's ``contacts`` entry and record: its opt-out, its feedback record, whether it gets an answer
    and whether it reopens an outage. None when the message was seen already (the provider retried its
    webhook).

    The answer is decided here, with the opt-out as it is after this message: a START right behind an
    opted-out customer's rating must not turn that rating's answer back on."""
    contact = dict(contact or {})
    seen = list(contact.get("seen") or [])
    if inbound["sid"] in seen:
        return None
    reply = parse_reply(inbound.get("body") or "")
    if reply.intent == "stop":
        contact["opted_out"] = True
    elif reply.intent == "start":
        contact["opted_out"] = False
    contact["seen"] = (seen + [inbound["sid"]])[-SEEN_REPLIES:]
    rec = feedback_record(customer_id, inbound, reply, alert_id=contact.get("last_alert_id"),
                          opted_out=bool((customer or {}).get("opted_out") or contact.get("opted_out")))
    answer = None
    if reply.intent in ANSWERED_INTENTS and not rec["opted_out"]:
        answer = {"customer_id": customer_id, "alert": {
            "alert_id": f"reply:{inbound['sid']}", "kind": f"reply_{reply.intent}", "severity": "info",
            "status": "open", "scope": {"level": "customer", "id": customer_id}, "customer_ids": [customer_id]}}
    reopen = None
    last = contact.get("last_alert_id")
    if reply.intent == "still_out" and last and customer:
        # "still out" after "power is back": the outage is reopened for this customer's meter
        reopen = {"action": "reopen", "alert_id": last, "customer_id": customer_id,
                  "meter_id": customer["meter_id"], "at": rec["received_at"], "author": "customer",
                  "reason": "customer reports power still off"}
    return ReplyOutcome(contact, rec, answer, reopen)
