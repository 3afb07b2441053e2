"""The console's web app on aiohttp's test server, with a model fed by hand and a publisher that records
what would go to Kafka: authentication, roles, CSRF and Origin checks, actions, silences, evidence charts,
the OpenAPI document, metrics and live events."""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import time
import xml.etree.ElementTree as ET
from contextlib import asynccontextmanager

import pytest
from aiohttp.test_utils import TestClient, TestServer

from console import auth
from console.app import CONSOLE, SECURITY_HEADERS, make_app, run
from console.metrics import KafkaFigures
from console.model import ConsoleModel
from gridwatch import config as names
from gridwatch.config import Settings
from tests.unit.test_console_model import PHONE_C1, alert, build

OP_TOKEN = "op-token-0123456789"
VIEW_SECRET = "viewer-secret-987654"
USERS = auth.parse_users(f"ana:operator:{OP_TOKEN},vic:viewer:{auth.hash_secret(VIEW_SECRET)}")
OP = {"Authorization": f"Bearer {OP_TOKEN}"}
VIEW = {"Authorization": "Basic " + base64.b64encode(f"vic:{VIEW_SECRET}".encode()).decode()}


def settings(**kw) -> Settings:
    return dataclasses.replace(Settings(), **{"topic_prefix": "t.", "console_url": None, **kw})


class FakeProducer:
    def __init__(self, fail: bool = False):
        self.sent: list[tuple[str, str, dict]] = []
        self.fail = fail

    async def send_and_wait(self, topic, value=None, key=None):
        if self.fail:
            raise ConnectionError("broker down")
        self.sent.append((topic, key.decode(), json.loads(value)))


class FakeOffsets:
    def __init__(self, figures: KafkaFigures | None):
        self.figures = figures

    async def query(self):
        return self.figures

    async def close(self):
        pass


VOLTAGE_TRACE = {"unit": "V", "standard": "GB/T 12325", "nominal": 220, "band": [198.0, 235.4],
                 "meter_id": "M<1>&\"'x",
                 "points": [["2026-07-01T04:00:00Z", 221.0, 219.5, 222.0], ["2026-07-01T04:15:00Z", 190.2, 188.0, 193.1],
                            ["2026-07-01T04:30:00Z", 186.9, 185.0, 189.0], ["2026-07-01T04:45:00Z", None, None, None],
                            ["2026-07-01T05:00:00Z", 200.1, 199.0, 201.0]]}
BILL_SERIES = {"unit": "kWh", "currency": "EUR",
               "days": [["2026-07-01", 9.5], ["2026-07-02", 11.0], ["2026-07-03", 14.2]],
               "previous": [["2026-06-01", 8.0], ["2026-06-02", 8.4], ["2026-06-03", 7.9], ["2026-06-04", 8.1]],
               "forecast": [["2026-07-04", 13.0, 10.5, 15.5], ["2026-07-05", 13.2, 10.4, 16.0]]}


def model_with_evidence() -> ConsoleModel:
    m = build()
    a1 = m.alerts["A1"]
    m.apply("alerts", "A1", {**a1, "evidence": {"trace": VOLTAGE_TRACE, "text": "<script>x</script>"}}, None)
    a4 = m.alerts["A4"]
    m.apply("alerts", "A4", {**a4, "evidence": {"series": BILL_SERIES}}, None)
    return m


@asynccontextmanager
async def console(model=None, *, producer=None, offsets=None, static_dir=None, **kw):
    producer = producer or FakeProducer()
    app = make_app(settings(**kw), USERS, model=model or model_with_evidence(), producer=producer,
                   offsets=offsets or FakeOffsets(KafkaFigures(readings_messages=42, dlq_records=3,
                                                               lag={"t.meter.readings": 7})),
                   heartbeat_s=0.2, static_dir=static_dir)
    async with TestClient(TestServer(app)) as client:
        client.producer = producer
        yield client


def arun(coro):
    return asyncio.run(coro)


# ------------------------------------------------------------------------------------------ auth

