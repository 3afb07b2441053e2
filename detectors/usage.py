"""Daily consumption of one meter in its customer's local time, built from interval readings.

:func:`accumulate` folds readings into days and hands back the days that closed. It is pure: the state is a
small JSON-serialisable dict (the open days, the newest reading time, counters), the input is never mutated,
and only event time is used. The bill detector (:mod:`detectors.bill`) consumes the closed days.

Which day a reading belongs to
    A reading's ``ts`` is the END of its interval, so it covers ``[ts - interval_s, ts)``. Its kWh is
    spread over the local days (and the time-of-day bands below) that interval overlaps, in proportion to
    time. For regular 15/30/60-minute readings nothing is split: each lands whole in one day and one band.
    Longer readings (a daily read, an outage catch-up) are shared out by time.

When a day closes
    A day closes once a reading ending at least ``grace_s`` (default 2 hours) after the day's last instant
    arrives, i.e. a reading "well into" the next local day. The grace lets the last readings of a day,
    which are sent just after midnight and may come out of order or in a later batch, still count. After
    that the day is final: a late reading for it is counted in the state (``late``, ``late_kwh``) and not
    re-applied, since the day has already gone downstream. A day with no reading at all (a meter silent for
    a whole day, and no catch-up reading covering it) is never emitted: the consumer sees it as missing.

Duplicates
    A reading whose ``ts`` was already seen for an open day is dropped and counted (``duplicates``). A
    repeat of a reading of a closed day counts as ``late``.

Outage catch-up
    After a gap, a meter that comes back often sends one reading covering the whole gap (its
    ``interval_s`` reaching back to the previous reading). Such a reading — the first after a gap longer
    than 1.5 regular intervals, whose interval starts no later than half an interval after the previous
    reading's end — is a *catch-up*: its kWh is real but not consumption of the day it arrives in, so it
    is reported apart (``catch_up_kwh``) and spread over the hours it covers.

A closed day is a dict (all kWh rounded to 1 mWh)::

    {"ts": <epoch s of the local midnight that starts the day>, "date": "YYYY-MM-DD",
     "kwh": total kWh,
     "estimated_kwh": kWh of readings with quality "estimated" (catch-up readings excluded: the two
                      figures never overlap, so kwh - estimated_kwh - catch_up_kwh is the plainly measured
                      part),
     "catch_up_kwh": kWh of outage catch-up readings (see above),
     "intervals": regular intervals' worth of the day covered by readings (covered seconds / the regular
                  interval; a catch-up covering six hours of a 15-minute meter counts 24),
     "expected_intervals": regular intervals in the day: 92 / 96 / 100 for a 15-minute meter on a 23 / 24 /
                           25-hour day (DST changes),
     "readings": number of readings that contributed,
     "night_kwh": kWh between 00:00 and 05:00 local, "evening_kwh": 17:00-22:00 local,
     "weekday": 0 (Monday) .. 6 (Sunday)}

The regular interval of a day is the shortest ``interval_s`` among its non-catch-up readings.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from operator import itemgetter
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from .compact import TimeSet

__all__ = ["GRACE_S", "NIGHT", "EVENING", "DAY_FIELDS", "new_state", "accumulate", "day_bounds", "local_date"]

#: a day closes when a reading ends at least this long after the day's end (see the module docstring)
GRACE_S = 2 * 3600
#: local-time bands of the day record, as (first hour, end hour)
NIGHT = (0, 5)
EVENING = (17, 22)
#: readings of a meter without ``interval_s`` are taken as 15-minute readings
DEFAULT_INTERVAL_S = 900

_BANDS = ("night", "day", "evening", "late")


def new_state() -> dict:
    """The state of a meter that has sent nothing yet.

    ``open`` maps each open local date to its running figures as a list in :data:`DAY_FIELDS` order (a
    list rather than a dict: the state is kept per meter, and the keys would be most of its size), and
    ``seen`` holds the timestamps of the open days' readings as runs (:mod:`detectors.compact`). Version 1
    states (a dict per day, a plain list of timestamps) are read as well."""
    return {"v": 2, "tz": None, "open": {}, "closed_through": None, "last_ts": None, "step": None,
            "seen": [], "duplicates": 0, "late": 0, "late_kwh": 0.0}


#: an open day's figures, in the order of its list in the state
DAY_FIELDS = ("kwh", "estimated_kwh", "catch_up_kwh", "night_kwh", "evening_kwh", "covered_s", "readings",
              "step")


def _open_day(rec: list | dict) -> dict:
    """An open day of the state as a dict to work on (a copy): a version 2 list, or a version 1 dict."""
    if type(rec) is dict:
        return {k: rec[k] for k in DAY_FIELDS}
    return dict(zip(DAY_FIELDS, rec))


@lru_cache(maxsize=8192)
def day_bounds(tz: str, day: date) -> tuple[int, int, int, int, int]:
    """Epoch seconds of the local day's start, 05:00, 17:00, 22:00 and end (the next day's start).

    A local time that does not exist (clocks jumped over it) is read with the offset in force before the
    jump, which is the instant the jump happens: so a day whose midnight is skipped starts at 01:00.
    """
    zone = ZoneInfo(tz)

    def at(d: date, hour: int) -> int:
        return int(datetime(d.year, d.month, d.day, hour, tzinfo=zone).timestamp())

    return (at(day, 0), at(day, NIGHT[1]), at(day, EVENING[0]), at(day, EVENING[1]),
            at(day + timedelta(days=1), 0))


@lru_cache(maxsize=65536)
def local_date(ts: int | float, tz: str) -> date:
    """The local calendar date of an instant. (Cached: a utility's meters read at the same instants.)"""
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).date()


