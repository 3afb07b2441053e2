"""The inbound half of the loop on a real broker: a customer replies STOP through the SMS sandbox, the
``feedback`` topic says so, and the next alert to that customer is suppressed; START turns SMS back on."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from gridwatch.contract import check

pytestmark = pytest.mark.integration

CUSTOMER = {"customer_id": "C900001", "meter_id": "M900001", "transformer_id": "T9001", "feeder_id": "F901",
            "segment": "residential", "phone": "+8613812349001", "language": "en", "timezone": "Asia/Shanghai",
            "nominal_voltage": 220, "opted_out": False}


def alert(alert_id: str, kind: str = "undervoltage") -> dict:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"alert_id": alert_id, "kind": kind, "severity": "warning", "status": "open",
            "scope": {"level": "transformer", "id": CUSTOMER["transformer_id"]},
            "meter_ids": [CUSTOMER["meter_id"]], "customer_ids": [CUSTOMER["customer_id"]],
            "started_at": now, "detected_at": now, "resolved_at": None,
            "evidence": {"v_avg": 196.0, "standard": "GB/T 12325"}}


def post(url: str, data: bytes, headers: dict) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def reply(pipeline, **fields) -> dict:
    status, body = post(pipeline.settings.sandbox_url + "/sandbox/reply", json.dumps(fields).encode(),
                        {"Content-Type": "application/json"})
    assert status == 200, body
    answer = json.loads(body)
    assert answer["webhook_status"] == 200, answer
    return answer


def notes_of(pipeline, alert_id: str) -> list[dict]:
    return pipeline.read("notifications", lambda rs: any(n["alert_id"] == alert_id for n in rs), timeout=60)


def test_a_customer_who_replies_stop_gets_no_more_sms_until_start(pipeline):
    cid = CUSTOMER["customer_id"]
    pipeline.send("customers", cid, CUSTOMER)
    pipeline.flush()
    pipeline.read("gridwatch.phone-directory", lambda rs: rs, timeout=60)  # the customer is known by phone

    pipeline.send("alerts", "A-1", alert("A-1"))
    pipeline.flush()
    (first,) = [n for n in notes_of(pipeline, "A-1") if n["alert_id"] == "A-1"]
    assert first["status"] == "sent"
    (sms,) = pipeline.sandbox_messages()
    assert sms["to"] == CUSTOMER["phone"]

    # the customer answers STOP on their phone: the sandbox delivers it, signed, to /twilio/inbound
    stop = reply(pipeline, to_sid=sms["sid"], body="STOP")
    fb = pipeline.read("feedback", lambda rs: len(rs) >= 1, timeout=60)
    (rec,) = fb
    check("feedback", rec)
    assert (rec["customer_id"], rec["intent"], rec["opted_out"], rec["alert_id"]) == (cid, "opt_out", True, "A-1")
    assert rec["provider_message_id"] == stop["sid"] and rec["from_masked"] is None
    assert CUSTOMER["phone"] not in json.dumps(rec)

    pipeline.send("alerts", "A-2", alert("A-2"))
    pipeline.flush()
    (second,) = [n for n in notes_of(pipeline, "A-2") if n["alert_id"] == "A-2"]
    assert (second["status"], second["reason"], second["body"], second["provider_message_id"]) == (
        "suppressed", "opted_out", None, None)
    assert len(pipeline.sandbox_messages()) == 1  # no SMS for A-2

    # a rating and a number nobody has: both are feedback, the stranger only by a masked number
    reply(pipeline, to_sid=sms["sid"], body="4")
    reply(pipeline, **{"from": "+8613900000000", "body": "hello?"})
    reply(pipeline, to_sid=sms["sid"], body="START")
    fb = pipeline.read("feedback", lambda rs: len(rs) >= 4, timeout=60)
    for r in fb:
        check("feedback", r)
    mine = [r for r in fb if r["customer_id"] == cid]
    assert [(r["intent"], r["rating"], r["opted_out"], r["alert_id"]) for r in mine] == [
        ("opt_out", None, True, "A-1"), ("rating", 4, True, "A-1"), ("opt_in", None, False, "A-1")]
    (stranger,) = [r for r in fb if r["customer_id"] is None]
    assert stranger["intent"] == "other" and stranger["from_masked"] == "+86139****0000"
    assert "+8613900000000" not in json.dumps(fb)

    # (another kind: the same one again for the same transformer within 12 h would be a duplicate of A-1)
    pipeline.send("alerts", "A-3", alert("A-3", "overvoltage"))
    pipeline.flush()
    (third,) = [n for n in notes_of(pipeline, "A-3") if n["alert_id"] == "A-3"]
    assert third["status"] == "sent"
    assert [m["to"] for m in pipeline.sandbox_messages()] == [CUSTOMER["phone"]] * 2

    # the worker's log names customers, never their numbers
    assert CUSTOMER["phone"] not in pipeline.log_tail("worker", 2000)
    assert CUSTOMER["phone"] not in pipeline.log_tail("sandbox", 2000)
    assert CUSTOMER["phone"] not in pipeline.log_tail("webhooks", 2000)


def test_a_forged_inbound_message_is_refused(pipeline):
    from twilio.request_validator import RequestValidator

    url = pipeline.settings.webhook_url + "/twilio/inbound"
    form = {"From": CUSTOMER["phone"], "To": "+15005550006", "Body": "STOP", "MessageSid": "SM" + "f" * 32}
    data = urllib.parse.urlencode(form).encode()
    assert post(url, data, {})[0] == 403
    forged = RequestValidator("not-our-token").compute_signature(url, form)
    assert post(url, data, {"X-Twilio-Signature": forged})[0] == 403
    assert pipeline.settle("gridwatch.inbound", seconds=1.0) == []  # nothing was published
