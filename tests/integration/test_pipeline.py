"""The whole path on a real broker: simulated readings -> worker -> alerts -> SMS sandbox -> notifications."""

from __future__ import annotations

import json

import pytest

from gridwatch.contract import check

pytestmark = pytest.mark.integration


class PrefixedSink:
    """The simulator's records, sent to this pipeline's own (prefixed) topics."""

    def __init__(self, pipeline):
        self.pipeline = pipeline

    def send(self, topic, key, value):
        self.pipeline.send(topic, key, value)

    def flush(self):
        self.pipeline.flush()


def test_transformer_undervoltage_becomes_one_alert_and_one_sms_per_customer(pipeline):
    from devtools.simulator import SimConfig, Simulator, publish

    sim = Simulator(SimConfig(seed=11, feeders=1, transformers_per_feeder=2, meters_per_transformer=6,
                              regions="CN", hours=12, faults=("transformer_undervoltage:T0001@+4h/2h",)))
    customers = {c["customer_id"]: c for c in sim.customers()}
    (truth,) = sim.truth()
    affected = set(truth["customer_ids"])
    opted_in = {c for c in affected if not customers[c]["opted_out"]}
    opted_out = affected - opted_in
    assert opted_out, "the scenario must include an opted-out customer on the faulty transformer"

    # Malformed input first: it must land in the DLQ and the worker must carry on regardless.
    pipeline.send("meter.readings", "M000001", b"{not json")
    pipeline.send("meter.readings", "M000001", {"meter_id": "M000001"})
    pipeline.send("meter.events", "M000002", {"meter_id": "M000002", "ts": "yesterday", "type": "power_fail"})
    publish(sim.timed_records(), PrefixedSink(pipeline), progress=False)

    alerts = pipeline.read("alerts", lambda rs: any(r["status"] == "resolved" for r in rs))
    notes = pipeline.read("notifications", lambda rs: len(rs) >= len(affected))
    alerts, notes = pipeline.settle("alerts"), pipeline.settle("notifications")

    for rec in alerts:
        check("alerts", rec)
    for rec in notes:
        check("notifications", rec)

    # exactly one transformer-scope alert, opened then resolved; nothing on the clean transformer
    assert {a["alert_id"] for a in alerts} == {alerts[0]["alert_id"]}
    assert [a["status"] for a in alerts] == ["open", "resolved"]
    opened, resolved = alerts
    assert opened["scope"] == {"level": "transformer", "id": "T0001"}
    assert opened["kind"] == "undervoltage"
    assert set(opened["customer_ids"]) == affected
    assert opened["started_at"] >= truth["start"] and resolved["resolved_at"] >= truth["end"]
    assert opened["evidence"]["standard"] == "GB/T 12325"

    # one SMS per opted-in customer, a suppressed record for each opted-out one
    by_customer = {}
    for n in notes:
        if n["status"] != "delivered":
            by_customer.setdefault(n["customer_id"], []).append(n)
    assert set(by_customer) == affected
    assert all(len(v) == 1 for v in by_customer.values()), by_customer
    assert {c for c, (n,) in by_customer.items() if n["status"] == "sent"} == opted_in
    for c in opted_out:
        (n,) = by_customer[c]
        assert (n["status"], n["reason"], n["provider_message_id"]) == ("suppressed", "opted_out", None)

    # the provider's signed status callbacks close the loop: each sent SMS is later recorded as delivered
    notes = pipeline.read("notifications", lambda rs: sum(r["status"] == "delivered" for r in rs) >= len(opted_in))
    delivered = [n for n in notes if n["status"] == "delivered"]
    assert sorted(n["customer_id"] for n in delivered) == sorted(opted_in)
    for d in delivered:
        (sent,) = by_customer[d["customer_id"]]
        assert (d["notification_id"], d["provider_message_id"]) == (sent["notification_id"], sent["provider_message_id"])

    sms = pipeline.sandbox_messages()
    assert sorted(m["to"] for m in sms) == sorted(customers[c]["phone"] for c in opted_in)
    sids = {n["provider_message_id"] for n in notes if n["status"] == "sent"}
    assert sids == {m["sid"] for m in sms}
    for m in sms:
        cust = next(c for c in customers.values() if c["phone"] == m["to"])
        assert ("电压" in m["body"]) == (cust["language"] == "zh-CN")

    dead = pipeline.read("gridwatch.dlq", lambda rs: len(rs) >= 3)
    assert len(dead) == 3
    for d in dead:
        check("gridwatch.dlq", d)
    assert {d["topic"] for d in dead} == {pipeline.topic("meter.readings"), pipeline.topic("meter.events")}
    bad_json, no_ts = sorted((d for d in dead if d["topic"].endswith("meter.readings")), key=lambda d: d["offset"])
    assert bad_json["payload"] == "{not json" and "not JSON" in bad_json["error"] and bad_json["key"] == "M000001"
    assert "ts" in no_ts["error"] and json.loads(no_ts["payload"]) == {"meter_id": "M000001"}


