"""TwilioSms (the real twilio client) against the local sandbox, started per test on a free port."""

from __future__ import annotations

import argparse
import asyncio
import json
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from gridwatch.config import Settings
from notifiers.base import Delivery, Notifier, NotifierError, is_retryable
from notifiers.privacy import mask_phone, scrub
from devtools.sandbox import (SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, STATE, make_app, parse_fail,
                               register)
from notifiers.sms import SANDBOX_FROM_NUMBER, TwilioSms

# twilio 9.13's AsyncTwilioHttpClient uses aiohttp.BasicAuth / auth=, which aiohttp 3.14 deprecates.
pytestmark = [
    pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning"),
]

SID, TOKEN = SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN
FROM = "+15005550006"
TO = "+8613812348000"
MG = "MG" + "0123456789abcdef" * 2


@asynccontextmanager
async def served(app: web.Application):
    """``app`` on 127.0.0.1, a free port; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def sandbox(**kwargs):
    """The sandbox app on 127.0.0.1, a free port; yields (base_url, state)."""
    app = make_app(kwargs.pop("account_sid", SID), kwargs.pop("auth_token", TOKEN), **kwargs)
    async with served(app) as url:
        yield url, app[STATE]


def run(coro):
    return asyncio.run(coro)


def auth_header(user=SID, password=TOKEN):
    return {"Authorization": aiohttp.encode_basic_auth(user, password)}


async def send_expecting_error(sms: TwilioSms, to: str, body: str = "x") -> NotifierError:
    try:
        await sms.send(to, body)
    except NotifierError as exc:
        return exc
    finally:
        await sms.close()
    raise AssertionError("send did not fail")


# --------------------------------------------------------------------------------------------- sending

def test_send_stores_exactly_that_message_and_returns_the_sid():
    async def go():
        async with sandbox() as (url, state):
            sms = TwilioSms(SID, TOKEN, from_number=FROM, base_url=url, validity_period_s=900,
                            status_callback="https://example.invalid/cb")
            try:
                delivery = await sms.send(TO, "Low voltage since 14:30. 电压偏低")
            finally:
                await sms.close()
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{url}/sandbox/messages") as resp:
                    listed = await resp.json()
            return delivery, state.records, listed

    delivery, records, listed = run(go())
    assert isinstance(delivery, Delivery)
    assert delivery.status == "queued"
    assert delivery.provider_message_id.startswith("SM") and len(delivery.provider_message_id) == 34
    assert len(records) == 1
    rec = records[0]
    assert rec["sid"] == delivery.provider_message_id
    assert (rec["to"], rec["from"], rec["body"]) == (TO, FROM, "Low voltage since 14:30. 电压偏低")
    assert rec["account_sid"] == SID and rec["api_version"] == "2010-04-01"
    assert rec["status"] == "queued" and rec["error_code"] is None and rec["direction"] == "outbound-api"
    assert rec["num_segments"] == "1" and rec["sandbox"]["encoding"] == "UCS-2"
    assert rec["sandbox"]["validity_period"] == 900
    assert rec["sandbox"]["status_callback"] == "https://example.invalid/cb"
    assert rec["uri"] == f"/2010-04-01/Accounts/{SID}/Messages/{rec['sid']}.json"
    assert rec["date_created"].endswith("+0000")  # RFC 2822
    assert [m["sid"] for m in listed["messages"]] == [delivery.provider_message_id]


def test_messaging_service_wins_over_from_and_client_can_fetch_and_list():
    async def go():
        async with sandbox() as (url, state):
            sms = TwilioSms(SID, TOKEN, from_number=FROM, messaging_service_sid=MG, base_url=url)
            try:
                d1 = await sms.send(TO, "one")
                await sms.send("+15551234567", "two")
                client = sms._ensure_client()
                assert client.api.base_url == url
                fetched = await client.messages(d1.provider_message_id).fetch_async()
                listed = await client.messages.list_async(to=TO)
            finally:
                await sms.close()
            return d1, state.records, fetched, listed

    d1, records, fetched, listed = run(go())
    assert records[0]["from"] is None and records[0]["messaging_service_sid"] == MG
    assert fetched.sid == d1.provider_message_id and fetched.body == "one"
    assert [m.sid for m in listed] == [d1.provider_message_id]


def test_wrong_token_is_a_permanent_error_without_the_token():
    secret = "wrong-token-0123456789abcdef"

    async def go():
        async with sandbox() as (url, state):
            err = await send_expecting_error(TwilioSms(SID, secret, from_number=FROM, base_url=url), TO)
            return err, state.records

    err, records = run(go())
    assert err.status == 401 and err.code == 20003 and err.retryable is False
    assert secret not in str(err) and secret not in repr(err)
    assert TOKEN not in str(err)
    assert TO not in str(err)
    assert records == []


def test_path_account_must_match_the_authenticated_one():
    other = "AC" + "f" * 32

    async def go():
        async with sandbox() as (url, _):
            async with aiohttp.ClientSession(headers=auth_header()) as http:
                async with http.post(f"{url}/2010-04-01/Accounts/{other}/Messages.json",
                                     data={"To": TO, "From": FROM, "Body": "x"}) as resp:
                    return resp.status, await resp.json()

    status, payload = run(go())
    assert status == 401
    assert payload == {"code": 20003, "message": "Authenticate",
                       "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}


@pytest.mark.parametrize("rule, code, status, retryable", [
    ("21610", 21610, 400, False),
    ("21211", 21211, 400, False),
    ("21612", 21612, 400, False),
    ("21614", 21614, 400, False),
    ("21635", 21635, 400, False),
    ("500", 20500, 500, True),
    ("503", 20503, 503, True),
    ("429", 20429, 429, True),
    ("20429", 20429, 429, True),
])
def test_fail_list_errors_map_to_retryable_or_not(rule, code, status, retryable):
    number = "+15005550001"

    async def go():
        async with sandbox(fail=[f"{number}={rule}"]) as (url, state):
            err = await send_expecting_error(TwilioSms(SID, TOKEN, from_number=FROM, base_url=url), number)
            return err, state

    err, state = run(go())
    assert (err.code, err.status, err.retryable) == (code, status, retryable)
    assert number not in str(err)
    assert state.records == []
    assert state.rejected[-1]["code"] == code and state.rejected[-1]["to"] == mask_phone(number)


def test_fail_only_first_attempts_then_accept():
    async def go():
        async with sandbox(fail={"+15005550002": "500x2"}) as (url, state):
            sms = TwilioSms(SID, TOKEN, from_number=FROM, base_url=url)
            outcomes = []
            try:
                for _ in range(3):
                    try:
                        outcomes.append((await sms.send("+15005550002", "retry me")).status)
                    except NotifierError as exc:
                        outcomes.append(exc.retryable)
            finally:
                await sms.close()
            return outcomes, len(state.records), len(state.rejected)

    assert run(go()) == ([True, True, "queued"], 1, 2)


def test_missing_from_is_a_permanent_error():
    async def go():
        async with sandbox() as (url, _):
            return await send_expecting_error(TwilioSms(SID, TOKEN, base_url=url), TO)

    err = run(go())
    assert err.code == 21603 and err.status == 400 and err.retryable is False


def test_invalid_to_is_permanent_and_not_quoted_in_full():
    bad_to = "8613812348000"  # no '+': not E.164

    async def go():
        async with sandbox() as (url, _):
            return await send_expecting_error(TwilioSms(SID, TOKEN, from_number=FROM, base_url=url), bad_to)

    err = run(go())
    assert err.code == 21211 and err.retryable is False
    assert bad_to not in str(err)


def test_connection_refused_is_retryable():
    async def go():
        async with sandbox() as (url, _):
            pass  # stopped again: nothing listens on that port any more
        return await send_expecting_error(TwilioSms(SID, TOKEN, from_number=FROM, base_url=url), TO)

    err = run(go())
    assert err.retryable is True and err.status is None and err.code is None
    assert err.maybe_sent is False  # never connected: safe to retry


def test_timeout_is_retryable_but_may_have_sent():
    async def slow(request):
        await asyncio.sleep(5)
        return web.json_response({})

    async def go():
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", slow)
        async with served(app) as url:
            sms = TwilioSms(SID, TOKEN, from_number=FROM, base_url=url, timeout_s=0.3)
            return await send_expecting_error(sms, TO)

    err = run(go())
    assert err.retryable is True and err.status is None
    assert err.maybe_sent is True  # the provider may have taken it: a blind retry could send twice


# --------------------------------------------------------------------------------------------- sandbox

def test_sandbox_validation_codes():
    cases = [
        ({"From": FROM, "Body": "x"}, 21604),
        ({"To": TO, "Body": "x"}, 21603),
        ({"To": TO, "From": FROM}, 21602),
        ({"To": TO, "From": FROM, "Body": "x" * 1601}, 21617),
        ({"To": "+0123456", "From": FROM, "Body": "x"}, 21211),
        ({"To": "+86 138 1234 8000", "From": FROM, "Body": "x"}, 21211),
        ({"To": TO, "From": "not a sender!", "Body": "x"}, 21606),
        ({"To": TO, "MessagingServiceSid": "MG123", "Body": "x"}, 21705),
    ]

    async def go():
        async with sandbox() as (url, state):
            out = []
            async with aiohttp.ClientSession(headers=auth_header()) as http:
                for data, _ in cases:
                    async with http.post(f"{url}/2010-04-01/Accounts/{SID}/Messages.json", data=data) as r:
                        out.append((r.status, await r.json()))
                async with http.post(f"{url}/2010-04-01/Accounts/{SID}/Messages.json",
                                     data={"To": TO, "From": "GridWatch", "Body": "ok"}) as r:
                    ok = r.status
            return out, ok, state.records

    out, ok, records = run(go())
    for (data, code), (status, payload) in zip(cases, out):
        assert status == 400, data
        assert payload["code"] == code, data
        assert payload["status"] == 400 and payload["more_info"].endswith(f"/errors/{code}")
        assert payload["message"]
    assert ok == 201 and len(records) == 1  # an alphanumeric sender ID is a valid From


def test_sandbox_unauthenticated_requests_get_twilio_401():
    async def go():
        async with sandbox() as (url, _):
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{url}/2010-04-01/Accounts/{SID}/Messages.json",
                                     data={"To": TO, "From": FROM, "Body": "x"}) as r:
                    return r.status, await r.json(), r.headers.get("WWW-Authenticate")

    status, payload, challenge = run(go())
    assert status == 401 and payload["code"] == 20003 and challenge.startswith("Basic")


def test_sandbox_fetch_unknown_message_is_20404_and_delete_clears():
    async def go():
        async with sandbox() as (url, state):
            sms = TwilioSms(SID, TOKEN, from_number=FROM, base_url=url)
            try:
                await sms.send(TO, "x")
            finally:
                await sms.close()
            async with aiohttp.ClientSession(headers=auth_header()) as http:
                async with http.get(f"{url}/2010-04-01/Accounts/{SID}/Messages/SM{'0' * 32}.json") as r:
                    missing = (r.status, (await r.json())["code"])
                async with http.delete(f"{url}/sandbox/messages") as r:
                    cleared = await r.json()
                async with http.get(f"{url}/sandbox/messages") as r:
                    after = await r.json()
            return missing, cleared, after

    missing, cleared, after = run(go())
    assert missing == (404, 20404)
    assert cleared == {"cleared": 1}
    assert after == {"messages": [], "rejected": [], "inbound": []}


def test_html_page_escapes_bodies_and_masks_numbers():
    async def go():
        async with sandbox() as (url, _):
            sms = TwilioSms(SID, TOKEN, from_number=FROM, base_url=url)
            try:
                await sms.send(TO, "<script>alert('x')</script> & more")
                await sms.send("+15551234567", "second")
            finally:
                await sms.close()
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{url}/") as r:
                    return r.status, r.headers["Content-Type"], await r.text()

    status, ctype, page = run(go())
    assert status == 200 and ctype.startswith("text/html")
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in page
    assert TO not in page and mask_phone(TO) in page
    assert 'http-equiv="refresh" content="2"' in page
    assert "http://" not in page.replace("http-equiv", "") and "https://" not in page  # no CDN
    assert page.index("second") < page.index("&lt;script&gt;")  # newest first


def test_store_appends_json_lines(tmp_path):
    store = tmp_path / "sms.jsonl"

    async def go():
        async with sandbox(store=store) as (url, _):
            sms = TwilioSms(SID, TOKEN, from_number=FROM, base_url=url)
            try:
                await sms.send(TO, "one")
                await sms.send(TO, "two €")
            finally:
                await sms.close()

    run(go())
    lines = [json.loads(line) for line in store.read_text("utf-8").splitlines()]
    assert [(x["to"], x["body"]) for x in lines] == [(TO, "one"), (TO, "two €")]
    assert lines[1]["sandbox"]["encoding"] == "GSM-7"


def test_parse_fail_and_cli_registration():
    rules = parse_fail("+15005550001=21610, +15005550002=500x2")
    assert (rules["+15005550001"].code, rules["+15005550001"].status) == (21610, 400)
    assert (rules["+15005550002"].code, rules["+15005550002"].status, rules["+15005550002"].times) == (
        20500, 500, 2)
    with pytest.raises(ValueError):
        parse_fail(["15005550001=21610"])
    with pytest.raises(ValueError):
        parse_fail(["+15005550001"])

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sandbox", "--fail", "+15005550001=21610", "--fail", "+15005550003=429",
                              "--store", "x.jsonl"])
    assert (args.host, args.port, args.store) == ("127.0.0.1", 8088, "x.jsonl")
    assert args.fail == ["+15005550001=21610", "+15005550003=429"] and callable(args.func)


def test_make_app_rejects_a_malformed_account_sid():
    with pytest.raises(ValueError):
        make_app("ACnothex", "token")


# --------------------------------------------------------------------------------------------- wiring

def test_from_settings_uses_sandbox_without_real_credentials(monkeypatch):
    monkeypatch.delenv("GRIDWATCH_SANDBOX_ACCOUNT_SID", raising=False)
    monkeypatch.delenv("GRIDWATCH_SANDBOX_AUTH_TOKEN", raising=False)
    settings = Settings(sandbox_url="http://127.0.0.1:9999/", twilio_account_sid=None, twilio_auth_token=None,
                        twilio_from=None, twilio_messaging_service_sid=None)
    sms = TwilioSms.from_settings(settings, validity_period_s=600)
    assert sms.base_url == "http://127.0.0.1:9999"
    assert sms.account_sid == SID and sms.from_number == SANDBOX_FROM_NUMBER
    assert sms.validity_period_s == 600 and isinstance(sms, Notifier) and sms.channel == "sms"
    assert TOKEN not in repr(sms)

    other_sid, other_token = "AC" + "1" * 32, "env-token"
    monkeypatch.setenv("GRIDWATCH_SANDBOX_ACCOUNT_SID", other_sid)
    monkeypatch.setenv("GRIDWATCH_SANDBOX_AUTH_TOKEN", other_token)
    sms = TwilioSms.from_settings(settings)
    assert sms.account_sid == other_sid

    async def go():  # the env-configured credentials really work against a sandbox using the same ones
        async with sandbox(account_sid=other_sid, auth_token=other_token) as (url, state):
            s = TwilioSms.from_settings(Settings(sandbox_url=url, twilio_account_sid=None,
                                                 twilio_auth_token=None, twilio_from=None,
                                                 twilio_messaging_service_sid=None))
            try:
                d = await s.send(TO, "env creds")
            finally:
                await s.close()
            return d, state.records

    d, records = run(go())
    assert records[0]["sid"] == d.provider_message_id and records[0]["account_sid"] == other_sid


def test_from_settings_uses_real_twilio_when_configured():
    settings = Settings(twilio_account_sid="AC" + "2" * 32, twilio_auth_token="real-token",
                        twilio_from="+15017122661", twilio_messaging_service_sid=None)
    sms = TwilioSms.from_settings(settings)
    assert sms.base_url == "https://api.twilio.com"
    assert sms.account_sid == "AC" + "2" * 32 and sms.from_number == "+15017122661"


# --------------------------------------------------------------------------------------------- base

@pytest.mark.parametrize("status, code, expected", [
    (400, 21211, False), (400, 21610, False), (400, 21612, False), (400, 21614, False), (400, 21635, False),
    (500, 21610, False),
    (429, None, True), (429, 20429, True), (500, 20500, True), (502, None, True), (503, 20503, True),
    (None, None, True),
    (401, 20003, False), (400, 21603, False), (404, 20404, False),
])
def test_is_retryable(status, code, expected):
    assert is_retryable(status, code) is expected


def test_mask_phone_and_scrub():
    assert mask_phone("+8613812348000") == "+86138****8000"
    assert mask_phone("+15005550001") == "+1500****0001"
    assert mask_phone("") == ""
    assert "5550001" not in mask_phone("+15005550001")
    err = NotifierError("to +8613812348000 with tok s3cr3t-token", secrets=("s3cr3t-token",), code=1)
    assert "+8613812348000" not in str(err) and "s3cr3t-token" not in str(err)
    assert "+86138****8000" in str(err)
    assert scrub("at 2024-05-01T10:00:00Z on 127.0.0.1:8088") == "at 2024-05-01T10:00:00Z on 127.0.0.1:8088"


def test_base_url_survives_twilio_edge_and_region_env(monkeypatch):
    # the twilio client reads TWILIO_EDGE/TWILIO_REGION and would rewrite our sandbox host with them
    monkeypatch.setenv("TWILIO_EDGE", "sydney")
    monkeypatch.setenv("TWILIO_REGION", "au1")

    async def go():
        async with sandbox() as (url, state):
            sms = TwilioSms(SID, TOKEN, from_number=FROM, base_url=url)
            try:
                d = await sms.send(TO, "edge")
            finally:
                await sms.close()
            return d, state.records

    d, records = run(go())
    assert records[0]["sid"] == d.provider_message_id


def test_find_sent_reconciles_a_send_whose_answer_was_lost():
    """What a restarted worker asks instead of sending again: has the provider got this message?"""
    import time

    async def go():
        async with sandbox() as (url, state):
            sms = TwilioSms(SID, TOKEN, from_number=FROM, base_url=url)
            try:
                t0 = time.time()
                sent = await sms.send(TO, "低电压 notice")
                found = await sms.find_sent(TO, "低电压 notice", since=t0)
                other_body = await sms.find_sent(TO, "another notice", since=t0)
                other_number = await sms.find_sent("+8613812349999", "低电压 notice", since=t0)
                too_old = await sms.find_sent(TO, "低电压 notice", since=t0 + 3600)
            finally:
                await sms.close()
            return sent, found, other_body, other_number, too_old, len(state.records)

    sent, found, other_body, other_number, too_old, n = run(go())
    assert found is not None and found.provider_message_id == sent.provider_message_id
    assert other_body is None and other_number is None and too_old is None
    assert n == 1  # looking up sends nothing


def test_sandbox_delay_stores_first_and_answers_late():
    async def go():
        async with sandbox(delay_s=0.5) as (url, state):
            sms = TwilioSms(SID, TOKEN, from_number=FROM, base_url=url, timeout_s=0.2)
            err = await send_expecting_error(sms, TO)
            return err, len(state.records)

    err, stored = run(go())
    assert stored == 1 and err.maybe_sent is True  # the provider has it; the sender does not know


def test_sandbox_sends_signed_status_callbacks_like_twilio():
    from notifiers.replies import signature_ok

    received = []

    async def callback(request):
        form = dict(await request.post())
        received.append((str(request.url), form, request.headers.get("X-Twilio-Signature")))
        return web.Response(status=204)

    async def go():
        hook = web.Application()
        hook.router.add_post("/twilio/status", callback)
        async with served(hook) as hook_url, sandbox() as (url, state):
            cb_url = hook_url + "/twilio/status"
            state.callback_step_s = 0.05
            sms = TwilioSms(SID, TOKEN, from_number=FROM, base_url=url, status_callback=cb_url)
            try:
                sent = await sms.send(TO, "notice")
            finally:
                await sms.close()
            for _ in range(100):
                if len(received) == 2:
                    break
                await asyncio.sleep(0.05)
            return sent, cb_url, state.records[0]["status"]

    sent, cb_url, final = run(go())
    assert [f["MessageStatus"] for _, f, _ in received] == ["sent", "delivered"]
    assert final == "delivered"
    for url, form, sig in received:
        assert form["MessageSid"] == sent.provider_message_id and form["To"] == TO
        assert signature_ok(TOKEN, cb_url, form, sig)
        assert not signature_ok("not-the-token", cb_url, form, sig)


# ------------------------------------------------------------------- provider faults (README "Guarantees")

def test_accepted_then_timeout_is_maybe_sent_and_the_lookup_finds_it():
    import time

    async def go():
        async with sandbox(faults=[f"{TO}=timeout:5"]) as (url, state):
            sms = TwilioSms(SID, TOKEN, from_number=FROM, base_url=url, timeout_s=0.3)
            try:
                t0 = time.time()
                err = await send_expecting_error(sms, TO, "a notice")
                found = await sms.find_sent(TO, "a notice", since=t0)
            finally:
                await sms.close()
            return err, found, state.records

    err, found, records = run(go())
    assert err.maybe_sent is True and err.status is None
    assert len(records) == 1 and found.provider_message_id == records[0]["sid"]


@pytest.mark.parametrize("status, maybe_sent", [(500, True), (502, True), (503, False)])
def test_a_5xx_after_the_message_was_created_is_maybe_sent(status, maybe_sent):
    import time

    async def go():
        async with sandbox(faults={TO: f"created-5xx:{status}x1"}) as (url, state):
            sms = TwilioSms(SID, TOKEN, from_number=FROM, base_url=url)
            try:
                t0 = time.time()
                err = await send_expecting_error(sms, TO, "a notice")
                found = await sms.find_sent(TO, "a notice", since=t0)
                again = await sms.send(TO, "a notice")  # only the first send was faulty (x1)
            finally:
                await sms.close()
            return err, found, again, state.records

    err, found, again, records = run(go())
    assert (err.status, err.retryable, err.maybe_sent) == (status, True, maybe_sent)
    assert found.provider_message_id == records[0]["sid"] and again.status == "queued"
    # 503 says "not taken now" on real Twilio; the sandbox created it anyway, which the lookup shows


def test_a_message_listed_only_after_n_seconds_is_not_found_before():
    import time

    async def go():
        async with sandbox(faults=[f"{TO}=list-lag:0.6"]) as (url, state):
            sms = TwilioSms(SID, TOKEN, from_number=FROM, base_url=url)
            try:
                t0 = time.time()
                sent = await sms.send(TO, "a notice")
                early = await sms.find_sent(TO, "a notice", since=t0)
                await asyncio.sleep(0.7)
                late = await sms.find_sent(TO, "a notice", since=t0)
            finally:
                await sms.close()
            return sent, early, late

    sent, early, late = run(go())
    assert early is None and late.provider_message_id == sent.provider_message_id


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_failing_lookup_is_a_retryable_error_never_an_answer(status):
    import time

    async def go():
        async with sandbox(faults=[f"{TO}=list-error:{status}x2"]) as (url, state):
            sms = TwilioSms(SID, TOKEN, from_number=FROM, base_url=url)
            errors = []
            try:
                t0 = time.time()
                await sms.send(TO, "a notice")
                for _ in range(3):
                    try:
                        return errors, await sms.find_sent(TO, "a notice", since=t0)
                    except NotifierError as exc:
                        errors.append(exc)
            finally:
                await sms.close()

    errors, found = run(go())
    assert [(e.status, e.retryable) for e in errors] == [(status, True)] * 2 and found is not None


def test_smart_encoding_on_the_provider_side_still_matches():
    import time

    body = "GridWatch: “Power cut” in your area — crews are on site\u00a0now… Reply STOP to opt out"

    async def go():
        async with sandbox(faults=[f"{TO}=smart-encoding"]) as (url, state):
            sms = TwilioSms(SID, TOKEN, from_number=FROM, base_url=url)
            try:
                t0 = time.time()
                await sms.send(TO, body)
                found = await sms.find_sent(TO, body, since=t0)
                other = await sms.find_sent(TO, body.replace("crews", "teams"), since=t0)
            finally:
                await sms.close()
            return found, other, state.records[0]["body"]

    found, other, stored = run(go())
    assert stored != body and '"Power cut"' in stored and "..." in stored  # changed by the provider
    assert found is not None and other is None


def test_the_lookup_reads_every_page_skips_known_sids_and_other_senders(monkeypatch):
    import time

    from notifiers import sms as sms_module

    monkeypatch.setattr(sms_module, "LIST_PAGE_SIZE", 10)

    async def go():
        async with sandbox() as (url, state):
            sms = TwilioSms(SID, TOKEN, from_number=FROM, base_url=url)
            other_sender = TwilioSms(SID, TOKEN, from_number="+15005550009", base_url=url)
            try:
                t0 = time.time()
                first = await sms.send(TO, "HELP answer")
                second = await sms.send(TO, "HELP answer")  # the same text again, for another reply
                for i in range(35):  # newer messages push them past three pages
                    await sms.send(TO, f"notice {i}")
                await other_sender.send(TO, "from elsewhere")
                both = await sms.find_sent(TO, "HELP answer", since=t0)
                not_first = await sms.find_sent(TO, "HELP answer", since=t0, exclude=[second.provider_message_id])
                neither = await sms.find_sent(TO, "HELP answer", since=t0,
                                              exclude=[first.provider_message_id, second.provider_message_id])
                elsewhere = await sms.find_sent(TO, "from elsewhere", since=t0)
            finally:
                await sms.close()
                await other_sender.close()
            return first, second, both, not_first, neither, elsewhere

    first, second, both, not_first, neither, elsewhere = run(go())
    assert both.provider_message_id == second.provider_message_id  # newest first
    assert not_first.provider_message_id == first.provider_message_id
    assert neither is None and elsewhere is None


def test_sms_fingerprint_and_fault_parsing():
    from devtools.sandbox import parse_faults
    from notifiers.sms import sms_fingerprint

    assert sms_fingerprint("“a”\u00a0 b — c…  ") == sms_fingerprint('"a" b - c...') == '"a" b - c...'
    assert sms_fingerprint("电压偏低") == "电压偏低" and sms_fingerprint("a") != sms_fingerprint("b")
    f = parse_faults("+15005550001=timeout:3x2,+15005550001=list-lag:20")
    assert [(x.kind, x.arg, x.times) for x in f["+15005550001"]] == [("timeout", 3.0, 2), ("list-lag", 20.0, None)]
    for bad in ("1500=timeout", "+15005550001=explode", "+15005550001=list-lag", "+15005550001=list-error:200",
                "+15005550001"):
        with pytest.raises(ValueError):
            parse_faults(bad)
