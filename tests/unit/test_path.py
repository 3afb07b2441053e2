"""The notification path's stages, in order, over plain dicts (the worker runs the same path over tables)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from notifiers import path as P
from notifiers.base import Delivery, NotifierError
from notifiers.testing import Killed, MemoryEnv, ScriptedProvider as Provider

NOW = datetime(2026, 9, 3, 6, 0, tzinfo=timezone.utc).timestamp()  # 14:00 in Shanghai, 07:00 in London


def Env(customers, provider=None, silences=(), now=NOW, policy=None) -> MemoryEnv:
    return MemoryEnv(customers, provider, silences, now=now, policy=policy)


def customer(cid="C1", **over):
    c = {"customer_id": cid, "meter_id": "M1", "transformer_id": "T1", "feeder_id": "F1",
         "segment": "residential", "phone": "+8613800000001", "language": "en", "timezone": "Asia/Shanghai",
         "tariff": {"currency": "CNY", "price_per_kwh": 0.6}, "opted_out": False,
         "preferences": {"quiet_hours": ["22:00", "08:00"]}}
    c.update(over)
    return c


def alert(kind="undervoltage", status="open", aid=None, level="transformer", scope="T1", severity="warning",
          **evidence):
    aid = aid or f"{kind}:{level}:{scope}:2026-09-03T05:00:00Z"
    return {"alert_id": aid, "kind": kind, "severity": severity, "status": status,
            "scope": {"level": level, "id": scope}, "meter_ids": ["M1"], "customer_ids": ["C1"],
            "started_at": "2026-09-03T05:00:00Z", "detected_at": "2026-09-03T05:30:00Z",
            "resolved_at": "2026-09-03T06:00:00Z" if status == "resolved" else None,
            "evidence": {"standard": "GB/T 12325", "extreme_v": 186.9, **evidence}}


def run(env, req):
    return asyncio.run(P.NotificationPath(env).handle(req))


def statuses(env):
    return [(r["status"], r["reason"]) for r in env.records]


def test_the_stages_are_one_ordered_list():
    assert [s.__name__ for s in P.STAGES] == ["route", "group", "inhibit", "silence", "dedup", "budget",
                                              "render", "deliver", "record"]


def test_a_message_is_claimed_on_the_broker_before_it_is_sent_and_recorded_once():
    env = Env([customer()])
    a = alert()
    run(env, {"alert": a, "customer_id": "C1"})
    run(env, {"alert": a, "customer_id": "C1"})  # re-delivered: dropped, nothing recorded
    # on the broker in turn: the claim before the send, the outcome kept before the record is written, the
    # record before the key is done
    assert statuses(env) == [("sent", None)] and len(env.provider.sends) == 1
    assert env.steps == ["claimed", "flush", "recording", "flush", "emit sent", "flush", "done"]
    assert env.outboxes[f"{a['alert_id']}|C1|sms"] == {"state": "done", "status": "sent"}
    assert env.records[0]["template"].startswith("undervoltage/notice@")


def test_unknown_customer_and_opted_out_are_recorded_not_sent():
    env = Env([customer(opted_out=True)])
    run(env, {"alert": alert(), "customer_id": "C1"})
    run(env, {"alert": alert(), "customer_id": "C9"})
    assert statuses(env) == [("suppressed", "opted_out"), ("failed", "unknown_customer")]
    assert env.provider.sends == []


def test_a_retryable_error_is_retried_with_back_off_and_a_permanent_one_is_not(monkeypatch):
    slept = []

    async def fake_sleep(s):
        slept.append(s)

    monkeypatch.setattr(P.asyncio, "sleep", fake_sleep)
    busy = NotifierError("HTTP 429", status=429, code=20429, retryable=True)
    env = Env([customer()], Provider([busy, busy]))
    run(env, {"alert": alert(), "customer_id": "C1"})
    assert statuses(env) == [("sent", "sent after 3 attempts")] and len(slept) == 2
    assert 0.5 <= slept[0] <= 1.5 and 1.0 <= slept[1] <= 3.0  # doubling, with jitter

    gone = NotifierError("HTTP 400 error 21610", status=400, code=21610, retryable=False)
    env = Env([customer()], Provider([gone]))
    run(env, {"alert": alert(), "customer_id": "C1"})
    assert len(env.provider.sends) == 1 and env.records[0]["status"] == "failed"
    assert "21610" in env.records[0]["reason"]


def test_retries_stop_at_the_deadline(monkeypatch):
    clock = [0.0]

    async def fake_sleep(s):
        clock[0] += s

    monkeypatch.setattr(P.asyncio, "sleep", fake_sleep)
    monkeypatch.setattr(P.time, "monotonic", lambda: clock[0])
    down = NotifierError("HTTP 503", status=503, retryable=True)
    env = Env([customer()], Provider([down] * 50), policy=P.Policy(send_deadline_s=20.0))
    run(env, {"alert": alert(), "customer_id": "C1"})
    assert env.records[0]["status"] == "failed" and "503" in env.records[0]["reason"]
    assert 3 <= len(env.provider.sends) <= 6 and clock[0] < 20.0


def fake_time(monkeypatch, env):
    """asyncio.sleep advances both the env's wall clock and the monotonic clock, without waiting."""
    clock = [0.0]

    async def fake_sleep(seconds):
        clock[0] += seconds
        env.t += seconds

    monkeypatch.setattr(P.asyncio, "sleep", fake_sleep)
    monkeypatch.setattr(P.time, "monotonic", lambda: clock[0])
    return clock


