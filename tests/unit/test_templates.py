"""Alert SMS texts and SMS segment counting."""

from __future__ import annotations

import pytest

from gridwatch.contract import check
from notifiers.templates import (DEFAULT_CONTACT, MAX_SEGMENTS, TEMPLATE_VERSION, help_text, normalize_language,
                                 rating_thanks_text, render, render_email, sms_segments,
                                 still_out_text)

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


# --------------------------------------------------------------------------------------------- segment counting edges

@pytest.mark.parametrize("body, expected", [
    ("x" * 160, ("GSM-7", 1)),                    # exactly one single message
    ("x" * 161, ("GSM-7", 2)),                    # then parts of 153: 153 + 8
    ("x" * 153 * 2, ("GSM-7", 2)),
    ("x" * (153 * 2 + 1), ("GSM-7", 3)),
    ("^" * 80, ("GSM-7", 1)),                     # '^' is an escape pair: 160 septets
    ("^" * 81, ("GSM-7", 2)),
    ("€" + "x" * 158, ("GSM-7", 1)),
    ("€" + "x" * 159, ("GSM-7", 2)),
    ("x" * 152 + "^" + "x" * 153, ("GSM-7", 3)),  # 307 septets, and the pair does not fit in part one
    ("x" * 159 + "中", ("UCS-2", 3)),              # one Chinese character makes the whole body UCS-2
    ("中" * 67 * 2, ("UCS-2", 2)),
    ("x" * 68 + "😀", ("UCS-2", 1)),              # 70 UTF-16 units
    ("x" * 69 + "😀", ("UCS-2", 2)),
    ("x" * 66 + "😀" + "x" * 66, ("UCS-2", 3)),   # 134 units, but the surrogate pair is never split
    ("x" * 65 + "😀" + "x" * 67, ("UCS-2", 2)),
])
def test_segment_counting_edges(body, expected):
    assert sms_segments(body) == expected


# --------------------------------------------------------------------------------------------- by segment

VOLTAGE_EVIDENCE = {"standard": "GB/T 12325", "nominal_v": 220, "band_v": [198.0, 235.4], "v_extreme": 187.2,
                    "meters_abnormal": 3, "meters_reporting": 12}


def voltage_alert(kind="undervoltage", level="transformer", **evidence):
    ev = dict(VOLTAGE_EVIDENCE, **evidence)
    a = alert(kind, level, evidence=ev)
    a["scope"]["id"] = "T0001" if level != "meter" else "M000001"
    return a


def test_residential_text_is_plain_and_has_no_technical_detail():
    body = render(voltage_alert(), customer("en", "residential"))
    assert "187.2" not in body and "GB/T" not in body and "T0001" not in body and "Contact" not in body
    assert "unplug sensitive electronics" in body


def test_industrial_text_has_the_measurement_the_standard_the_scope_and_a_contact():
    body = render(voltage_alert(), customer("en", "industrial"))
    assert "Lowest 187.2 V vs 198-235.4 V (GB/T 12325), transformer T0001." in body
    assert f"Contact: {DEFAULT_CONTACT}." in body
    assert body.endswith("Reply STOP to opt out") and sms_segments(body) == ("GSM-7", 2)
    zh = render(voltage_alert(), customer("zh-CN", "industrial"))
    assert "实测最低187.2V（GB/T 12325合格范围198-235.4V），变压器T0001。" in zh
    assert f"联系方式：{DEFAULT_CONTACT}。" in zh


@pytest.mark.parametrize("kind, words", [
    ("overvoltage", "Highest 250.1 V vs 198-235.4 V (GB/T 12325)"),
    ("sag", "Dip to 140.2 V (0.64 pu)"),
    ("swell", "Surge to 270.1 V (1.23 pu)"),
    ("loose_neutral", "Swinging 180.1-260.3 V"),
])
def test_industrial_detail_of_every_voltage_kind(kind, words):
    ev = {"overvoltage": {"v_extreme": 250.1}, "sag": {"v_extreme": None, "v_min": 140.2, "pu": 0.637},
          "swell": {"v_extreme": None, "v_max": 270.1, "pu": 1.228},
          "loose_neutral": {"v_extreme": None, "v_min": 180.1, "v_max": 260.3}}[kind]
    body = render(voltage_alert(kind, **ev), customer("en", "industrial"), max_segments=3)
    assert words in body and "transformer T0001" in body


