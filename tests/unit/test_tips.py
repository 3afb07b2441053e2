"""Energy-saving tips from a customer's own usage: the summary of the bills table and the choice of a tip."""

from __future__ import annotations

import json
import random
from datetime import date, timedelta

import pytest

from detectors.api import Context
from detectors.bill import BillSpikeDetector
from gridwatch.contract import ContractError, check, decode_customer
from notifiers.tips import (DAYS_PER_MONTH, SHIFT_SHARE, band_price, choose_tip, format_money, price_at,
                            usage_summary)
from devtools.simulator import SimConfig, Simulator

START = date(2024, 6, 1)


def customer(segment="residential", language="en", tariff=None):
    return {"customer_id": "C1", "meter_id": "M1", "segment": segment, "language": language,
            "timezone": "Europe/London",
            "tariff": tariff if tariff is not None else {"currency": "GBP", "price_per_kwh": 0.25}}


def day(i, kwh=10.0, night=1.0, evening=3.0, **extra):
    return {"date": (START + timedelta(days=i)).isoformat(), "kwh": kwh, "night_kwh": night,
            "evening_kwh": evening, "intervals": 96, "expected_intervals": 96, "estimated_kwh": 0.0,
            "catch_up_kwh": 0.0, **extra}


def bills_value(days, cust=None):
    """What the worker keeps in the ``bills`` table for a customer after these days: the real detector's
    state under its name."""
    cust = cust or customer()
    state, _ = BillSpikeDetector().process(None, days, Context(meter_id="M1", customer=cust))
    return {"bill_spike": json.loads(json.dumps(state))}      # as it comes back from the changelog


def night_doubling(n=90, change_at=76):
    """Night use 1 kWh (0.2 kW over 5 h) until ``change_at``, then 2 kWh (0.4 kW)."""
    return [day(i, kwh=10.0 + (1.0 if i >= change_at else 0.0), night=2.0 if i >= change_at else 1.0)
            for i in range(n)]


def flat(n=90, seed=7):
    rng = random.Random(seed)
    return [day(i, kwh=10 * (1 + rng.uniform(-0.05, 0.05)), night=1.0 * (1 + rng.uniform(-0.05, 0.05)),
                evening=2.0 * (1 + rng.uniform(-0.05, 0.05))) for i in range(n)]


TOU = {"currency": "GBP", "price_per_kwh": 0.5,
       "time_of_use": [{"name": "peak", "from": "18:00", "to": "22:00", "price_per_kwh": 1.2},
                       {"name": "off-peak", "from": "00:00", "to": "07:00", "price_per_kwh": 0.3}]}


# --------------------------------------------------------------------------------------------- summary

def test_summary_reads_the_bills_table_value_of_the_bill_detector():
    u = usage_summary(bills_value(night_doubling()))
    assert u["last"] == (START + timedelta(days=89)).isoformat()
    assert (u["days"], u["recent_days"], u["before_days"]) == (90, 14, 56)
    assert u["night_kw"] == pytest.approx(0.4)
    assert u["night_kw_before"] == pytest.approx(0.2)
    assert u["night_kw_floor"] == pytest.approx(0.2)
    assert u["avg_daily_kwh"] == pytest.approx(11.0)
    assert u["evening_kwh"] == pytest.approx(3.0)
    assert u["evening_share"] == pytest.approx(3 / 11, abs=1e-4)
    # the detector's state on its own is accepted as well
    assert usage_summary(bills_value(night_doubling())["bill_spike"]) == u


@pytest.mark.parametrize("value", [None, {}, {"bill_spike": None}, {"bill_spike": {"history": {"first": None}}},
                                   {"other_detector": {}}, "nonsense"])
def test_no_summary_without_a_history(value):
    assert usage_summary(value) is None


def test_no_summary_from_too_few_recent_days():
    assert usage_summary(bills_value([day(i) for i in range(6)])) is None
    assert usage_summary(bills_value([day(i) for i in range(7)]))["recent_days"] == 7


