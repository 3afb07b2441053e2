"""The detectors in the worker on a real broker, end to end to alerts: an outage with its restoration (and a
meter still dark after its feeder came back), and a bill spike forecast with Prophet."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gridwatch.contract import check, parse_ts
from tests.integration.test_pipeline import PrefixedSink

pytestmark = pytest.mark.integration


def test_feeder_outage_is_one_alert_resolved_on_restoration_with_a_nested_child(pipeline):
    from devtools.simulator import SimConfig, Simulator, publish

    sim = Simulator(SimConfig(seed=7, feeders=2, transformers_per_feeder=2, meters_per_transformer=6,
                              regions="CN", hours=8,
                              faults=("feeder_outage:F002@+3h/45m", "meter_outage:M000020@+3h/2h")))
    feeder_truth, meter_truth = sim.truth()
    fail_at = parse_ts(feeder_truth["start"])
    publish(sim.timed_records(), PrefixedSink(pipeline), progress=False)

    pipeline.read("alerts", lambda rs: sum(r["status"] == "resolved" for r in rs) >= 2)
    alerts = pipeline.settle("alerts")
    for rec in alerts:
        check("alerts", rec)
    assert {a["kind"] for a in alerts} == {"outage"}, "no voltage alert may be raised under the outage"

    feeder = [a for a in alerts if a["scope"] == {"level": "feeder", "id": "F002"}]
    assert len({a["alert_id"] for a in feeder}) == 1, "one alert for the feeder, not one per transformer or meter"
    assert feeder[0]["status"] == "open" and feeder[-1]["status"] == "resolved"
    # recognised within 5 minutes of event time after the last gasps
    assert 0 < parse_ts(feeder[0]["detected_at"]) - fail_at <= 300
    assert set(feeder[-1]["meter_ids"]) >= set(feeder_truth["meter_ids"]) - {"M000020"}
    assert parse_ts(feeder[-1]["resolved_at"]) >= parse_ts(feeder_truth["end"])

    # the meter still dark when its feeder was restored stays in a child outage, resolved when it returns
    child = [a for a in alerts if a["scope"] == {"level": "meter", "id": "M000020"}]
    assert child and child[0]["status"] == "open" and child[-1]["status"] == "resolved"
    assert child[0]["evidence"]["parent_alert_id"] == feeder[0]["alert_id"]
    assert parse_ts(child[-1]["resolved_at"]) >= parse_ts(meter_truth["end"])

    # Exactly two SMS per opted-in customer, however often the alert grew: the notice and "power is back".
    # The customer still dark when the feeder came back is not told of the child outage again, and hears
    # "power is back" only when the child outage ends.
    customers = {c["customer_id"]: c for c in sim.customers()}
    opted_in = {c for c in feeder_truth["customer_ids"] if not customers[c]["opted_out"]}
    pipeline.read("notifications", lambda rs: sum(r["status"] == "sent" for r in rs) >= 2 * len(opted_in))
    notes = [n for n in pipeline.settle("notifications") if n["status"] != "delivered"]
    sent = [n for n in notes if n["status"] == "sent"]
    assert Counter(n["customer_id"] for n in sent) == {c: 2 for c in opted_in}
    sms = pipeline.sandbox_messages()
    assert len(sms) == 2 * len(opted_in)
    # a notice stuck in the provider's queue expires instead of arriving hours late (GRIDWATCH_SMS_VALIDITY_S)
    assert {m["sandbox"]["validity_period"] for m in sms} == {3600}
    dark_customer = meter_truth["customer_ids"][0]
    if dark_customer in opted_in:
        assert sorted(n["alert_id"] for n in sent if n["customer_id"] == dark_customer) == sorted(
            [feeder[0]["alert_id"], child[0]["alert_id"]])
        (again,) = [n for n in notes if n["customer_id"] == dark_customer and n["alert_id"] == child[0]["alert_id"]
                    and n["status"] == "suppressed"]
        assert again["reason"] == f"notified_for {feeder[0]['alert_id']}"
    from notifiers.templates import render

    for c in opted_in:  # the second SMS is the restoration text of the alert that ended the customer's outage
        ended = child[-1] if c == dark_customer else feeder[-1]
        assert render(ended, customers[c]) in {n["body"] for n in sent if n["customer_id"] == c}


def test_a_feeder_outage_on_a_field_feed_is_one_incident_with_two_sms_per_customer(pipeline):
    """A feed as AMI head ends deliver it: 11 of the feeder's 18 meters get a last gasp through, 2, 5 and 4
    per transformer (one transformer a minority); half the meters send single readings, half hourly arrays;
    restore events spread over 90 s. ONE alert id from the first record to the restoration, at feeder scope
    within 5 minutes of the gasps, nothing resolved before the power is back, and exactly two SMS per
    opted-in customer (the notice, "power is back"), none to the opted-out ones."""
    from devtools.simulator import SimConfig, Simulator, publish

    sim = Simulator(SimConfig(seed=10, feeders=2, transformers_per_feeder=3, meters_per_transformer=6,
                              regions="CN", hours=7, field=True, faults=("feeder_outage:F002@+3h07m13s/50m",)))
    (truth,) = sim.truth()
    fail_at, back_at = parse_ts(truth["start"]), parse_ts(truth["end"])
    gasped = set(truth["power_fail_meter_ids"])
    per_transformer = [sum(m in gasped for m in sim.topology()["transformers"][i]["meter_ids"]) for i in (3, 4, 5)]
    assert per_transformer == [2, 5, 4] and len(gasped) == 11  # the feed this test is about
    restores = [e for e in sim.records() if e[0] == "meter.events" and e[2]["type"] == "power_restore"]
    assert max(parse_ts(e[2]["ts"]) for e in restores) - back_at > 30  # the restores really are spread
    publish(sim.timed_records(), PrefixedSink(pipeline), progress=False)

    pipeline.read("alerts", lambda rs: any(r["status"] == "resolved" for r in rs))
    alerts = pipeline.settle("alerts")
    for rec in alerts:
        check("alerts", rec)
    assert {a["kind"] for a in alerts} == {"outage"}
    assert len({a["alert_id"] for a in alerts}) == 1, [(a["alert_id"], a["status"]) for a in alerts]
    first_feeder = next(a for a in alerts if a["scope"] == {"level": "feeder", "id": "F002"})
    assert parse_ts(first_feeder["evidence"]["updated_at"]) - fail_at <= 300
    assert [a["status"] for a in alerts if a["status"] == "resolved"] == ["resolved"] == [alerts[-1]["status"]]
    assert parse_ts(alerts[-1]["resolved_at"]) >= back_at
    assert set(alerts[-1]["meter_ids"]) == set(truth["meter_ids"])

    customers = {c["customer_id"]: c for c in sim.customers()}
    opted_in = {c for c in truth["customer_ids"] if not customers[c]["opted_out"]}
    opted_out = set(truth["customer_ids"]) - opted_in
    assert opted_out
    pipeline.read("notifications", lambda rs: sum(r["status"] == "sent" for r in rs) >= 2 * len(opted_in))
    notes = [n for n in pipeline.settle("notifications") if n["status"] != "delivered"]
    sent = [n for n in notes if n["status"] == "sent"]
    assert Counter(n["customer_id"] for n in sent) == {c: 2 for c in opted_in}
    for c in opted_in:
        assert sorted(n["template"].split("@")[0] for n in sent if n["customer_id"] == c) == [
            "outage/notice", "outage/resolved"]
    # the opted-out: the notice suppressed, and so nothing to say "power is back" about
    assert sorted({(n["status"], n["reason"]) for n in notes if n["customer_id"] in opted_out}) == [
        ("suppressed", "no_notice_to_resolve"), ("suppressed", "opted_out")]
    assert len(pipeline.sandbox_messages()) == 2 * len(opted_in)


def test_bill_spike_is_forecast_in_the_worker_and_alerted_mid_cycle(pipeline):
    """Ten weeks of hourly readings; one customer's use jumps 1.8x at the start of a billing cycle. The worker
    builds daily usage, fits Prophet in its process pool and raises one bill alert, on day 7 of the cycle
    (none earlier is allowed), with the projected amount in the customer's currency."""
    from devtools.simulator import SimConfig, Simulator, publish

    sim = Simulator(SimConfig(seed=4, feeders=1, transformers_per_feeder=1, meters_per_transformer=2, regions="CN",
                              hours=24 * 73, interval=3600, batch=24,
                              faults=("bill_spike:C000001@2026-08-27T16:00:00Z/1.8",)))
    cust = {c["customer_id"]: c for c in sim.customers()}["C000001"]
    assert cust["bill_cycle_day"] == 28 and cust["timezone"] == "Asia/Shanghai"
    # Customers first, as in a utility where they exist long before their readings: ten weeks published in a
    # burst would otherwise overrun what the worker holds for meters not yet in its directory (dead-lettered).
    records = list(sim.timed_records())
    # It is night for this customer: quiet hours from two hours ago until the next minute but one, local time.
    now = datetime.now(ZoneInfo(cust["timezone"]))
    quiet = [(now - timedelta(hours=2)).strftime("%H:%M"), (now + timedelta(minutes=2)).strftime("%H:%M")]
    for _, topic, key, value in records:
        if topic == "customers" and key == "C000001":
            value["preferences"]["quiet_hours"] = quiet
    publish([r for r in records if r[1] == "customers"], PrefixedSink(pipeline), progress=False)
    pipeline.read("gridwatch.meter-directory", lambda rs: len(rs) >= 2)
    publish([r for r in records if r[1] != "customers"], PrefixedSink(pipeline), progress=False)

    alerts = pipeline.read("alerts", lambda rs: any(r["kind"] == "bill_spike" for r in rs), timeout=300)
    alerts = [a for a in pipeline.settle("alerts") if a["kind"] == "bill_spike"]
    (alert,) = alerts  # at most one per cycle, and none for the untouched customer
    check("alerts", alert)
    assert alert["customer_ids"] == ["C000001"] and alert["scope"] == {"level": "meter", "id": "M000001"}
    assert alert["started_at"] == "2026-08-27T16:00:00Z"              # the cycle's first local midnight
    assert alert["detected_at"] == "2026-09-03T16:00:00Z"             # day 7: the first day alerts are allowed
    ev = alert["evidence"]
    assert ev["currency"] == "CNY" and ev["projected_amount"] > ev["usual_amount"] * 1.3
    lo, hi = ev["pct_interval"]
    assert lo <= ev["pct_above"] <= hi and ev["driver"]
    assert pipeline.settle("gridwatch.dlq", seconds=1) == [], "every reading made it into the daily usage"

    # Not urgent, so not at night: deferred to the end of the quiet hours (not dropped), then sent once.
    notes = pipeline.read("notifications", lambda rs: any(r["status"] == "sent" and r["alert_id"] == alert["alert_id"]
                                                          for r in rs), timeout=240)
    mine = [n for n in notes if n["alert_id"] == alert["alert_id"] and n["status"] != "delivered"]
    assert [n["status"] for n in mine] == ["deferred", "sent"], mine
    deferred, sent = mine
    assert deferred["reason"].startswith("quiet_hours until ") and deferred["body"] is None
    due = deferred["reason"].removeprefix("quiet_hours until ")
    assert datetime.fromisoformat(due).astimezone(ZoneInfo(cust["timezone"])).strftime("%H:%M") == quiet[1]
    assert sent["created_at"] >= due and sent["notification_id"] == deferred["notification_id"]
    assert [m["to"] for m in pipeline.sandbox_messages()] == [cust["phone"]]