def test_parse_users_forms_and_errors(tmp_path):
    users = auth.parse_users("a:operator:s1, b:Viewer:" + auth.hash_secret("s2"))
    assert [(u.name, u.role) for u in users] == [("a", "operator"), ("b", "viewer")]
    assert users[0].matches("s1") and not users[0].matches("s2") and "s1" not in repr(users[0])
    assert users[1].matches("s2") and not users[1].matches("s1")
    assert auth.parse_users("c:viewer:pa:ss:word")[0].matches("pa:ss:word")
    for bad, why in (("a:admin:x", "role"), ("a:viewer:", "empty"), ("nocolon", "name:role:secret"),
                     ("a:viewer:sha256:" + "ab" * 32, "no longer accepted"), ("a:viewer:$argon2id$xyz", "valid Argon2"),
                     ("bad name:viewer:x", "user name")):
        with pytest.raises(auth.UsersError, match=why) as exc:
            auth.parse_users(bad)
        assert "xyz" not in str(exc.value)
    path = tmp_path / "users"
    path.write_text("# ops\nops1:operator:tok-1\n\nview1:viewer:tok-2\n", encoding="utf-8")
    loaded = auth.load_users(dataclasses.replace(Settings(), console_users="x:viewer:tok-3", console_users_file=path))
    assert [u.name for u in loaded] == ["x", "ops1", "view1"]
    with pytest.raises(auth.UsersError, match="twice"):
        auth.load_users(dataclasses.replace(Settings(), console_users="x:viewer:a,x:operator:b", console_users_file=None))
    with pytest.raises(auth.UsersError, match="same secret"):
        auth.load_users(dataclasses.replace(Settings(), console_users="x:viewer:a,y:operator:a", console_users_file=None))
    a = auth.Authenticator(users)
    assert a.by_token("s1") is users[0] and a.by_token("nope") is None and a.by_token("") is None
    assert a.by_password("a", "s1") is users[0] and a.by_password("a", "x") is None and a.by_password("zz", "s1") is None


def test_the_console_refuses_to_start_without_users(monkeypatch, capsys):
    monkeypatch.delenv("GRIDWATCH_CONSOLE_USERS", raising=False)
    monkeypatch.delenv("GRIDWATCH_CONSOLE_USERS_FILE", raising=False)
    code = run(argparse.Namespace(host="127.0.0.1", port=0, demo_users=False, verbose=False))
    assert code == 2
    assert "no console users configured" in capsys.readouterr().err
    monkeypatch.setenv("GRIDWATCH_CONSOLE_USERS", "a:root:x")
    assert run(argparse.Namespace(host="127.0.0.1", port=0, demo_users=False, verbose=False)) == 2
    assert "role" in capsys.readouterr().err


def test_demo_users_have_random_tokens():
    first, second = auth.demo_users(), auth.demo_users()
    assert [(u.name, u.role) for u, _ in first] == [("operator", "operator"), ("viewer", "viewer")]
    assert first[0][1] != second[0][1] and first[0][0].matches(first[0][1])


def test_no_credentials_is_401_everywhere_but_login_and_static():
    async def go():
        async with console() as c:
            for path in ("/", "/alerts/A1"):
                r = await c.get(path)
                assert r.status == 401 and r.content_type == "text/html"
                text = await r.text()
                assert '<form method="post" action="/login">' in text and 'name="secret"' in text
            for path in ("/api/alerts", "/api/me", "/api/alerts/A1", "/api/openapi.json", "/metrics", "/api/events",
                         "/api/nothing-here"):
                r = await c.get(path)
                assert r.status == 401, path
                assert "error" in await r.json()
            r = await c.post("/api/alerts/A1/acknowledge", json={"reason": "x"})
            assert r.status == 401 and c.producer.sent == []
            assert (await c.get("/api/alerts", headers={"Authorization": "Bearer wrong"})).status == 401
            bad_basic = "Basic " + base64.b64encode(b"ana:wrong").decode()
            assert (await c.get("/api/alerts", headers={"Authorization": bad_basic})).status == 401
            assert (await c.get("/login")).status == 200
            assert (await c.get("/static/index.html")).status == 200
    arun(go())


def test_bearer_basic_and_me():
    async def go():
        async with console() as c:
            r = await c.get("/api/me", headers=OP)
            assert r.status == 200 and await r.json() == {"user": "ana", "role": "operator", "csrf": None}
            r = await c.get("/api/me", headers=VIEW)
            assert (await r.json())["role"] == "viewer"
            r = await c.get("/", headers=OP)
            assert r.status == 200 and "text/html" in r.headers["Content-Type"]
            assert await r.text() == await (await c.get("/alerts/A1", headers=OP)).text()
    arun(go())