def test_no_comparison_without_enough_earlier_days():
    u = usage_summary(bills_value([day(i) for i in range(20)]))
    assert u["night_kw_before"] is None and u["night_kw_floor"] is None


def test_estimated_and_catch_up_days_do_not_count():
    days = [day(i) for i in range(60)]
    days += [day(i, kwh=30.0, night=10.0, estimated_kwh=20.0) for i in range(60, 66)]     # estimated reads
    days += [day(i, kwh=30.0, night=10.0, catch_up_kwh=15.0) for i in range(66, 74)]      # outage catch-up
    u = usage_summary(bills_value(days))
    assert u is None          # the last 14 days are all flagged: nothing usable to judge the recent level
    days += [day(i) for i in range(74, 81)]
    u = usage_summary(bills_value(days))
    assert u["recent_days"] == 7 and u["night_kw"] == pytest.approx(0.2)


def test_days_barely_covered_by_readings_do_not_count():
    days = [day(i) for i in range(60)] + [day(i, night=5.0, intervals=40) for i in range(60, 74)]
    assert usage_summary(bills_value(days)) is None


# --------------------------------------------------------------------------------------------- night tip

def test_doubled_night_base_load_gets_the_night_tip_with_the_documented_saving():
    u = usage_summary(bills_value(night_doubling()))
    tip = choose_tip(customer(), u, None, "en")
    assert tip.key == "night_base_load"
    # (night kW now - night kW before) x 5 h x 30 days x price
    assert tip.saving == pytest.approx((0.4 - 0.2) * 5 * DAYS_PER_MONTH * 0.25) == 7.5
    assert tip.kwh_per_month == pytest.approx(30.0)
    assert tip.currency == "GBP"
    assert "0.20" in tip.text and "0.40 kW" in tip.text and "GBP 7.50 a month" in tip.text
    assert tip.basis == ("(0.40 kW now - 0.20 kW before) x 5 night hours x 30 days x GBP 0.25 per kWh = GBP 7.50 "
                         "a month. Only the night hours 00:00-05:00 are counted.")


def test_night_tip_in_chinese_with_yuan():
    cust = customer(language="zh-CN", tariff={"currency": "CNY", "price_per_kwh": 0.56})
    tip = choose_tip(cust, usage_summary(bills_value(night_doubling(), cust)), None, "zh-CN")
    assert tip.key == "night_base_load"
    assert tip.saving == pytest.approx(0.2 * 5 * 30 * 0.56)
    assert "16.80元" in tip.text and "0.20千瓦" in tip.text and "0.40千瓦" in tip.text
    assert "每度0.56元" in tip.basis


@pytest.mark.parametrize("segment, words", [
    ("residential", "Switching off what runs overnight"),
    ("commercial", "out-of-hours base load"),
    ("industrial", "night base load (00:00-05:00)"),
])
def test_tip_words_follow_the_segment(segment, words):
    tip = choose_tip(customer(segment), usage_summary(bills_value(night_doubling())), None, "en")
    assert words in tip.text and tip.saving == 7.5


def test_the_night_price_of_a_time_of_use_tariff_is_used():
    cust = customer(tariff=TOU)
    tip = choose_tip(cust, {**usage_summary(bills_value(night_doubling())), "evening_share": 0.1}, None, "en")
    assert tip.key == "night_base_load"
    assert tip.saving == pytest.approx(0.2 * 5 * 30 * 0.3)     # 00:00-05:00 lies in the 0.30 off-peak period


def test_flat_usage_gets_no_tip():
    u = usage_summary(bills_value(flat()))
    assert u is not None
    assert choose_tip(customer(), u, None, "en") is None
    assert choose_tip(customer(tariff=TOU), u, None, "en") is None      # evenings are only a fifth of the day


