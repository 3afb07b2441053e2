"""Operator silences: "do not message customers about X in area Y until Z".

A silence is a record on the compacted ``gridwatch.silences`` topic, keyed by its ``silence_id``; every
worker reads the whole topic, so a silence added on one console is honoured by every worker. A silence
is never deleted by the operator: ``expire`` ends it early and keeps who did it, so the list of past
silences stays an audit trail (the topic's compaction keeps the latest record per id).

Record::

    {"silence_id": "sil-…", "scope": {"level": "feeder", "id": "F01"},
     "kinds": ["undervoltage", "overvoltage"] | null,     # null: every kind
     "starts_at": RFC 3339, "ends_at": RFC 3339, "include_safety": false,
     "author": "…", "reason": "…", "created_at": RFC 3339,
     "expired_at": null | RFC 3339, "expired_by": null | "…"}

Safety messages (``SAFETY_KINDS`` and any ``critical`` alert) are never muted by a silence unless it says
``"include_safety": true``. Operators silence a noisy area during planned work, and a broad silence
("feeder F01, all kinds, 4 hours") must not also swallow the one message that tells a customer about a
loose neutral or a real outage: muting those has to be an explicit, separate choice.

Pure: times are passed in as epoch seconds (``now``), so tests choose them.
"""

from __future__ import annotations

import uuid
from typing import Iterable

from gridwatch import timefmt
from gridwatch.kinds import having
from gridwatch.contract import format_ts

__all__ = ["SCOPE_LEVELS", "SAFETY_KINDS", "MAX_DURATION_S", "new_silence", "parse_duration", "parse_time",
           "active", "covers", "is_safety", "matching", "expire", "silence_state", "parse_scope"]

#: what a silence can cover; "all" is every alert everywhere (its id is "*")
SCOPE_LEVELS = ("feeder", "transformer", "meter", "customer", "all")
#: kinds whose messages a silence mutes only with ``include_safety`` (as does any "critical" alert)
SAFETY_KINDS = frozenset(having("safety"))
#: the longest silence accepted without ``force``: a forgotten silence must not mute an area for months
MAX_DURATION_S = 7 * 24 * 3600

def parse_duration(text: str) -> int:
    """A silence's length (:func:`gridwatch.timefmt.parse_duration`: ``2h``, ``30m``, ``1h30m``, ``1w``)
    -> seconds; ValueError for anything else, and for a duration that is not positive."""
    seconds = timefmt.parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"a duration must be positive: {text!r}")
    return seconds


def parse_time(value: str | float | int) -> int:
    """RFC 3339 with an offset, or epoch seconds, -> epoch seconds (ValueError when unreadable)."""
    return int(timefmt.parse_time(value))


def _blank(value) -> bool:
    return not isinstance(value, str) or not value.strip()


def new_silence(scope_level: str, scope_id: str | None, *, kinds: Iterable[str] | None = None,
                starts_at: str | float | None = None, ends_at: str | float | None = None,
                duration: str | float | None = None, author: str, reason: str, now: float,
                include_safety: bool = False, force: bool = False, silence_id: str | None = None) -> dict:
    """A validated silence record, starting at ``starts_at`` (default ``now``) and ending at ``ends_at`` or
    after ``duration`` (a string such as ``"2h"`` or seconds; exactly one of the two).

    ValueError with a message naming the problem: unknown scope level, blank scope id, author or reason,
    an empty kinds list, no end or two ends, an end not after the start or already past, or a window longer
    than ``MAX_DURATION_S`` without ``force``.
    """
    level = (scope_level or "").strip().lower()
    if level not in SCOPE_LEVELS:
        raise ValueError(f"unknown scope level {scope_level!r}: one of {', '.join(SCOPE_LEVELS)}")
    if level == "all":
        sid = "*"
    elif _blank(scope_id):
        raise ValueError(f"a {level} silence needs the {level} id (e.g. {level}:ID)")
    else:
        sid = scope_id.strip()
    if _blank(author):
        raise ValueError("author is required: who adds this silence")
    if _blank(reason):
        raise ValueError("reason is required: why these alerts are silenced (e.g. planned work order)")
    kind_list = None
    if kinds is not None:
        kind_list = []
        for k in kinds:
            k = (k or "").strip()
            if k and k not in kind_list:
                kind_list.append(k)
        if not kind_list:
            raise ValueError("kinds is empty: name at least one kind, or leave it out to silence every kind")
    if (ends_at is None) == (duration is None):
        raise ValueError("give exactly one of an end time (--until) or a duration (--for)")
    start = int(now) if starts_at is None else parse_time(starts_at)
    if duration is not None:
        seconds = parse_duration(duration) if isinstance(duration, str) else int(duration)
        if seconds <= 0:
            raise ValueError(f"a duration must be positive, got {duration!r}")
        end = start + seconds
    else:
        end = parse_time(ends_at)
    if end <= start:
        raise ValueError(f"the silence must end after it starts ({format_ts(end)} is not after {format_ts(start)})")
    if end <= now:
        raise ValueError(f"the silence would already be over (ends {format_ts(end)}, now {format_ts(now)})")
    if end - start > MAX_DURATION_S and not force:
        raise ValueError(f"a silence of {(end - start) / 3600:.1f} h is longer than the {MAX_DURATION_S // 86400} "
                         f"days allowed; shorten it, or force it (--force)")
    return {
        "silence_id": silence_id or f"sil-{uuid.uuid4().hex[:16]}",
        "scope": {"level": level, "id": sid},
        "kinds": kind_list,
        "starts_at": format_ts(start),
        "ends_at": format_ts(end),
        "include_safety": bool(include_safety),
        "author": author.strip(),
        "reason": reason.strip(),
        "created_at": format_ts(now),
        "expired_at": None,
        "expired_by": None,
    }


