"""``gridwatch webhooks`` against replays and malformed bodies, and the Twilio settings it refuses to start with."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys

import aiohttp
import pytest

from gridwatch.config import ConfigError, Settings, check_twilio
from devtools.sandbox import SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN
from notifiers.sms import TwilioSms
from streams.webhooks import INBOUND_PATH, STATUS_PATH, ReplayGuard, auth_token
from tests.unit.test_webhooks import PUBLIC, inbound_form, post, settings, sign, webhooks

REAL_SID, REAL_TOKEN, REAL_FROM = "AC" + "7" * 32, "real-account-token-0123456789", "+15017122661"


# ------------------------------------------------------------------------------------------- replays

def test_the_same_signed_inbound_reply_is_published_once():
    form = inbound_form("STOP")

    async def go():
        async with webhooks() as (url, published):
            first = await post(url + INBOUND_PATH, form, sign(INBOUND_PATH, form))
            again = await post(url + INBOUND_PATH, form, sign(INBOUND_PATH, form))
            other = dict(form, MessageSid="SM" + "f" * 32, SmsSid="SM" + "f" * 32)
            new = await post(url + INBOUND_PATH, other, sign(INBOUND_PATH, other))
            return first[0], again[0], new[0], published

    first, again, new, published = asyncio.run(go())
    assert (first, again, new) == (200, 409, 200)
    assert [e["sid"] for _, _, e in published] == ["SM" + "b" * 32, "SM" + "f" * 32]


def test_a_replayed_status_callback_is_refused_but_the_next_status_of_the_message_is_not():
    sent = {"MessageSid": "SM" + "c" * 32, "MessageStatus": "sent"}
    delivered = dict(sent, MessageStatus="delivered")

    async def go():
        async with webhooks() as (url, published):
            codes = [(await post(url + STATUS_PATH, f, sign(STATUS_PATH, f)))[0] for f in (sent, sent, delivered)]
            return codes, published

    codes, published = asyncio.run(go())
    assert codes == [204, 409, 204]
    assert [e["status"] for _, _, e in published] == ["sent", "delivered"]


def test_a_request_whose_publish_failed_is_not_remembered_so_twilios_retry_gets_through():
    form = inbound_form("5")
    calls = []

    async def flaky(topic, key, value):
        calls.append(key)
        if len(calls) == 1:
            raise RuntimeError("broker down")

    async def go():
        from streams.webhooks import make_app
        from tests.unit.test_sms import served

        async with served(make_app(settings(), flaky)) as url:
            first = await post(url + INBOUND_PATH, form, sign(INBOUND_PATH, form))
            retry = await post(url + INBOUND_PATH, form, sign(INBOUND_PATH, form))
            return first[0], retry[0]

    assert asyncio.run(go()) == (500, 200)
    assert len(calls) == 2


def test_the_replay_memory_is_bounded_in_size_and_time():
    now = [0.0]
    guard = ReplayGuard(window_s=60, max_entries=3, clock=lambda: now[0])
    for n in range(5):
        guard.remember(("i", n))
    assert len(guard) == 3 and not guard.seen(("i", 0)) and guard.seen(("i", 4))
    now[0] = 61.0
    assert not guard.seen(("i", 4)) and len(guard) == 0


# ------------------------------------------------------------------------------------ malformed bodies

@pytest.mark.parametrize("path", [INBOUND_PATH, STATUS_PATH])
@pytest.mark.parametrize("body, ctype, expected", [
    (b"Body=\xff\xfe&From=%2B15005550006&MessageSid=SMx", "application/x-www-form-urlencoded", 400),
    (b"Body=%FF%FE&From=%2B15005550006&MessageSid=SMx", "application/x-www-form-urlencoded", 403),  # unsigned
    (b'{"Body": "STOP"}', "application/json", 415),
    (b"\xff\xfe\xfd", "text/plain", 415),
    (b"--x\r\nContent-Disposition: form-data; name=\"Body\"\r\n\r\nSTOP\r\n--x--\r\n", "multipart/form-data; boundary=x",
     415),
])
def test_malformed_bodies_get_a_4xx_never_a_500(path, body, ctype, expected):
    async def go():
        async with webhooks() as (url, published):
            async with aiohttp.ClientSession() as http:
                async with http.post(url + path, data=body, headers={"Content-Type": ctype,
                                                                     "X-Twilio-Signature": "x"}) as r:
                    return r.status, await r.text(), published

    status, text, published = asyncio.run(go())
    assert status == expected and "Traceback" not in text and published == []


# ----------------------------------------------------------------------------- Twilio configuration

PARTIAL = [
    {"TWILIO_ACCOUNT_SID": REAL_SID, "TWILIO_AUTH_TOKEN": REAL_TOKEN},                 # no sender
    {"TWILIO_FROM_NUMBER": REAL_FROM},                                                 # sender, no credentials
    {"TWILIO_MESSAGING_SERVICE_SID": "MG" + "1" * 32},
    {"TWILIO_ACCOUNT_SID": REAL_SID, "TWILIO_FROM_NUMBER": REAL_FROM},                  # no token
    {"TWILIO_AUTH_TOKEN": REAL_TOKEN},
]
MIXED = [
    {"TWILIO_ACCOUNT_SID": SANDBOX_ACCOUNT_SID, "TWILIO_AUTH_TOKEN": SANDBOX_AUTH_TOKEN, "TWILIO_FROM_NUMBER": REAL_FROM},
    {"TWILIO_ACCOUNT_SID": REAL_SID, "TWILIO_AUTH_TOKEN": SANDBOX_AUTH_TOKEN, "TWILIO_FROM_NUMBER": REAL_FROM},
    {"TWILIO_ACCOUNT_SID": REAL_SID, "TWILIO_AUTH_TOKEN": REAL_TOKEN, "TWILIO_FROM_NUMBER": REAL_FROM,
     "GRIDWATCH_SANDBOX_URL": "http://127.0.0.1:8088"},
]
ALL_TWILIO = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER", "TWILIO_MESSAGING_SERVICE_SID",
              "GRIDWATCH_SANDBOX_URL", "GRIDWATCH_SANDBOX_ACCOUNT_SID", "GRIDWATCH_SANDBOX_AUTH_TOKEN")


def _env(monkeypatch, env: dict) -> Settings:
    for var in ALL_TWILIO:
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return Settings()


@pytest.mark.parametrize("env", PARTIAL + MIXED, ids=lambda e: "+".join(sorted(e)))
def test_partial_or_mixed_twilio_settings_are_refused_everywhere(monkeypatch, env):
    s = _env(monkeypatch, env)
    with pytest.raises(ConfigError) as err:
        check_twilio(s)
    assert ("partial" in str(err.value)) is (env in PARTIAL)
    assert REAL_TOKEN not in str(err.value) and SANDBOX_AUTH_TOKEN not in str(err.value)
    with pytest.raises(ConfigError):  # SMS never silently go to the sandbox
        TwilioSms.from_settings(s)
    with pytest.raises(ConfigError):  # the inbound endpoint never checks against the sandbox's public token
        auth_token(s)


def test_complete_or_absent_twilio_settings_are_accepted(monkeypatch):
    s = _env(monkeypatch, {"TWILIO_ACCOUNT_SID": REAL_SID, "TWILIO_AUTH_TOKEN": REAL_TOKEN,
                           "TWILIO_MESSAGING_SERVICE_SID": "MG" + "1" * 32})
    check_twilio(s)
    assert auth_token(s) == REAL_TOKEN and TwilioSms.from_settings(s).base_url == "https://api.twilio.com"
    s = _env(monkeypatch, {})
    check_twilio(s)
    assert auth_token(s) == SANDBOX_AUTH_TOKEN


def test_with_real_credentials_a_reply_signed_with_the_sandbox_token_is_refused():
    real = dataclasses.replace(settings(), twilio_account_sid=REAL_SID, twilio_auth_token=REAL_TOKEN,
                               twilio_from=REAL_FROM)
    form = inbound_form("STOP")

    async def go():
        async with webhooks(real) as (url, published):
            forged = await post(url + INBOUND_PATH, form, sign(INBOUND_PATH, form, token=SANDBOX_AUTH_TOKEN))
            good = await post(url + INBOUND_PATH, form, sign(INBOUND_PATH, form, token=REAL_TOKEN))
            return forged[0], good[0], published

    forged, good, published = asyncio.run(go())
    assert (forged, good) == (403, 200) and len(published) == 1


@pytest.mark.parametrize("command", [["webhooks", "--port", "0"], ["worker"], ["demo", "--duration", "1"]])
def test_the_commands_exit_2_with_a_clear_message_on_partial_twilio_settings(command):
    env = {k: v for k, v in os.environ.items() if k not in ALL_TWILIO}
    env.update(TWILIO_ACCOUNT_SID=REAL_SID, TWILIO_AUTH_TOKEN=REAL_TOKEN, KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    done = subprocess.run([sys.executable, "-m", "gridwatch.cli", *command], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "partial Twilio configuration" in done.stderr and "TWILIO_FROM_NUMBER" in done.stderr
    assert REAL_TOKEN not in done.stderr + done.stdout