def test_a_small_rise_is_not_worth_a_tip():
    days = [day(i, night=1.0 if i < 76 else 1.2) for i in range(90)]        # +20 %: under the 1.3 ratio
    assert choose_tip(customer(), usage_summary(bills_value(days)), None, "en") is None
    days = [day(i, night=0.05 if i < 76 else 0.1) for i in range(90)]       # doubled, but 1.5 kWh a month
    assert choose_tip(customer(), usage_summary(bills_value(days)), None, "en") is None


def test_standby_tip_against_the_quietest_nights():
    # a fortnight away (0.1 kW at night), then 0.2 kW every night: no recent rise, but well above the floor
    days = [day(i, night=0.5 if i < 20 else 1.0) for i in range(90)]
    u = usage_summary(bills_value(days))
    assert u["night_kw_before"] == pytest.approx(0.2) and u["night_kw_floor"] == pytest.approx(0.1)
    tip = choose_tip(customer(), u, None, "en")
    assert tip.key == "standby"
    assert tip.saving == pytest.approx((0.2 - 0.1) * 5 * 30 * 0.25)
    assert "standby" in tip.text


@pytest.mark.parametrize("tariff", [{}, {"currency": "GBP"}, {"currency": "GBP", "price_per_kwh": 0},
                                    {"currency": "pounds", "price_per_kwh": 0.25}, "flat"])
def test_no_tip_without_a_usable_tariff(tariff):
    cust = dict(customer(), tariff=tariff)
    assert choose_tip(cust, usage_summary(bills_value(night_doubling())), None, "en") is None


def test_no_tip_without_usage_or_for_a_supply_alert():
    u = usage_summary(bills_value(night_doubling()))
    assert choose_tip(customer(), None, None, "en") is None
    assert choose_tip(customer(), u, {"kind": "undervoltage", "evidence": {}}, "en") is None
    assert choose_tip(customer(), u, {"kind": "bill_spike", "evidence": {}}, "en").key == "night_base_load"


# --------------------------------------------------------------------------------------------- peak shift

def heavy_evenings():
    return {"avg_daily_kwh": 12.0, "evening_kwh": 6.0, "evening_share": 0.5, "night_kw": 0.2,
            "night_kw_before": 0.2, "night_kw_floor": 0.19}


def test_time_of_use_customer_with_heavy_evenings_gets_a_peak_shift_tip():
    tip = choose_tip(customer(tariff=TOU), heavy_evenings(), None, "en")
    assert tip.key == "peak_shift"
    # 17:00-22:00 costs 0.5 for an hour and 1.2 for four: 1.06 on average; the cheapest hours cost 0.30
    p_eve = (60 * 0.5 + 240 * 1.2) / 300
    assert band_price(TOU, 17, 22) == pytest.approx(p_eve)
    assert tip.saving == pytest.approx(6.0 * SHIFT_SHARE * 30 * (p_eve - 0.3)) == 27.36
    assert "50 %" in tip.text and "00:00-07:00" in tip.text and "GBP 27.36 a month" in tip.text
    assert "1/5" in tip.basis and "GBP 1.06" in tip.basis and "GBP 0.3 per kWh" in tip.basis


def test_peak_shift_with_the_simulated_tariff_shape():
    sim = [c for c in Simulator(SimConfig(seed=11, hours=1)).customers() if "time_of_use" in c["tariff"]][0]
    tip = choose_tip(sim, heavy_evenings(), None, "zh-CN")
    base = sim["tariff"]["price_per_kwh"]
    assert tip.key == "peak_shift"
    assert tip.saving == pytest.approx(round(6.0 * 0.2 * 30 * (round(1.5 * base, 4) - round(0.5 * base, 4)), 2))
    assert "23:00-07:00" in tip.text


def test_no_peak_shift_on_a_flat_tariff_or_when_evenings_cost_no_more():
    assert choose_tip(customer(), heavy_evenings(), None, "en") is None
    cheap_evenings = {"currency": "GBP", "price_per_kwh": 0.5,
                      "time_of_use": [{"name": "day", "from": "07:00", "to": "17:00", "price_per_kwh": 0.9}]}
    assert choose_tip(customer(tariff=cheap_evenings), heavy_evenings(), None, "en") is None


