"""The alert lifecycle: detector findings merged with operator actions (open -> acknowledged -> resolved)."""

from __future__ import annotations

import re

import pytest

from gridwatch import contract
from notifiers.lifecycle import apply_action, apply_finding, reopened_alert_id

AID = "undervoltage:transformer:T1:2026-07-01T09:00:00Z"


def finding(status="open", **extra) -> dict:
    return {"alert_id": AID, "kind": "undervoltage", "severity": "warning", "status": status,
            "scope": {"level": "transformer", "id": "T1"}, "meter_ids": ["M1", "M2"], "customer_ids": ["C1", "C2"],
            "started_at": "2026-07-01T09:00:00Z", "detected_at": "2026-07-01T09:15:00Z",
            "resolved_at": "2026-07-01T11:00:00Z" if status == "resolved" else None,
            "evidence": {"v_min": 201.0}, **extra}


def action(kind, at="2026-07-01T09:30:00Z", **extra) -> dict:
    base = {"action": kind, "alert_id": AID, "author": "ops-anna", "reason": "crew dispatched", "at": at}
    return {**base, **extra}


def ok(result):
    record, error = result
    assert error is None, error
    assert record is not None
    contract.check("alerts", record)  # every published record keeps the wire contract
    return record


def opened() -> dict:
    record = apply_finding(None, finding())
    contract.check("alerts", record)
    return record


def acked() -> dict:
    return ok(apply_action(opened(), action("acknowledge")))


# ------------------------------------------------------------------------------------------ findings

def test_first_finding_opens_with_empty_operator_fields():
    record = opened()
    assert record["status"] == "open" and record["resolved_at"] is None
    assert {k: record[k] for k in ("acknowledged_at", "acknowledged_by", "ack_reason", "resolved_by",
                                   "resolution_reason", "no_fault")} == {
        "acknowledged_at": None, "acknowledged_by": None, "ack_reason": None, "resolved_by": None,
        "resolution_reason": None, "no_fault": False}
    assert record["history"] == [{"status": "open", "at": "2026-07-01T09:15:00Z", "by": "detector", "reason": None}]


def test_a_first_finding_already_resolved_has_both_history_entries():
    record = apply_finding(None, finding("resolved"))
    assert record["status"] == "resolved" and record["resolved_by"] is None
    assert [(h["status"], h["at"]) for h in record["history"]] == [
        ("open", "2026-07-01T09:15:00Z"), ("resolved", "2026-07-01T11:00:00Z")]


def test_the_same_finding_again_changes_nothing():
    record = opened()
    assert apply_finding(record, finding()) is None


def test_detector_updates_replace_detector_fields():
    record = apply_finding(opened(), finding(severity="critical", meter_ids=["M1", "M2", "M3"]))
    assert record["severity"] == "critical" and record["meter_ids"] == ["M1", "M2", "M3"]
    assert record["status"] == "open" and len(record["history"]) == 1


def test_a_scope_change_is_an_update_of_the_same_alert_with_a_history_entry():
    grown = finding(scope={"level": "feeder", "id": "F1"}, meter_ids=["M1", "M2", "M3"],
                    evidence={"updated_at": "2026-07-01T09:20:00Z"})
    rec = ok((apply_finding(opened(), grown), None))
    assert rec["status"] == "open" and rec["scope"] == {"level": "feeder", "id": "F1"}
    assert rec["history"][-1] == {"status": "open", "at": "2026-07-01T09:20:00Z", "by": "detector",
                                  "reason": "scope feeder F1: 3 meters"}
    assert apply_finding(rec, grown) is None  # the same update again: nothing new


def test_acknowledgement_is_kept_across_detector_updates():
    ack = acked()
    assert apply_finding(ack, finding()) is None
    updated = apply_finding(ack, finding(evidence={"v_min": 195.0}))
    assert updated["status"] == "acknowledged"
    assert (updated["acknowledged_at"], updated["acknowledged_by"], updated["ack_reason"]) == (
        "2026-07-01T09:30:00Z", "ops-anna", "crew dispatched")
    assert updated["evidence"] == {"v_min": 195.0}
    assert [h["status"] for h in updated["history"]] == ["open", "acknowledged"]
    contract.check("alerts", updated)