def _segment(t: int, tz: str) -> tuple[date, str, int | None, int]:
    """(local date, band, start, end) of the band of its local day that instant ``t`` falls in. The start is
    None when odd zone data puts ``t`` outside its own local day's bounds (a day after clocks went back
    over midnight): its band is then the last, up to the day's end."""
    d = local_date(t, tz)
    b = day_bounds(tz, d)
    for i in range(4):
        if b[i] <= t < b[i + 1]:
            return d, _BANDS[i], b[i], b[i + 1]
    return d, _BANDS[-1], None, b[4]


def _pieces(t0: int, t1: int, tz: str) -> Iterable[tuple[date, str, int]]:
    """Split ``[t0, t1)`` at local-day and band boundaries: (local date, band, seconds)."""
    t = t0
    while t < t1:
        d, band, _, seg_end = _segment(t, tz)
        end = min(t1, seg_end) if seg_end > t else t1  # guard against odd zone data: never loop for ever
        yield d, band, end - t
        t = end


def _new_day() -> dict:
    return {"kwh": 0.0, "estimated_kwh": 0.0, "catch_up_kwh": 0.0, "night_kwh": 0.0, "evening_kwh": 0.0,
            "covered_s": 0, "readings": 0, "step": None}


def _close(d: date, rec: dict, tz: str, fallback_step: int | None) -> dict:
    b = day_bounds(tz, d)
    step = rec["step"] or fallback_step or DEFAULT_INTERVAL_S
    return {
        "ts": b[0], "date": d.isoformat(),
        "kwh": round(rec["kwh"], 6), "estimated_kwh": round(rec["estimated_kwh"], 6),
        "catch_up_kwh": round(rec["catch_up_kwh"], 6),
        "intervals": int(round(rec["covered_s"] / step)), "expected_intervals": int(round((b[4] - b[0]) / step)),
        "readings": rec["readings"],
        "night_kwh": round(rec["night_kwh"], 6), "evening_kwh": round(rec["evening_kwh"], 6),
        "weekday": d.weekday(),
    }


def _fields(r: Any) -> tuple:
    """(ts, interval_s or 0, kwh, quality) of a reading: a dict, or an object with those attributes."""
    if isinstance(r, dict):
        return r.get("ts"), r.get("interval_s") or 0, r.get("kwh"), r.get("quality", "actual")
    return (getattr(r, "ts", None), getattr(r, "interval_s", None) or 0, getattr(r, "kwh", None),
            getattr(r, "quality", "actual"))


_by_time = itemgetter(0, 1)