def test_the_alerts_main_change_decides_between_night_and_evening_tips():
    u = {**heavy_evenings(), "night_kw": 0.4, "night_kw_before": 0.2}
    cust = customer(tariff=TOU)
    night_saving = 0.2 * 5 * 30 * 0.3
    assert choose_tip(cust, u, None, "en").key == "peak_shift"                       # the larger saving
    evening = {"kind": "bill_spike", "evidence": {"driver": "weekday evenings up 30 %"}}
    night = {"kind": "bill_spike", "evidence": {"driver": "night-time base load up 95 %"}}
    assert choose_tip(cust, u, evening, "en").key == "peak_shift"
    tip = choose_tip(cust, u, night, "en")
    assert tip.key == "night_base_load" and tip.saving == pytest.approx(night_saving)


# --------------------------------------------------------------------------------------------- tariff

def test_time_of_use_periods_wrap_midnight_and_the_first_listed_wins():
    t = {"currency": "GBP", "price_per_kwh": 0.3,
         "time_of_use": [{"name": "night", "from": "23:00", "to": "07:00", "price_per_kwh": 0.1},
                         {"name": "peak", "from": "06:00", "to": "09:00", "price_per_kwh": 0.5},
                         {"name": "empty", "from": "12:00", "to": "12:00", "price_per_kwh": 9.0}]}
    assert price_at(t, 23 * 60 + 30) == 0.1 and price_at(t, 3 * 60) == 0.1
    assert price_at(t, 6 * 60 + 30) == 0.1          # 06:00-07:00 is in both: the first listed period
    assert price_at(t, 8 * 60) == 0.5
    assert price_at(t, 12 * 60) == 0.3              # from == to covers nothing
    assert band_price(t, 0, 5) == pytest.approx(0.1)


def test_money_format():
    assert format_money(7.5, "GBP", "en") == "GBP 7.50"
    assert format_money(1234.4, "EUR", "zh-CN") == "EUR 1,234"
    assert format_money(16.8, "CNY", "zh-CN") == "16.80元"
    assert format_money(16.8, "CNY", "en") == "CNY 16.80"


# --------------------------------------------------------------------------------------------- contract

def test_the_customer_schema_takes_a_time_of_use_tariff():
    base = {"customer_id": "C1", "meter_id": "M1", "transformer_id": "T1", "feeder_id": "F1",
            "segment": "residential", "phone": "+447700900123", "language": "en", "timezone": "Europe/London",
            "nominal_voltage": 230}
    assert check("customers", dict(base, tariff=TOU))["tariff"]["time_of_use"][0]["name"] == "peak"
    assert check("customers", dict(base, tariff={"currency": "GBP", "price_per_kwh": 0.2}))
    for bad in ({"name": "peak", "from": "6pm", "to": "22:00", "price_per_kwh": 1},
                {"name": "peak", "from": "18:00", "to": "24:00", "price_per_kwh": 1},
                {"name": "peak", "from": "18:00", "to": "22:00", "price_per_kwh": -1},
                {"from": "18:00", "to": "22:00", "price_per_kwh": 1}):
        with pytest.raises(ContractError):
            check("customers", dict(base, tariff={"currency": "GBP", "price_per_kwh": 0.2, "time_of_use": [bad]}))


def test_some_simulated_customers_have_a_valid_time_of_use_tariff():
    cust = Simulator(SimConfig(seed=11, hours=1)).customers()
    tou = [c for c in cust if "time_of_use" in c["tariff"]]
    assert tou and len(tou) < len(cust) / 2
    assert {c["segment"] for c in tou} == {"residential"}
    for c in tou:
        assert decode_customer(c["customer_id"], json.dumps(c)) == c
        peak, off = c["tariff"]["time_of_use"]
        assert peak["price_per_kwh"] > c["tariff"]["price_per_kwh"] > off["price_per_kwh"]
