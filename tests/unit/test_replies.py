"""Status callbacks and customer replies: the rules the webhook endpoints and the replies stage apply."""

from __future__ import annotations

import pytest
from twilio.request_validator import RequestValidator

from notifiers.replies import SEEN_REPLIES, advance_status, answer_reply, parse_reply, signature_ok

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


# ------------------------------------------------------------------------- what a customer's reply does
SID = "SM" + "f" * 32


def inbound(body, sid=SID):
    return {"sid": sid, "body": body, "received_at": 1788000000.0}


def test_stop_opts_out_and_is_not_answered_start_opts_back_in():
    out = answer_reply("C1", inbound("STOP"), None, {"customer_id": "C1", "meter_id": "M1", "opted_out": False})
    assert out.contact == {"opted_out": True, "seen": [SID]} and out.feedback["intent"] == "opt_out"
    assert out.feedback["opted_out"] is True and out.answer is None and out.reopen is None
    back = answer_reply("C1", inbound("START", "SM2"), out.contact, {"customer_id": "C1", "meter_id": "M1"})
    assert back.contact["opted_out"] is False and back.contact["seen"] == [SID, "SM2"]


def test_a_reply_seen_before_does_nothing_and_only_the_last_ones_are_remembered():
    contact = {"seen": [f"SM{i}" for i in range(SEEN_REPLIES)]}
    assert answer_reply("C1", inbound("HELP", "SM3"), contact, None) is None
    seen = answer_reply("C1", inbound("HELP"), contact, None).contact["seen"]
    assert seen == [f"SM{i}" for i in range(1, SEEN_REPLIES)] + [SID]


@pytest.mark.parametrize("body, kind", [("HELP", "reply_help"), ("4", "reply_rating"),
                                        ("still out", "reply_still_out")])
def test_help_a_rating_and_still_out_are_answered_through_the_path_unless_opted_out(body, kind):
    cust = {"customer_id": "C1", "meter_id": "M1", "opted_out": False}
    out = answer_reply("C1", inbound(body), {"last_alert_id": "A1"}, cust)
    assert out.answer == {"customer_id": "C1", "alert": {
        "alert_id": f"reply:{SID}", "kind": kind, "severity": "info", "status": "open",
        "scope": {"level": "customer", "id": "C1"}, "customer_ids": ["C1"]}}
    assert out.feedback["alert_id"] == "A1"
    assert answer_reply("C1", inbound(body), {"opted_out": True}, cust).answer is None      # STOP by SMS
    assert answer_reply("C1", inbound(body), None, {**cust, "opted_out": True}).answer is None  # in the record
    assert answer_reply("C1", inbound("thanks"), None, cust).answer is None                  # not a question


def test_still_out_after_a_message_reopens_that_outage_for_the_customers_meter():
    out = answer_reply("C1", inbound("OUT"), {"last_alert_id": "outage:feeder:F1:x"},
                       {"customer_id": "C1", "meter_id": "M7"})
    assert out.reopen == {"action": "reopen", "alert_id": "outage:feeder:F1:x", "customer_id": "C1", "meter_id": "M7",
                          "at": out.feedback["received_at"], "author": "customer",
                          "reason": "customer reports power still off"}
    assert answer_reply("C1", inbound("OUT"), {}, {"customer_id": "C1", "meter_id": "M7"}).reopen is None
    rating = answer_reply("C1", inbound("4"), {"last_alert_id": "A1"}, {"customer_id": "C1", "meter_id": "M7"})
    assert rating.reopen is None
