"""Replay of recorded data: parsing to contract readings (pure, no Kafka), DST, skipping, batching."""

from __future__ import annotations

import json

import pytest

from gridwatch import config
from gridwatch.contract import decode_customer, decode_readings
from devtools.replay import (
    SKIP_DUPLICATE, SKIP_MISSING, SKIP_NEGATIVE, SKIP_NO_VALUE, customer_record, detect_format, parse_file,
    reading_messages,
)

UCI_HEADER = ("Datetime,Global_active_power,Global_reactive_power,Voltage,Global_intensity,"
              "Sub_metering_1,Sub_metering_2,Sub_metering_3")

# Europe/Paris: clocks forward 2007-03-25 02:00 CET -> 03:00 CEST, back 2007-10-28 03:00 CEST -> 02:00 CET
UCI_MINUTES = """\
25/03/2007 01:56:00,1.200,0.100,240.100,5.000,0.000,0.000,1.000
25/03/2007 01:57:00,1.200,0.100,240.200,5.000,0.000,0.000,1.000
25/03/2007 01:58:00,1.800,0.100,240.300,7.600,0.000,0.000,1.000
25/03/2007 01:59:00,?,?,?,?,?,?,?
25/03/2007 02:30:00,0.900,0.100,238.000,3.800,0.000,0.000,0.000
25/03/2007 03:00:00,0.600,0.100,239.500,2.600,0.000,0.000,0.000
25/03/2007 03:01:00,,,,,,,
25/03/2007 03:02:00,0.660,0.100,239.400,2.600,0.000,0.000,0.000
28/10/2007 02:29:00,2.400,0.100,231.000,10.000,0.000,0.000,0.000
28/10/2007 02:30:00,3.000,0.100,231.500,13.000,0.000,0.000,0.000
28/10/2007 02:30:00,0.300,0.100,236.000,1.300,0.000,0.000,0.000
"""


def build_parser():
    """Only this module's subcommand: the test does not depend on the other command modules."""
    import argparse

    from devtools.replay import register

    parser = argparse.ArgumentParser(prog="gridwatch")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


@pytest.fixture
def uci_csv(tmp_path):
    p = tmp_path / "uci.csv"
    p.write_text(UCI_HEADER + "\n" + UCI_MINUTES)
    return p


def _by_ts(res):
    return {r["ts"]: r for r in res.readings}


def test_detect_format(tmp_path, uci_csv):
    assert detect_format(uci_csv) == "uci"
    lcl = tmp_path / "lcl.csv"
    lcl.write_text(",KWH/hh (per half hour) \n2012-01-01 00:00:00,0.1\n")
    assert detect_format(lcl) == "lcl"
    gen = tmp_path / "gen.csv"
    gen.write_text("ts,kwh\n2026-07-01T00:15:00Z,0.1\n")
    assert detect_format(gen) == "generic"
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="--format"):
        detect_format(bad)


def test_uci_minute_values_skips_and_dst(uci_csv):
    res = parse_file(uci_csv)
    assert (res.format, res.variant, res.interval_s, res.tz) == ("uci", "minute", 60, "Europe/Paris")
    assert res.rows == 11
    assert res.skipped == 2 and res.skip_reasons == {SKIP_MISSING: 2}
    assert len(res.readings) == 9
    got = _by_ts(res)
    # 01:58 CET (UTC+1) labels the minute 00:58-00:59 UTC; ts is the END of the interval
    r = got["2007-03-25T00:59:00Z"]
    assert r == {"meter_id": "M-REPLAY-1", "ts": "2007-03-25T00:59:00Z", "interval_s": 60,
                 "kwh": pytest.approx(0.03), "v_avg": 240.3, "v_min": None, "v_max": None, "quality": "actual"}
    # after the change: 03:00 CEST = 01:00 UTC
    assert got["2007-03-25T01:01:00Z"]["kwh"] == pytest.approx(0.01)
    assert got["2007-03-25T01:01:00Z"]["v_avg"] == 239.5
    # 02:30 does not exist that day: read with the offset before the change (CET) -> 01:30 UTC
    assert res.nonexistent == 1
    assert got["2007-03-25T01:31:00Z"]["v_avg"] == 238.0
    # the repeated 02:30 in October: first CEST (00:30 UTC), then CET (01:30 UTC)
    assert got["2007-10-28T00:31:00Z"]["kwh"] == pytest.approx(0.05)
    assert got["2007-10-28T01:31:00Z"]["kwh"] == pytest.approx(0.005)
    assert res.ambiguous == 3  # 02:29 and both 02:30 fall in the repeated hour
    # ordered by time and valid on the wire
    ts = [r["ts"] for r in res.readings]
    assert ts == sorted(ts)
    decode_readings("M-REPLAY-1", json.dumps(res.readings))