TIMEOUT = NotifierError("no response within 15s", retryable=True, maybe_sent=True)
CREATED_500 = NotifierError("HTTP 500", status=500, code=20500, retryable=True, maybe_sent=True)


@pytest.mark.parametrize("error", [TIMEOUT, CREATED_500], ids=["accepted-then-timeout", "5xx-after-create"])
def test_a_send_that_may_have_reached_the_provider_is_looked_up_not_resent(monkeypatch, error):
    env = Env([customer()], Provider([error], sent=[Delivery("SMtaken", "queued")]))
    fake_time(monkeypatch, env)
    run(env, {"alert": alert(), "customer_id": "C1"})
    assert len(env.provider.sends) == 1 and statuses(env)[0][0] == "sent"
    assert env.records[0]["provider_message_id"] == "SMtaken"
    assert env.records[0]["reason"].startswith("reconciled: sent, though the answer was lost")


def test_a_send_proven_absent_after_the_list_lag_is_sent_again_once(monkeypatch):
    env = Env([customer()], Provider([TIMEOUT], sent=[None, None]),
              policy=P.Policy(send_deadline_s=30.0, list_lag_s=10.0))
    fake_time(monkeypatch, env)
    run(env, {"alert": alert(), "customer_id": "C1"})
    # looked up at once (not listed: maybe lagging), again after the lag (still absent): sent again, once
    assert len(env.provider.lookups) == 2 and len(env.provider.sends) == 2
    assert statuses(env) == [("sent", "sent after 2 attempts")]


def test_a_timeout_on_a_channel_that_cannot_be_asked_is_not_resent_and_an_idempotent_one_is(monkeypatch):
    async def fake_sleep(s):
        pass

    monkeypatch.setattr(P.asyncio, "sleep", fake_sleep)
    env = Env([customer()], Provider([TIMEOUT]))
    env.provider.reconcilable = False  # email: an SMTP server cannot be asked
    run(env, {"alert": alert(), "customer_id": "C1"})
    assert len(env.provider.sends) == 1 and env.records[0]["reason"].startswith("outcome unknown")
    env = Env([customer()], Provider([TIMEOUT], idempotent=True))
    run(env, {"alert": alert(), "customer_id": "C1"})
    assert len(env.provider.sends) == 2 and env.records[0]["status"] == "sent"
    assert env.provider.sends[0][2] == env.provider.sends[1][2]  # the same idempotency key


@pytest.mark.parametrize("found, sends", [
    (Delivery("SMabc", "delivered"), 0),   # the provider has it: recorded, not resent
    (None, 1),                             # certainly absent (the claim is old): sent now
])
def test_an_interrupted_send_is_reconciled_with_the_provider(found, sends):
    a = alert()
    env = Env([customer()], Provider(sent=found))
    env.outboxes[f"{a['alert_id']}|C1|sms"] = {"state": "claimed", "at": NOW - 120, "body": "the text"}
    run(env, {"alert": a, "customer_id": "C1"})
    assert len(env.provider.sends) == sends and env.records[0]["status"] == "sent"
    if sends:
        assert env.provider.sends[0][1] == "the text"  # the claimed body, not a re-render
    else:
        assert env.records[0]["reason"] == "reconciled: sent before a restart"


