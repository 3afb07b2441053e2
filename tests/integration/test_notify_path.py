"""The notification path on a real broker with a real worker and the SMS sandbox: provider errors retried
or not, a bill alert at 23:00 local time, operator silences from the CLI, acknowledgement reaching
``alerts``, and the customer's HELP / "still out" / rating replies."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from tests.integration.test_replies import post, reply

pytestmark = pytest.mark.integration


def customer(n: int, **over) -> dict:
    c = {"customer_id": f"C95{n:04d}", "meter_id": f"M95{n:04d}", "transformer_id": "T9501", "feeder_id": "F951",
         "segment": "residential", "phone": f"+861381235{n:04d}", "language": "en", "timezone": "Asia/Shanghai",
         "nominal_voltage": 220, "opted_out": False, "tariff": {"currency": "CNY", "price_per_kwh": 0.6},
         "preferences": {"quiet_hours": ["00:00", "00:00"]}}
    c.update(over)
    return c


def alert(alert_id: str, kind: str, custs: list[dict], status: str = "open", **evidence) -> dict:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    level, scope = ("customer", custs[0]["customer_id"]) if kind == "bill_spike" else ("transformer", "T9501")
    return {"alert_id": alert_id, "kind": kind, "severity": "critical" if kind == "outage" else "warning",
            "status": status, "scope": {"level": level, "id": scope},
            "meter_ids": [c["meter_id"] for c in custs], "customer_ids": [c["customer_id"] for c in custs],
            "started_at": now, "detected_at": now, "resolved_at": now if status == "resolved" else None,
            "evidence": {"standard": "GB/T 12325", "extreme_v": 190.2, **evidence}}


BILL = {"projected_amount": 412.0, "usual_amount": 298.0, "currency": "CNY", "pct_above": 38.0,
        "driver": "night-time base load up 45 %"}


def publish_customers(pipeline, custs: list[dict]) -> None:
    for c in custs:
        pipeline.send("customers", c["customer_id"], c)
    pipeline.flush()
    pipeline.read("gridwatch.phone-directory", lambda rs: len(rs) >= len(custs), timeout=60)


def gridwatch(pipeline, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "gridwatch.cli", *args], env=pipeline.env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def final(pipeline, alert_id: str, n: int = 1) -> list[dict]:
    """The decisions recorded for ``alert_id`` once ``n`` of them are final (not deferred / delivered)."""
    def done(rs):
        return sum(r["alert_id"] == alert_id and r["status"] in ("sent", "suppressed", "failed")
                   for r in rs) >= n
    return [r for r in pipeline.read("notifications", done, timeout=90)
            if r["alert_id"] == alert_id and r["status"] not in ("delivered", "undelivered")]


@pytest.mark.sandbox_args("--fail", "+8613812350001=429x2", "--fail", "+8613812350002=21211")
def test_a_retryable_provider_error_is_retried_and_a_permanent_one_is_not(pipeline):
    busy, invalid = customer(1), customer(2)
    publish_customers(pipeline, [busy, invalid])
    pipeline.send("alerts", "A-retry", alert("A-retry", "undervoltage", [busy, invalid]))
    notes = {n["customer_id"]: n for n in final(pipeline, "A-retry", 2)}
    assert (notes[busy["customer_id"]]["status"], notes[busy["customer_id"]]["reason"]) == \
        ("sent", "sent after 3 attempts")
    bad = notes[invalid["customer_id"]]
    assert bad["status"] == "failed" and "21211" in bad["reason"] and "attempts" not in bad["reason"]
    assert [m["to"] for m in pipeline.sandbox_messages()] == [busy["phone"]]


def test_a_bill_alert_at_23_local_time_waits_for_the_end_of_quiet_hours(pipeline):
    now = datetime.now(timezone.utc)
    offset = (23 - now.hour) % 24
    offset = offset - 24 if offset > 14 else offset
    tz = f"Etc/GMT{-offset:+d}" if offset else "UTC"  # POSIX sign: Etc/GMT-8 is UTC+8
    local = now + timedelta(hours=offset)
    assert local.hour == 23
    end = (local + timedelta(seconds=70)).strftime("%H:%M")
    night = customer(3, timezone=tz, preferences={"quiet_hours": ["22:00", end]})
    publish_customers(pipeline, [night])
    pipeline.send("alerts", "B-night", alert("B-night", "bill_spike", [night], **BILL))
    notes = final(pipeline, "B-night", 1)
    deferred, sent = notes[0], notes[-1]
    assert deferred["status"] == "deferred" and deferred["reason"].startswith("quiet_hours until ")
    due = datetime.fromisoformat(deferred["reason"].removeprefix("quiet_hours until "))
    assert (due + timedelta(hours=offset)).strftime("%H:%M") == end
    assert sent["status"] == "sent" and sent["notification_id"] == deferred["notification_id"]
    assert datetime.fromisoformat(sent["created_at"]) >= due
    assert len(pipeline.sandbox_messages()) == 1


def test_an_operator_silence_from_the_cli_is_honoured_then_expired(pipeline):
    c = customer(4)
    publish_customers(pipeline, [c])
    out = gridwatch(pipeline, "silence", "add", "--scope", "transformer:T9501", "--kinds", "undervoltage",
                    "--for", "1h", "--author", "ops-lin", "--reason", "planned work on T9501")
    silence_id = out.split()[-1] if out.split() else ""
    listed = json.loads(gridwatch(pipeline, "silence", "list", "--json"))
    assert [s["silence_id"] for s in listed] == [silence_id]
    time.sleep(2)  # the worker follows the silences topic
    pipeline.send("alerts", "S-1", alert("S-1", "undervoltage", [c]))
    pipeline.send("alerts", "S-2", alert("S-2", "loose_neutral", [c]))  # safety: not silenced
    (muted,) = final(pipeline, "S-1")
    assert muted["status"] == "suppressed"
    assert muted["reason"] == f"silenced {silence_id} by ops-lin: planned work on T9501"
    assert final(pipeline, "S-2")[0]["status"] == "sent"

    gridwatch(pipeline, "silence", "expire", silence_id, "--author", "ops-lin")
    assert json.loads(gridwatch(pipeline, "silence", "list", "--json")) == []
    time.sleep(2)
    pipeline.send("alerts", "S-3", alert("S-3", "undervoltage", [c]))
    assert [(n["status"], n["reason"]) for n in final(pipeline, "S-3")] == [("sent", None)]
    assert len(pipeline.sandbox_messages()) == 2  # the loose neutral and S-3


def test_an_operator_acknowledges_an_alert_and_the_change_reaches_alerts(pipeline):
    c = customer(5)
    publish_customers(pipeline, [c])
    found = alert("A-ack", "undervoltage", [c])
    pipeline.send("gridwatch.findings", "A-ack", found)
    pipeline.read("alerts", lambda rs: any(r["alert_id"] == "A-ack" for r in rs), timeout=60)
    gridwatch(pipeline, "alert", "ack", "A-ack", "--author", "ops-lin", "--reason", "crew sent to T9501")
    recs = pipeline.read("alerts", lambda rs: any(r["status"] == "acknowledged" for r in rs), timeout=60)
    acked = [r for r in recs if r["status"] == "acknowledged"][-1]
    assert (acked["acknowledged_by"], acked["ack_reason"]) == ("ops-lin", "crew sent to T9501")
    # the detector still sees the fault: the alert grows but stays acknowledged
    pipeline.send("gridwatch.findings", "A-ack", {**found, "evidence": {**found["evidence"], "extreme_v": 185.0}})
    recs = pipeline.read("alerts", lambda rs: sum(r["alert_id"] == "A-ack" for r in rs) >= 3, timeout=60)
    assert [r["status"] for r in recs] == ["open", "acknowledged", "acknowledged"]
    assert recs[-1]["evidence"]["extreme_v"] == 185.0
    pipeline.settle("notifications", 3)
    assert len(pipeline.sandbox_messages()) == 1  # acknowledging sends nothing to the customer

    gridwatch(pipeline, "alert", "resolve", "A-nope", "--author", "ops-lin", "--reason", "typo")
    dead = pipeline.read("gridwatch.dlq", lambda rs: rs, timeout=60)
    assert "alert action refused" in dead[0]["error"]


def test_help_is_answered_still_out_reopens_the_outage_and_a_rating_is_tied_to_it(pipeline):
    c = customer(6)
    publish_customers(pipeline, [c])
    out = alert("O-1", "outage", [c])
    pipeline.send("gridwatch.findings", "O-1", out)
    final(pipeline, "O-1", 1)
    pipeline.send("gridwatch.findings", "O-1", {**out, "status": "resolved",
                                                "resolved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    final(pipeline, "O-1", 2)
    back = pipeline.sandbox_messages()[-1]
    assert "back" in back["body"]

    reply(pipeline, to_sid=back["sid"], body="HELP")
    reply(pipeline, to_sid=back["sid"], body="still out")
    reopened = pipeline.read("alerts", lambda rs: any(r["evidence"].get("reported_by_customer") for r in rs),
                             timeout=60)
    child = next(r for r in reopened if r["evidence"].get("reported_by_customer"))
    assert (child["kind"], child["status"], child["scope"]) == ("outage", "open", {"level": "meter", "id": c["meter_id"]})
    assert child["evidence"]["parent_alert_id"] == "O-1" and child["customer_ids"] == [c["customer_id"]]

    reply(pipeline, to_sid=back["sid"], body="4")
    feedback = pipeline.read("feedback", lambda rs: len(rs) >= 3, timeout=60)
    assert [(f["intent"], f["alert_id"]) for f in feedback] == [("help", "O-1"), ("still_out", "O-1"),
                                                               ("rating", "O-1")]
    assert feedback[2]["rating"] == 4
    answers = pipeline.read("notifications", lambda rs: sum(r["alert_id"].startswith("reply:") and
                                                            r["status"] == "sent" for r in rs) >= 3, timeout=60)
    bodies = [n["body"] for n in answers if n["alert_id"].startswith("reply:") and n["status"] == "sent"]
    assert "STOP" in bodies[0]  # HELP: who we are and how to stop
    # notice, "power is back", three answers; the reopened outage is not announced to the one who reported it
    pipeline.settle("notifications", 3)
    assert len(pipeline.sandbox_messages()) == 5