def test_uci_limit_and_meter_id_and_tz(uci_csv):
    res = parse_file(uci_csv, limit=4, meter_id="M-X", tz="UTC")
    assert res.rows == 4 and len(res.readings) == 3 and res.skipped == 1
    assert {r["meter_id"] for r in res.readings} == {"M-X"}
    assert res.readings[0]["ts"] == "2007-03-25T01:57:00Z"


def test_uci_semicolon_date_time_columns(tmp_path):
    p = tmp_path / "household_power_consumption.txt"
    p.write_text("Date;Time;Global_active_power;Global_reactive_power;Voltage;Global_intensity;"
                 "Sub_metering_1;Sub_metering_2;Sub_metering_3\n"
                 "16/12/2006;17:24:00;4.216;0.418;234.840;18.400;0.000;1.000;17.000\n"
                 "16/12/2006;17:25:00;5.360;0.436;233.630;23.000;0.000;1.000;16.000\n"
                 "16/12/2006;17:26:00;?;?;?;?;?;?;\n")
    res = parse_file(p, "uci")
    assert [r["ts"] for r in res.readings] == ["2006-12-16T16:25:00Z", "2006-12-16T16:26:00Z"]
    assert res.readings[0]["kwh"] == pytest.approx(4.216 / 60, abs=1e-6)
    assert res.skipped == 1


def test_uci_hourly_sums(tmp_path):
    p = tmp_path / "hourly.csv"
    p.write_text(UCI_HEADER.replace("Datetime", "datetime") + "\n"
                 "2007-01-01 00:00:00,120.0,5.0,14400.0,500.0,0.0,0.0,0.0\n"
                 "2007-01-01 01:00:00,60.0,5.0,14460.0,250.0,0.0,0.0,0.0\n"
                 "2007-01-01 02:00:00,30.0,2.0,7200.0,125.0,0.0,0.0,0.0\n"
                 "2007-01-01 03:00:00,90.0,5.0,14340.0,380.0,0.0,0.0,0.0\n"
                 "2007-01-01 04:00:00,-3.0,5.0,14340.0,380.0,0.0,0.0,0.0\n")
    res = parse_file(p)
    assert (res.variant, res.interval_s) == ("hourly sums", 3600)
    got = _by_ts(res)
    # 00:00 CET labels 23:00-00:00 UTC; kwh = sum of kW-minutes / 60, volts = sum / 60
    assert got["2007-01-01T00:00:00Z"]["kwh"] == pytest.approx(2.0)
    assert got["2007-01-01T00:00:00Z"]["v_avg"] == 240.0
    assert got["2007-01-01T01:00:00Z"]["v_avg"] == 241.0
    incomplete = got["2007-01-01T02:00:00Z"]  # half its minutes missing: the sum says 120 V
    assert incomplete["v_avg"] is None and incomplete["quality"] == "estimated"
    assert incomplete["kwh"] == pytest.approx(0.5)
    assert res.estimated == 1
    assert res.skip_reasons == {SKIP_NEGATIVE: 1}


LCL_HEADER = ",KWH/hh (per half hour) "


def test_lcl_autumn_repeated_hour(tmp_path):
    p = tmp_path / "lcl.csv"
    p.write_text(LCL_HEADER + "\n"
                 "2012-10-28 00:00:00,0.100\n"
                 "2012-10-28 00:30:00,0.110\n"
                 "2012-10-28 01:00:00,0.120\n"
                 "2012-10-28 01:30:00,0.130\n"
                 "2012-10-28 01:00:00,0.140\n"
                 "2012-10-28 01:30:00,Null\n"
                 "2012-10-28 02:00:00,0.160\n")
    res = parse_file(p)
    assert (res.format, res.variant, res.interval_s, res.tz) == ("lcl", "half-hourly", 1800, "Europe/London")
    assert res.skip_reasons == {SKIP_MISSING: 1}
    assert [(r["ts"], r["kwh"]) for r in res.readings] == [
        ("2012-10-27T23:30:00Z", 0.1),    # 00:00 BST = 23:00 UTC, +30 min (end of interval)
        ("2012-10-28T00:00:00Z", 0.11),
        ("2012-10-28T00:30:00Z", 0.12),   # 01:00 first time: BST
        ("2012-10-28T01:00:00Z", 0.13),
        ("2012-10-28T01:30:00Z", 0.14),   # 01:00 again: GMT
        ("2012-10-28T02:30:00Z", 0.16),
    ]
    assert all(r["v_avg"] is None and r["interval_s"] == 1800 for r in res.readings)
    decode_readings("M-REPLAY-1", json.dumps(res.readings))