def held_to_settle(monkeypatch, a=None):
    """A claim a dead worker left two minutes ago for ``a`` (an alert to C1), the provider's message list down
    (HTTP 500): the request is held to be settled later. Returns the env and the claim's outbox key."""
    a = a or alert()
    key = f"{a['alert_id']}|C1|sms"
    down = NotifierError("HTTP 500", status=500, retryable=True)
    env = Env([customer()], Provider(sent=down), policy=P.Policy(send_deadline_s=30.0))
    fake_time(monkeypatch, env)
    env.outboxes[key] = {"state": "claimed", "at": NOW - 120, "body": "the text"}
    run(env, {"alert": a, "customer_id": "C1"})
    return env, key


def test_lookups_failing_429_and_5xx_are_retried_and_a_claim_that_cannot_be_settled_stays_claimed(monkeypatch):
    a = alert()
    key = f"{a['alert_id']}|C1|sms"
    busy = NotifierError("HTTP 429", status=429, code=20429, retryable=True)
    down = NotifierError("HTTP 500", status=500, retryable=True)
    env = Env([customer()], Provider(sent=[busy, down, Delivery("SMfound", "sent")]),
              policy=P.Policy(send_deadline_s=30.0))
    fake_time(monkeypatch, env)
    env.outboxes[key] = {"state": "claimed", "at": NOW - 120, "body": "the text"}
    run(env, {"alert": a, "customer_id": "C1"})
    assert env.provider.sends == [] and statuses(env) == [("sent", "reconciled: sent before a restart")]

    # the provider's list stays down past the deadline: neither failed nor resent -- held, still claimed
    env, key = held_to_settle(monkeypatch, a)
    assert env.provider.sends == [] and env.outboxes[key] == {"state": "claimed", "at": NOW - 120, "body": "the text"}
    assert [r["status"] for r in env.records] == ["deferred"] and "unsettled" in env.records[0]["reason"]
    assert 2 <= len(env.provider.lookups) <= P.SETTLE_LOOKUPS
    (held,) = env.held["C1"].values()
    assert held["why"] == "settle" and held["due"] > env.t
    # later the provider answers: the held request comes back and the claim is settled, once
    env.provider.sent = Delivery("SMlater", "delivered")
    run(env, {"customer_id": "C1", "release": key})
    assert [r["status"] for r in env.records] == ["deferred", "sent"] and env.provider.sends == []
    assert env.outboxes[key] == {"state": "done", "status": "sent"}


def test_a_message_not_yet_listed_is_not_taken_for_absent(monkeypatch):
    """Claimed 2 s ago by a worker that died: its attempt may still be in flight and the list lags, so a
    lookup that finds nothing proves nothing yet."""
    a = alert()
    key = f"{a['alert_id']}|C1|sms"
    env = Env([customer()], Provider(sent=None), policy=P.Policy(send_deadline_s=30.0, list_lag_s=30.0))
    fake_time(monkeypatch, env)
    env.outboxes[key] = {"state": "claimed", "at": NOW - 2, "until": NOW + 43, "body": "the text"}
    run(env, {"alert": a, "customer_id": "C1"})
    assert env.provider.sends == [] and env.outboxes[key]["state"] == "claimed"
    assert "not listed by the provider yet" in env.records[0]["reason"]
    # listed after all (it was lagging): recorded sent, never sent twice
    env.provider.sent = Delivery("SMlagged", "sent")
    env.t = NOW + 80
    run(env, {"customer_id": "C1", "release": key})
    assert env.provider.sends == [] and env.records[-1]["provider_message_id"] == "SMlagged"


def test_a_lookup_never_takes_an_earlier_message_of_the_customer_for_this_one(monkeypatch):
    env = Env([customer()], Provider([TIMEOUT], sent=[Delivery("SMnew", "queued")]))
    fake_time(monkeypatch, env)
    env.contacts["C1"] = {"sids": ["SMold1", "SMold2"]}
    run(env, {"alert": alert(), "customer_id": "C1"})
    assert env.provider.lookups == [("SMold1", "SMold2")]
    assert env.contacts["C1"]["sids"] == ["SMold1", "SMold2", "SMnew"]


