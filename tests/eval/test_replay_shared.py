"""Evaluation: replay parsing of the real shared data files (../shared/data beside the repository).

The files exist only on the team's machines (see ../shared/data/README.md); the tests skip with the reason
when they are absent. No Kafka is needed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gridwatch.contract import decode_readings
from devtools.replay import SKIP_DUPLICATE, SKIP_MISSING, parse_file, reading_messages
from tests.ci import unavailable

SHARED = Path(os.environ.get("GRIDWATCH_SHARED") or Path(__file__).parents[2].parent / "shared")
DATA = SHARED / "data"
UCI_MINUTE = DATA / "uci_household" / "uci_minute_20061216_20061230.csv"
UCI_HOURLY = DATA / "uci_household" / "uci_hourly_sums_2006_2010.csv"
LCL = DATA / "london_lcl" / "MAC000060_halfhourly.csv"


def _need(path: Path) -> None:
    if not path.exists():
        unavailable(f"{path} is absent: the shared real-data folder exists only beside the repository on the "
                    "team's machines (see ../shared/data/README.md)")


def test_uci_minute_file():
    _need(UCI_MINUTE)
    res = parse_file(UCI_MINUTE)
    assert (res.format, res.variant, res.interval_s) == ("uci", "minute", 60)
    assert res.rows == 19_446                      # the README's row count
    assert res.skip_reasons == {SKIP_MISSING: 2}   # the two '?' (empty) rows of 21/12/2006 11:23-11:24
    assert len(res.readings) == 19_444
    assert res.nonexistent == 0 and res.ambiguous == 0  # December: no DST change
    # 16/12/2006 17:24:00 Paris (CET) labels the minute 16:24-16:25 UTC
    first, last = res.readings[0], res.readings[-1]
    assert first["ts"] == "2006-12-16T16:25:00Z" and first["v_avg"] == 234.84
    assert first["kwh"] == pytest.approx(4.216 / 60, abs=1e-6)
    assert last["ts"] == "2006-12-30T04:30:00Z"
    volts = [r["v_avg"] for r in res.readings]
    assert 225 <= min(volts) and max(volts) <= 255   # README: 228-252 V
    ts = [r["ts"] for r in res.readings]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)
    msgs = list(reading_messages(res.readings, 60))
    assert len(msgs) == -(-19_444 // 60)
    for _, _, key, value in msgs:
        decode_readings(key, json.dumps(value))


def test_uci_minute_file_limit():
    _need(UCI_MINUTE)
    res = parse_file(UCI_MINUTE, limit=1000)
    assert res.rows == 1000 and len(res.readings) == 1000 and res.skipped == 0


def test_uci_hourly_sums_file():
    _need(UCI_HOURLY)
    res = parse_file(UCI_HOURLY)
    assert (res.variant, res.interval_s, res.rows) == ("hourly sums", 3600, 34_589)
    # the file has every hour of every day (it was logged without DST): in Europe/Paris the four spring
    # changes each give one local hour that lands on the UTC time of the next one
    assert res.skip_reasons == {SKIP_DUPLICATE: 4} and res.nonexistent == 4
    assert len(res.readings) == 34_585
    assert res.estimated == 2                      # the partial first and last hours
    volts = [r["v_avg"] for r in res.readings if r["v_avg"] is not None]
    assert 220 < min(volts) and max(volts) < 256
    # read on its own clock (CET all year) every hour is kept
    res = parse_file(UCI_HOURLY, tz="Etc/GMT-1")
    assert len(res.readings) == 34_589 and res.skipped == 0


def test_lcl_file():
    _need(LCL)
    res = parse_file(LCL)
    assert (res.format, res.variant, res.interval_s, res.rows) == ("lcl", "half-hourly", 1800, 38_784)
    assert res.skip_reasons == {SKIP_DUPLICATE: 4} and len(res.readings) == 38_780
    assert res.readings[0]["ts"] == "2011-12-10T00:30:00Z"   # GMT in December
    res = parse_file(LCL, tz="UTC")
    assert len(res.readings) == 38_784 and res.skipped == 0


def test_untouched_uci_household_raises_no_voltage_alert():
    """The real household's supply (228-252 V at 230 V nominal) stays inside EN 50160 all fortnight."""
    from detectors.standards import profile_for
    from detectors.voltage import VoltageDetector

    _need(UCI_MINUTE)
    res = parse_file(UCI_MINUTE)
    readings = [r for _, _, key, batch in reading_messages(res.readings, 60)
                for r in decode_readings(key, json.dumps(batch).encode())]
    state, found = None, []
    det = VoltageDetector()
    for i in range(0, len(readings), 60):
        state, tr = det.process(state, readings[i:i + 60], profile_for(230))
        found.extend(tr)
    assert len(readings) == 19_444 and found == []