def active(silence: dict, now: float) -> bool:
    """In force at ``now``: ``starts_at <= now < min(ends_at, expired_at)``. A malformed record is never active."""
    try:
        start = parse_time(silence["starts_at"])
        end = parse_time(silence["ends_at"])
        if silence.get("expired_at") is not None:
            end = min(end, parse_time(silence["expired_at"]))
    except (KeyError, TypeError, ValueError):
        return False
    return start <= now < end


def is_safety(alert: dict) -> bool:
    """A safety message: an outage, a loose neutral, or anything the detectors call critical."""
    return alert.get("kind") in SAFETY_KINDS or alert.get("severity") == "critical"


def _scope_covers(scope: dict, alert: dict, customer: dict | None) -> bool:
    level, sid = scope.get("level"), scope.get("id")
    if level == "all":
        return True
    if level not in SCOPE_LEVELS or sid is None:
        return False
    field = f"{level}_id"
    if customer is not None and customer.get(field) == sid:
        return True
    if alert.get(field) == sid:
        return True
    own = alert.get("scope") or {}
    return own.get("level") == level and own.get("id") == sid


def covers(silence: dict, alert: dict, customer: dict | None = None) -> bool:
    """Scope, kinds and the safety rule (not time): would this silence mute this alert for this customer?"""
    if not _scope_covers(silence.get("scope") or {}, alert, customer):
        return False
    kinds = silence.get("kinds")
    if kinds is not None and alert.get("kind") not in kinds:
        return False
    return not is_safety(alert) or bool(silence.get("include_safety"))


def matching(silences: Iterable[dict], alert: dict, customer: dict | None, now: float) -> dict | None:
    """The first silence active at ``now`` that mutes ``alert`` for ``customer`` (None: send as usual).

    A silence covers the alert when its scope is ``all``, or the customer's (else the alert's) ``feeder_id``
    / ``transformer_id`` / ``meter_id`` / ``customer_id`` is the silence's id, or the alert's own scope is
    that level and id; its ``kinds`` (when not null) must name the alert's kind; and a safety alert is
    covered only by a silence with ``include_safety``.
    """
    for silence in silences:
        if silence and active(silence, now) and covers(silence, alert, customer):
            return silence
    return None


def expire(silence: dict, by: str, now: float) -> dict:
    """The silence ended at ``now`` by ``by`` (a new record; the input is not changed)."""
    if _blank(by):
        raise ValueError("author is required: who expires this silence")
    if silence.get("expired_at") is not None:
        raise ValueError(f"silence {silence.get('silence_id')} was already expired at {silence['expired_at']} "
                         f"by {silence.get('expired_by')}")
    return {**silence, "expired_at": format_ts(now), "expired_by": by.strip()}


def silence_state(silence: dict, now: float) -> str:
    """"active", "scheduled" (starts later), "expired" (ended early by an operator) or "ended"."""
    if active(silence, now):
        return "active"
    if silence.get("expired_at") is not None:
        return "expired"
    try:
        if parse_time(silence["starts_at"]) > now:
            return "scheduled"
    except (KeyError, TypeError, ValueError):
        pass
    return "ended"


def parse_scope(text: str) -> tuple[str, str | None]:
    """``feeder:F01`` -> ("feeder", "F01"); ``all`` -> ("all", None)."""
    level, _, sid = (text or "").strip().partition(":")
    level = level.strip().lower()
    if level == "all":
        return "all", None
    if level not in SCOPE_LEVELS or not sid.strip():
        raise ValueError(f"--scope {text!r}: use LEVEL:ID with LEVEL one of feeder, transformer, meter, "
                         "customer (e.g. feeder:F01), or all")
    return level, sid.strip()