def test_a_worker_that_no_longer_owns_the_partition_neither_claims_nor_sends_nor_records():
    a = alert()
    env = Env([customer()])
    env.owns = lambda: False
    run(env, {"alert": a, "customer_id": "C1"})
    assert env.provider.sends == [] and env.records == [] and env.outboxes == {}

    owned = [True, False]  # the partition moves while the claim is being flushed: not sent
    env = Env([customer()])
    env.owns = lambda: owned.pop(0) if owned else False
    run(env, {"alert": a, "customer_id": "C1"})
    assert env.provider.sends == [] and env.records == []
    assert env.outboxes[f"{a['alert_id']}|C1|sms"]["state"] == "claimed"  # its new owner settles it

    owned = [True, True, False]  # it moves during the send: sent, but recorded by the new owner only
    env = Env([customer()])
    env.owns = lambda: owned.pop(0) if owned else False
    run(env, {"alert": a, "customer_id": "C1"})
    assert len(env.provider.sends) == 1 and env.records == []
    assert env.outboxes[f"{a['alert_id']}|C1|sms"]["state"] == "claimed"


def test_an_outage_gives_a_notice_and_a_restoration_and_a_child_outage_is_not_told_again():
    env = Env([customer()])
    out = alert("outage", aid="outage:feeder:F1:t", level="feeder", scope="F1", severity="critical")
    child = alert("outage", aid="outage:meter:M1:t", level="meter", scope="M1", parent_alert_id=out["alert_id"])
    run(env, {"alert": out, "customer_id": "C1"})
    run(env, {"alert": child, "customer_id": "C1"})
    assert env.contacts["C1"]["outages"] == sorted([out["alert_id"], child["alert_id"]])
    run(env, {"alert": {**child, "status": "resolved"}, "customer_id": "C1", "phase": "resolved"})
    assert statuses(env) == [("sent", None), ("suppressed", f"notified_for {out['alert_id']}"), ("sent", None)]
    # a child exists only once its parent is over: its end leaves the customer with no open outage
    assert "back" in env.records[2]["body"] and env.contacts["C1"]["outages"] == []
    run(env, {"alert": {**out, "status": "resolved"}, "customer_id": "C2", "phase": "resolved"})
    assert env.records[-1]["reason"] == "unknown_customer"


def test_an_incident_whose_scope_grows_tells_each_customer_once_and_says_power_is_back_once():
    env = Env([customer(), customer("C2")])
    aid = "outage:meter:M1:t"
    first = alert("outage", aid=aid, level="meter", scope="M1", severity="critical")
    grown = {**alert("outage", aid=aid, level="feeder", scope="F1", severity="critical"),
             "customer_ids": ["C1", "C2"]}
    run(env, {"alert": first, "customer_id": "C1"})
    for cid in ("C1", "C2"):  # the escalated record goes to everyone in it: C1 heard already, C2 now
        run(env, {"alert": grown, "customer_id": cid})
    for cid in ("C1", "C2"):
        run(env, {"alert": {**grown, "status": "resolved"}, "customer_id": cid, "phase": "resolved"})
    sent = [(r["customer_id"], r["template"].split("@")[0]) for r in env.records if r["status"] == "sent"]
    assert sent == [("C1", "outage/notice"), ("C2", "outage/notice"), ("C1", "outage/resolved"),
                    ("C2", "outage/resolved")]


def test_a_customer_told_under_an_alert_merged_into_another_is_not_told_again():
    env = Env([customer()])
    merged = alert("outage", aid="outage:meter:M1:t", level="meter", scope="M1", severity="critical")
    keep = alert("outage", aid="outage:meter:M2:t", level="transformer", scope="T1", severity="critical",
                 merged_from=[merged["alert_id"]])
    run(env, {"alert": merged, "customer_id": "C1"})
    run(env, {"alert": {**merged, "status": "resolved", "evidence": {"merged_into": keep["alert_id"]}},
              "customer_id": "C1", "phase": "closed"})
    run(env, {"alert": keep, "customer_id": "C1"})
    run(env, {"alert": {**keep, "status": "resolved"}, "customer_id": "C1", "phase": "resolved"})
    assert statuses(env) == [("sent", None), ("suppressed", f"notified_for {merged['alert_id']}"),
                             ("sent", None)]
    assert "back" in env.records[-1]["body"] and env.contacts["C1"]["outages"] == []