def test_industrial_outage_counts_the_meters_off():
    a = alert("outage", "feeder", evidence={"meters_out": 40, "meters_total": 48})
    a["scope"]["id"] = "F002"
    assert "40 of 48 meters off, feeder F002." in render(a, customer("en", "industrial"))
    assert "48块电表中40块停电，馈线F002。" in render(a, customer("zh-CN", "industrial"))


def test_the_contact_comes_from_the_record_then_the_argument_then_the_default():
    manager = dict(customer("en", "industrial"), account_manager_phone="+447700900123")
    assert "Your account manager: +447700900123." in render(voltage_alert(), manager)
    assert "客户经理：+447700900123。" in render(voltage_alert(), dict(manager, language="zh-CN"))
    assert "Contact: 95598." in render(voltage_alert(), customer("en", "industrial"), contact="95598")
    assert "Contact: 95598." in render(voltage_alert(), dict(customer("en", "industrial"), contact="95598"))
    assert "95598" not in render(voltage_alert(), customer("en", "commercial"), contact="95598")


def test_commercial_bill_speaks_of_energy_management():
    body = render(bill_alert(), customer("en", "commercial"))
    assert "equipment, lighting and HVAC schedules" in body and "account manager" in body
    tip = render(bill_alert(), tariff_customer("en", "commercial"), usage=NIGHT_DOUBLED)
    assert "Energy tip: out-of-hours base load up from 0.20 to 0.40 kW" in tip


def test_industrial_bill_shows_the_projection_range():
    body = render(bill_alert(**NO_TARIFF), customer("en", "industrial"), max_segments=3)
    assert "Likely range +22 % to +55 % vs recent cycles." in body
    assert "预测区间+22%至+55%（对比近期账期）。" in render(bill_alert(), customer("zh-CN", "industrial"),
                                                      max_segments=3)


# --------------------------------------------------------------------------------------------- usage tips

NIGHT_DOUBLED = {"avg_daily_kwh": 11.0, "night_kw": 0.4, "night_kw_before": 0.2, "night_kw_floor": 0.2,
                 "evening_kwh": 3.0, "evening_share": 0.27}
FLAT = {"avg_daily_kwh": 10.0, "night_kw": 0.2, "night_kw_before": 0.2, "night_kw_floor": 0.19,
        "evening_kwh": 2.0, "evening_share": 0.2}


def tariff_customer(language="en", segment="residential", currency="CNY", price=0.56, **tariff):
    return dict(customer(language, segment), tariff={"currency": currency, "price_per_kwh": price, **tariff})


def test_bill_carries_the_tip_chosen_from_usage_with_its_saving():
    body = render(bill_alert(), tariff_customer(), usage=NIGHT_DOUBLED)
    saving = (0.4 - 0.2) * 5 * 30 * 0.56
    assert f"could save about CNY {saving:.2f} a month" in body
    assert "Tip: your night-time use has risen from 0.20 to 0.40 kW." in body
    assert "appliances left on at night" not in body          # the general tip gives way to the usage tip
    assert sms_segments(body) == ("GSM-7", 2) and body.endswith("Reply STOP to opt out, HELP for help")
    zh = render(bill_alert(), tariff_customer("zh-CN"), usage=NIGHT_DOUBLED)
    assert f"每月约可省{saving:.2f}元" in zh and sms_segments(zh)[1] <= 2


def test_flat_usage_keeps_the_general_tip():
    assert render(bill_alert(), tariff_customer(), usage=FLAT) == render(bill_alert(), tariff_customer())


