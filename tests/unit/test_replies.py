"""Status callbacks and customer replies: the rules the webhook endpoints apply."""

from __future__ import annotations

import pytest
from twilio.request_validator import RequestValidator

from notifiers.replies import advance_status, parse_reply, signature_ok

TOKEN = "12345678901234567890123456789012"
URL = "https://gridwatch.example/twilio/status"
PARAMS = {"MessageSid": "SM" + "a" * 32, "MessageStatus": "delivered", "To": "+8613800138000"}


def test_a_signed_request_passes_and_anything_else_is_refused():
    good = RequestValidator(TOKEN).compute_signature(URL, PARAMS)
    assert signature_ok(TOKEN, URL, PARAMS, good)
    assert not signature_ok(TOKEN, URL, PARAMS, None)                                  # unsigned
    assert not signature_ok(TOKEN, URL, {**PARAMS, "MessageStatus": "failed"}, good)   # tampered
    assert not signature_ok(TOKEN, URL + "?x=1", PARAMS, good)                         # another URL
    assert not signature_ok("another-token", URL, PARAMS, good)                         # forged


@pytest.mark.parametrize("current, incoming, expected", [
    (None, "queued", "queued"),
    ("queued", "sent", "sent"),
    ("sent", "delivered", "delivered"),
    ("queued", "delivered", "delivered"),      # skipped steps are fine
    ("delivered", "sent", None),               # late, out of order
    ("delivered", "delivered", None),          # duplicate
    ("delivered", "undelivered", None),        # the first outcome stands
    ("sent", "undelivered", "undelivered"),
    ("sent", "sending", None),
    ("sent", "no-such-status", None),
])
def test_status_only_moves_forward(current, incoming, expected):
    assert advance_status(current, incoming) == expected


@pytest.mark.parametrize("body, intent, rating", [
    ("STOP", "stop", None), ("stop ", "stop", None), ("Unsubscribe", "stop", None), ("退订", "stop", None),
    ("TD", "stop", None), ("ｔｄ", "stop", None),           # full-width, as Chinese keyboards type it
    ("START", "start", None), ("unstop", "start", None),
    ("HELP", "help", None), ("帮助", "help", None),
    ("OUT", "still_out", None), ("still out", "still_out", None), ("Still out!", "still_out", None),
    ("还没来电", "still_out", None),
    ("5", "rating", 5), ("4/5", "rating", 4), ("3 stars", "rating", 3), ("2分", "rating", 2),
    ("6", "other", None), ("stop sending me these at night", "other", None), ("", "other", None),
])
def test_replies_are_understood(body, intent, rating):
    r = parse_reply(body)
    assert (r.intent, r.rating) == (intent, rating)