def test_inhibit_mutes_voltage_and_holds_a_bill_during_an_outage_then_releases_it():
    env = Env([customer(preferences={"quiet_hours": ["00:00", "00:00"]})])
    out = alert("outage", aid="outage:transformer:T1:t", severity="critical")
    run(env, {"alert": out, "customer_id": "C1"})
    volt = alert("overvoltage")  # began with the outage (05:00): whether the power was on is known at its end
    run(env, {"alert": volt, "customer_id": "C1"})
    bill = alert("bill_spike", level="customer", scope="C1", projected_amount=412.0, usual_amount=298.0,
                 currency="CNY", pct_above=38.0)
    run(env, {"alert": bill, "customer_id": "C1"})
    assert statuses(env)[1:] == [("deferred", f"held: in outage {out['alert_id']}")] * 2
    run(env, {"alert": {**out, "status": "resolved", "resolved_at": "2026-09-03T06:00:00Z"}, "customer_id": "C1",
              "phase": "resolved"})
    assert [k for _, k in env.released] == [f"{volt['alert_id']}|C1|sms", f"{bill['alert_id']}|C1|sms"]
    for _, key in env.released:
        run(env, {"customer_id": "C1", "release": key})
    # the outage ran 05:00 - 06:00: the overvoltage began in it (no power: not sent), the bill goes out
    assert statuses(env)[-2:] == [("suppressed", f"inhibited: in outage {out['alert_id']}"), ("sent", None)]
    assert env.records[-1]["alert_id"] == bill["alert_id"]
    assert env.records[-1]["notification_id"] == env.records[2]["notification_id"]
    run(env, {"customer_id": "C1", "release": env.released[1][1]})  # a second release finds nothing
    assert len(env.provider.sends) == 3


@pytest.mark.parametrize("end_read_first", [True, False], ids=["outage-end-read-first", "voltage-read-first"])
@pytest.mark.parametrize("began, sent", [("2026-09-03T05:30:00Z", False), ("2026-09-03T07:15:00Z", True),
                                         ("2026-09-03T04:00:00Z", True)], ids=["during", "after", "before"])
def test_a_voltage_alert_is_judged_by_when_it_began_whichever_was_read_first(end_read_first, began, sent):
    """An outage 05:00 - 06:00 and an overvoltage of the same customer's meter come from different alert
    partitions, in either order (and in another order after a crash): the overvoltage is suppressed when it
    began during the outage and sent when it began before or after, whichever was read first."""
    env = Env([customer()])
    out = alert("outage", aid="outage:feeder:F1:t", level="feeder", scope="F1", severity="critical")
    volt = {**alert("overvoltage", level="meter", scope="M1", severity="critical"), "started_at": began}
    run(env, {"alert": out, "customer_id": "C1"})
    requests = [{"alert": {**out, "status": "resolved", "resolved_at": "2026-09-03T06:00:00Z"}, "customer_id": "C1",
                 "phase": "resolved"},
                {"alert": volt, "customer_id": "C1"}]
    for req in requests if end_read_first else requests[::-1]:
        run(env, req)
    for _, key in env.released:
        run(env, {"customer_id": "C1", "release": key})
    (last,) = [r for r in env.records if r["alert_id"] == volt["alert_id"] and r["status"] != "deferred"]
    assert (last["status"] == "sent") is sent
    if not sent:
        assert last["reason"] == f"inhibited: in outage {out['alert_id']}"
    assert [r["status"] for r in env.records if r["alert_id"] == out["alert_id"]] == ["sent", "sent"]


def test_quiet_hours_defer_a_bill_at_23_local_but_not_a_voltage_alert():
    late = datetime(2026, 9, 3, 15, 0, tzinfo=timezone.utc).timestamp()  # 23:00 in Shanghai
    env = Env([customer()], now=late)
    bill = alert("bill_spike", level="customer", scope="C1", projected_amount=412.0, usual_amount=298.0,
                 currency="CNY", pct_above=38.0)
    run(env, {"alert": bill, "customer_id": "C1"})
    run(env, {"alert": alert("overvoltage", severity="critical"), "customer_id": "C1"})
    assert statuses(env) == [("deferred", "quiet_hours until 2026-09-04T00:00:00Z"), ("sent", None)]
    ((key, entry),) = env.held["C1"].items()
    assert entry["due"] == datetime(2026, 9, 4, 0, 0, tzinfo=timezone.utc).timestamp()
    env.t = entry["due"]
    run(env, {"customer_id": "C1", "release": key})
    assert statuses(env)[-1] == ("sent", None)


