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
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Mapping

from twilio.request_validator import RequestValidator

__all__ = ["FEEDBACK_INTENTS", "STATUS_RANK", "TERMINAL_STATUSES", "Reply", "advance_status", "parse_reply",
           "signature_ok"]


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
