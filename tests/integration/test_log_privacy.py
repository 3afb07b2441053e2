"""Every log of a run with SMS, email and webhook notifications, customers' replies, delivery receipts and
console sign-ins (right and wrong, form, Basic, Bearer, live events, sign-out): no phone number, email
address, token, secret or authorization header in any of them."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request

import pytest

from devtools.demo import gridwatch_argv, wait_http
from tests.integration.conftest import free_port
from tests.integration.logscan import scan
from tests.integration.test_replies import reply

pytestmark = pytest.mark.integration

OP_TOKEN = "op-log-scan-token-7f3a9c2e41"
VIEW_PASSWORD = "viewer-log-scan-password-55"
PHONES = ("+447700900123", "+12015550142", "+33639980077")
EMAIL = "li.wei.logscan@example.com"


def customer(n: int, phone: str, **extra) -> dict:
    return {"customer_id": f"C95000{n}", "meter_id": f"M95000{n}", "transformer_id": "T9501", "feeder_id": "F951",
            "segment": "residential", "phone": phone, "language": "en", "timezone": "Europe/London",
            "nominal_voltage": 230, "opted_out": False, **extra}


def alert(alert_id: str, customers: list[dict]) -> dict:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"alert_id": alert_id, "kind": "undervoltage", "severity": "warning", "status": "open",
            "scope": {"level": "transformer", "id": "T9501"}, "meter_ids": [c["meter_id"] for c in customers],
            "customer_ids": [c["customer_id"] for c in customers], "started_at": now, "detected_at": now,
            "resolved_at": None, "evidence": {"v_avg": 205.0, "standard": "EN 50160"}}


def http(url: str, *, data: bytes | None = None, headers: dict | None = None) -> int:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_no_log_of_a_run_holds_phone_numbers_emails_tokens_or_auth_headers(pipeline):
    hook = pipeline.settings.sandbox_url + "/sandbox/webhook/C950003"
    custs = [customer(1, PHONES[0]),
             customer(2, PHONES[1], email=EMAIL, preferences={"channels": ["email", "sms"]}),
             customer(3, PHONES[2], webhook_url=hook + "?token=receiver-own-token-123",
                      preferences={"channels": ["webhook", "sms"]})]
    for c in custs:
        pipeline.send("customers", c["customer_id"], c)
    pipeline.flush()
    pipeline.read("gridwatch.phone-directory", lambda rs: len(rs) >= len(custs), timeout=90)

    # the console, logging into the same run directory
    port = free_port()
    console_url = f"http://127.0.0.1:{port}/"
    env = {**pipeline.env, "GRIDWATCH_CONSOLE_USERS": f"ana:operator:{OP_TOKEN},vic:viewer:{VIEW_PASSWORD}"}
    env.pop("GRIDWATCH_CONSOLE_USERS_FILE", None)
    pipeline.procs.start("console", gridwatch_argv("console", "--port", str(port)), env,
                         pipeline.settings.run_dir / "console.log")
    assert wait_http(console_url + "static/console.css", 90), pipeline.log_tail("console")

    pipeline.send("alerts", "A-LOG-1", alert("A-LOG-1", custs))
    pipeline.flush()
    notes = pipeline.read("notifications", lambda rs: {(n["customer_id"], n["channel"]) for n in rs
                                                       if n["status"] == "sent"} >= {
        ("C950001", "sms"), ("C950002", "email"), ("C950003", "webhook")}, timeout=120)
    sms = {m["to"]: m for m in pipeline.sandbox_messages()}
    assert PHONES[0] in sms, notes

    # replies: a rating, HELP, and one from a number nobody has
    reply(pipeline, to_sid=sms[PHONES[0]]["sid"], body="HELP")
    reply(pipeline, to_sid=sms[PHONES[0]]["sid"], body="4")
    reply(pipeline, **{"from": "+447700900999", "body": "who is this"})
    pipeline.read("feedback", lambda rs: len(rs) >= 3, timeout=90)
    pipeline.read("notifications", lambda rs: any(n["status"] == "delivered" for n in rs), timeout=90)

    # the console: wrong and right sign-ins over every scheme, live events, sign-out
    form = "application/x-www-form-urlencoded"
    assert http(console_url + "login", data=b"user=ana&secret=wrong-guess", headers={"Content-Type": form}) == 401
    assert http(console_url + "api/alerts", headers={"Authorization": "Bearer wrong-bearer-guess"}) == 401
    basic = base64.b64encode(f"vic:{VIEW_PASSWORD}".encode()).decode()
    assert http(console_url + "api/alerts", headers={"Authorization": f"Basic {basic}"}) == 200
    assert http(console_url + "api/alerts/A-LOG-1", headers={"Authorization": f"Bearer {OP_TOKEN}"}) == 200
    login = urllib.request.Request(console_url + "login", data=json.dumps({"user": "ana", "secret": OP_TOKEN}).encode(),
                                   headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(login, timeout=15) as r:
        cookie = r.headers["Set-Cookie"].split(";", 1)[0]
        csrf = json.loads(r.read())["csrf"]
    assert http(console_url + "api/me", headers={"Cookie": cookie}) == 200
    assert http(console_url + "logout", data=b"", headers={"Cookie": cookie, "X-CSRF-Token": csrf}) == 200

    pipeline.procs.stop()  # every process flushes and closes its log
    findings = scan(pipeline.settings.run_dir,
                    secrets=(OP_TOKEN, VIEW_PASSWORD, basic, csrf, cookie.split("=", 1)[1], "receiver-own-token-123"),
                    extra=(*PHONES, "+447700900999", EMAIL))
    logs = sorted(p.name for p in pipeline.settings.run_dir.rglob("*.log"))
    assert {"worker.log", "sandbox.log", "webhooks.log", "console.log"} <= set(logs), logs
    assert findings == [], "\n".join(findings[:50])


def test_the_scan_finds_what_it_looks_for(tmp_path):
    (tmp_path / "w.log").write_text(
        "to +447700900123 ok\nGET /Messages.json?To=%2B12015550142\nmail li.wei@example.com\n"
        "Authorization: Basic dmljOnNlY3JldC1wYXNzd29yZA==\nX-Twilio-Signature: abc=\nhi Bearer abcdefghijklmnop\n"
        "cookie gw_session=abcdefghijklmnopqrstuvwxyz\nplain op-log-scan-token-7f3a9c2e41\n"
        "masked +44770****0123 and l****@e****.com and <id@gridwatch.invalid> from +15005550006\n", encoding="utf-8")
    found = scan(tmp_path, secrets=(OP_TOKEN,), extra=("+447700900123",))
    kinds = [f.split(": ", 1)[1].rsplit(" ", 1)[0] for f in found]
    assert sorted(set(kinds)) == sorted({"phone number", "email address", "authorization header", "twilio signature",
                                         "session cookie", "secret or personal value"})
    assert not any(":9:" in f for f in found)  # masked values and our own are not findings