def test_peak_shift_tip_in_a_bill():
    tou = [{"name": "peak", "from": "17:00", "to": "22:00", "price_per_kwh": 0.84},
           {"name": "off-peak", "from": "23:00", "to": "07:00", "price_per_kwh": 0.28}]
    usage = dict(FLAT, evening_kwh=6.0, evening_share=0.5)
    body = render(bill_alert(driver="weekday evenings up 30 %"), tariff_customer(time_of_use=tou), usage=usage)
    assert "Moving a fifth of it to 23:00-07:00 could save about CNY 20.16 a month." in body   # 6x0.2x30x0.56


def test_a_tip_that_does_not_fit_gives_way_to_the_general_tip():
    body = render(bill_alert(), tariff_customer(), usage=NIGHT_DOUBLED, max_segments=1)
    assert "save about" not in body and sms_segments(body)[1] == 1
    assert "CNY 412" in body and body.endswith("Reply STOP to opt out, HELP for help")


def test_no_tip_for_supply_alerts():
    assert render(voltage_alert(), tariff_customer(), usage=NIGHT_DOUBLED) == render(voltage_alert(),
                                                                                      tariff_customer())


# --------------------------------------------------------------------------------------------- safety by kind

@pytest.mark.parametrize("kind, status, en, zh", [
    ("undervoltage", "open", "switch off at the main", "断开总闸"),
    ("overvoltage", "open", "switch off at the main", "断开总闸"),
    ("sag", "open", "switch off at the main", "断开总闸"),
    ("swell", "open", "switch off at the main", "断开总闸"),
    ("loose_neutral", "open", "Do not touch the meter box", "切勿触碰电表箱"),
    ("outage", "open", "Never run a generator indoors", "切勿在室内使用发电机"),
    ("outage", "resolved", "Reply OUT if you still have no power", "如仍停电，请回复OUT"),
    ("momentary_interruption", "resolved", "switch off at the main", "断开总闸"),
    ("undervoltage", "resolved", "switch off at the main", "断开总闸"),
    ("new_kind", "open", "switch off at the main", "断开总闸"),
])
@pytest.mark.parametrize("segment", SEGMENTS)
def test_every_supply_kind_carries_its_safety_line(kind, status, en, zh, segment):
    a = alert(kind, "transformer", status=status,
              resolved_at="2024-05-01T07:10:00Z" if status == "resolved" else None)
    assert en in render(a, customer("en", segment))
    assert zh in render(a, customer("zh-CN", segment))


@pytest.mark.parametrize("language, words", [("en", "Brief voltage dips detected in your area since 14:30"),
                                             ("zh-CN", "检测到您所在区域自14:30起出现短时电压骤降")])
def test_sags_have_their_own_text(language, words):
    assert words in render(alert("sag", "transformer"), customer(language))


@pytest.mark.parametrize("language, words", [("en", "Power in your area was off for a moment at 14:30 and is back on"),
                                             ("zh-CN", "您所在区域于14:30短暂停电，现已恢复供电")])
def test_momentary_interruption_says_when_it_happened(language, words):
    a = alert("momentary_interruption", "transformer", status="resolved", resolved_at="2024-05-01T06:31:00Z")
    assert words in render(a, customer(language))


# --------------------------------------------------------------------------------------------- budget, everywhere

