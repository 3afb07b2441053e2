"""Quiet hours in the customer's own timezone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from notifiers.quiet import quiet_until


def at(text: str, tz: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


def cust(tz="Asia/Shanghai", quiet=("22:00", "08:00")):
    return {"timezone": tz, "preferences": {"quiet_hours": list(quiet)}}


def test_a_bill_alert_at_23_local_waits_for_8_the_next_morning():
    due = quiet_until(cust(), at("2026-09-03T23:00", "Asia/Shanghai"))
    assert due == at("2026-09-04T08:00", "Asia/Shanghai")


def test_after_midnight_the_same_morning_ends_it():
    assert quiet_until(cust(), at("2026-09-04T06:30", "Asia/Shanghai")) == at("2026-09-04T08:00", "Asia/Shanghai")


def test_daytime_is_not_quiet():
    assert quiet_until(cust(), at("2026-09-04T08:00", "Asia/Shanghai")) is None
    assert quiet_until(cust(), at("2026-09-04T21:59", "Asia/Shanghai")) is None


def test_the_customers_own_timezone_counts():
    """15:00 UTC is 23:00 in Shanghai but 16:00 in London."""
    now = at("2026-09-03T15:00", "UTC")
    assert quiet_until(cust("Asia/Shanghai"), now) is not None
    assert quiet_until(cust("Europe/London"), now) is None


def test_a_window_within_one_day_and_an_empty_one():
    c = cust(quiet=("13:00", "14:00"))
    assert quiet_until(c, at("2026-09-03T13:30", "Asia/Shanghai")) == at("2026-09-03T14:00", "Asia/Shanghai")
    assert quiet_until(cust(quiet=("00:00", "00:00")), at("2026-09-03T03:00", "Asia/Shanghai")) is None


def test_the_end_is_found_across_a_dst_change():
    """London, 25 Oct 2026: clocks go back at 02:00; 08:00 local is 08:00 GMT, not BST."""
    due = quiet_until(cust("Europe/London"), at("2026-10-24T23:30", "Europe/London"))
    assert due == at("2026-10-25T08:00", "UTC")
