"""The one grammar of times and durations (gridwatch/timefmt.py), and that nothing else parses them."""

from __future__ import annotations

import ast
from datetime import datetime, timezone
from pathlib import Path

import pytest

from gridwatch.timefmt import parse_datetime, parse_duration, parse_time

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 7, 1, 10, 0, tzinfo=timezone.utc).timestamp()


# ------------------------------------------------------------------------------------------- durations

@pytest.mark.parametrize("text, seconds", [
    ("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), ("1w", 604800), ("1h30m", 5400), ("90m", 5400),
    ("1.5h", 5400), (" 2H ", 7200), ("2 h 30 m", 9000), ("0m", 0), ("1d12h", 129600),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", " ", "2", "h", "2x", "2h junk", "-1h", "+1h", "two hours", "1h-30m",
                                  "h2", "1,5h", None, 30])
def test_not_durations(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


# ----------------------------------------------------------------------------------------------- times

@pytest.mark.parametrize("text", [
    "2026-07-01T10:00:00Z", "2026-07-01T10:00:00z", "2026-07-01t10:00:00Z", "2026-07-01T12:00:00+02:00",
    "2026-07-01T05:00:00-05:00", "2026-07-01 10:00Z", "2026-07-01T10:00Z", " 2026-07-01T10:00:00Z ",
    "2026-07-01T10:00:00.000000000Z",
])
def test_rfc3339_times(text):
    assert parse_datetime(text).timestamp() == T0
    assert parse_time(text) == T0


def test_fractions_are_kept_to_the_microsecond():
    assert parse_datetime("2024-05-01T06:30:00.123456789z").microsecond == 123456
    assert parse_time("2026-07-01T10:00:00.250Z") == T0 + 0.25
    assert parse_datetime("2024-05-01T14:30:00+08:00").utcoffset().total_seconds() == 8 * 3600


@pytest.mark.parametrize("text", ["2026-07-01T10:00:00", "2026-07-01", "2026-07-01T10:00"])
def test_a_time_without_an_offset_needs_naive_utc(text):
    with pytest.raises(ValueError, match="without a UTC offset"):
        parse_datetime(text)
    assert parse_datetime(text, naive_utc=True).tzinfo is timezone.utc


def test_a_date_is_midnight_utc():
    assert parse_time("2026-07-01", naive_utc=True) == T0 - 10 * 3600


@pytest.mark.parametrize("text", ["", "junk", "2026-13-01T00:00:00Z", "2026-07-01T25:00:00Z", "1h", "+1h",
                                  "2026-07-01T10:00:00+2", None, ["2026-07-01T10:00:00Z"]])
def test_not_times(text):
    with pytest.raises(ValueError, match="not a time"):
        parse_datetime(text)


def test_numbers_are_epoch_seconds_where_allowed():
    assert parse_time(T0) == T0 and parse_time(12) == 12.0
    for bad in (True, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            parse_time(bad)
    with pytest.raises(ValueError):
        parse_time(T0, numbers=False)


def test_relative_times_need_a_reference():
    assert parse_time("+2h", relative_to=T0) == T0 + 7200
    assert parse_time("-15m", relative_to=T0) == T0 - 900
    assert parse_time("2026-07-01T10:00:00Z", relative_to=0) == T0
    with pytest.raises(ValueError):
        parse_time("+2h")
    with pytest.raises(ValueError, match="not a duration"):
        parse_time("+soon", relative_to=T0)


# ----------------------------------------------------------------------------------- one parser each

def test_the_callers_share_the_grammar():
    from console.model import parse_time as console_time
    from detectors.testing import Clock
    from devtools.simulator import parse_duration as sim_duration, parse_time as sim_time
    from notifiers.silences import parse_duration as silence_duration, parse_time as silence_time

    assert sim_duration("1h30m") == silence_duration("1h30m") == parse_duration("1h30m") == 5400
    assert silence_duration("1w") == sim_duration("1w")
    assert sim_time("2026-07-01T10:00Z") == silence_time("2026-07-01T10:00:00+00:00") == T0
    assert sim_time("+1h", int(T0)) == T0 + 3600 and sim_time("2026-07-01T10:00") == T0
    assert console_time("2026-07-01T12:00:00.0+02:00") == T0 and console_time("junk") is None
    clock = Clock("2026-07-01T10:00")
    assert clock.now == T0 and clock.ts("-1h") == T0 - 3600 and clock.ts("90m") == T0 + 5400
    with pytest.raises(ValueError, match="positive"):
        silence_duration("0m")  # a silence's own rule on top of the grammar


# Only the wire contract's per-reading fast path reads times itself; devtools/replay.py reads the recorded
# CSV formats (e.g. UCI's "16/12/2006;17:24:00"), which are not ours. A day (date.fromisoformat) is not a time.
ALLOWED = {"gridwatch/timefmt.py", "gridwatch/contract.py", "devtools/replay.py"}


def test_no_other_module_parses_times_itself():
    found = []
    for pkg in ("gridwatch", "detectors", "notifiers", "streams", "history", "console", "devtools"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            if rel in ALLOWED:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (isinstance(node, ast.Attribute) and node.attr in ("fromisoformat", "strptime")
                        and not (isinstance(node.value, ast.Name) and node.value.id in ("date", "_date"))):
                    found.append(f"{rel}:{node.lineno}: {node.attr}")
    assert not found, "times parsed outside gridwatch/timefmt.py:\n" + "\n".join(found)