def test_an_operator_silence_mutes_its_scope_but_not_safety_messages():
    sil = {"silence_id": "S1", "scope": {"level": "feeder", "id": "F1"}, "kinds": None,
           "starts_at": "2026-09-03T00:00:00Z", "ends_at": "2026-09-03T12:00:00Z", "author": "lin",
           "reason": "planned work", "created_at": "2026-09-03T00:00:00Z", "expired_at": None}
    env = Env([customer()], silences=[sil])
    run(env, {"alert": alert("undervoltage"), "customer_id": "C1"})
    run(env, {"alert": alert("loose_neutral", severity="critical"), "customer_id": "C1"})
    assert statuses(env) == [("suppressed", "silenced S1 by lin: planned work"), ("sent", None)]
    env.t = datetime(2026, 9, 3, 13, 0, tzinfo=timezone.utc).timestamp()  # after its window
    run(env, {"alert": alert("overvoltage"), "customer_id": "C1"})
    assert statuses(env)[-1] == ("sent", None)


def test_a_flapping_fault_is_not_sent_twice_within_the_dedup_window():
    env = Env([customer()])
    first, again = alert(aid="undervoltage:transformer:T1:a"), alert(aid="undervoltage:transformer:T1:b")
    run(env, {"alert": first, "customer_id": "C1"})
    run(env, {"alert": again, "customer_id": "C1"})
    assert statuses(env) == [("sent", None), ("suppressed", f"duplicate_of {first['alert_id']}")]
    env.t += env.policy.dedup_window_s
    run(env, {"alert": alert(aid="undervoltage:transformer:T1:c"), "customer_id": "C1"})
    assert statuses(env)[-1] == ("sent", None)


def test_the_fatigue_budget_suppresses_routine_messages_but_never_safety_and_defers_bills():
    env = Env([customer(preferences={"quiet_hours": ["00:00", "00:00"]})], policy=P.Policy(budget_messages=2))
    run(env, {"alert": alert("undervoltage", aid="u1", scope="T1"), "customer_id": "C1"})
    env.t += 60
    run(env, {"alert": alert("overvoltage", aid="o1", scope="M1", level="meter"), "customer_id": "C1"})
    run(env, {"alert": alert("sag", aid="s1", scope="M1", level="meter"), "customer_id": "C1"})
    run(env, {"alert": alert("loose_neutral", aid="n1", scope="M1", level="meter", severity="critical"),
              "customer_id": "C1"})
    bill = alert("bill_spike", aid="b1", level="customer", scope="C1", projected_amount=412.0,
                 usual_amount=298.0, currency="CNY", pct_above=38.0)
    run(env, {"alert": bill, "customer_id": "C1"})
    assert [s for s, _ in statuses(env)] == ["sent", "sent", "suppressed", "sent", "deferred"]
    assert statuses(env)[2][1] == "budget: 2 messages in 24 h"
    (entry,) = env.held["C1"].values()
    assert entry["due"] == NOW + 60 + 86400  # when the second of the three sends leaves the window


def test_replies_are_answered_even_over_budget_but_not_after_stop():
    env = Env([customer()], policy=P.Policy(budget_messages=0))
    help_req = {"customer_id": "C1", "alert": {"alert_id": "reply:SM1", "kind": "reply_help", "severity": "info",
                                                "status": "open", "scope": {"level": "customer", "id": "C1"}}}
    run(env, help_req)
    assert statuses(env) == [("sent", None)] and "STOP" in env.records[0]["body"]
    assert "last_alert_id" not in env.contacts["C1"]  # a reply refers to the alert, not to our answer
    env.contacts["C1"]["opted_out"] = True
    run(env, {**help_req, "alert": {**help_req["alert"], "alert_id": "reply:SM2"}})
    assert statuses(env)[-1] == ("suppressed", "opted_out")