def test_detector_resolves_an_acknowledged_alert():
    record = apply_finding(acked(), finding("resolved"))
    assert record["status"] == "resolved" and record["resolved_at"] == "2026-07-01T11:00:00Z"
    assert record["resolved_by"] is None  # the detector, not an operator
    assert record["acknowledged_by"] == "ops-anna"  # the acknowledgement stays on the record
    assert [(h["status"], h["by"]) for h in record["history"]] == [
        ("open", "detector"), ("acknowledged", "ops-anna"), ("resolved", "detector")]
    contract.check("alerts", record)


def test_detector_reopens_after_its_own_resolution_and_clears_the_old_ack():
    resolved = apply_finding(acked(), finding("resolved"))
    again = apply_finding(resolved, finding(detected_at="2026-07-01T12:00:00Z"))
    assert again["status"] == "open" and again["resolved_at"] is None
    assert again["acknowledged_by"] is None and again["acknowledged_at"] is None
    assert [h["status"] for h in again["history"]] == ["open", "acknowledged", "resolved", "open"]


def test_operator_resolution_is_final_for_detector_updates():
    resolved = ok(apply_action(acked(), action("resolve", at="2026-07-01T10:00:00Z", reason="fuse replaced")))
    assert apply_finding(resolved, finding()) is None
    assert apply_finding(resolved, finding(severity="critical")) is None
    assert apply_finding(resolved, finding("resolved")) is None


def test_a_finding_with_an_operator_status_is_refused():
    with pytest.raises(ValueError, match="'open' or 'resolved'"):
        apply_finding(None, finding("acknowledged"))


# ------------------------------------------------------------------------------------------- actions

def test_acknowledge_an_open_alert():
    record = acked()
    assert record["status"] == "acknowledged"
    assert record["history"][-1] == {"status": "acknowledged", "at": "2026-07-01T09:30:00Z", "by": "ops-anna",
                                     "reason": "crew dispatched"}


def test_resolve_with_no_fault_and_the_full_history_in_order():
    record = ok(apply_action(acked(), action("resolve", at="2026-07-01T10:00:00Z", author="ops-ben",
                                             reason="meter misread", no_fault=True)))
    assert record["status"] == "resolved" and record["resolved_at"] == "2026-07-01T10:00:00Z"
    assert (record["resolved_by"], record["resolution_reason"], record["no_fault"]) == (
        "ops-ben", "meter misread", True)
    assert [(h["status"], h["at"], h["by"]) for h in record["history"]] == [
        ("open", "2026-07-01T09:15:00Z", "detector"), ("acknowledged", "2026-07-01T09:30:00Z", "ops-anna"),
        ("resolved", "2026-07-01T10:00:00Z", "ops-ben")]


def test_resolve_straight_from_open():
    record = ok(apply_action(opened(), action("resolve")))
    assert record["status"] == "resolved" and record["no_fault"] is False and record["acknowledged_by"] is None


def test_the_same_action_twice_is_a_no_op():
    ack = acked()
    assert apply_action(ack, action("acknowledge")) == (None, None)
    resolved = ok(apply_action(ack, action("resolve", at="2026-07-01T10:00:00Z")))
    assert apply_action(resolved, action("resolve", at="2026-07-01T10:00:00Z")) == (None, None)


