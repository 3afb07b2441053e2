"""``gridwatch webhooks``: signed status callbacks and inbound messages are published, anything else is 403."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from contextlib import asynccontextmanager

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

from gridwatch import config as names
from gridwatch.config import Settings
from gridwatch.contract import check
from notifiers.privacy import mask_phone
from notifiers.replies import feedback_record, parse_reply
from devtools.sandbox import SANDBOX_ACCOUNT_SID, STATE
from devtools.sandbox import make_app as make_sandbox
from streams.webhooks import EMPTY_TWIML, INBOUND_PATH, STATUS_PATH, auth_token, make_app
from tests.unit.test_sms import served

PUBLIC = "https://hooks.gridwatch.example"
CUSTOMER = "+8613812348000"
OURS = "+15005550006"


def settings(**kw) -> Settings:
    return dataclasses.replace(Settings(), webhook_url=PUBLIC, topic_prefix="t.", twilio_account_sid=None,
                               twilio_auth_token=None, **kw)


@asynccontextmanager
async def webhooks(s: Settings | None = None):
    """The webhook app on a free port; yields (base URL, published records)."""
    published: list[tuple[str, bytes, dict]] = []

    async def publish(topic, key, value):
        published.append((topic, key, json.loads(value)))

    async with served(make_app(s or settings(), publish)) as url:
        yield url, published


def inbound_form(body="STOP", **extra) -> dict:
    return {"AccountSid": SANDBOX_ACCOUNT_SID, "ApiVersion": "2010-04-01", "Body": body, "From": CUSTOMER,
            "MessageSid": "SM" + "b" * 32, "NumMedia": "0", "SmsSid": "SM" + "b" * 32, "To": OURS, **extra}


def sign(path: str, form: dict, token: str | None = None) -> str:
    return RequestValidator(token or auth_token(settings())).compute_signature(PUBLIC + path, form)


async def post(url: str, form: dict, signature: str | None):
    headers = {"X-Twilio-Signature": signature} if signature else {}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=form, headers=headers) as r:
            return r.status, r.headers.get("Content-Type", ""), await r.text()


def test_a_signed_inbound_message_is_published_keyed_by_sender_and_answered_with_empty_twiml():
    async def go():
        async with webhooks() as (url, published):
            form = inbound_form("退订")
            return await post(url + INBOUND_PATH, form, sign(INBOUND_PATH, form)), published

    (status, ctype, text), published = asyncio.run(go())
    assert status == 200 and ctype.startswith("text/xml") and text == EMPTY_TWIML
    ((topic, key, event),) = published
    assert topic == "t." + names.INBOUND and key == CUSTOMER.encode()
    assert (event["type"], event["sid"], event["from"], event["to"], event["body"]) == (
        "inbound", "SM" + "b" * 32, CUSTOMER, OURS, "退订")


@pytest.mark.parametrize("how", ["unsigned", "other token", "tampered body", "signed for the status URL"])
def test_an_unsigned_or_forged_inbound_message_is_refused_and_not_published(how):
    form = inbound_form("START")
    signature = {"unsigned": None,
                 "other token": sign(INBOUND_PATH, form, token="not-our-token"),
                 "tampered body": sign(INBOUND_PATH, {**form, "Body": "STOP"}),
                 "signed for the status URL": sign(STATUS_PATH, form)}[how]

    async def go():
        async with webhooks() as (url, published):
            return await post(url + INBOUND_PATH, form, signature), published

    (status, _, _), published = asyncio.run(go())
    assert status == 403 and published == []


def test_a_signed_inbound_message_without_a_sender_is_a_bad_request():
    form = {k: v for k, v in inbound_form().items() if k != "From"}

    async def go():
        async with webhooks() as (url, published):
            return await post(url + INBOUND_PATH, form, sign(INBOUND_PATH, form)), published

    (status, _, _), published = asyncio.run(go())
    assert status == 400 and published == []


def test_status_callbacks_still_work_alongside():
    form = {"MessageSid": "SM" + "c" * 32, "MessageStatus": "delivered", "To": CUSTOMER}

    async def go():
        async with webhooks() as (url, published):
            good = await post(url + STATUS_PATH, form, sign(STATUS_PATH, form))
            forged = await post(url + STATUS_PATH, form, sign(INBOUND_PATH, form))
            return good[0], forged[0], published

    good, forged, published = asyncio.run(go())
    assert (good, forged) == (204, 403)
    assert [(t, e["status"]) for t, _, e in published] == [("t." + names.PROVIDER_EVENTS, "delivered")]


def test_the_sandbox_delivers_a_reply_signed_to_the_inbound_webhook():
    """A reply to a message in the sandbox reaches the webhook as Twilio would send it, and is accepted."""
    async def go():
        s = dataclasses.replace(settings(), webhook_url=None)  # behind no proxy: the request URL is signed
        async with webhooks(s) as (hook, published):
            sandbox = make_sandbox(SANDBOX_ACCOUNT_SID, auth_token(s))
            state = sandbox[STATE]
            state.records.append({"sid": "SM" + "d" * 32, "to": CUSTOMER, "from": OURS, "body": "Low voltage",
                                  "messaging_service_sid": None,
                                  "sandbox": {"status_callback": hook + STATUS_PATH}})
            async with served(sandbox) as url, aiohttp.ClientSession() as http:
                async with http.post(url + "/sandbox/reply", json={"to_sid": "SM" + "d" * 32, "body": "STOP"}) as r:
                    answer = (r.status, await r.json())
                async with http.post(url + "/sandbox/reply", json={"to_sid": "SM" + "0" * 32, "body": "x"}) as r:
                    unknown = r.status
                async with http.get(url + "/sandbox/reply", params={"to_sid": "SM" + "d" * 32}) as r:
                    page = await r.text()
                async with http.post(url + "/sandbox/reply", data={"to_sid": "SM" + "d" * 32, "body": "5"},
                                     allow_redirects=False) as r:
                    from_page = (r.status, r.headers.get("Location"))
                async with http.get(url + "/sandbox/messages") as r:
                    listed = await r.json()
            return answer, unknown, page, from_page, listed, published

    (status, answer), unknown, page, from_page, listed, published = asyncio.run(go())
    assert status == 200 and answer["webhook_status"] == 200 and answer["webhook_body"] == EMPTY_TWIML
    assert unknown == 404
    assert CUSTOMER not in page and mask_phone(CUSTOMER) in page and "Low voltage" in page
    assert from_page == (303, "/")
    assert [e["body"] for _, _, e in published] == ["STOP", "5"]
    assert all(k == CUSTOMER.encode() and e["to"] == OURS for _, k, e in published)
    assert [(m["body"], m["webhook_status"]) for m in listed["inbound"]] == [("STOP", 200), ("5", 200)]
    assert published[0][2]["sid"] == answer["sid"]


@pytest.mark.parametrize("body, intent, rating", [("STOP", "opt_out", None), ("TD", "opt_out", None),
                                                  ("START", "opt_in", None), ("HELP", "help", None),
                                                  ("still out", "still_out", None), ("4", "rating", 4),
                                                  ("thanks", "other", None)])
def test_feedback_records_follow_the_contract(body, intent, rating):
    inbound = {"sid": "SM" + "e" * 32, "body": body, "received_at": 1767225600.5}
    known = feedback_record("C000123", inbound, parse_reply(body), alert_id="A1", opted_out=intent == "opt_out")
    unknown = feedback_record(None, inbound, parse_reply(body), from_masked=mask_phone(CUSTOMER))
    for rec in (known, unknown):
        assert check("feedback", rec) is rec
        assert (rec["intent"], rec["rating"]) == (intent, rating)
        assert CUSTOMER not in json.dumps(rec)
    assert known["from_masked"] is None and known["alert_id"] == "A1"
    assert unknown["customer_id"] is None and unknown["from_masked"] == mask_phone(CUSTOMER)
    assert known["received_at"] == "2026-01-01T00:00:00.500000Z"
    assert known["feedback_id"] == unknown["feedback_id"]  # one id per inbound message