def test_security_headers():
    async def go():
        async with console() as c:
            for path, headers in (("/", OP), ("/api/alerts", OP), ("/static/index.html", {}), ("/", {}),
                                  ("/api/alerts", {})):
                r = await c.get(path, headers=headers)
                for name, value in SECURITY_HEADERS.items():
                    assert r.headers[name] == value, (path, name)
            assert SECURITY_HEADERS["Content-Security-Policy"] == (
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'")
    arun(go())


def test_session_login_cookie_and_csrf():
    async def go():
        async with console() as c:
            r = await c.post("/login", data={"user": "ana", "secret": "wrong"})
            assert r.status == 401 and "Wrong user or secret" in await r.text()
            r = await c.post("/login", data={"user": "ana", "secret": OP_TOKEN, "next": "/alerts/A1"},
                             allow_redirects=False)
            assert r.status == 303 and r.headers["Location"] == "/alerts/A1"
            cookie = r.headers["Set-Cookie"]
            assert cookie.startswith("gw_session=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
            me = await (await c.get("/api/me")).json()
            assert me["user"] == "ana" and me["csrf"]
            url = "/api/alerts/A1/acknowledge"
            r = await c.post(url, json={"reason": "crew"})
            assert r.status == 403 and "X-CSRF-Token" in (await r.json())["error"]
            r = await c.post(url, json={"reason": "crew"}, headers={"X-CSRF-Token": "wrong"})
            assert r.status == 403 and c.producer.sent == []
            r = await c.post(url, json={"reason": "crew"}, headers={"X-CSRF-Token": me["csrf"]})
            assert r.status == 202 and len(c.producer.sent) == 1
            # logout needs the token too, then the cookie no longer works
            assert (await c.post("/logout")).status == 403
            assert (await c.post("/logout", headers={"X-CSRF-Token": me["csrf"]})).status == 200
            assert (await c.get("/api/me")).status == 401
            # JSON sign-in answers the user and the CSRF token; an off-site next is not followed
            r = await c.post("/login", json={"user": "vic", "secret": VIEW_SECRET})
            assert r.status == 200 and (await r.json())["role"] == "viewer"
            r = await c.post("/login", data={"user": "ana", "secret": OP_TOKEN, "next": "//evil.example/"},
                             allow_redirects=False)
            assert r.headers["Location"] == "/"
    arun(go())


def test_origin_must_be_the_consoles_own():
    async def go():
        async with console() as c:
            url = "/api/alerts/A1/acknowledge"
            r = await c.post(url, json={"reason": "crew"}, headers={**OP, "Origin": "https://evil.example"})
            assert r.status == 403 and "Origin" in (await r.json())["error"]
            r = await c.post("/login", data={"user": "ana", "secret": OP_TOKEN},
                             headers={"Origin": "https://evil.example"}, allow_redirects=False)
            assert r.status == 403
            assert c.producer.sent == []
            own = str(c.make_url("/")).rstrip("/")
            r = await c.post(url, json={"reason": "crew"}, headers={**OP, "Origin": own})
            assert r.status == 202
        # behind a proxy: the configured public URL is the origin
        async with console(console_url="https://console.example.org/ops") as c:
            r = await c.post(url, json={"reason": "crew"}, headers={**OP, "Origin": "https://console.example.org"})
            assert r.status == 202
            r = await c.post(url, json={"reason": "crew"}, headers={**OP, "Origin": str(c.make_url("/")).rstrip("/")})
            assert r.status == 403
    arun(go())


def test_viewers_cannot_act_and_see_masked_phones():
    async def go():
        async with console() as c:
            for url, body in (("/api/alerts/A1/acknowledge", {"reason": "x"}),
                              ("/api/alerts/A1/resolve", {"reason": "x"}),
                              ("/api/silences", {"scope": "feeder:F1", "duration": "2h", "reason": "x"}),
                              ("/api/silences/s1/expire", {})):
                r = await c.post(url, json=body, headers=VIEW)
                assert r.status == 403, url
            assert c.producer.sent == []
            viewer = await (await c.get("/api/alerts/A1", headers=VIEW)).json()
            assert viewer["customers"][0]["phone"] == "+86138****8000"
            assert PHONE_C1 not in json.dumps(viewer)
            operator = await (await c.get("/api/alerts/A1", headers=OP)).json()
            assert operator["customers"][0]["phone"] == PHONE_C1
    arun(go())


def test_alerts_list_detail_and_filters():
    async def go():
        async with console() as c:
            body = await (await c.get("/api/alerts?feeder=F1&status=resolved", headers=OP)).json()
            assert [a["alert_id"] for a in body["alerts"]] == ["A4", "A3"]
            assert body["counts"] == {"open": 1, "acknowledged": 0, "resolved": 2}
            body = await (await c.get("/api/alerts?kind=undervoltage,overvoltage&limit=1", headers=OP)).json()
            assert [a["alert_id"] for a in body["alerts"]] == ["A2"]
            assert (await c.get("/api/alerts?limit=0", headers=OP)).status == 400
            detail = await (await c.get("/api/alerts/A1", headers=OP)).json()
            assert detail["evidence_svg"] == "/api/alerts/A1/evidence.svg"
            assert [e["event"] for e in detail["timeline"]] == ["started", "detected", "notified"]
            assert detail["customers"][0]["notifications"][0]["status"] == "delivered"
            assert (await (await c.get("/api/alerts/A2", headers=OP)).json())["evidence_svg"] is None
            r = await c.get("/api/alerts/nope", headers=OP)
            assert r.status == 404 and "error" in await r.json()
    arun(go())


def test_acknowledge_and_resolve_publish_actions():
    async def go():
        async with console() as c:
            before = time.time()
            r = await c.post("/api/alerts/A1/acknowledge", json={"reason": " crew dispatched "}, headers=OP)
            assert r.status == 202
            body = await r.json()
            topic, key, action = c.producer.sent[-1]
            assert topic == "t." + names.ALERT_ACTIONS and key == "A1"
            assert action == body["action"] and body["accepted"] is True
            assert {k: action[k] for k in ("action", "alert_id", "author", "reason")} == {
                "action": "acknowledge", "alert_id": "A1", "author": "ana", "reason": "crew dispatched"}
            at = time.mktime(time.strptime(action["at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
            assert before - 2 <= at <= time.time() + 2
            r = await c.post("/api/alerts/A2/resolve", json={"reason": "fixed tap", "no_fault": True}, headers=OP)
            assert r.status == 202 and c.producer.sent[-1][2]["no_fault"] is True
            assert c.producer.sent[-1][2]["action"] == "resolve"
            n = len(c.producer.sent)
            assert (await c.post("/api/alerts/A1/acknowledge", json={}, headers=OP)).status == 400
            assert (await c.post("/api/alerts/A1/acknowledge", json={"reason": "  "}, headers=OP)).status == 400
            assert (await c.post("/api/alerts/A1/acknowledge", data="{", headers=OP)).status == 400
            assert (await c.post("/api/alerts/nope/acknowledge", json={"reason": "x"}, headers=OP)).status == 404
            r = await c.post("/api/alerts/A3/acknowledge", json={"reason": "x"}, headers=OP)
            assert r.status == 409 and "resolved" in (await r.json())["error"]
            assert (await c.post("/api/alerts/A3/resolve", json={"reason": "x"}, headers=OP)).status == 409
            assert (await c.post("/api/alerts/A2/acknowledge", json={"reason": "x"}, headers=OP)).status == 409
            assert len(c.producer.sent) == n
        async with console(producer=FakeProducer(fail=True)) as c:
            r = await c.post("/api/alerts/A1/acknowledge", json={"reason": "x"}, headers=OP)
            assert r.status == 503 and "error" in await r.json()
    arun(go())


def test_silences_add_list_expire():
    async def go():
        async with console() as c:
            r = await c.post("/api/silences", headers=OP, json={
                "scope": "feeder:F01", "kinds": ["undervoltage"], "duration": "2h", "reason": "planned work WO-17"})
            assert r.status == 201
            record = await r.json()
            assert record["scope"] == {"level": "feeder", "id": "F01"} and record["author"] == "ana"
            assert record["kinds"] == ["undervoltage"] and record["active"] is True
            topic, key, published = c.producer.sent[-1]
            assert topic == "t." + names.SILENCES and key == record["silence_id"]
            assert published["silence_id"] == record["silence_id"] and "active" not in published
            listed = await (await c.get("/api/silences", headers=VIEW)).json()
            assert [s["silence_id"] for s in listed["silences"]] == [record["silence_id"]]
            assert listed["silences"][0]["active"] is True
            for bad in ({"scope": "feeder:F01", "reason": "x"},                       # no end
                        {"scope": "planet:X", "duration": "2h", "reason": "x"},
                        {"scope": "feeder:F01", "duration": "2h"},                    # no reason
                        {"scope": "feeder:F01", "duration": "2h", "ends_at": "2030-01-01T00:00:00Z", "reason": "x"},
                        {"scope": "feeder:F01", "duration": "30d", "reason": "x"}):
                r = await c.post("/api/silences", json=bad, headers=OP)
                assert r.status == 400 and (await r.json())["error"], bad
            r = await c.post(f"/api/silences/{record['silence_id']}/expire", headers=OP)
            assert r.status == 200
            ended = await r.json()
            assert ended["expired_by"] == "ana" and ended["active"] is False and ended["state"] == "expired"
            assert c.producer.sent[-1][2]["expired_by"] == "ana"
            assert (await c.post(f"/api/silences/{record['silence_id']}/expire", headers=OP)).status == 409
            assert (await c.post("/api/silences/nope/expire", headers=OP)).status == 404
            r = await c.post("/api/silences", headers=OP, json={"scope": "all", "ends_at": "2099-01-01T00:00:00Z",
                                                                "reason": "storm", "include_safety": True,
                                                                "force": True})
            assert r.status == 201 and (await r.json())["include_safety"] is True
    arun(go())


def test_feedback_and_figures():
    async def go():
        async with console() as c:
            body = await (await c.get("/api/feedback?limit=2", headers=VIEW)).json()
            assert [f["feedback_id"] for f in body["feedback"]] == ["F4", "F3"]
            assert body["satisfaction"]["undervoltage"]["mean"] == 4.5
            figures = await (await c.get("/api/figures", headers=VIEW)).json()
            assert figures["detection_s"] == {"n": 4, "median": 1350.0, "p95": 3330.0}
            assert figures["false_alarms"]["rate"] == 0.5
    arun(go())


def test_evidence_svg_renders_and_escapes():
    async def go():
        async with console() as c:
            r = await c.get("/api/alerts/A1/evidence.svg", headers=OP)
            assert r.status == 200 and r.content_type == "image/svg+xml"
            svg = await r.text()
            root = ET.fromstring(svg.encode())  # well-formed XML
            assert root.tag.endswith("svg")
            assert "M&lt;1&gt;&amp;&quot;&#x27;x" in svg and "M<1>" not in svg
            assert "<script" not in svg
            assert "low limit 198.0 V" in svg and "high limit 235.4 V" in svg and "GB/T 12325" in svg
            # the v_avg line is broken at the missing reading: a line, then a lone point
            assert svg.count("<polyline") == 1 and svg.count("<circle") == 1
            r = await c.get("/api/alerts/A4/evidence.svg", headers=VIEW)
            assert r.status == 200
            bill = await r.text()
            ET.fromstring(bill.encode())
            assert bill.count("<rect") >= 3 + 1 and "forecast" in bill and "previous cycle" in bill
            assert (await c.get("/api/alerts/A2/evidence.svg", headers=OP)).status == 404
            assert (await c.get("/api/alerts/nope/evidence.svg", headers=OP)).status == 404
    arun(go())


def test_openapi_document_is_valid():
    async def go():
        async with console() as c:
            return await (await c.get("/api/openapi.json", headers=VIEW)).json()

    doc = arun(go())
    assert doc["openapi"] == "3.1.0"
    for path in ("/api/me", "/api/alerts", "/api/alerts/{alert_id}", "/api/alerts/{alert_id}/evidence.svg",
                 "/api/alerts/{alert_id}/acknowledge", "/api/alerts/{alert_id}/resolve", "/api/silences",
                 "/api/silences/{silence_id}/expire", "/api/feedback", "/api/figures", "/api/events",
                 "/api/openapi.json", "/metrics", "/login", "/logout"):
        assert path in doc["paths"], path
    assert set(doc["components"]["securitySchemes"]) == {"bearerAuth", "basicAuth", "cookieAuth"}
    assert "wall time" in doc["paths"]["/api/figures"]["get"]["description"]
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(doc)


def test_metrics_families_and_a_broker_that_does_not_answer():
    async def go():
        async with console() as c:
            r = await c.get("/metrics", headers=VIEW)
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            up = await r.text()
        async with console(offsets=FakeOffsets(None)) as c:
            r = await c.get("/metrics", headers=OP)
            assert r.status == 200
            down = await r.text()
        return up, down

    up, down = arun(go())
    for line in ("gridwatch_readings_messages_total 42.0", "gridwatch_dlq_records_total 3.0",
                 'gridwatch_consumer_lag{topic="t.meter.readings"} 7.0', "gridwatch_console_up 1.0",
                 "gridwatch_kafka_up 1.0", 'gridwatch_alerts{kind="undervoltage",status="open"} 1.0',
                 'gridwatch_notifications_total{channel="sms",status="sent"} 2.0',
                 "gridwatch_detection_latency_seconds_count 4.0", "gridwatch_detection_latency_seconds_sum 6480.0",
                 'gridwatch_detection_latency_seconds_bucket{le="900.0"} 2.0'):
        assert line in up, line
    assert "gridwatch_kafka_up 0.0" in down and "gridwatch_console_up 1.0" in down
    assert "gridwatch_readings_messages_total" not in down and "gridwatch_alerts{" in down


def test_live_events_push_changes_with_heartbeats():
    async def go():
        async with console() as c:
            r = await c.get("/api/events", headers=VIEW)
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
            app_console = c.server.app[CONSOLE]

            async def next_event(heartbeats: bool = False):
                """The next event's lines (with ``heartbeats``, a heartbeat counts as one)."""
                lines = []
                while True:
                    line = (await r.content.readline()).decode()
                    if line == "\n":
                        if any(not l.startswith(":") and not l.startswith("retry:") for l in lines):
                            return lines
                        if heartbeats and any(l.startswith(": heartbeat") for l in lines):
                            return lines
                        lines = []
                        continue
                    lines.append(line.rstrip("\n"))

            heartbeat = await asyncio.wait_for(next_event(heartbeats=True), 2)
            assert heartbeat == [": heartbeat"]
            started = time.monotonic()
            new = alert("A7", "sag", "warning", "open", "meter", "M2", ["M2"], ["C2"],
                        "2026-07-04T00:00:00Z", "2026-07-04T00:15:00Z")
            app_console.feed("alerts")("A7", new, time.time())
            lines = await asyncio.wait_for(next_event(), 2)
            assert time.monotonic() - started < 2
            assert lines[0] == "event: alert"
            summary = json.loads(lines[1][len("data: "):])
            assert summary["alert_id"] == "A7" and summary["feeder_id"] == "F1"
            app_console.feed(names.FEEDBACK)(None, {"feedback_id": "F9", "customer_id": None, "body": "中文"}, None)
            lines = await asyncio.wait_for(next_event(), 2)
            assert lines[0] == "event: feedback" and json.loads(lines[1][6:])["body"] == "中文"
            r2 = await c.post("/api/silences", headers=OP, json={"scope": "transformer:T1", "duration": "1h",
                                                                 "reason": "fuse change"})
            added = await r2.json()
            app_console.feed(names.SILENCES)(added["silence_id"], c.producer.sent[-1][2], time.time())  # read back
            lines = await asyncio.wait_for(next_event(), 2)
            pushed = json.loads(lines[1][6:])
            assert lines[0] == "event: silence" and pushed == added and pushed["active"] is True
            app_console.feed("notifications")("C1", {"notification_id": "n", "alert_id": "A7", "status": "sent"}, None)
            lines = await asyncio.wait_for(next_event(), 2)
            assert lines[0] == "event: notification"  # the silence was pushed once, not again when read back
            r.close()
    arun(go())


def test_static_placeholder_and_page_fallback(tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html><title>mine</title>", encoding="utf-8")
    (tmp_path / "app.js").write_text("console.log(1)", encoding="utf-8")

    async def go():
        async with console(static_dir=tmp_path) as c:
            assert "mine" in await (await c.get("/", headers=OP)).text()
            assert "mine" in await (await c.get("/alerts/A1", headers=OP)).text()
            r = await c.get("/static/app.js")
            assert r.status == 200 and r.headers["X-Content-Type-Options"] == "nosniff"
            assert (await c.get("/static/..%2fapp.py")).status in (403, 404)
    arun(go())


def test_an_alert_with_a_non_finite_number_is_still_served_as_valid_json():
    """A record written before the contract refused NaN and Infinity: the API serves null, never ``Infinity``."""
    async def go():
        m = build()
        a1 = m.alerts["A1"]
        m.apply("alerts", "A1", {**a1, "evidence": {"v_extreme": float("inf"), "pu": float("nan")}}, None)
        async with console(m) as c:
            for path in ("/api/alerts/A1", "/api/alerts"):
                r = await c.get(path, headers=OP)
                text = await r.text()
                assert r.status == 200 and "Infinity" not in text and "NaN" not in text
                json.loads(text, parse_constant=lambda name: pytest.fail(f"{path} served {name}"))
            detail = json.loads(await (await c.get("/api/alerts/A1", headers=OP)).text())
            ev = (detail.get("alert") or detail)["evidence"]
            assert ev["v_extreme"] is None and ev["pu"] is None
    arun(go())
