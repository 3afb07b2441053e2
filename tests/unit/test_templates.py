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
          resolved_at=None, evidence=None):
    return check("alerts", {
        "alert_id": "a-1", "kind": kind, "severity": "warning", "status": status,
        "scope": {"level": level, "id": "m-1" if level == "meter" else "t-1"},
        "meter_ids": ["m-1"], "customer_ids": ["c-1"], "started_at": started_at,
        "detected_at": started_at, "resolved_at": resolved_at, "evidence": evidence or {},
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
@pytest.mark.parametrize("kind", ["sag", "swell", "something<new>"])
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


# --------------------------------------------------------------------------------------------- outage

@pytest.mark.parametrize("language", LANGS)
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("segment", SEGMENTS)
def test_outage_says_power_cut_since_and_crews(language, level, segment):
    body = render(alert("outage", level), customer(language, segment))
    encoding, segments = sms_segments(body)
    assert segments <= 2, (segments, body)
    if language == "en":
        assert encoding == "GSM-7", body
        assert "Power cut" in body and "since 14:30" in body and "crews" in body
        assert ("at your supply" if level == "meter" else "in your area") in body
        assert "flicker" not in body  # the voltage safety line makes no sense without power
        assert body.endswith("Reply STOP to opt out")
    else:
        assert "自14:30起停电" in body and "抢修" in body
        assert ("区域" in body) == (level == "transformer")
        assert "闪烁" not in body
        assert body.endswith("回复TD退订")


@pytest.mark.parametrize("language", LANGS)
def test_outage_restored_invites_a_still_out_reply(language):
    body = render(alert("outage", "transformer", status="resolved", resolved_at="2024-05-01T07:10:00Z"),
                  customer(language))
    assert sms_segments(body)[1] <= 2
    assert "15:10" in body and "OUT" in body
    assert ("Power in your area is back on" in body) if language == "en" else ("恢复供电" in body)
    assert "Voltage" not in body and "电压" not in body


# --------------------------------------------------------------------------------------------- loose neutral

@pytest.mark.parametrize("language", LANGS)
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("segment", SEGMENTS)
def test_loose_neutral_is_an_urgent_safety_message(language, level, segment):
    body = render(alert("loose_neutral", level), customer(language, segment))
    encoding, segments = sms_segments(body)
    assert segments <= 2, (segments, body)
    if language == "en":
        assert encoding == "GSM-7", body
        assert body.startswith("GridWatch: URGENT")
        assert "since 14:30" in body
        assert ("at your supply" if level == "meter" else "in your area") in body
        for words in ("flicker", "damaged", "switch off sensitive appliances", "Do not touch the meter box",
                      "sending a technician"):
            assert words in body, (words, body)
        assert "crews are on it" not in body
        assert body.endswith("Reply STOP to opt out")
    else:
        assert body.startswith("【GridWatch】紧急")
        assert "自14:30起" in body and "零线松动" in body
        for words in ("灯光闪烁", "损坏", "关闭敏感电器", "切勿触碰电表箱", "技术人员"):
            assert words in body, (words, body)
        assert ("您家" in body) == (segment == "residential" and level == "meter")
        assert body.endswith("回复TD退订")


@pytest.mark.parametrize("language", LANGS)
def test_loose_neutral_keeps_its_safety_advice_with_a_long_brand(language):
    body = render(alert("loose_neutral"), customer(language), brand="Very Long Regional Electricity Co" * 3)
    assert sms_segments(body)[1] <= 2
    assert ("Do not touch the meter box" in body) if language == "en" else ("切勿触碰电表箱" in body)
    assert ("switch off sensitive appliances" in body) if language == "en" else ("关闭敏感电器" in body)


# --------------------------------------------------------------------------------------------- bill spike

def bill_evidence(**overrides):
    """The evidence of a bill_spike finding as detectors/bill.py writes it."""
    ev = {
        "projected_amount": 412.3, "usual_amount": 298.04, "currency": "CNY", "projected_kwh": 520.4,
        "usual_kwh": 377.0, "pct_above": 38.2, "pct_interval": [21.5, 55.0], "basis": "recent cycles",
        "cycle_start": "2024-08-28", "cycle_end": "2024-09-27", "days_left": 9,
        "driver": "night-time base load up 45 %",
        "drivers": {"night": 45.0, "weekday_evening": 10.2, "weekday_day": 3.1, "weekend": 5.0},
        "estimated_share": 0.0, "measured_kwh": 300.2, "level_ratio": 1.31,
    }
    ev.update(overrides)
    return ev


NO_TARIFF = {"projected_amount": None, "usual_amount": None, "currency": None}
OUTAGE_WORDS = ("crews", "Power cut", "outage", "supply problem", "flicker", "burning", "switch off at the main",
                "抢修", "停电", "供电异常", "闪烁", "焦味", "总闸")


def bill_alert(**overrides):
    return alert("bill_spike", "meter", evidence=bill_evidence(**overrides))


@pytest.mark.parametrize("language", LANGS)
@pytest.mark.parametrize("segment", SEGMENTS)
@pytest.mark.parametrize("tariff", [True, False])
def test_bill_spike_renders_within_budget_in_every_language_and_segment(language, segment, tariff):
    body = render(bill_alert(**({} if tariff else NO_TARIFF)), customer(language, segment))
    encoding, segments = sms_segments(body)
    assert segments <= 2, (segments, body)
    for words in OUTAGE_WORDS:
        assert words not in body, (words, body)
    if language == "en":
        assert encoding == "GSM-7", body
        assert body.startswith("GridWatch: Your ")
        assert "the cycle ending 27 Sep" in body
        assert ("CNY 412" in body and "CNY 298" in body) if tariff else ("520 kWh" in body and "377 kWh" in body)
        assert "+38 %" in body
        assert "Main change: night-time base load up 45 %." in body
        assert ("appliances left on at night" in body) == (segment == "residential")
        assert ("account manager" in body) == (segment != "residential")
        assert body.endswith("Reply STOP to opt out, HELP for help")
    else:
        assert body.startswith("【GridWatch】" + ("您家" if segment == "residential" else "贵单位"))
        assert "9月27日" in body
        assert ("412元" in body and "298元" in body) if tariff else ("520度" in body and "377度" in body)
        assert "38%" in body
        assert "主要变化：夜间基础用电增加45%。" in body
        assert ("客户经理" in body) == (segment != "residential")
        assert body.endswith("回复TD退订，回复BZ获取帮助")


def test_bill_spike_text_in_full():
    assert render(bill_alert(), customer("en")) == (
        "GridWatch: Your bill for the cycle ending 27 Sep is heading for about CNY 412 (+38 % on your usual "
        "CNY 298). Main change: night-time base load up 45 %. Tip: check for appliances left on at night, and "
        "heating or AC settings. Reply STOP to opt out, HELP for help")
    assert render(bill_alert(**NO_TARIFF), customer("zh-CN", "commercial")) == (
        "【GridWatch】贵单位本期（截至9月27日）用电量预计约520度，比平时的377度高38%。主要变化：夜间基础用电增加45%。"
        "建议检查设备、照明和空调的运行时间，或联系您的客户经理。回复TD退订，回复BZ获取帮助")


@pytest.mark.parametrize("currency, en, zh", [
    ("GBP", "GBP 412", "GBP 412"), ("EUR", "EUR 412", "EUR 412"), ("USD", "USD 412", "USD 412"),
])
def test_bill_amounts_carry_the_tariff_currency(currency, en, zh):
    assert en in render(bill_alert(currency=currency), customer("en"))
    assert zh in render(bill_alert(currency=currency), customer("zh-CN"))
    assert sms_segments(render(bill_alert(currency=currency), customer("en")))[0] == "GSM-7"


def test_small_bill_amounts_keep_the_cents():
    body = render(bill_alert(projected_amount=61.5, usual_amount=44.0, currency="GBP"), customer("en"))
    assert "GBP 61.50" in body and "GBP 44.00" in body


@pytest.mark.parametrize("driver, en, zh", [
    ("weekday evenings up 30 %", "weekday evenings up 30 %", "工作日晚间用电增加30%"),
    ("weekday daytime use up 22 %", "weekday daytime use up 22 %", "工作日白天用电增加22%"),
    ("weekend use up 51 %", "weekend use up 51 %", "周末用电增加51%"),
    ("use up about 40 % at all hours", "use up about 40 % at all hours", "全天各时段用电均增加约40%"),
    ("use up 35 %", "use up 35 %", "用电量增加35%"),
    ("use up", "use up", "用电量增加"),
])
def test_every_driver_of_the_detector_is_shown_in_both_languages(driver, en, zh):
    assert f"Main change: {en}." in render(bill_alert(driver=driver), customer("en"))
    assert f"主要变化：{zh}。" in render(bill_alert(driver=driver), customer("zh-CN"))


@pytest.mark.parametrize("language", LANGS)
@pytest.mark.parametrize("driver", [None, "", "x" * 200, "“fancy” driver", 42, "something new up 12 %"])
def test_a_missing_or_odd_driver_is_left_out(language, driver):
    body = render(bill_alert(driver=driver), customer(language))
    assert sms_segments(body)[1] <= 2
    assert "xxxxx" not in body and "fancy" not in body
    if language == "en":
        assert sms_segments(body)[0] == "GSM-7"
        assert ("Main change" in body) == (driver == "something new up 12 %")  # plain English passes as is
    else:
        assert "主要变化" not in body


@pytest.mark.parametrize("language", LANGS)
def test_bill_without_tariff_or_kwh_still_reads_sensibly(language):
    ev = dict(NO_TARIFF, projected_kwh=None, usual_kwh=None)
    body = render(bill_alert(**ev), customer(language))
    assert sms_segments(body)[1] <= 2
    assert "None" not in body and "null" not in body
    if language == "en":
        assert "Your bill for the cycle ending 27 Sep is heading for about 38 % above usual." in body
    else:
        assert "您家本期（截至9月27日）电费预计比平时高约38%。" in body


@pytest.mark.parametrize("language", LANGS)
def test_bill_with_almost_no_evidence_still_renders(language):
    body = render(alert("bill_spike", "meter", evidence={}), customer(language))
    assert sms_segments(body)[1] <= 2
    assert "None" not in body
    if language == "en":
        assert "Your bill for this billing cycle is heading well above usual." in body
        assert body.endswith("Reply STOP to opt out, HELP for help")
    else:
        assert "您家本期电费预计明显高于平时。" in body
        assert body.endswith("回复TD退订，回复BZ获取帮助")


def test_bill_pct_is_worked_out_from_the_amounts_when_missing():
    body = render(bill_alert(pct_above=None), customer("en"))
    assert "CNY 412 (+38 % on your usual CNY 298)" in body


def test_bill_without_the_usual_amount_or_pct():
    body = render(bill_alert(usual_amount=None, pct_above=None), customer("en"))
    assert "heading for about CNY 412, well above usual." in body
    body = render(bill_alert(usual_amount=None), customer("en"))
    assert "heading for about CNY 412, 38 % above usual." in body


@pytest.mark.parametrize("language", LANGS)
def test_bill_with_a_long_brand_still_fits_and_keeps_the_amount(language):
    body = render(bill_alert(), customer(language), brand="Very Long Regional Electricity Co" * 4)
    assert sms_segments(body)[1] <= 2
    assert ("CNY 412" in body) if language == "en" else ("412元" in body)
    assert body.endswith("HELP for help" if language == "en" else "回复BZ获取帮助")
