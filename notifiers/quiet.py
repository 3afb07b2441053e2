"""Quiet hours: non-urgent messages wait for the end of the customer's quiet hours, in their own timezone.

Outage and safety messages are sent at any hour; a bill alert at 23:00 local time is deferred, not dropped,
to the end of the customer's quiet hours (``preferences.quiet_hours``, default 22:00–08:00). Real people's
phones ring in wall-clock time, so this is the one decision on the notification path taken on the wall
clock (passed in, so tests choose it).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gridwatch import kinds

__all__ = ["DEFERRABLE_KINDS", "DEFAULT_QUIET_HOURS", "quiet_until"]

#: kinds that wait for the morning; every other kind (outages, voltage, a loose neutral) is urgent
DEFERRABLE_KINDS = frozenset(kinds.having("deferrable"))
DEFAULT_QUIET_HOURS = ("22:00", "08:00")


def _hhmm(text: str) -> time:
    h, m = text.split(":")
    return time(int(h), int(m))


def quiet_until(customer: dict, now: float) -> int | None:
    """Epoch seconds at which the customer's quiet hours end, if ``now`` (epoch seconds) falls inside
    them; else ``None``. A window may wrap midnight (22:00–08:00); start == end means no quiet hours."""
    try:
        tz = ZoneInfo(customer.get("timezone") or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    start_s, end_s = (customer.get("preferences") or {}).get("quiet_hours") or DEFAULT_QUIET_HOURS
    start, end = _hhmm(start_s), _hhmm(end_s)
    if start == end:
        return None
    local = datetime.fromtimestamp(now, tz)
    t = local.time()
    inside = (start <= t < end) if start < end else (t >= start or t < end)
    if not inside:
        return None
    day = local.date() if t < end else local.date() + timedelta(days=1)
    return int(datetime.combine(day, end, tzinfo=tz).timestamp())
