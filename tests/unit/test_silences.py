"""Operator silences: validation, scope matching at every level, kinds, time window, the safety rule, expiry."""

from __future__ import annotations

import pytest

from gridwatch.contract import parse_ts
from notifiers import silences as sil

NOW = parse_ts("2026-07-01T10:00:00Z")
HOUR = 3600

CUSTOMER = {"customer_id": "C1", "meter_id": "M1", "transformer_id": "T1", "feeder_id": "F1"}


def alert(kind="undervoltage", severity="warning", level="transformer", sid="T1", **extra) -> dict:
    return {"alert_id": f"{kind}:{level}:{sid}:2026-07-01T09:00:00Z", "kind": kind, "severity": severity,
            "status": "open", "scope": {"level": level, "id": sid}, "meter_ids": ["M1", "M2"],
            "customer_ids": ["C1", "C2"], "started_at": "2026-07-01T09:00:00Z",
            "detected_at": "2026-07-01T09:15:00Z", "resolved_at": None, "evidence": {}, **extra}


def silence(level="feeder", sid="F1", **kw) -> dict:
    kw.setdefault("duration", "2h")
    kw.setdefault("author", "ops-anna")
    kw.setdefault("reason", "planned work WO-17")
    kw.setdefault("now", NOW)
    return sil.new_silence(level, sid, **kw)


# ------------------------------------------------------------------------------------------- parsing

@pytest.mark.parametrize("text, seconds", [("2h", 7200), ("30m", 1800), ("1d", 86400), ("90s", 90),
                                           ("1h30m", 5400), (" 2H ", 7200), ("1w", 604800), ("1.5h", 5400)])
def test_parse_duration(text, seconds):
    assert sil.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2", "h", "2x", "2h junk", "0m", "-1h", "two hours"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError):
        sil.parse_duration(text)


# ---------------------------------------------------------------------------------------- new_silence

def test_new_silence_record_shape():
    s = silence(kinds=["undervoltage", "overvoltage", "undervoltage"], silence_id="sil-1")
    assert s == {
        "silence_id": "sil-1", "scope": {"level": "feeder", "id": "F1"},
        "kinds": ["undervoltage", "overvoltage"],
        "starts_at": "2026-07-01T10:00:00Z", "ends_at": "2026-07-01T12:00:00Z", "include_safety": False,
        "author": "ops-anna", "reason": "planned work WO-17", "created_at": "2026-07-01T10:00:00Z",
        "expired_at": None, "expired_by": None,
    }


def test_new_silence_ids_are_unique_and_all_scope_has_a_star_id():
    a, b = silence(), silence()
    assert a["silence_id"] != b["silence_id"] and a["silence_id"].startswith("sil-")
    assert silence("all", None)["scope"] == {"level": "all", "id": "*"}


def test_new_silence_with_explicit_window():
    s = silence(duration=None, starts_at="2026-07-01T12:00:00+02:00", ends_at="2026-07-01T14:00:00Z")
    assert (s["starts_at"], s["ends_at"]) == ("2026-07-01T10:00:00Z", "2026-07-01T14:00:00Z")


@pytest.mark.parametrize("kw, message", [
    ({"author": " "}, "author is required"),
    ({"author": None}, "author is required"),
    ({"reason": ""}, "reason is required"),
    ({"kinds": []}, "kinds is empty"),
    ({"kinds": [" "]}, "kinds is empty"),
    ({"duration": None}, "exactly one of"),
    ({"ends_at": "2026-07-01T11:00:00Z"}, "exactly one of"),
    ({"duration": None, "ends_at": "2026-07-01T09:00:00Z"}, "end after it starts"),
    ({"duration": None, "starts_at": "2026-07-01T08:00:00Z", "ends_at": "2026-07-01T09:00:00Z"},
     "already be over"),
    ({"duration": "8d"}, "longer than the 7 days"),
    ({"duration": None, "ends_at": "tomorrow"}, "RFC 3339"),
    ({"duration": "soon"}, "not a duration"),
])
def test_new_silence_validation(kw, message):
    with pytest.raises(ValueError, match=message):
        silence(**kw)


def test_new_silence_scope_validation_and_force():
    with pytest.raises(ValueError, match="unknown scope level 'substation'"):
        silence("substation", "S1")
    with pytest.raises(ValueError, match="needs the meter id"):
        silence("meter", "  ")
    assert silence(duration="8d", force=True)["ends_at"] == "2026-07-09T10:00:00Z"
    assert silence(duration="7d")["ends_at"] == "2026-07-08T10:00:00Z"  # exactly the limit is fine


# ----------------------------------------------------------------------------------------- matching

@pytest.mark.parametrize("level, sid", [("feeder", "F1"), ("transformer", "T1"), ("meter", "M1"),
                                        ("customer", "C1"), ("all", None)])