def accumulate(state: dict | None, readings: Iterable[Any], tz: str, *, grace_s: int = GRACE_S
               ) -> tuple[dict, list[dict]]:
    """Fold one meter's readings into local days of ``tz``; returns (new state, days closed by them).

    ``readings`` are :class:`gridwatch.contract.Reading` objects (or dicts with the same fields and an
    epoch ``ts``), in any order. Closed days come out in date order. See the module docstring for the
    rules (grace, late readings, catch-up).
    """
    st = state or new_state()
    tz = tz or "UTC"
    open_days: dict[str, dict] = {k: _open_day(v) for k, v in st["open"].items()}   # copies, to work on
    seen = TimeSet(st["seen"])
    closed_through = st["closed_through"]
    closed_d = date.fromisoformat(closed_through) if closed_through else None
    last_ts, step = st["last_ts"], st["step"]
    duplicates, late, late_kwh = st["duplicates"], st["late"], st["late_kwh"]

    # The band a reading falls in is remembered: a meter's readings mostly fall in the band of the one
    # before, and within it (the same local date, between its bounds) the split is that band's alone, the
    # one piece ``_pieces`` gives. Anything else goes through ``_pieces``.
    band_of: tuple | None = None    # (local date, band, start, end, the date's key)
    for t1, interval, kwh, quality in sorted(map(_fields, readings), key=_by_time):
        t1 = int(t1)
        interval = int(interval or step or DEFAULT_INTERVAL_S)
        t0 = t1 - interval
        if closed_d is not None and local_date(t1 - 1, tz) <= closed_d:
            late += 1                      # its whole interval is in days already closed (or a repeat)
            continue
        if not seen.add(t1):
            duplicates += 1
            continue
        catch_up = False
        if last_ts is None or t1 > last_ts:
            if last_ts is not None and step:
                catch_up = t1 - last_ts > 1.5 * step and t0 <= last_ts + step / 2
            last_ts = t1
            if not catch_up:
                step = interval
        if kwh is None:
            continue
        kwh = float(kwh)
        estimated = quality == "estimated" and not catch_up
        pieces: Iterable[tuple]
        if t0 < t1:
            if band_of is None or not band_of[2] <= t0 < band_of[3] or local_date(t0, tz) != band_of[0]:
                d, band, lo, hi = _segment(t0, tz)
                band_of = (d, band, lo, hi, d.isoformat()) if lo is not None else None
            pieces = ((band_of[0], band_of[1], interval, band_of[4]),) if band_of and t1 <= band_of[3] else (
                (d, band, secs, d.isoformat()) for d, band, secs in _pieces(t0, t1, tz))
        else:
            pieces = ()
        touched: set[str] = set()
        for d, band, secs, key in pieces:
            share = kwh * secs / interval
            if closed_d is not None and d <= closed_d:
                late_kwh += share          # the part of a long reading that falls in a closed day
                continue
            rec = open_days.get(key)
            if rec is None:
                rec = open_days[key] = _new_day()
            rec["kwh"] += share
            rec["covered_s"] += secs
            if catch_up:
                rec["catch_up_kwh"] += share
            elif estimated:
                rec["estimated_kwh"] += share
            if band == "night":
                rec["night_kwh"] += share
            elif band == "evening":
                rec["evening_kwh"] += share
            if not catch_up:
                rec["step"] = interval if rec["step"] is None else min(rec["step"], interval)
            if key not in touched:
                rec["readings"] += 1
                touched.add(key)

    closed: list[dict] = []
    if last_ts is not None:
        for key in sorted(open_days):
            d = date.fromisoformat(key)
            if day_bounds(tz, d)[4] + grace_s > last_ts:
                break
            closed.append(_close(d, open_days.pop(key), tz, step))
            closed_d = d
    edge = None                                # the timestamps of closed days are forgotten
    if closed:
        closed_through = closed_d.isoformat()  # type: ignore[union-attr]
        edge = day_bounds(tz, closed_d)[4]     # type: ignore[arg-type]
    new = {"v": 2, "tz": tz, "open": {k: [rec[f] for f in DAY_FIELDS] for k, rec in open_days.items()},
           "closed_through": closed_through, "last_ts": last_ts, "step": step, "seen": seen.packed(after=edge),
           "duplicates": duplicates, "late": late, "late_kwh": round(late_kwh, 6)}
    return new, closed