def test_channels_follow_the_customers_preference():
    env = Env([customer(email="li@example.com", preferences={"channels": ["sms", "email"],
                                                            "quiet_hours": ["22:00", "08:00"]})])
    run(env, {"alert": alert(), "customer_id": "C1"})
    assert sorted(r["channel"] for r in env.records) == ["email", "sms"]
    assert {to for to, _, _ in env.provider.sends} == {"+8613800000001", "li@example.com"}
    assert len({r["notification_id"] for r in env.records}) == 2


# -- after kill -9: the same outcome as without it -------------------------------------------------------
def test_a_worker_killed_after_its_record_reached_the_broker_but_before_the_key_was_done_records_once():
    """The record is on the broker, the key not yet done: the next worker finds the outcome kept in the
    outbox and its record on the broker -- no second ``sent`` record, no lookup, the budget counts it once."""
    a = alert()
    key = f"{a['alert_id']}|C1|sms"
    env = Env([customer()], Provider(sent=Delivery("SM00000000000000000000000000000001", "sent")))
    env.kill_before = "done"
    with pytest.raises(Killed):
        run(env, {"alert": a, "customer_id": "C1"})
    run(env, {"alert": a, "customer_id": "C1"})  # the request, re-read by the next worker
    assert statuses(env) == [("sent", None)] and len(env.provider.sends) == 1
    assert env.provider.lookups == [] and env.outboxes[key] == {"state": "done", "status": "sent"}
    assert len(env.contacts["C1"]["sent_at"]) == 1 and env.contacts["C1"]["sids"] == [
        env.records[0]["provider_message_id"]]


def test_a_worker_killed_before_its_record_was_written_has_it_written_as_decided_without_a_lookup(monkeypatch):
    """The outcome (with the provider's message id) is kept before the record is written: the next worker
    writes that record once, even while the provider's list cannot be read."""
    a = alert()
    down = NotifierError("HTTP 500", status=500, retryable=True)
    env = Env([customer()], Provider(sent=down), policy=P.Policy(send_deadline_s=30.0))
    fake_time(monkeypatch, env)
    env.kill_before = "emit sent"
    with pytest.raises(Killed):
        run(env, {"alert": a, "customer_id": "C1"})
    assert env.records == []
    run(env, {"alert": a, "customer_id": "C1"})
    assert statuses(env) == [("sent", None)] and len(env.provider.sends) == 1 and env.provider.lookups == []
    assert env.records[0]["provider_message_id"] == "SM00000000000000000000000000000001"
    run(env, {"alert": a, "customer_id": "C1"})  # and once done, a re-delivery is dropped
    assert len(env.records) == 1 and len(env.contacts["C1"]["sent_at"]) == 1


def test_a_held_request_is_kept_until_decided_so_a_kill_while_it_is_released_does_not_lose_it(monkeypatch):
    """A claim held to be settled later is released; the worker dies while settling it. The held request
    must still be there for the next release (taken out first, it was gone: the claim never settled)."""
    env, key = held_to_settle(monkeypatch)
    assert env.held["C1"][key]["why"] == "settle"
    env.provider.sent = Delivery("SMlater", "sent")
    env.kill_before = "emit sent"
    with pytest.raises(Killed):
        run(env, {"customer_id": "C1", "release": key})
    assert key in env.held["C1"]  # still held: released again
    run(env, {"customer_id": "C1", "release": key})
    assert [r["status"] for r in env.records] == ["deferred", "sent"] and env.provider.sends == []
    assert env.records[-1]["provider_message_id"] == "SMlater" and env.held["C1"] == {}
    run(env, {"customer_id": "C1", "release": key})  # a second release finds nothing
    assert len(env.records) == 2


def test_a_release_asked_for_an_earlier_hold_does_not_release_the_request_held_again_since():
    """A release request re-read after a crash (or sent twice) names the hold it was asked for: a request
    held again since (quiet hours that started later) stays held until its own time."""
    late = datetime(2026, 9, 3, 15, 0, tzinfo=timezone.utc).timestamp()  # 23:00 in Shanghai
    env = Env([customer()], now=late)
    bill = alert("bill_spike", level="customer", scope="C1", projected_amount=412.0, usual_amount=298.0,
                 currency="CNY", pct_above=38.0)
    run(env, {"alert": bill, "customer_id": "C1"})
    ((key, entry),) = env.held["C1"].items()
    run(env, {"customer_id": "C1", "release": key, "due": entry["due"] - 3600})
    assert statuses(env) == [("deferred", "quiet_hours until 2026-09-04T00:00:00Z")] and env.provider.sends == []
    env.t = entry["due"]
    run(env, {"customer_id": "C1", "release": key, "due": entry["due"]})
    assert statuses(env)[-1] == ("sent", None) and env.held["C1"] == {}


