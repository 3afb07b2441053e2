"""The one grammar of times and durations that people and records give gridwatch.

**Time**: RFC 3339 as :meth:`datetime.fromisoformat` reads it — ``2026-07-01T10:00:00Z``,
``2026-07-01T12:00:00.250+02:00``, ``2026-07-01 10:00Z`` (any number of fractional digits, kept to the
microsecond; ``T`` and ``Z`` in either case) — or a bare date ``2026-07-01``. A time needs a UTC offset unless
the caller reads naive times as UTC (``naive_utc=True``: the command line, test helpers; a bare date is then
midnight UTC). With ``relative_to``, ``+DURATION`` / ``-DURATION`` is that far after / before it.
Where numbers are allowed (:func:`parse_time`), a number is epoch seconds.

**Duration**: one or more ``<number><unit>`` parts, units ``s m h d w`` (any case), spaces allowed between
parts: ``90s``, ``15m``, ``1h30m``, ``1.5h``, ``2 h 30 m``, ``1w``. A bare number is not a duration (is ``30``
seconds or minutes?).

The wire contract reads the timestamps of readings and events with its own fast path
(:func:`gridwatch.contract.parse_ts`, also ``datetime.fromisoformat``, called once per reading); everything
else parses here. ValueError, with the text and what is expected, for anything else.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone

__all__ = ["parse_datetime", "parse_time", "parse_duration", "DURATION_UNITS"]

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)
_DURATION_HELP = "e.g. 90s, 15m, 2h, 1h30m, 1d, 1w"
_TIME_HELP = "RFC 3339, e.g. 2026-07-01T10:00:00Z"


def parse_duration(text: str) -> int:
    """A duration (see the module) -> whole seconds (rounded). ValueError for anything else."""
    if not isinstance(text, str):
        raise ValueError(f"not a duration: {text!r} ({_DURATION_HELP})")
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * DURATION_UNITS[match.group(2).lower()]
        pos = match.end()
    if pos == 0 or text[pos:].strip():
        raise ValueError(f"not a duration: {text!r} ({_DURATION_HELP})")
    return int(round(total))


def parse_datetime(text: str, *, naive_utc: bool = False) -> datetime:
    """An RFC 3339 time (see the module) -> an aware datetime. ValueError for anything else, and for a time
    without an offset unless ``naive_utc``."""
    if not isinstance(text, str):
        raise ValueError(f"not a time: {text!r} ({_TIME_HELP})")
    t = text.strip()
    if t[-1:] == "z":
        t = t[:-1] + "Z"
    if t[10:11] == "t":
        t = t[:10] + "T" + t[11:]
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise ValueError(f"not a time: {text!r} ({_TIME_HELP})") from None
    if dt.tzinfo is None:
        if not naive_utc:
            raise ValueError(f"time without a UTC offset: {text!r} ({_TIME_HELP})")
        dt = dt.replace(tzinfo=timezone.utc)
    return dt


def parse_time(value: str | int | float, *, naive_utc: bool = False, relative_to: float | None = None,
               numbers: bool = True) -> float:
    """A time -> epoch seconds: an RFC 3339 string (:func:`parse_datetime`), a number of epoch seconds (unless
    ``numbers`` is false), or with ``relative_to`` a signed duration from it (``+2h``, ``-15m``)."""
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r} ({_TIME_HELP})")
    if isinstance(value, (int, float)):
        if not numbers or not math.isfinite(value):
            raise ValueError(f"not a time: {value!r} ({_TIME_HELP})")
        return float(value)
    if relative_to is not None and isinstance(value, str) and value.strip()[:1] in ("+", "-"):
        t = value.strip()
        return relative_to + (1 if t[0] == "+" else -1) * parse_duration(t[1:])
    return parse_datetime(value, naive_utc=naive_utc).timestamp()


def format_time(epoch: float) -> str:
    """An instant as the records we create write it: RFC 3339, UTC, microseconds (``2026-07-01T10:00:00.000000Z``)."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now() -> str:
    """Wall-clock time of a record we create (:func:`format_time`): when it happened, not event time."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
