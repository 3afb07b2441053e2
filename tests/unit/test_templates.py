"""Alert SMS texts and SMS segment counting."""

from __future__ import annotations

import pytest

from gridwatch.contract import check
from notifiers.templates import normalize_language, parse_rfc3339, render, sms_segments

# --------------------------------------------------------------------------------------------- segments


@pytest.mark.parametrize("body, expected", [
    ("", ("GSM-7", 1)),
    ("a" * 160, ("GSM-7", 1)),
    ("a" * 161, ("GSM-7", 2)),
    ("a" * 306, ("GSM-7", 2)),
    ("a" * 307, ("GSM-7", 3)),
    ("€" * 80, ("GSM-7", 1)),            # extension-table characters count 2
    ("a" * 159 + "€", ("GSM-7", 2)),      # 161 septets
    ("a" * 158 + "€", ("GSM-7", 1)),      # 160 septets
    ("[]{}~^|\\" * 20, ("GSM-7", 3)),     # 8 chars x 2 septets x 20 = 320 septets: 153 + 153 + 14
    ("a" * 152 + "€" + "a" * 152, ("GSM-7", 3)),  # the escape pair is never split across parts
    ("é à ü Ñ £ ¥ @ $ _", ("GSM-7", 1)),  # GSM-7 basic set, not UCS-2
    ("中" * 70, ("UCS-2", 1)),
    ("中" * 71, ("UCS-2", 2)),
    ("中" * 134, ("UCS-2", 2)),
    ("中" * 135, ("UCS-2", 3)),
    ("a" * 69 + "中", ("UCS-2", 1)),     # one non-GSM character makes the whole body UCS-2
    ("a" * 70 + "中", ("UCS-2", 2)),
    ("😀" * 35, ("UCS-2", 1)),            # astral characters are 2 UTF-16 units
    ("😀" * 36, ("UCS-2", 2)),
    ("“quoted”", ("UCS-2", 1)),           # curly quotes are not GSM-7
])
def test_sms_segments(body, expected):
    assert sms_segments(body) == expected


# --------------------------------------------------------------------------------------------- languages

@pytest.mark.parametrize("tag, expected", [
    ("en", "en"), ("en-US", "en"), ("zh", "zh-CN"), ("zh-Hans", "zh-CN"), ("zh-CN", "zh-CN"),
    ("zh-hans-cn", "zh-CN"), ("zh_CN", "zh-CN"), ("fr", "en"), ("de-DE", "en"), ("", "en"), (None, "en"),
])
def test_normalize_language(tag, expected):
    assert normalize_language(tag) == expected


def test_parse_rfc3339_variants():
    assert parse_rfc3339("2024-05-01T06:30:00Z").isoformat() == "2024-05-01T06:30:00+00:00"
    assert parse_rfc3339("2024-05-01T06:30:00.123456789z").microsecond == 123456
    assert parse_rfc3339("2024-05-01T14:30:00+08:00").utcoffset().total_seconds() == 8 * 3600


# --------------------------------------------------------------------------------------------- render

def customer(language="en", segment="residential", tz="Asia/Shanghai"):
    return check("customers", {
        "customer_id": "c-1", "meter_id": "m-1", "transformer_id": "t-1", "feeder_id": "f-1",
        "segment": segment, "phone": "+8613812348000", "language": language, "timezone": tz,
        "nominal_voltage": 220,
    })


def alert(kind="undervoltage", level="meter", started_at="2024-05-01T06:30:00Z", status="open",
          resolved_at=None):
    return check("alerts", {
        "alert_id": "a-1", "kind": kind, "severity": "warning", "status": status,
        "scope": {"level": level, "id": "m-1" if level == "meter" else "t-1"},
        "meter_ids": ["m-1"], "customer_ids": ["c-1"], "started_at": started_at,
        "detected_at": started_at, "resolved_at": resolved_at, "evidence": {},
    })


