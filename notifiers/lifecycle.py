"""The alert lifecycle, open -> acknowledged -> resolved: detector updates merged with operator actions.

Two inputs change an alert, both keyed by ``alert_id`` (so one partition sees all of an alert's history):

* a *finding* on ``gridwatch.findings``: what the detectors say (status "open" or "resolved"), in the
  shape of an ``alerts`` record;
* an *action* on ``gridwatch.alert-actions``: what an operator (or a customer's reply) did::

      {"action": "acknowledge" | "resolve" | "reopen", "alert_id": "…", "author": "…", "reason": "…",
       "at": RFC 3339, "no_fault": false,            # resolve only: a false alarm
       "customer_id": "…", "meter_id": "…"}          # reopen only

The record published on ``alerts`` is the finding plus the operator's fields (``acknowledged_at``,
``acknowledged_by``, ``ack_reason``, ``resolved_by``, ``resolution_reason``, ``no_fault``) and a ``history``
list of ``{"status", "at", "by", "reason"}`` entries in the order they happened, for a console's timeline.

A detector update that changes the alert's scope (an outage that grows from a meter to its transformer or
feeder keeps its id) adds a history entry ``{"status": <current>, "at": <evidence.updated_at>, "by":
"detector", "reason": "scope feeder F001: 32 meters"}``.

Rules: an acknowledgement survives further detector updates (status stays "acknowledged" while the
detector says open); the detector may still resolve an acknowledged alert; an alert an operator resolved
stays resolved, whatever the detector says later about the same id. ``resolved_by`` is set only by an
operator (a detector's resolution leaves it null; its history entry says ``"by": "detector"``).

Pure, no Faust: the caller keeps the latest record per alert_id (a table) and publishes what these return.
"""

from __future__ import annotations

import time

from gridwatch.contract import format_ts

__all__ = ["ACTIONS", "DETECTOR", "OPERATOR_FIELDS", "REOPEN_TEXT", "apply_finding", "apply_action",
           "make_action", "reopened_alert_id"]

ACTIONS = ("acknowledge", "resolve", "reopen")
#: the ``by`` of history entries written for detector updates
DETECTOR = "detector"
OPERATOR_FIELDS = ("acknowledged_at", "acknowledged_by", "ack_reason", "resolved_by", "resolution_reason",
                   "no_fault")
REOPEN_TEXT = "customer reports power still off after restoration"
_LIFECYCLE_FIELDS = ("status", "resolved_at", "history") + OPERATOR_FIELDS


def _entry(status: str, at, by, reason=None) -> dict:
    return {"status": status, "at": at, "by": by, "reason": reason}


def _blank(value) -> bool:
    return not isinstance(value, str) or not value.strip()


def _fresh(finding: dict) -> dict:
    """A first record from a finding: operator fields empty, history from the detector's own times."""
    record = {k: v for k, v in finding.items() if k not in _LIFECYCLE_FIELDS}
    record.update({field: None for field in OPERATOR_FIELDS})
    record["no_fault"] = False
    status = finding["status"]
    history = [_entry("open", finding.get("detected_at"), DETECTOR)]
    if status == "resolved":
        history.append(_entry("resolved", finding.get("resolved_at") or finding.get("detected_at"), DETECTOR))
    record.update(status=status, resolved_at=finding.get("resolved_at") if status == "resolved" else None,
                  history=history)
    return record


def _operator_resolved(record: dict) -> bool:
    return record.get("status") == "resolved" and bool(record.get("resolved_by"))


def apply_finding(current: dict | None, finding: dict) -> dict | None:
    """The record to publish on ``alerts`` for a detector update, or None when nothing changes.

    ``current`` is the latest published record of this alert_id (None: first finding). The finding's
    detector fields (severity, meters, customers, evidence …) replace the current ones; its status is
    merged with the operator's: acknowledged stays acknowledged while the detector says open, and an
    alert resolved by an operator ignores every later finding (None). A detector "open" after a detector
    "resolved" of the same id reopens it (the acknowledgement of the earlier episode is cleared).
    ValueError for a finding whose status is neither "open" nor "resolved".
    """
    status = finding.get("status")
    if status not in ("open", "resolved"):
        raise ValueError(f"a finding's status is 'open' or 'resolved', not {status!r}")
    if current is None:
        return _fresh(finding)
    if _operator_resolved(current):
        return None
    record = dict(current)
    record.update({k: v for k, v in finding.items() if k not in _LIFECYCLE_FIELDS})
    history = list(current.get("history") or [])
    was = current.get("status")
    scope = finding.get("scope")
    if scope and scope != current.get("scope"):
        # one incident whose scope changed (an outage reaching its transformer or feeder): said in the history
        at = (finding.get("evidence") or {}).get("updated_at") or finding.get("detected_at")
        history.append(_entry(was if was in ("open", "acknowledged") else "open", at, DETECTOR,
                              f"scope {scope.get('level')} {scope.get('id')}: "
                              f"{len(finding.get('meter_ids') or ())} meters"))
    if status == "resolved":
        if was != "resolved":
            history.append(_entry("resolved", finding.get("resolved_at") or finding.get("detected_at"), DETECTOR))
        record.update(status="resolved", resolved_at=finding.get("resolved_at") or current.get("resolved_at"))
    elif was == "resolved":  # the detector reopened the same id: a new episode, nobody has acknowledged it
        history.append(_entry("open", finding.get("detected_at"), DETECTOR))
        record.update(status="open", resolved_at=None, acknowledged_at=None, acknowledged_by=None,
                      ack_reason=None)
    else:  # open or acknowledged: the operator's acknowledgement is kept
        record.update(status=was if was in ("open", "acknowledged") else "open", resolved_at=None)
    if history or "history" in current:
        record["history"] = history
    return None if record == current else record