def test_power_is_back_waits_for_a_notice_whose_send_a_crash_left_unsettled(monkeypatch):
    """The outage notice was claimed when the worker died and is not listed by the provider yet; its end
    arrives meanwhile. "Not told" is not known yet: the restoration waits for the notice's outcome (before:
    suppressed ``no_notice_to_resolve``, though the notice turned out to be sent)."""
    env = Env([customer()], Provider(sent=None), policy=P.Policy(send_deadline_s=30.0, list_lag_s=30.0))
    fake_time(monkeypatch, env)
    out = alert("outage", aid="outage:feeder:F1:t", level="feeder", scope="F1", severity="critical")
    key = f"{out['alert_id']}|C1|sms"
    env.outboxes[key] = {"state": "claimed", "at": NOW - 2, "until": NOW + 43, "body": "the notice"}
    run(env, {"alert": out, "customer_id": "C1"})  # re-read by the next worker: not listed yet, held
    run(env, {"alert": {**out, "status": "resolved"}, "customer_id": "C1", "phase": "resolved"})
    assert [s for s, _ in statuses(env)] == ["deferred", "deferred"]
    assert statuses(env)[1][1] == f"waiting for the notice of {out['alert_id']} to be settled"
    env.provider.sent = Delivery("SMnotice", "sent")
    env.t = NOW + 80
    run(env, {"customer_id": "C1", "release": key})  # the notice is listed after all: sent
    assert env.released == [("C1", key + "|resolved")]  # what waited for it comes back at once
    run(env, {"customer_id": "C1", "release": key + "|resolved"})
    assert statuses(env)[2:] == [("sent", "reconciled: the provider had it"), ("sent", None)]
    assert env.records[3]["template"].startswith("outage/resolved@")
    assert len(env.provider.sends) == 1 and "back" in env.provider.sends[0][1]


def test_a_released_request_whose_partition_moves_during_its_send_stays_held_for_the_new_owner(monkeypatch):
    """Sent, then the partition moved before the record: the claim is the new owner's to settle, so the held
    request it was released from must stay held (dropped here, the new owner would find nothing to release)."""
    env, key = held_to_settle(monkeypatch)
    env.provider.sent = None  # proven absent (the claim is old): sent now, and the partition moves meanwhile
    owned = [True, True, True]  # reconcile, the claim, the send; not any more at the record
    env.owns = lambda: owned.pop(0) if owned else False
    (d,) = run(env, {"customer_id": "C1", "release": key})
    assert len(env.provider.sends) == 1 and d.record["reason"].startswith("fenced")
    assert key in env.held["C1"] and env.outboxes[key]["state"] == "claimed"


# --------------------------------------------------------------------------- who hears of an alert record
def test_an_open_or_acknowledged_alert_goes_to_every_customer_it_names():
    for status in ("open", "acknowledged"):
        a = {**alert(status=status), "customer_ids": ["C1", "C2"]}
        assert P.notify_requests(a) == [{"alert": a, "customer_id": "C1"}, {"alert": a, "customer_id": "C2"}]


def test_power_is_back_goes_to_the_customers_no_longer_dark_and_a_merged_outage_only_closes():
    back = {**alert("outage", "resolved", level="feeder", scope="F1", still_out_customer_ids=["C2"]),
            "customer_ids": ["C1", "C2", "C3"]}
    assert P.notify_requests(back) == [{"alert": back, "customer_id": c, "phase": "resolved"} for c in ("C1", "C3")]
    merged = {**back, "evidence": {**back["evidence"], "merged_into": "outage:feeder:F9:2026-09-03T05:00:00Z"}}
    assert P.notify_requests(merged) == [{"alert": merged, "customer_id": c, "phase": "closed"}
                                         for c in ("C1", "C2", "C3")]


def test_no_request_for_a_false_alarm_or_the_end_of_a_kind_without_a_restoration_message():
    assert P.notify_requests({**alert("outage", "resolved"), "no_fault": True}) == []
    assert P.notify_requests(alert("undervoltage", "resolved")) == []