LANGS = ("en", "zh-CN")
KINDS = ("undervoltage", "overvoltage")
LEVELS = ("meter", "transformer")
SEGMENTS = ("residential", "commercial", "industrial")


@pytest.mark.parametrize("language", LANGS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("segment", SEGMENTS)
def test_every_template_renders_within_two_segments(language, kind, level, segment):
    body = render(alert(kind, level), customer(language, segment))
    encoding, segments = sms_segments(body)
    assert segments <= 2, (segments, body)
    assert "14:30" in body  # 06:30Z in Asia/Shanghai
    if language == "en":
        assert encoding == "GSM-7", body
        assert body.endswith("Reply STOP to opt out")
        assert ("Low voltage" if kind == "undervoltage" else "High voltage") in body
        assert ("at your supply" if level == "meter" else "in your area") in body
        assert "flicker" in body and "burning" in body
        if kind == "undervoltage":
            assert "motors" in body
        else:
            assert "surge" in body
    else:
        assert body.endswith("回复TD退订")
        assert ("电压偏低" if kind == "undervoltage" else "电压偏高") in body
        assert ("区域" in body) == (level == "transformer")
        assert "闪烁" in body and "焦味" in body
        if kind == "undervoltage":
            assert "电机" in body
        else:
            assert "浪涌" in body


@pytest.mark.parametrize("tz, expected", [
    ("Asia/Shanghai", "14:30"), ("America/New_York", "02:30"), ("Europe/London", "07:30"), ("UTC", "06:30"),
])
def test_local_time_in_customer_timezone(tz, expected):
    assert f"since {expected}" in render(alert(), customer("en", tz=tz))
    assert f"自{expected}起" in render(alert(), customer("zh-CN", tz=tz))


def test_offset_timestamps_are_converted():
    body = render(alert(started_at="2024-05-01T09:05:00.5-04:00"), customer("en", tz="Asia/Shanghai"))
    assert "since 21:05" in body


@pytest.mark.parametrize("language", ["zh", "zh-Hans"])
def test_chinese_variants_get_chinese(language):
    assert render(alert(), customer(language)).endswith("回复TD退订")


def test_other_languages_fall_back_to_english():
    assert render(alert(), customer("fr")).endswith("Reply STOP to opt out")


@pytest.mark.parametrize("language", LANGS)
@pytest.mark.parametrize("kind", ["sag", "outage", "bill_spike", "something<new>"])
def test_generic_fallback_for_other_kinds(language, kind):
    body = render(alert(kind, "transformer"), customer(language))
    assert sms_segments(body)[1] <= 2
    assert "14:30" in body
    assert "<new>" not in body  # the raw kind string never leaks into the text
    assert body.endswith("Reply STOP to opt out" if language == "en" else "回复TD退订")


@pytest.mark.parametrize("language", LANGS)
def test_resolved_alert_gets_an_all_clear(language):
    body = render(alert(status="resolved", resolved_at="2024-05-01T07:10:00Z"), customer(language))
    assert "15:10" in body
    assert ("back to normal" in body) if language == "en" else ("恢复正常" in body)
    assert sms_segments(body)[1] <= 2


def test_business_customers_are_not_addressed_as_a_home():
    assert "您家" in render(alert(), customer("zh-CN", "residential"))
    assert "您家" not in render(alert(), customer("zh-CN", "commercial"))


@pytest.mark.parametrize("language", LANGS)
def test_long_brand_still_fits(language):
    body = render(alert(), customer(language), brand="Very Long Regional Electricity Distribution Co" * 2)
    assert sms_segments(body)[1] <= 2
    assert body.endswith("Reply STOP to opt out" if language == "en" else "回复TD退订")


def test_unknown_timezone_and_bad_timestamp_do_not_crash():
    c = dict(customer("en"), timezone="Mars/Olympus_Mons")
    assert "since 06:30" in render(alert(), c)
    a = dict(alert(), started_at="yesterday")
    body = render(a, customer("en"))
    assert "since" not in body and body.endswith("Reply STOP to opt out")