ALL_ALERTS = {
    "undervoltage": lambda: voltage_alert(),
    "overvoltage": lambda: voltage_alert("overvoltage", v_extreme=251.3),
    "sag": lambda: voltage_alert("sag", v_extreme=None, v_min=140.2, pu=0.637),
    "swell": lambda: voltage_alert("swell", v_extreme=None, v_max=270.1, pu=1.228),
    "loose_neutral": lambda: voltage_alert("loose_neutral", v_min=180.1, v_max=260.3, swings=9),
    "outage": lambda: alert("outage", "feeder", evidence={"meters_out": 1200, "meters_total": 1500}),
    "outage_resolved": lambda: alert("outage", "feeder", status="resolved", resolved_at="2024-05-01T09:00:00Z",
                                     evidence={"meters_out": 1200, "meters_total": 1500, "duration_s": 9000}),
    "momentary": lambda: alert("momentary_interruption", "meter", status="resolved",
                               resolved_at="2024-05-01T06:31:00Z", evidence={"meters_out": 1, "meters_total": 1}),
    "voltage_resolved": lambda: dict(voltage_alert(), status="resolved", resolved_at="2024-05-01T08:00:00Z"),
    "generic": lambda: alert("harmonics", "transformer"),
    "bill": lambda: bill_alert(),
    "bill_big": lambda: bill_alert(projected_amount=1234567.8, usual_amount=987654.3, currency="EUR"),
}
LONG_BRAND = "Very Long Regional Electricity Distribution Company of the Northern Provinces"


@pytest.mark.parametrize("name", ALL_ALERTS)
@pytest.mark.parametrize("language", LANGS)
@pytest.mark.parametrize("segment", SEGMENTS)
@pytest.mark.parametrize("brand", ["GridWatch", LONG_BRAND])
@pytest.mark.parametrize("max_segments", [1, 2, 3])
def test_every_text_fits_its_budget_and_keeps_the_footer(name, language, segment, brand, max_segments):
    cust = dict(tariff_customer(language, segment,
                                time_of_use=[{"name": "peak", "from": "17:00", "to": "22:00", "price_per_kwh": 1.1}]),
                account_manager_phone="+86 138 1234 8000 ext 12345")
    usage = dict(NIGHT_DOUBLED, night_kw=14.2, night_kw_before=3.1, evening_kwh=600.0, evening_share=0.55)
    body = render(ALL_ALERTS[name](), cust, brand=brand, usage=usage, max_segments=max_segments)
    encoding, segments = sms_segments(body)
    assert segments <= max_segments, (segments, body)
    bill = name.startswith("bill")
    if language == "en":
        assert encoding == "GSM-7", body
        assert body.endswith("Reply STOP to opt out, HELP for help" if bill else "Reply STOP to opt out")
    else:
        assert body.endswith("回复TD退订，回复BZ获取帮助" if bill else "回复TD退订")
    assert "None" not in body and "{" not in body


@pytest.mark.parametrize("language", LANGS)
def test_max_segments_below_one_means_one(language):
    assert sms_segments(render(alert("loose_neutral"), customer(language), max_segments=0))[1] == 1


def test_the_defaults_are_the_old_call():
    for a in (alert(), bill_alert(), alert("outage", "feeder")):
        c = customer("zh-CN", "commercial")
        assert render(a, c) == render(a, c, brand="GridWatch", usage=None, max_segments=MAX_SEGMENTS)


def test_template_version_is_an_int():
    assert isinstance(TEMPLATE_VERSION, int) and TEMPLATE_VERSION >= 2


# --------------------------------------------------------------------------------------------- replies

@pytest.mark.parametrize("language", LANGS)
@pytest.mark.parametrize("segment", SEGMENTS)
@pytest.mark.parametrize("brand", ["GridWatch", LONG_BRAND * 2])
@pytest.mark.parametrize("max_segments", [1, 2])
def test_reply_texts_fit_and_say_how_to_stop(language, segment, brand, max_segments):
    c = customer(language, segment)
    footer = "Reply STOP to opt out" if language == "en" else "回复TD退订"
    for body in (help_text(c, brand=brand, max_segments=max_segments),
                 still_out_text(c, brand=brand, max_segments=max_segments),
                 rating_thanks_text(c, 4, brand=brand, max_segments=max_segments),
                 rating_thanks_text(c, 1, brand=brand, max_segments=max_segments)):
        assert sms_segments(body)[1] <= max_segments, body
        assert footer in body
        if language == "en":
            assert sms_segments(body)[0] == "GSM-7"