def reopened_alert_id(meter_id: str, at: str) -> str:
    """The id of the alert a customer's "still out" reply opens (deterministic: a redelivered reply
    yields the same record, not a second alert)."""
    return f"outage:meter:{meter_id}:reported:{at}"


def _reopen(current: dict, action: dict) -> tuple[dict | None, str | None]:
    aid, at = action["alert_id"], action["at"]
    customer_id, meter_id = action.get("customer_id"), action.get("meter_id")
    if _blank(customer_id) or _blank(meter_id):
        return None, "reopen needs the customer_id and meter_id of the customer reporting"
    if current.get("kind") != "outage":
        return None, f"alert {aid} is a {current.get('kind')} alert; only an outage can be reopened"
    if current.get("status") != "resolved":
        return None, f"alert {aid} is {current.get('status')}, not resolved: nothing to reopen"
    if customer_id not in (current.get("customer_ids") or []):
        return None, f"customer {customer_id} is not among the customers of outage {aid}"
    reason = action.get("reason") or REOPEN_TEXT
    child = {
        "alert_id": reopened_alert_id(meter_id, at), "kind": "outage", "severity": "warning", "status": "open",
        "scope": {"level": "meter", "id": meter_id}, "meter_ids": [meter_id], "customer_ids": [customer_id],
        "started_at": current.get("resolved_at") or at, "detected_at": at, "resolved_at": None,
        "evidence": {"reported_by_customer": True, "parent_alert_id": aid, "text": REOPEN_TEXT},
    }
    child.update({field: None for field in OPERATOR_FIELDS})
    child["no_fault"] = False
    child["history"] = [_entry("open", at, action["author"], reason)]
    return child, None


def apply_action(current: dict | None, action: dict) -> tuple[dict | None, str | None]:
    """``(record to publish on alerts or None, error or None)`` for an operator action on ``current``.

    * acknowledge: an open alert becomes acknowledged (``acknowledged_at/by``, ``ack_reason``);
    * resolve: an open or acknowledged alert becomes resolved (``resolved_at/by``, ``resolution_reason``,
      ``no_fault`` for a false alarm);
    * reopen: a customer says the power is still off after a resolved outage: a NEW child alert on the
      customer's meter (the parent stays resolved; see ``reopened_alert_id``).

    Errors (nothing to publish): an unknown action or alert, a missing author, reason or time, ``no_fault``
    on anything but resolve, acknowledging or resolving a resolved alert, reopening anything but a resolved
    outage of that customer. The same action delivered twice yields ``(None, None)`` the second time.
    """
    kind = action.get("action")
    if kind not in ACTIONS:
        return None, f"unknown action {kind!r}: one of {', '.join(ACTIONS)}"
    aid = action.get("alert_id")
    if _blank(aid):
        return None, "the action names no alert_id"
    if _blank(action.get("author")):
        return None, f"{kind} of {aid}: author is required"
    if kind != "reopen" and _blank(action.get("reason")):
        return None, f"{kind} of {aid}: reason is required"
    if _blank(action.get("at")):
        return None, f"{kind} of {aid}: the action has no time ('at')"
    if action.get("no_fault") and kind != "resolve":
        return None, f"{kind} of {aid}: no_fault applies to resolve only"
    if current is None:
        return None, f"unknown alert {aid}"
    if kind == "reopen":
        return _reopen(current, action)

    author, reason, at = action["author"].strip(), action["reason"].strip(), action["at"]
    status = current.get("status")
    history = list(current.get("history") or [])
    if kind == "acknowledge":
        if status == "resolved":
            return None, f"alert {aid} is already resolved; it cannot be acknowledged"
        if status == "acknowledged":
            if current.get("acknowledged_by") == author and current.get("acknowledged_at") == at:
                return None, None  # the same action again
            return None, (f"alert {aid} was already acknowledged by {current.get('acknowledged_by')} "
                          f"at {current.get('acknowledged_at')}")
        history.append(_entry("acknowledged", at, author, reason))
        return {**current, "status": "acknowledged", "acknowledged_at": at, "acknowledged_by": author,
                "ack_reason": reason, "history": history}, None

    # resolve
    if status == "resolved":
        if current.get("resolved_by") == author and current.get("resolved_at") == at:
            return None, None
        by = current.get("resolved_by") or "the detector"
        return None, f"alert {aid} is already resolved (by {by} at {current.get('resolved_at')})"
    no_fault = bool(action.get("no_fault"))
    history.append(_entry("resolved", at, author, reason))
    return {**current, "status": "resolved", "resolved_at": at, "resolved_by": author,
            "resolution_reason": reason, "no_fault": no_fault, "history": history}, None


def make_action(action: str, alert_id: str, author: str, reason: str, *, no_fault: bool = False,
                now: float | None = None) -> dict:
    """An operator action record (ValueError on blank fields)."""
    for name, value in (("alert id", alert_id), ("--author", author), ("--reason", reason)):
        if not value or not value.strip():
            raise ValueError(f"{name} is required and must not be blank")
    record = {"action": action, "alert_id": alert_id.strip(), "author": author.strip(), "reason": reason.strip(),
              "at": format_ts(time.time() if now is None else now)}
    if action == "resolve":
        record["no_fault"] = bool(no_fault)
    return record