def test_a_worker_restarted_mid_incident_neither_repeats_nor_loses_anything(pipeline):
    """State lives in RocksDB tables with changelogs: the second worker carries on where the first stopped."""
    from devtools.simulator import SimConfig, Simulator, publish

    sim = Simulator(SimConfig(seed=5, feeders=1, transformers_per_feeder=1, meters_per_transformer=6,
                              regions="CN", hours=12, faults=("transformer_undervoltage:T0001@+4h/3h",)))
    (truth,) = sim.truth()
    opted_in = {c["customer_id"] for c in sim.customers() if not c["opted_out"]}
    records = list(sim.timed_records())
    fault_end = min(i for i, r in enumerate(records) if r[0] >= sim.start + 6 * 3600)
    publish(records[:fault_end], PrefixedSink(pipeline), progress=False)   # into the fault, not out of it
    pipeline.read("notifications", lambda rs: len(rs) >= len(truth["customer_ids"]))

    pipeline.restart_worker()
    publish(records[fault_end:], PrefixedSink(pipeline), progress=False, flush_after=None)
    pipeline.read("alerts", lambda rs: any(r["status"] == "resolved" for r in rs))
    alerts, notes = pipeline.settle("alerts"), pipeline.settle("notifications")

    assert [(a["status"], a["scope"]["id"]) for a in alerts] == [("open", "T0001"), ("resolved", "T0001")]
    assert len({a["alert_id"] for a in alerts}) == 1
    assert sorted(n["customer_id"] for n in notes if n["status"] == "sent") == sorted(opted_in)
    assert len(pipeline.sandbox_messages()) == len(opted_in)


def test_two_workers_share_the_partitions_and_still_send_each_sms_once(pipeline):
    """Co-partitioning holds across workers: meter state, transformer state and the outbox each live with
    the partitions of their key, so splitting the partitions between two workers changes nothing."""
    import re
    import time

    from devtools.simulator import SimConfig, Simulator, publish

    pipeline.add_worker("worker-2")
    pipeline.wait_for_group(2)  # both members assigned before data flows: no hand-over mid-stream
    sim = Simulator(SimConfig(seed=3, feeders=2, transformers_per_feeder=2, meters_per_transformer=6,
                              regions="CN,EU", hours=12,
                              faults=("transformer_undervoltage:T0001@+4h/2h", "transformer_undervoltage:T0004@+5h/2h")))
    truth = sim.truth()
    customers = {c["customer_id"]: c for c in sim.customers()}
    affected = {c for t in truth for c in t["customer_ids"]}
    opted_in = {c for c in affected if not customers[c]["opted_out"]}
    publish(sim.timed_records(), PrefixedSink(pipeline), progress=False)

    pipeline.read("alerts", lambda rs: sum(r["status"] == "resolved" for r in rs) >= 2)
    alerts, notes = pipeline.settle("alerts"), pipeline.settle("notifications")
    assert sorted((a["scope"]["id"], a["status"]) for a in alerts) == [
        ("T0001", "open"), ("T0001", "resolved"), ("T0004", "open"), ("T0004", "resolved")]
    sent = [n["customer_id"] for n in notes if n["status"] == "sent"]
    assert sorted(sent) == sorted(opted_in)
    assert len(pipeline.sandbox_messages()) == len(opted_in)
    workers = [p for n, p in pipeline.procs.children if n.startswith("worker")]
    assert len(workers) == 2 and all(p.poll() is None for p in workers)
    # both took part: their progress lines (every 10 s) add up to every reading exactly once
    time.sleep(11)
    done = [int(re.findall(r"progress: .*readings=(\d+)", pipeline.log_tail(n, 400))[-1])
            for n in ("worker", "worker-2")]
    assert all(done) and sum(done) == sim.counts()["readings"], done


@pytest.mark.sandbox_args("--delay", "4")
def test_a_worker_killed_between_send_and_record_does_not_send_twice(pipeline):
    """kill -9 while the provider has taken an SMS but not yet answered; the restarted worker finds the
    claim in its outbox, asks the provider, records what happened and sends everyone else once."""
    import signal
    import time

    from devtools.simulator import SimConfig, Simulator, publish

    sim = Simulator(SimConfig(seed=5, feeders=1, transformers_per_feeder=1, meters_per_transformer=6,
                              regions="CN", hours=12, faults=("transformer_undervoltage:T0001@+4h/3h",)))
    customers = {c["customer_id"]: c for c in sim.customers()}
    opted_in = {c for c in customers if not customers[c]["opted_out"]}
    publish(sim.timed_records(), PrefixedSink(pipeline), progress=False)

    deadline = time.monotonic() + 180
    while not pipeline.sandbox_messages():  # the first SMS is with the provider, its answer 4 s away
        assert time.monotonic() < deadline, "no SMS reached the sandbox"
        pipeline.assert_alive()
        time.sleep(0.1)
    (in_flight,) = pipeline.sandbox_messages()
    pipeline.restart_worker(signal.SIGKILL)

    notes = pipeline.read("notifications", lambda rs: {n["customer_id"] for n in rs if n["status"] == "sent"}
                          >= opted_in, timeout=240)
    sms = pipeline.sandbox_messages()
    assert sorted(m["to"] for m in sms) == sorted(customers[c]["phone"] for c in opted_in), "one SMS each"
    first = [n for n in notes if n["provider_message_id"] == in_flight["sid"] and n["status"] != "delivered"]
    assert first and all(n["status"] == "sent" for n in first)
    assert any(n["reason"] == "reconciled: sent before a restart" for n in first)


def test_forged_status_callbacks_are_refused(pipeline):
    import urllib.error
    import urllib.parse
    import urllib.request

    from twilio.request_validator import RequestValidator

    url = pipeline.settings.webhook_url + "/twilio/status"
    form = {"MessageSid": "SM" + "f" * 32, "MessageStatus": "delivered", "To": "+8613800138000"}

    def post(headers):
        req = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(), headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert post({}) == 403
    assert post({"X-Twilio-Signature": RequestValidator("not-our-token").compute_signature(url, form)}) == 403
    from devtools.sandbox import sandbox_credentials

    good = RequestValidator(sandbox_credentials()[1]).compute_signature(url, form)
    assert post({"X-Twilio-Signature": good}) == 204
    events = pipeline.read("gridwatch.provider-events", lambda rs: len(rs) >= 1, timeout=30)
    assert [(e["sid"], e["status"]) for e in events] == [(form["MessageSid"], "delivered")]