def test_lcl_spring_gap_does_not_crash_and_counts_duplicates(tmp_path):
    p = tmp_path / "lcl.csv"
    p.write_text(LCL_HEADER + "\n"
                 "2012-03-25 00:30:00,0.1\n"
                 "2012-03-25 01:00:00,0.2\n"   # does not exist in London (GMT -> BST at 01:00)
                 "2012-03-25 01:30:00,0.3\n"
                 "2012-03-25 02:00:00,0.4\n"   # = 01:00 UTC again
                 "2012-03-25 02:30:00,0.5\n")
    res = parse_file(p)
    assert res.nonexistent == 2
    assert [r["ts"] for r in res.readings] == ["2012-03-25T01:00:00Z", "2012-03-25T01:30:00Z",
                                               "2012-03-25T02:00:00Z"]
    assert res.skip_reasons == {SKIP_DUPLICATE: 2} and res.skipped == 2
    assert any("--tz UTC" in n for n in res.notes)
    # logged in GMT all year: --tz UTC keeps every row
    res = parse_file(p, tz="UTC")
    assert len(res.readings) == 5 and res.skipped == 0


def test_generic_multi_meter_with_offsets(tmp_path):
    p = tmp_path / "gen.csv"
    p.write_text("meter_id,ts,kwh,v_avg,v_min,v_max,quality\n"
                 "M1,2026-07-01T00:15:00Z,0.1,230.1,229,231,actual\n"
                 "M2,2026-07-01T02:15:00+02:00,0.2,,,,estimated\n"
                 "M1,2026-07-01T00:30:00Z,0.3,230.5,229.5,231.5,\n"
                 "M1,2026-07-01T00:45:00Z,-1,,,,actual\n"
                 "M2,2026-07-01T00:30:00Z,,,,,actual\n")
    res = parse_file(p)
    assert res.format == "generic"
    assert res.skip_reasons == {SKIP_NEGATIVE: 1, SKIP_NO_VALUE: 1}
    assert [(r["meter_id"], r["ts"], r["quality"]) for r in res.readings] == [
        ("M1", "2026-07-01T00:15:00Z", "actual"), ("M1", "2026-07-01T00:30:00Z", "actual"),
        ("M2", "2026-07-01T00:15:00Z", "estimated")]
    assert res.readings[0]["v_min"] == 229.0 and res.readings[0]["interval_s"] == 900
    msgs = list(reading_messages(res.readings, 60))
    # ordered by the ts of each message's last reading: M2 (00:15) before M1 (00:30)
    assert [(topic, k, len(v)) for _, topic, k, v in msgs] == [(config.READINGS, "M2", 1),
                                                                (config.READINGS, "M1", 2)]
    for _, _, key, value in msgs:
        decode_readings(key, json.dumps(value))


def test_reading_messages_batches_in_time_order(uci_csv):
    res = parse_file(uci_csv)
    msgs = list(reading_messages(res.readings, 4))
    assert [len(v) for _, _, _, v in msgs] == [4, 4, 1]
    assert all(k == "M-REPLAY-1" and topic == config.READINGS for _, topic, k, _ in msgs)
    times = [t for t, _, _, _ in msgs]
    assert times == sorted(times)
    flat = [r for _, _, _, v in msgs for r in v]
    assert flat == res.readings


def test_customer_record_is_valid():
    c = customer_record("M-REPLAY-1", "C-REPLAY-1", "Europe/Paris")
    assert decode_customer("C-REPLAY-1", json.dumps(c))["nominal_voltage"] == 230
    assert c["language"] == "en" and c["tariff"]["currency"] == "EUR"
    assert customer_record(timezone_name="Europe/London")["tariff"]["currency"] == "GBP"


def test_cli_replay_to_file(tmp_path, uci_csv):
    out = tmp_path / "out.jsonl"
    args = build_parser().parse_args(["replay", str(uci_csv), "--customer", "--out", str(out), "--no-progress",
                                      "--batch", "5"])
    assert args.func(args) == 0
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert recs[0]["topic"] == config.CUSTOMERS and recs[0]["key"] == "C-REPLAY-1"
    assert recs[0]["value"]["meter_id"] == "M-REPLAY-1" and recs[0]["value"]["timezone"] == "Europe/Paris"
    assert [len(r["value"]) for r in recs[1:]] == [5, 4]
    for r in recs[1:]:
        decode_readings(r["key"], json.dumps(r["value"]))
