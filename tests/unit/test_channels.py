"""Email and webhook channels against real servers on 127.0.0.1 (the sandbox's aiosmtpd sink, aiosmtpd
with test handlers, aiohttp apps), and how a customer's channels are chosen."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import email.policy
import json
import logging
import socket
from contextlib import asynccontextmanager
from email.parser import BytesParser

import aiohttp
import pytest
from aiohttp import web

from gridwatch.config import Settings
from gridwatch.contract import ContractError, check
from notifiers.base import Delivery, Notifier, NotifierError
from notifiers.channels import CHANNELS, address, build_notifier, channels_for
from notifiers.email import EmailNotifier, message_id_for, parse_smtp_url
from notifiers.privacy import mask_email
from devtools.sandbox import (SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, STATE, SandboxState, make_app,
                               parse_rules, register, sandbox_smtp_address, serve, start_smtp_sink)
from notifiers.sms import TwilioSms
from notifiers.webhook import (IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookNotifier,
                               customer_secret, sign, verify_signature)
from tests.unit.test_sms import served

# twilio 9.13's AsyncTwilioHttpClient uses aiohttp.BasicAuth / auth=, which aiohttp 3.14 deprecates.
pytestmark = [
    pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning"),
]

ZH_BODY = "【国网示范】停电通知：您所在区域自 14:30 起停电，预计 18:00 前恢复。\n回复 STOP 退订。"
ZH_SUBJECT = "停电通知 – 预计 18:00 恢复"
TO = "li.wei@example.com"
SECRET = "test-shared-secret"
LOCAL = "127.0.0.0/8"  # these tests' receivers listen on loopback, which webhooks need allowing for


def run(coro):
    return asyncio.run(coro)


@asynccontextmanager
async def sandbox(**kwargs):
    """The sandbox with its SMTP sink on free ports; yields (base_url, state)."""
    app = make_app(SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, smtp_port=0, **kwargs)
    async with served(app) as url:
        yield url, app[STATE]


@asynccontextmanager
async def smtp_server(handler):
    """A real aiosmtpd server with ``handler`` on 127.0.0.1, a free port; yields the port."""
    state = SandboxState(account_sid=SANDBOX_ACCOUNT_SID, auth_token=SANDBOX_AUTH_TOKEN)
    server = await start_smtp_sink(state, "127.0.0.1", 0, handler=handler)
    try:
        yield state.smtp_port
    finally:
        server.close()


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def get_json(url: str) -> dict:
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            return await resp.json()


async def error_of(coro) -> NotifierError:
    try:
        await coro
    except NotifierError as exc:
        return exc
    raise AssertionError("no NotifierError")


def customer(**kw) -> dict:
    base = {"customer_id": "C1", "meter_id": "M1", "transformer_id": "T1", "feeder_id": "F1",
            "segment": "residential", "phone": "+8613800000001", "language": "zh-CN",
            "timezone": "Asia/Shanghai", "nominal_voltage": 220}
    return {**base, **kw}


# ------------------------------------------------------------------------------------------------ email

def test_a_zh_cn_email_arrives_intact_with_the_message_id_of_its_key(caplog):
    caplog.set_level(logging.INFO)

    async def go():
        async with sandbox() as (url, state):
            mail = EmailNotifier("127.0.0.1", state.smtp_port, start_tls=False, timeout_s=5)
            delivery = await mail.send(TO, ZH_BODY, subject=ZH_SUBJECT, key="N-0001.outage",
                                       data={"ignored": True})
            listed = await get_json(f"{url}/sandbox/emails")
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{url}/") as resp:
                    page = await resp.text()
            return delivery, listed, page

    delivery, listed, page = run(go())
    assert delivery == Delivery(provider_message_id="<N-0001.outage@gridwatch.invalid>", status="accepted")
    [got] = listed["emails"]
    assert got["message_id"] == "<N-0001.outage@gridwatch.invalid>"
    assert (got["to"], got["from"]) == ([TO], "alerts@gridwatch.invalid")
    assert got["subject"] == ZH_SUBJECT and got["body"] == ZH_BODY
    assert got["content_type"] == "text/plain" and listed["rejected"] == []
    # the page shows it next to the SMS, address masked
    assert ZH_BODY.splitlines()[0] in page and mask_email(TO) in page and TO not in page
    # our logs never carry the address in full
    assert TO not in caplog.text and mask_email(TO) in caplog.text


def test_the_composed_message_is_7bit_utf8_with_a_deterministic_message_id():
    mail = EmailNotifier("127.0.0.1", 25, sender="Grid Alerts <alerts@grid.example>")
    raw = mail.compose(TO, ZH_BODY, subject=ZH_SUBJECT, key="N-7").as_bytes()
    assert raw.isascii()  # base64 body and encoded-word subject: no 8BITMIME needed
    parsed = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert parsed["Message-ID"] == "<N-7@grid.example>" == message_id_for("N-7", "alerts@grid.example")
    assert parsed["Subject"] == ZH_SUBJECT and parsed["Auto-Submitted"] == "auto-generated"
    assert parsed.get_content_charset() == "utf-8"
    assert parsed.get_body(("plain",)).get_content().replace("\r\n", "\n").rstrip("\n") == ZH_BODY
    # a key that is no dot-atom still gives a valid, stable id; without a subject the first line is one
    odd = message_id_for("alert:42|C1|email")
    assert odd == message_id_for("alert:42|C1|email") and odd.endswith("@gridwatch.invalid>")
    assert ":" not in odd and "|" not in odd
    untitled = mail.compose(TO, "Low voltage since 14:30.\nDetails follow.")
    assert untitled["Subject"] == "Low voltage since 14:30."
    with pytest.raises(ValueError):
        mail.compose("a@b.example\r\nBcc: everyone@b.example", "x")


@pytest.mark.parametrize("code, retryable", [(550, False), (553, False), (451, True), (452, True)])
def test_smtp_reply_codes_classify_the_failure(code, retryable):
    async def go():
        async with sandbox(fail_email=[f"{TO}={code}"]) as (url, state):
            mail = EmailNotifier("127.0.0.1", state.smtp_port, start_tls=False, timeout_s=5)
            err = await error_of(mail.send(TO, ZH_BODY, key="N-1"))
            return err, state.emails, state.email_rejected

    err, emails, rejected = run(go())
    assert (err.code, err.retryable, err.maybe_sent, err.status) == (code, retryable, False, None)
    assert f"SMTP {code} at RCPT TO" in str(err) and TO not in str(err)
    assert emails == [] and rejected[0]["code"] == code and rejected[0]["to"] == mask_email(TO)


def test_a_transient_refusal_then_acceptance():
    async def go():
        async with sandbox(fail_email=["*=451x1"]) as (url, state):
            mail = EmailNotifier("127.0.0.1", state.smtp_port, start_tls=False, timeout_s=5)
            first = await error_of(mail.send(TO, "retry me", key="N-2"))
            second = await mail.send(TO, "retry me", key="N-2")
            return first, second, [e["body"] for e in state.emails]

    first, second, bodies = run(go())
    assert first.retryable and not first.maybe_sent
    assert second.provider_message_id == "<N-2@gridwatch.invalid>" and bodies == ["retry me"]


def test_a_refused_connection_is_retryable_and_certainly_not_sent():
    mail = EmailNotifier("127.0.0.1", free_port(), start_tls=False, timeout_s=5)
    err = run(error_of(mail.send(TO, "x", key="N-3")))
    assert err.retryable and not err.maybe_sent and err.code is None


def test_a_disconnect_after_data_may_have_sent():
    class HangUpAfterData:
        async def handle_DATA(self, server, session, envelope):
            server.transport.close()  # the message is in, the "250" never leaves
            return "250 OK"

    async def go():
        async with smtp_server(HangUpAfterData()) as port:
            mail = EmailNotifier("127.0.0.1", port, start_tls=False, timeout_s=5)
            return await error_of(mail.send(TO, ZH_BODY, key="N-4"))

    err = run(go())
    assert err.retryable and err.maybe_sent and "DATA" in str(err)


def test_a_server_silent_after_data_times_out_as_maybe_sent():
    class Stall:
        def __init__(self):
            self.release = asyncio.Event()

        async def handle_DATA(self, server, session, envelope):
            await self.release.wait()
            return "250 OK"

    async def go():
        handler = Stall()
        async with smtp_server(handler) as port:
            mail = EmailNotifier("127.0.0.1", port, start_tls=False, timeout_s=0.5)
            err = await error_of(mail.send(TO, "x", key="N-5"))
            handler.release.set()
            return err

    err = run(go())
    assert err.retryable and err.maybe_sent and "timed out at DATA" in str(err)


def test_email_outcome_cannot_be_checked_after_a_crash():
    mail = EmailNotifier("127.0.0.1", 25)
    err = run(error_of(mail.find_sent(TO, "x", 0.0)))
    assert not err.retryable and "cannot be checked" in str(err)
    assert mail.idempotent is False and mail.channel == "email" and isinstance(mail, Notifier)


def test_smtp_url_settings_and_the_sandbox_default():
    assert parse_smtp_url("smtp://alerts%40grid:p%40ss@mail.example:587?starttls=1") == {
        "host": "mail.example", "port": 587, "use_tls": False, "start_tls": True,
        "username": "alerts@grid", "password": "p@ss"}
    assert parse_smtp_url("smtps://mail.example")["port"] == 465
    assert parse_smtp_url("smtp://mail.example?starttls=0")["port"] == 25
    assert parse_smtp_url("smtp://mail.example")["start_tls"] is None  # upgrade when offered
    for bad in ("http://mail.example", "smtp://", "smtp://h?starttls=maybe", "smtps://h?starttls=1"):
        with pytest.raises(ValueError):
            parse_smtp_url(bad)

    real = build_notifier(Settings(smtp_url="smtp://u:hunter2@mail.example:2525?starttls=1",
                                   email_from="ops@grid.example"), "email", status_callback="ignored")
    assert (real.host, real.port, real.start_tls, real.sender) == ("mail.example", 2525, True, "ops@grid.example")
    assert "hunter2" not in repr(real) and "hunter2" not in repr(Settings(smtp_url="smtp://u:hunter2@h"))

    local = build_notifier(Settings(smtp_url=None, sandbox_url="http://127.0.0.1:8088"), "email")
    assert (local.host, local.port, local.start_tls) == ("127.0.0.1", 8089, False)
    assert local.sender == "alerts@gridwatch.invalid"
    assert sandbox_smtp_address("http://sandbox:9000/") == ("sandbox", 9001)


def test_the_settings_defaults(monkeypatch):
    for var in ("GRIDWATCH_SMTP_URL", "GRIDWATCH_EMAIL_FROM", "GRIDWATCH_WEBHOOK_SECRET"):
        monkeypatch.delenv(var, raising=False)
    s = Settings()
    assert (s.smtp_url, s.email_from, s.webhook_secret) == (None, "alerts@gridwatch.invalid", None)
    monkeypatch.setenv("GRIDWATCH_SMTP_URL", "smtp://h:25")
    monkeypatch.setenv("GRIDWATCH_EMAIL_FROM", "a@b.example")
    monkeypatch.setenv("GRIDWATCH_WEBHOOK_SECRET", "s3")
    s = Settings()
    assert (s.smtp_url, s.email_from, s.webhook_secret) == ("smtp://h:25", "a@b.example", "s3")
    assert "s3" not in repr(s)


def test_mask_email():
    assert mask_email("li.wei@example.com") == "l****@e****.com"
    assert mask_email("") == "" and mask_email(None) == ""
    assert mask_email("not-an-address") == "****ss"
    assert mask_email("root@localhost") == "r****@****"


# ---------------------------------------------------------------------------------------------- webhook

@asynccontextmanager
async def receiver(status: int = 200, answer: dict | None = None, gate: asyncio.Event | None = None):
    """An aiohttp app that records each request (raw body, headers) and answers ``status`` (once ``gate``
    is set, when given: a slow receiver)."""
    got: list[tuple[bytes, dict]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append((await request.read(), dict(request.headers)))
        if gate is not None:
            await gate.wait()
        return web.json_response(answer if answer is not None else {}, status=status)

    app = web.Application()
    app.router.add_post("/hook/{tail:.*}", hook)
    async with served(app) as url:
        yield url + "/hook/c1?token=abc", got


def test_a_webhook_is_signed_json_that_the_receiver_can_verify():
    payload = {"notification_id": "N-10", "customer_id": "C1", "text": "电压偏低 Low voltage",
               "alert": {"kind": "voltage"}}

    async def go():
        async with receiver(answer={"id": "rcv-77"}) as (url, got):
            async with WebhookNotifier(SECRET, allow=LOCAL) as hook:
                delivery = await hook.send(url, "ignored when data is given", data=payload, key="N-10")
            return delivery, got

    delivery, got = run(go())
    assert delivery == Delivery(provider_message_id="rcv-77", status="delivered")
    [(raw, headers)] = got
    assert json.loads(raw.decode("utf-8")) == payload and "电压偏低".encode() in raw  # UTF-8, not \u escapes
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers[IDEMPOTENCY_HEADER] == "N-10" and headers[TIMESTAMP_HEADER].isdigit()
    signature, ts = headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER]
    mine = customer_secret(SECRET, "C1")  # what customer C1 was given
    assert signature.startswith("sha256=") and len(signature) == len("sha256=") + 64
    assert verify_signature(mine, raw, signature, ts)
    assert not verify_signature(mine, raw.replace("偏低".encode(), "正常".encode()), signature, ts)  # forged body
    assert not verify_signature(SECRET, raw, signature, ts)  # the master secret is not the customer's
    assert not verify_signature(customer_secret(SECRET, "C2"), raw, signature, ts)  # nor another customer's
    assert not verify_signature(mine, raw, None, ts) and not verify_signature(mine, raw, "md5=00", ts)
    assert not verify_signature(mine, raw, signature[:-1] + ("0" if signature[-1] != "0" else "1"), ts)
    assert verify_signature(mine, raw, signature.upper().replace("SHA256=", "sha256="), ts)
    assert sign(mine, raw, ts) == signature


def test_without_an_id_in_the_answer_the_key_is_the_delivery_id_and_without_a_customer_nothing_is_sent():
    async def go():
        async with receiver(status=202) as (url, got):
            async with WebhookNotifier(SECRET, allow=LOCAL) as hook:
                delivery = await hook.send(url, "短信正文", data={"customer_id": "C1", "text": "短信正文"}, key="N-11")
                anonymous = await error_of(hook.send(url, "短信正文", subject="主题", key="N-12"))
                return delivery, anonymous, got

    delivery, anonymous, got = run(go())
    assert delivery == Delivery(provider_message_id="N-11", status="delivered")
    assert json.loads(got[0][0]) == {"customer_id": "C1", "text": "短信正文"} and len(got) == 1
    assert not anonymous.retryable and "customer_id" in str(anonymous)


@pytest.mark.parametrize("status, retryable", [(503, True), (500, True), (429, True), (408, True),
                                               (400, False), (404, False), (410, False), (301, False)])
def test_webhook_status_classification(status, retryable):
    async def go():
        async with receiver(status=status) as (url, got):
            async with WebhookNotifier(SECRET, allow=LOCAL) as hook:
                return await error_of(hook.send(url, "x", data={"customer_id": "C1", "a": 1}, key="N-12"))

    err = run(go())
    assert (err.status, err.retryable, err.maybe_sent) == (status, retryable, False)
    assert "token=abc" not in str(err) and "/hook/" not in str(err)  # never the URL's path or query


def test_a_slow_receiver_times_out_as_maybe_sent_and_a_dead_one_as_not_sent():
    async def go():
        gate = asyncio.Event()
        async with receiver(gate=gate) as (url, got):
            async with WebhookNotifier(SECRET, allow=LOCAL, timeout_s=0.5) as hook:
                slow = await error_of(hook.send(url, "x", data={"customer_id": "C1", "a": 1}, key="N-13"))
                gate.set()
                refused = await error_of(hook.send(f"http://127.0.0.1:{free_port()}/h", "x", data={"customer_id": "C1"},
                                                   key="N-13"))
            return slow, refused, len(got)

    slow, refused, received = run(go())
    assert slow.retryable and slow.maybe_sent and slow.status is None and received == 1
    assert refused.retryable and not refused.maybe_sent


def test_webhook_input_errors_are_permanent_and_find_sent_is_none():
    async def go():
        async with WebhookNotifier(SECRET, allow=LOCAL) as hook:
            bad_url = await error_of(hook.send("ftp://example.com/x", "x", key="k"))
            bad_data = await error_of(hook.send("http://127.0.0.1:9/x", "x", data={"customer_id": "C1", "t": object()},
                                                key="k"))
            found = await hook.find_sent("http://127.0.0.1:9/x", "x", 0.0)
            return bad_url, bad_data, found, hook

    bad_url, bad_data, found, hook = run(go())
    assert not bad_url.retryable and not bad_data.retryable and found is None
    assert hook.idempotent is True and hook.channel == "webhook" and isinstance(hook, Notifier)
    assert SECRET not in repr(hook)


def test_the_development_secret_signs_only_for_allowed_networks():
    async def go():
        async with receiver() as (url, got):
            async with WebhookNotifier(allow=LOCAL) as local:
                ok = await local.send(url, "x", data={"customer_id": "C1"}, key="N-14")
            async with WebhookNotifier() as nowhere:  # the development secret and no allowed network
                refused = await error_of(nowhere.send("https://93.184.215.14/hook", "x", data={"customer_id": "C1"},
                                                      key="N-15"))
            return ok, refused, got

    ok, refused, got = run(go())
    assert ok.status == "delivered" and len(got) == 1
    assert not refused.retryable and "GRIDWATCH_WEBHOOK_SECRET" in str(refused)
    assert WebhookNotifier().uses_dev_secret
    assert not WebhookNotifier.from_settings(Settings(webhook_secret="real")).uses_dev_secret


def test_the_sandbox_receiver_verifies_and_dedupes_by_idempotency_key():
    async def go():
        async with sandbox(webhook_secret=SECRET) as (url, state):
            async with WebhookNotifier(SECRET, allow=LOCAL) as hook:
                first = await hook.send(f"{url}/sandbox/webhook/acme", "x", data={"customer_id": "acme", "n": "停电"}, key="N-20")
                again = await hook.send(f"{url}/sandbox/webhook/acme", "x", data={"customer_id": "acme", "n": "停电"}, key="N-20")
                other = await hook.send(f"{url}/sandbox/webhook/acme", "x", data={"customer_id": "acme", "n": 2}, key="N-21")
            async with WebhookNotifier("wrong-secret", allow=LOCAL) as forged:
                refused = await error_of(forged.send(f"{url}/sandbox/webhook/acme", "x", data={"customer_id": "acme"}, key="N-22"))
            listed = await get_json(f"{url}/sandbox/webhooks")
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{url}/") as resp:
                    page = await resp.text()
                async with http.delete(f"{url}/sandbox/webhooks") as resp:
                    cleared = await resp.json()
            return first, again, other, refused, listed, page, cleared

    first, again, other, refused, listed, page, cleared = run(go())
    assert first.provider_message_id.startswith("WH") and again.provider_message_id == first.provider_message_id
    assert other.provider_message_id != first.provider_message_id
    assert [(w["idempotency_key"], w["payload"], w["duplicates"]) for w in listed["webhooks"]] == [
        ("N-20", {"customer_id": "acme", "n": "停电"}, 1), ("N-21", {"customer_id": "acme", "n": 2}, 0)]
    assert refused.status == 401 and not refused.retryable
    assert [(r["status"], r["idempotency_key"]) for r in listed["rejected"]] == [(401, "N-22")]
    assert "Webhooks" in page and "N-20" in page and cleared == {"cleared": 2}


def test_the_sandbox_receiver_fail_rule_then_accepts():
    async def go():
        async with sandbox(webhook_secret=SECRET, fail_webhook=["flaky=503x2"]) as (url, state):
            async with WebhookNotifier(SECRET, allow=LOCAL) as hook:
                errors = [await error_of(hook.send(f"{url}/sandbox/webhook/flaky", "x", data={"customer_id": "C1"}, key="N-30"))
                          for _ in range(2)]
                ok = await hook.send(f"{url}/sandbox/webhook/flaky", "x", data={"customer_id": "C1"}, key="N-30")
                steady = await hook.send(f"{url}/sandbox/webhook/steady", "x", data={"customer_id": "C1"}, key="N-30")
            return errors, ok, steady, state

    errors, ok, steady, state = run(go())
    assert [(e.status, e.retryable) for e in errors] == [(503, True), (503, True)]
    assert ok.provider_message_id != steady.provider_message_id  # dedupe is per receiver name
    assert [w["name"] for w in state.webhooks] == ["flaky", "steady"]


# --------------------------------------------------------------------------------------------- sandbox

def test_sandbox_options_and_the_smtp_port():
    assert {k: (r.status, r.times) for k, r in parse_rules(["flaky=503x2", "400"]).items()} == {
        "flaky": (503, 2), "*": (400, None)}
    assert parse_rules("Li@Example.com=550", lowercase=True)["li@example.com"].status == 550
    for bad in (["x=200"], ["x=abc"], ["x=21610"]):
        with pytest.raises(ValueError):
            parse_rules(bad)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sandbox", "--smtp-port", "2526", "--fail-webhook", "acme=503x1",
                              "--fail-email", f"{TO}=550"])
    assert (args.smtp_port, args.fail_webhook, args.fail_email) == (2526, ["acme=503x1"], [f"{TO}=550"])
    assert parser.parse_args(["sandbox"]).smtp_port is None


def test_a_taken_default_smtp_port_does_not_stop_the_sandbox():
    async def go():
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            app = make_app(SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, smtp_port=port, smtp_required=False)
            async with served(app) as url:
                listed = await get_json(f"{url}/sandbox/emails")
            with pytest.raises(OSError):
                async with served(make_app(SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, smtp_port=port)):
                    pass
            return listed

    assert run(go()) == {"emails": [], "rejected": [], "smtp_port": None}


def test_serve_starts_the_smtp_sink_and_stops(capsys):
    async def go():
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.5, stop.set)
        await serve("127.0.0.1", 0, stop=stop)

    run(go())
    out = capsys.readouterr().out
    assert "SMTP sink on 127.0.0.1:" in out and "/sandbox/webhook/NAME" in out and "stopped" in out


# -------------------------------------------------------------------------------------------- channels

def test_channels_for_follows_the_preference_and_falls_back_to_sms():
    assert CHANNELS == ("sms", "email", "webhook")
    assert channels_for(customer()) == ["sms"]
    assert channels_for(customer(preferences={"quiet_hours": ["22:00", "08:00"]})) == ["sms"]
    both = customer(email=TO, webhook_url="https://h.example/x", preferences={"channels": ["webhook", "email"]})
    assert channels_for(both) == ["webhook", "email"]
    assert channels_for(customer(email=TO, preferences={"channels": ["sms", "email"]})) == ["sms", "email"]
    # a chosen channel without its address is skipped; none usable -> SMS
    assert channels_for(customer(preferences={"channels": ["email", "sms"]})) == ["sms"]
    assert channels_for(customer(preferences={"channels": ["email"]})) == ["sms"]
    assert channels_for(customer(email="  ", preferences={"channels": ["email", "webhook"]})) == ["sms"]
    assert channels_for(customer(email=TO, preferences={"channels": ["email"]})) == ["email"]
    # unknown names and repeats are ignored; an empty or broken preference is the default
    assert channels_for(customer(email=TO, preferences={"channels": ["fax", "email", "email"]})) == ["email"]
    assert channels_for(customer(preferences={"channels": []})) == ["sms"]
    assert channels_for(customer(preferences={"channels": "email"})) == ["sms"]
    assert channels_for(customer(preferences=None)) == ["sms"]


def test_address_per_channel():
    c = customer(email=TO, webhook_url="https://h.example/x")
    assert [address(c, ch) for ch in CHANNELS] == ["+8613800000001", TO, "https://h.example/x"]
    assert address(customer(), "email") is None and address(customer(), "webhook") is None
    assert address(c, "fax") is None and address(None, "sms") is None


def test_build_notifier_per_channel():
    s = Settings(sandbox_url="http://127.0.0.1:9999", twilio_account_sid=None, twilio_auth_token=None,
                 twilio_from=None, twilio_messaging_service_sid=None, smtp_url=None, webhook_secret="k")
    sms = build_notifier(s, "sms", validity_period_s=600, status_callback="https://cb.example/s")
    assert isinstance(sms, TwilioSms) and sms.validity_period_s == 600 and sms.idempotent is False
    assert sms.status_callback == "https://cb.example/s"
    mail = build_notifier(s, "email", validity_period_s=600)
    assert isinstance(mail, EmailNotifier) and (mail.host, mail.port) == ("127.0.0.1", 10000)
    hook = build_notifier(s, "webhook", status_callback="x")
    assert isinstance(hook, WebhookNotifier) and not hook.uses_dev_secret and hook.idempotent
    with pytest.raises(ValueError, match="unknown channel"):
        build_notifier(s, "fax")


def test_sms_accepts_and_ignores_the_new_arguments():
    from tests.unit.test_sms import sandbox as sms_sandbox

    async def go():
        async with sms_sandbox() as (url, state):
            sms = TwilioSms(SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, from_number="+15005550006", base_url=url)
            try:
                d = await sms.send("+8613812348000", "短信", subject="s", data={"customer_id": "C1", "a": 1}, key="N-40")
            finally:
                await sms.close()
            return d, state.records

    d, records = run(go())
    assert d.provider_message_id == records[0]["sid"] and records[0]["body"] == "短信"


def test_the_customers_schema_takes_the_new_fields():
    full = customer(email=TO, webhook_url="https://hooks.example.com/g?x=1",
                    preferences={"channels": ["sms", "email", "webhook"]})
    assert check("customers", dict(full))["preferences"] == {"channels": ["sms", "email", "webhook"]}
    assert "channels" not in check("customers", customer(preferences={})).get("preferences", {})  # no default
    for bad in ({"email": "li.wei"}, {"webhook_url": "ftp://x.example"}, {"preferences": {"channels": ["fax"]}},
                {"preferences": {"channels": []}}, {"preferences": {"channels": ["sms", "sms"]}}):
        with pytest.raises(ContractError):
            check("customers", customer(**bad))


def test_every_channel_implements_the_protocol():
    s = dataclasses.replace(Settings(), twilio_account_sid=None, twilio_auth_token=None, smtp_url=None)
    for channel in CHANNELS:
        notifier = build_notifier(s, channel)
        assert isinstance(notifier, Notifier) and notifier.channel == channel
        assert isinstance(notifier.idempotent, bool)
