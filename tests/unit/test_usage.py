"""Daily usage from interval readings (detectors.usage): local days across DST changes, when a day closes,
duplicates and late readings, estimated reads and outage catch-up."""

from __future__ import annotations

import copy
import json
import random
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.usage import GRACE_S, accumulate, day_bounds, new_state
from gridwatch.contract import Reading

PARIS = "Europe/Paris"
NEW_YORK = "America/New_York"


def local(tz: str, *args: int) -> int:
    return int(datetime(*args, tzinfo=ZoneInfo(tz)).timestamp())


def quarter_hours(start: int, n: int, kwh: float | None = 0.25, meter: str = "M1", **kw) -> list[Reading]:
    """``n`` 15-minute readings, the first ending 15 minutes after ``start``."""
    return [Reading(meter, start + 900 * (k + 1), 900, kwh, **kw) for k in range(n)]


def feed(readings: list[Reading], tz: str, batch: int = 16, state: dict | None = None) -> tuple[dict, list[dict]]:
    days: list[dict] = []
    for i in range(0, len(readings), batch):
        state, closed = accumulate(state, readings[i:i + batch], tz)
        days += closed
    return state, days


def test_days_in_paris_across_the_spring_dst_change():
    # 2024-03-31: 02:00 -> 03:00 in Paris, a 23-hour day; readings every 15 minutes for four days
    start = local(PARIS, 2024, 3, 29)
    end = local(PARIS, 2024, 4, 2, 1)
    rs = quarter_hours(start, (end - start) // 900)
    _, days = feed(rs, PARIS)
    assert [d["date"] for d in days] == ["2024-03-29", "2024-03-30", "2024-03-31"]  # 04-01: not before 02:00
    fri, sat, sun = days
    assert sun["ts"] == local(PARIS, 2024, 3, 31) and sun["weekday"] == 6 and fri["weekday"] == 4
    assert (sun["expected_intervals"], sun["intervals"], sun["readings"]) == (92, 92, 92)
    assert (sat["expected_intervals"], sat["intervals"]) == (96, 96)
    assert sun["kwh"] == pytest.approx(23.0) and sat["kwh"] == pytest.approx(24.0)
    # 00:00-05:00 local holds only four hours that day; 17:00-22:00 is five hours every day
    assert sun["night_kwh"] == pytest.approx(4.0) and sat["night_kwh"] == pytest.approx(5.0)
    assert sun["evening_kwh"] == pytest.approx(5.0)
    assert sun["estimated_kwh"] == 0 and sun["catch_up_kwh"] == 0


def test_a_25_hour_autumn_day_in_new_york_with_hourly_readings():
    start = local(NEW_YORK, 2024, 11, 2)
    rs = [Reading("M1", start + 3600 * (k + 1), 3600, 1.0) for k in range(24 * 3 + 4)]
    _, days = feed(rs, NEW_YORK, batch=5)
    by = {d["date"]: d for d in days}
    assert by["2024-11-03"]["expected_intervals"] == 25 and by["2024-11-03"]["kwh"] == pytest.approx(25.0)
    assert by["2024-11-02"]["expected_intervals"] == 24
    # the local midnight that starts the day, in UTC: 04:00Z before the change, 05:00Z after
    assert by["2024-11-03"]["ts"] == local(NEW_YORK, 2024, 11, 3) == 1730606400
    assert by["2024-11-04"]["ts"] == 1730696400


def test_a_day_closes_only_once_a_reading_is_well_into_the_next_day():
    tz = "Asia/Shanghai"
    start = local(tz, 2026, 7, 1)
    state, days = accumulate(None, quarter_hours(start, 96), tz)              # up to 00:00 on 2 July
    assert days == []
    state, days = accumulate(state, quarter_hours(start + 86400, 7), tz)     # up to 01:45
    assert days == []
    state, days = accumulate(state, quarter_hours(start + 86400 + 6300, 1), tz)   # ends 02:00 = grace
    assert GRACE_S == 7200 and [d["date"] for d in days] == ["2026-07-01"]
    assert days[0]["intervals"] == 96 and list(state["open"]) == ["2026-07-02"]


def test_shuffled_and_duplicated_readings_give_the_same_days():
    start = local(PARIS, 2026, 1, 5)
    rs = [Reading("M1", start + 900 * (k + 1), 900, round(0.1 + (k % 7) * 0.05, 3)) for k in range(96 * 4 + 12)]
    _, plain = feed(rs, PARIS, batch=96)
    state, days, repeats, prev = None, [], 0, []
    for i in range(0, len(rs), 96):
        chunk = rs[i:i + 96]
        batch = chunk + chunk[::5] + prev[-4:]     # repeats inside the batch, and the last batch's end again
        random.Random(i).shuffle(batch)
        repeats += len(chunk[::5]) + len(prev[-4:])
        state, closed = accumulate(state, batch, PARIS)
        days += closed
        prev = chunk
    assert days == plain and len(days) == 4
    assert state["duplicates"] + state["late"] == repeats


def test_a_late_reading_for_a_closed_day_is_counted_not_applied():
    start = local(PARIS, 2026, 1, 5)
    state, days = feed(quarter_hours(start, 96 + 12), PARIS)
    assert [d["date"] for d in days] == ["2026-01-05"]
    late = Reading("M1", start + 3600, 900, 5.0)
    again = quarter_hours(start, 1)                    # a repeat of the day's first reading
    state2, closed = accumulate(state, [late, *again], PARIS)
    assert closed == [] and state2["late"] == state["late"] + 2
    assert state2["late_kwh"] == state["late_kwh"]     # nothing of it landed in an open day either
    assert state2["open"] == state["open"]


def test_estimated_reads_are_reported_apart():
    start = local(PARIS, 2026, 2, 2)
    rs = quarter_hours(start, 96) + quarter_hours(start + 86400, 12)
    rs[40:48] = [Reading("M1", r.ts, 900, 1.0, quality="estimated") for r in rs[40:48]]
    _, days = feed(rs, PARIS)
    assert days[0]["estimated_kwh"] == pytest.approx(8.0)
    assert days[0]["kwh"] == pytest.approx(88 * 0.25 + 8.0)


def test_an_outage_catch_up_is_spread_over_the_hours_it_covers():
    # readings stop at 20:00; at 02:00 one reading covers the six hours, then 15-minute readings resume
    tz = PARIS
    start = local(tz, 2026, 3, 9)
    before = quarter_hours(start, 80)                                       # 00:00 -> 20:00
    catch = Reading("M1", local(tz, 2026, 3, 10, 2), 6 * 3600, 12.0)         # 20:00 -> 02:00
    after = quarter_hours(local(tz, 2026, 3, 10, 2), 96)                     # 02:00 -> 02:00 next day
    state, days = feed(before + [catch] + after, tz, batch=8)
    d1, d2 = days[:2]
    assert d1["catch_up_kwh"] == pytest.approx(8.0) and d2["catch_up_kwh"] == pytest.approx(4.0)
    assert d1["kwh"] == pytest.approx(80 * 0.25 + 8.0)
    assert d1["intervals"] == d1["expected_intervals"] == 96   # the catch-up covers the gap's intervals
    assert d1["estimated_kwh"] == 0
    assert d1["evening_kwh"] == pytest.approx(3 * 4 * 0.25 + 2 * 2.0)  # 17-20 measured, 20-22 from the catch-up
    assert d2["night_kwh"] == pytest.approx(4.0 + 3 * 4 * 0.25)       # 00-02 catch-up, 02-05 measured


def test_accumulate_is_pure_and_its_state_is_json():
    start = local(PARIS, 2026, 4, 1)
    rs = quarter_hours(start, 96 + 20)
    state, _ = accumulate(None, rs[:50], PARIS)
    frozen_state, frozen_rs = copy.deepcopy(state), copy.deepcopy(rs)
    new, days = accumulate(state, rs[50:], PARIS)
    assert state == frozen_state and rs == frozen_rs
    assert json.loads(json.dumps(new)) == new and json.loads(json.dumps(new_state())) == new_state()
    # continuing from a JSON copy gives the same days
    _, days2 = accumulate(json.loads(json.dumps(state)), rs[50:], PARIS)
    assert days2 == days and len(days) == 1


def test_readings_without_kwh_are_tolerated():
    start = local("UTC", 2026, 5, 4)
    rs = quarter_hours(start, 96 + 12)
    rs[10] = Reading("M1", rs[10].ts, 900, None)
    _, days = feed(rs, "UTC")
    assert days[0]["kwh"] == pytest.approx(95 * 0.25) and days[0]["intervals"] == 95


def test_day_bounds_of_a_zone_that_skips_midnight():
    # America/Havana moved its clocks at 00:00 -> 01:00 on 2024-03-10: the day starts at 01:00 local
    b = day_bounds("America/Havana", datetime(2024, 3, 10).date())
    assert datetime.fromtimestamp(b[0], ZoneInfo("America/Havana")).hour == 1
    assert b[4] - b[0] == 23 * 3600


# zones with odd days: clocks back at midnight (Santiago: 24:00 -> 23:00), forward over it (Havana: 00:00 ->
# 01:00), by half an hour (Lord Howe), at 02:00 (Paris), never (Kolkata)
ODD_ZONES = ["America/Santiago", "America/Havana", "Australia/Lord_Howe", "Europe/Paris", "Asia/Kolkata"]
CHANGES = {"America/Santiago": [(2024, 4, 6, 22), (2024, 9, 7, 22)], "America/Havana": [(2024, 3, 9, 22),
           (2024, 11, 2, 22)], "Australia/Lord_Howe": [(2024, 4, 6, 22), (2024, 10, 5, 22)],
           "Europe/Paris": [(2024, 3, 30, 22), (2024, 10, 26, 22)], "Asia/Kolkata": [(2024, 6, 1, 22)]}
CADENCES = [60, 300, 900, 1800]


@given(data=st.data())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_batch_splits_its_readings_as_one_reading_at_a_time_does(data):
    """Within one call ``accumulate`` reuses the band of the reading before (see the code); one reading per
    call never does, so both must give the same days, around DST changes in zones with odd days. A meter
    reads every ``cadence`` seconds, its intervals up to four of them (so an interval can start before the
    one before it ended); no gaps, so no catch-up, whose day would depend on when the day is closed."""
    tz = data.draw(st.sampled_from(ODD_ZONES))
    t = local(tz, *data.draw(st.sampled_from(CHANGES[tz]))) + data.draw(st.integers(-8, 8)) * 1800
    cadence = data.draw(st.sampled_from(CADENCES))
    readings = []
    for _ in range(data.draw(st.integers(1, 120))):
        t += cadence
        interval = min(cadence * data.draw(st.sampled_from([1, 1, 2, 4])), 7200)  # at most the grace
        kwh = data.draw(st.one_of(st.none(), st.floats(0, 5, allow_nan=False)))
        readings.append(Reading("M1", t, interval, kwh, quality=data.draw(st.sampled_from(["actual", "estimated"]))))
    one_by_one, days = None, []
    for r in readings:
        one_by_one, closed = accumulate(one_by_one, [r], tz)
        days += closed
    batch, batch_days = accumulate(None, readings, tz)
    assert batch_days == days
    assert {k: v for k, v in batch.items() if k != "seen"} == {k: v for k, v in one_by_one.items() if k != "seen"}