def test_scope_matches_through_the_customer_at_every_level(level, sid):
    s = silence(level, sid)
    assert sil.matching([s], alert(), CUSTOMER, NOW + 60) is s


@pytest.mark.parametrize("level, sid", [("feeder", "F2"), ("transformer", "T2"), ("meter", "M2"),
                                        ("customer", "C2")])
def test_scope_of_another_area_does_not_match(level, sid):
    assert sil.matching([silence(level, sid)], alert(), CUSTOMER, NOW + 60) is None


def test_scope_matches_the_alerts_own_scope_and_fields_without_a_customer():
    feeder_alert = alert(level="feeder", sid="F9")
    assert sil.matching([silence("feeder", "F9")], feeder_alert, None, NOW) is not None
    assert sil.matching([silence("feeder", "F9")], feeder_alert, CUSTOMER, NOW) is not None  # not the customer's
    assert sil.matching([silence("transformer", "F9")], feeder_alert, None, NOW) is None  # level must agree
    assert sil.matching([silence("feeder", "F1")], alert(feeder_id="F1"), None, NOW) is not None
    assert sil.matching([silence("feeder", "F1")], alert(), None, NOW) is None


def test_kinds_filter():
    volt = silence(kinds=["undervoltage", "overvoltage"])
    assert sil.matching([volt], alert("overvoltage"), CUSTOMER, NOW) is volt
    assert sil.matching([volt], alert("bill_spike", level="meter", sid="M1"), CUSTOMER, NOW) is None
    every = silence(kinds=None)
    assert sil.matching([every], alert("bill_spike", level="meter", sid="M1"), CUSTOMER, NOW) is every


def test_time_window_edges():
    s = silence(duration=None, starts_at="2026-07-01T11:00:00Z", ends_at="2026-07-01T12:00:00Z")
    start, end = parse_ts(s["starts_at"]), parse_ts(s["ends_at"])
    assert not sil.active(s, start - 1)
    assert sil.active(s, start)
    assert sil.active(s, end - 1)
    assert not sil.active(s, end)  # [starts_at, ends_at)
    assert sil.matching([s], alert(), CUSTOMER, NOW) is None  # scheduled, not yet in force
    assert sil.matching([s], alert(), CUSTOMER, start) is s


@pytest.mark.parametrize("safety", [alert("outage", level="meter", sid="M1"), alert("loose_neutral"),
                                    alert("undervoltage", severity="critical")])
def test_a_silence_never_mutes_safety_messages_unless_it_says_so(safety):
    broad = silence("feeder", "F1")
    assert sil.is_safety(safety)
    assert sil.matching([broad], safety, CUSTOMER, NOW) is None
    explicit = silence("feeder", "F1", include_safety=True)
    assert explicit["include_safety"] is True
    assert sil.matching([broad, explicit], safety, CUSTOMER, NOW) is explicit
    assert not sil.is_safety(alert("undervoltage", severity="warning"))


def test_matching_returns_the_first_active_covering_silence():
    other = silence("feeder", "F2")
    later = silence(duration=None, starts_at="2026-07-01T11:00:00Z", ends_at="2026-07-01T13:00:00Z")
    first, second = silence("meter", "M1"), silence("feeder", "F1")
    assert sil.matching([other, later, first, second], alert(), CUSTOMER, NOW) is first
    assert sil.matching([], alert(), CUSTOMER, NOW) is None


def test_malformed_silences_are_never_active():
    good = silence()
    for broken in ({}, {**good, "starts_at": None}, {**good, "ends_at": "later"}, {**good, "scope": None}):
        assert sil.matching([broken], alert(), CUSTOMER, NOW) is None


# ------------------------------------------------------------------------------------------- expiry

def test_expire_ends_the_silence_from_then_on():
    s = silence()
    ended = sil.expire(s, "ops-ben", NOW + 1800)
    assert s["expired_at"] is None  # the input is left alone
    assert (ended["expired_at"], ended["expired_by"]) == ("2026-07-01T10:30:00Z", "ops-ben")
    assert sil.active(ended, NOW + 1799)  # still in force before it was expired (replays agree)
    assert not sil.active(ended, NOW + 1800)
    assert sil.matching([ended], alert(), CUSTOMER, NOW + HOUR) is None
    assert {k: v for k, v in ended.items() if not k.startswith("expired")} == \
        {k: v for k, v in s.items() if not k.startswith("expired")}


def test_expire_needs_an_author_and_only_once():
    s = silence()
    with pytest.raises(ValueError, match="author is required"):
        sil.expire(s, "", NOW)
    with pytest.raises(ValueError, match="already expired"):
        sil.expire(sil.expire(s, "ops-ben", NOW), "ops-cid", NOW + 1)