@pytest.mark.parametrize("current, act, message", [
    (None, action("acknowledge"), "unknown alert"),
    ("open", action("close"), "unknown action 'close'"),
    ("open", action("acknowledge", author=" "), "author is required"),
    ("open", action("acknowledge", author=None), "author is required"),
    ("open", action("resolve", reason=""), "reason is required"),
    ("open", action("resolve", at=None), "no time"),
    ("open", action("acknowledge", alert_id=""), "no alert_id"),
    ("open", action("acknowledge", no_fault=True), "no_fault applies to resolve only"),
    ("acked", action("acknowledge", author="ops-ben", at="2026-07-01T09:40:00Z"), "already acknowledged by ops-anna"),
    ("resolved", action("acknowledge", at="2026-07-01T12:00:00Z"), "already resolved"),
    ("resolved", action("resolve", author="ops-ben"), "already resolved"),
    ("detector-resolved", action("resolve"), "already resolved \\(by the detector"),
])
def test_invalid_actions_publish_nothing_and_say_why(current, act, message):
    states = {None: None, "open": opened(), "acked": acked(),
              "resolved": ok(apply_action(opened(), action("resolve", at="2026-07-01T10:00:00Z"))),
              "detector-resolved": apply_finding(None, finding("resolved"))}
    record, error = apply_action(states[current], act)
    assert record is None
    assert error is not None
    assert re.search(message, error), error


# -------------------------------------------------------------------------------------------- reopen

OUTAGE = "outage:transformer:T1:2026-07-01T08:00:00Z"


def resolved_outage(**extra) -> dict:
    f = {**finding("resolved"), "alert_id": OUTAGE, "kind": "outage", "severity": "critical",
         "started_at": "2026-07-01T08:00:00Z", "resolved_at": "2026-07-01T10:45:00Z", **extra}
    return apply_finding(None, f)


def reopen(**extra) -> dict:
    return {"action": "reopen", "alert_id": OUTAGE, "customer_id": "C2", "meter_id": "M2",
            "at": "2026-07-01T11:05:00Z", "author": "customer", **extra}


def test_a_customer_still_out_opens_a_child_outage_on_their_meter():
    parent = resolved_outage()
    child = ok(apply_action(parent, reopen()))
    assert child["alert_id"] == "outage:meter:M2:reported:2026-07-01T11:05:00Z" == \
        reopened_alert_id("M2", "2026-07-01T11:05:00Z")
    assert {k: child[k] for k in ("kind", "severity", "status", "scope", "meter_ids", "customer_ids",
                                  "started_at", "detected_at", "resolved_at", "evidence")} == {
        "kind": "outage", "severity": "warning", "status": "open", "scope": {"level": "meter", "id": "M2"},
        "meter_ids": ["M2"], "customer_ids": ["C2"], "started_at": "2026-07-01T10:45:00Z",
        "detected_at": "2026-07-01T11:05:00Z", "resolved_at": None,
        "evidence": {"reported_by_customer": True, "parent_alert_id": OUTAGE,
                     "text": "customer reports power still off after restoration"}}
    assert child["history"] == [{"status": "open", "at": "2026-07-01T11:05:00Z", "by": "customer",
                                 "reason": "customer reports power still off after restoration"}]
    assert parent["status"] == "resolved"  # the parent is not changed
    assert apply_action(parent, reopen()) == (child, None)  # a redelivered reply: the same child, same id


def test_reopen_starts_at_the_action_time_when_the_parent_has_no_resolved_at():
    parent = {**resolved_outage(), "resolved_at": None}
    assert ok(apply_action(parent, reopen()))["started_at"] == "2026-07-01T11:05:00Z"


@pytest.mark.parametrize("parent, act, message", [
    ("open-outage", reopen(), "not resolved"),
    ("resolved-voltage", reopen(alert_id=AID), "only an outage"),
    ("resolved-outage", reopen(customer_id="C9"), "customer C9 is not among"),
    ("resolved-outage", reopen(meter_id=""), "needs the customer_id and meter_id"),
    ("resolved-outage", reopen(author=""), "author is required"),
    (None, reopen(), "unknown alert"),
])
def test_reopen_rules(parent, act, message):
    parents = {None: None, "resolved-outage": resolved_outage(),
               "open-outage": apply_finding(None, {**finding(), "alert_id": OUTAGE, "kind": "outage"}),
               "resolved-voltage": apply_finding(None, finding("resolved"))}
    record, error = apply_action(parents[parent], act)
    assert record is None and message in error