@pytest.mark.parametrize("language, who, what, contact", [
    ("en", "GridWatch: Power alerts from your electricity supplier", "power cuts, voltage problems and unusual bills",
     "Help: 95598."),
    ("zh-CN", "【GridWatch】我们是您的供电单位", "停电、电压异常和电费异常", "帮助：95598。"),
])
def test_help_says_who_what_a_contact_and_how_to_stop(language, who, what, contact):
    body = help_text(customer(language), contact="95598")
    assert body.startswith(who) and what in body and contact in body
    assert body.endswith("Reply STOP to opt out." if language == "en" else "回复TD退订")
    assert DEFAULT_CONTACT in help_text(customer(language))


def test_still_out_says_the_fault_is_reopened():
    assert "logged that your power is still off and reopened the fault for our crews" in still_out_text(customer())
    assert "已记录您家仍未恢复供电，并已重新派单给抢修人员" in still_out_text(customer("zh-CN"))
    assert "贵单位" in still_out_text(customer("zh-CN", "commercial"))


def test_rating_thanks():
    assert "Thank you for rating our message 5/5." in rating_thanks_text(customer(), 5)
    assert "Sorry" not in rating_thanks_text(customer(), 3)
    low = rating_thanks_text(customer(), 1, contact="95598")
    assert "Sorry it fell short" in low and "95598" in low
    assert "Thank you for your rating." in rating_thanks_text(customer(), None)
    assert "Thank you for your rating." in rating_thanks_text(customer(), 9)
    assert "感谢您给我们的短信打了2分" in rating_thanks_text(customer("zh-CN"), 2)


# --------------------------------------------------------------------------------------------- email

def test_email_of_a_voltage_alert_has_the_full_evidence_and_no_sms_footer():
    subject, body = render_email(voltage_alert(), customer("en", "residential"))
    assert subject == "GridWatch: Low voltage in your area"
    for words in ("Low voltage detected in your area since 14:30.",
                  "Started: 2024-05-01 14:30 (Asia/Shanghai)",
                  "Where: transformer T0001 (in your area)",
                  "Measured: lowest 187.2 V; normal band 198-235.4 V under GB/T 12325; nominal 220 V",
                  "Meters affected: 3 (of 12 reporting)",
                  "What to do: To protect appliances",
                  "Safety: If lights flicker or you smell burning",
                  f"Questions: {DEFAULT_CONTACT}",
                  "Unsubscribe: reply STOP to our SMS number, or change your preferences."):
        assert words in body, words
    assert "Reply STOP to opt out" not in body


def test_email_of_a_bill_has_the_tip_and_its_formula():
    subject, body = render_email(bill_alert(), tariff_customer(), usage=NIGHT_DOUBLED)
    assert subject == "GridWatch: Your bill is heading above usual"
    for words in ("Billing cycle: 2024-08-28 to 2024-09-27 (9 days left)",
                  "Used so far: 300.2 kWh (about CNY 238 at your price)",
                  "Heading for: CNY 412 (520.4 kWh), likely +22 % to +55 % against usual",
                  "Usual bill: CNY 298 (377.0 kWh), from recent cycles",
                  "Main change: night-time base load up 45 %.",
                  "By part of the day: night +45 %",
                  "Tip: check for appliances left on at night",
                  "Tip: your night-time use has risen from 0.20 to 0.40 kW",
                  "How we worked this out: (0.40 kW now - 0.20 kW before) x 5 night hours x 30 days x CNY 0.56 "
                  "per kWh = CNY 16.80 a month."):
        assert words in body, words


def test_email_in_chinese():
    subject, body = render_email(alert("outage", "transformer", evidence={"meters_out": 10, "meters_total": 12}),
                                 customer("zh-CN", "industrial"))
    assert subject == "【GridWatch】停电通知"
    for words in ("您好：", "您所在区域自14:30起停电", "停电电表：12块中10块", "建议：请确保来电后机器不会无人值守自行启动。",
                  "安全提示：请远离掉落的电线", "退订：回复TD至我们的短信号码"):
        assert words in body, words
    assert "回复TD退订" not in body
