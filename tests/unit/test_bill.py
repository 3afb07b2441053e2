"""The bill-spike detector (detectors.bill) on a synthetic household: one alert for a spike from mid-cycle,
with its evidence; none in the first or last 7 days of a cycle; at most one per cycle; none from estimated
reads or outage catch-up; fits only where fit_request asks for them, never in process().

One history (14 months, built with process() alone) and one real Prophet cycle fit are shared by the tests;
each continues from that state, so the whole file runs a handful of fits.
"""

from __future__ import annotations

import copy
import json
import math
import zlib
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

import detectors.bill as bill
from detectors.api import Context
from detectors.bill import BASIS_LAST_YEAR, BillSpikeDetector, cycle_bounds, fit

TZ = "Europe/Paris"
CUSTOMER = {"customer_id": "C000042", "meter_id": "M000042", "timezone": TZ, "bill_cycle_day": 8,
            "tariff": {"currency": "EUR", "price_per_kwh": 0.2}, "preferences": {"bill_alert_pct": 30}}
CTX = Context(meter_id="M000042", customer=CUSTOMER)
HISTORY_FROM = date(2025, 1, 1)
CYCLE = date(2026, 3, 8)                 # the cycle under test: 8 March - 7 April 2026, 31 days
CYCLE_END = date(2026, 4, 8)
LENGTH = (CYCLE_END - CYCLE).days
MID = CYCLE + timedelta(days=LENGTH // 2)


def midnight(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(TZ)).timestamp())


def usage(d: date, factor: float = 1.0, night_extra: float = 0.0, estimated_extra: float = 0.0,
          catch_up: float = 0.0) -> dict:
    """A day record of a ~10 kWh/day household: winter peak, busier weekends, a deterministic wiggle."""
    season = 1 + 0.25 * math.cos(2 * math.pi * (d.timetuple().tm_yday - 15) / 365.25)
    base = 10 * season * (1.15 if d.weekday() >= 5 else 1.0) * (1 + 0.08 * math.sin(d.toordinal() * 1.7))
    kwh = base * factor
    return {"ts": midnight(d), "date": d.isoformat(), "kwh": round(kwh + night_extra + estimated_extra + catch_up, 4),
            "estimated_kwh": round(estimated_extra, 4), "catch_up_kwh": round(catch_up, 4),
            "intervals": 96, "expected_intervals": 92 if d == date(2026, 3, 29) else 96, "readings": 96,
            "night_kwh": round(0.2 * kwh + night_extra, 4), "evening_kwh": round(0.3 * kwh, 4),
            "weekday": d.weekday()}


def span(start: date, end: date, **kw) -> list[dict]:
    return [usage(start + timedelta(days=i), **kw) for i in range((end - start).days)]


def drive(det: BillSpikeDetector, state: dict | None, days: list[dict], fits: list[str] | None = None
          ) -> tuple[dict, list[dict]]:
    """Feed days one by one as the pipeline does, running each fit asked for (its reason goes to ``fits``)."""
    found: list[dict] = []
    for d in days:
        state, f = det.process(state, [d], CTX)
        found += f
        payload = det.fit_request(state, CTX)
        if payload is not None:
            if fits is not None:
                fits.append(payload["reason"])
            state, f = det.apply_fit(state, fit(payload), CTX)
            found += f
    return state, found


@pytest.fixture(scope="module")
def shared():
    """(detector, state with the history up to the cycle, state after the cycle's first day and its fit)."""
    det = BillSpikeDetector(fit_spread_days=1)
    history = None
    for d in span(HISTORY_FROM, CYCLE):
        history, found = det.process(history, [d], CTX)
        assert found == []
    fits: list[str] = []
    started, found = drive(det, history, [usage(CYCLE)], fits)
    assert fits == ["cycle"] and found == []
    assert started["fc"]["cycle_start"] == CYCLE.isoformat() and len(started["fc"]["yhat"]) == LENGTH
    return det, history, started


def test_a_spike_from_mid_cycle_alerts_once_with_its_evidence(shared):
    det, _, started = shared
    fits: list[str] = []
    days = span(CYCLE + timedelta(days=1), MID) + span(MID, CYCLE_END, night_extra=8.0)
    state, found = drive(det, copy.deepcopy(started), days, fits)
    assert len(found) == 1, found
    f = found[0]
    ev = f["evidence"]
    assert {k: f[k] for k in ("kind", "status", "severity", "meter_id", "customer_id")} == {
        "kind": "bill_spike", "status": "event", "severity": "warning", "meter_id": "M000042",
        "customer_id": "C000042"}
    assert f["started_at"] == midnight(CYCLE)
    alert_day = datetime.fromtimestamp(f["detected_at"], ZoneInfo(TZ)).date()
    assert f["detected_at"] == f["at"] == midnight(alert_day)
    assert MID <= alert_day and (CYCLE_END - alert_day).days - 1 == ev["days_left"] >= 7
    assert (ev["cycle_start"], ev["cycle_end"], ev["basis"], ev["currency"]) == (
        "2026-03-08", "2026-04-07", BASIS_LAST_YEAR, "EUR")
    assert ev["pct_above"] >= ev["required_pct"] >= 30
    lo, hi = ev["pct_interval"]
    assert lo <= ev["pct_above"] <= hi
    assert ev["projected_amount"] == pytest.approx(0.2 * ev["projected_kwh"], abs=0.05)
    assert ev["usual_amount"] == pytest.approx(0.2 * ev["usual_kwh"], abs=0.05)
    assert ev["pct_above"] == pytest.approx(100 * (ev["projected_kwh"] / ev["usual_kwh"] - 1), abs=0.2)
    assert ev["driver"].startswith("night-time base load up ") and ev["driver"].endswith(" %")
    assert ev["drivers"]["night"] > 100 and ev["estimated_share"] == 0
    # one fit per cycle, in the fixture: the alert comes from the daily path on the stored forecast
    assert fits == []
    assert state["counts"]["alerts"] == 1
    json.dumps(f, allow_nan=False)


def test_no_alert_in_the_first_seven_days_and_one_per_cycle(shared):
    det, _, started = shared
    days = span(CYCLE + timedelta(days=1), CYCLE_END, factor=2.5)
    _, found = drive(det, copy.deepcopy(started), days)
    assert len(found) == 1
    day = datetime.fromtimestamp(found[0]["detected_at"], ZoneInfo(TZ)).date()
    assert (day - CYCLE).days >= 7 and found[0]["evidence"]["days_left"] >= 7


def test_no_alert_for_a_spike_in_the_last_seven_days(shared):
    det, _, started = shared
    last_week = CYCLE_END - timedelta(days=7)
    days = span(CYCLE + timedelta(days=1), last_week) + span(last_week, CYCLE_END, factor=3.0)
    state, found = drive(det, copy.deepcopy(started), days)
    assert found == [] and state["counts"]["alerts"] == 0


@pytest.mark.parametrize("kind, alerts", [("measured", 1), ("estimated", 0), ("catch_up", 0)])
def test_an_excess_of_estimated_reads_or_catch_up_does_not_alert(shared, kind, alerts):
    """12 kWh a day more from mid-cycle: an alert when measured, none when estimated or outage catch-up."""
    det, _, started = shared
    extra = {"measured": {"night_extra": 12.0}, "estimated": {"estimated_extra": 12.0},
             "catch_up": {"catch_up": 12.0}}[kind]
    days = span(CYCLE + timedelta(days=1), MID) + span(MID, CYCLE_END, **extra)
    assert sum(d["kwh"] for d in days) > 1.5 * sum(usage(date.fromisoformat(d["date"]))["kwh"] for d in days)
    _, found = drive(det, copy.deepcopy(started), days)
    assert len(found) == alerts
    if found:
        assert found[0]["evidence"]["estimated_share"] == 0


def test_fit_request_is_none_when_no_fit_is_due(shared):
    det, history, started = shared
    assert det.fit_request(None, CTX) is None
    assert det.fit_request(det.new_state(), CTX) is None
    # too little history for a forecast
    young, _ = det.process(None, span(CYCLE, CYCLE + timedelta(days=20)), CTX)
    assert det.fit_request(young, CTX) is None
    # after the cycle fit, quiet days ask for nothing
    state = started
    for d in span(CYCLE + timedelta(days=1), CYCLE + timedelta(days=12)):
        state, found = det.process(state, [d], CTX)
        assert found == [] and det.fit_request(state, CTX) is None
    # the cycle fit waits for the customer's day within the first week (spread by a hash of the id)
    spread = BillSpikeDetector()
    offset = zlib.crc32(CUSTOMER["customer_id"].encode()) % spread.config.fit_spread_days
    state = history
    for i in range(offset + 1):
        state, _ = spread.process(state, [usage(CYCLE + timedelta(days=i))], CTX)
        payload = spread.fit_request(state, CTX)
        assert (payload is None) == (i < offset)
    assert payload["reason"] == "cycle" and payload["cycle_start"] == CYCLE.isoformat()
    json.dumps(payload)


def test_process_never_fits(shared, monkeypatch):
    det, history, started = shared

    def no_fit(*a, **k):
        raise AssertionError("a model fit inside process()")

    monkeypatch.setattr(bill, "_prophet_forecast", no_fit)
    monkeypatch.setattr(bill, "fit", no_fit)
    prophet = pytest.importorskip("prophet")
    monkeypatch.setattr(prophet.Prophet, "fit", no_fit)
    state = None
    for d in span(HISTORY_FROM, CYCLE):
        state, _ = det.process(state, [d], CTX)
    state, _ = det.process(copy.deepcopy(started), span(CYCLE + timedelta(days=1), CYCLE_END, factor=2.5), CTX)
    assert state["counts"]["fits"] == started["counts"]["fits"] == 1


def test_process_is_pure_and_keeps_a_bounded_json_state(shared):
    det, _, started = shared
    frozen = copy.deepcopy(started)
    days = span(CYCLE + timedelta(days=1), CYCLE + timedelta(days=5))
    frozen_days = copy.deepcopy(days)
    state, _ = det.process(started, days, CTX)
    assert started == frozen and days == frozen_days
    assert json.loads(json.dumps(state)) == state
    assert len(json.dumps(state)) < 12_000
    # a duplicated and shuffled delivery changes nothing but the duplicate count
    again, found = det.process(state, days[::-1] + days[:2], CTX)
    assert found == [] and again["counts"]["duplicates"] == state["counts"]["duplicates"] + 6
    assert again["history"] == state["history"]


def test_the_history_is_bounded():
    det = BillSpikeDetector()
    keep = det.config.history_days
    state, _ = det.process(None, span(date(2024, 1, 1), date(2024, 1, 1) + timedelta(days=keep + 30)), CTX)
    hist = state["history"]
    assert len(hist["kwh"]) == len(hist["night"]) == keep
    assert hist["first"] == (date(2024, 1, 1) + timedelta(days=30)).isoformat()
    # a day older than what is kept is counted and dropped
    older, _ = det.process(state, [usage(date(2024, 1, 5))], CTX)
    assert older["counts"]["too_old"] == 1 and older["history"] == hist


def test_apply_fit_ignores_a_result_for_another_cycle_and_survives_a_failed_fit(shared):
    det, _, started = shared
    state, found = det.apply_fit(started, {"v": 1, "reason": "cycle", "cycle_start": "2026-02-08",
                                           "data_end": "2026-03-07", "yhat": [1.0], "tail_lo": [0.0],
                                           "tail_hi": [0.0]}, CTX)
    assert found == [] and state["fc"] == started["fc"] and state["counts"]["stale_fits"] == 1
    state, found = det.apply_fit(started, {"v": 1, "reason": "cycle", "cycle_start": CYCLE.isoformat(),
                                           "data_end": CYCLE.isoformat(), "error": "ValueError: boom"}, CTX)
    assert found == [] and state["counts"]["fit_errors"] == 1 and state["fc"] == started["fc"]
    assert fit({"reason": "cycle", "cycle_start": "2026-03-08", "first": "2026-03-01", "y": [None]})["error"]


def test_fit_is_quiet(shared, capfd):
    det, history, _ = shared
    state, _ = det.process(history, [usage(CYCLE)], CTX)
    payload = det.fit_request(state, CTX)
    capfd.readouterr()
    result = fit(payload)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "") and "error" not in result
    assert len(result["yhat"]) == LENGTH and len(result["tail_lo"]) == len(result["tail_hi"]) == LENGTH + 1
    assert all(lo <= hi for lo, hi in zip(result["tail_lo"], result["tail_hi"]))


@pytest.mark.parametrize("d, cycle_day, expected", [
    ("2026-03-08", 8, ("2026-03-08", "2026-04-08")),
    ("2026-03-07", 8, ("2026-02-08", "2026-03-08")),
    ("2026-01-03", 15, ("2025-12-15", "2026-01-15")),
    ("2026-12-31", 1, ("2026-12-01", "2027-01-01")),
])
def test_cycle_bounds(d, cycle_day, expected):
    assert tuple(x.isoformat() for x in cycle_bounds(date.fromisoformat(d), cycle_day)) == expected


def test_a_vacant_month_is_neither_the_usual_bill_nor_in_the_fit(shared):
    """Last year's same period at near-zero use (an empty house): the usual bill comes from recent cycles, and
    the fit leaves those days out."""
    det = BillSpikeDetector(fit_spread_days=1)
    vacant_from, vacant_to = date(2025, 3, 5), date(2025, 4, 10)
    state = None
    for day in span(HISTORY_FROM, CYCLE):
        d = date.fromisoformat(day["date"])
        if vacant_from <= d < vacant_to:
            day = {**day, "kwh": 0.3, "night_kwh": 0.1, "evening_kwh": 0.1}
        state, _ = det.process(state, [day], CTX)
    usual = det.usual(state, CYCLE, CYCLE_END)
    assert usual["basis"] == bill.BASIS_RECENT and usual["kwh_per_day"] > 8
    state, _ = det.process(state, [usage(CYCLE)], CTX)
    payload = det.fit_request(state, CTX)
    first = date.fromisoformat(payload["first"])
    y = {(first + timedelta(days=i)): v for i, v in enumerate(payload["y"])}
    assert all(y[d] is None for d in y if vacant_from <= d < vacant_to)
    assert all(v is not None for d, v in y.items() if not vacant_from <= d < vacant_to)


def test_the_fit_has_the_holidays_of_the_customers_country(shared):
    det, history, _ = shared
    state, _ = det.process(history, [usage(CYCLE)], CTX)
    assert det.fit_request(state, CTX)["country"] == "FR"                # from the Europe/Paris timezone
    other = Context(meter_id="M000042", customer={**CUSTOMER, "country": "DE"})
    assert det.fit_request(state, other)["country"] == "DE"              # the customer record says so
    nowhere = Context(meter_id="M000042", customer={**CUSTOMER, "timezone": "UTC"})
    assert det.fit_request(state, nowhere)["country"] is None
    assert bill._known_country("FR") and not bill._known_country("XX")


def test_the_evaluations_decision_model_is_the_detectors(shared):
    """benchmarks.bill_eval.decide (which the cross-validation runs over a grid) alerts on the same day as the
    detector, for several parameter sets and spikes."""
    from benchmarks.bill_eval import decide

    _, _, started = shared
    fc = started["fc"]
    for params in ({"ratio_days": 3, "early_margin_pct": 20.0, "margin_power": 1.0, "min_level_ratio": 1.0},
                   {"ratio_days": 7, "early_margin_pct": 10.0, "margin_power": 1.0, "min_level_ratio": 1.2},
                   {"ratio_days": 4, "early_margin_pct": 30.0, "margin_power": 2.0, "min_level_ratio": 1.0}):
        det = BillSpikeDetector(fit_spread_days=1, **params)
        usual = det.usual(started, CYCLE, CYCLE_END)["kwh_per_day"] * LENGTH
        for factor in (1.0, 1.6, 1.9, 2.5):
            days = [usage(CYCLE)] + span(CYCLE + timedelta(days=1), MID) + span(MID, CYCLE_END, factor=factor)
            _, found = drive(det, copy.deepcopy(started), days[1:])
            got = None if not found else LENGTH - 1 - found[0]["evidence"]["days_left"]
            kwh = [d["kwh"] for d in days]
            usable = [d["intervals"] >= 0.9 * d["expected_intervals"] for d in days]
            assert decide(kwh, usable, fc["yhat"], usual, params) == got, (params, factor)


def test_the_customers_own_threshold_decides(shared):
    """x1.9 from mid-cycle: a bill ~45 % above usual alerts at the default 30 %, not for a customer who set 60 %,
    and the alert says which threshold it used."""
    det, _, started = shared
    days = span(CYCLE + timedelta(days=1), MID) + span(MID, CYCLE_END, factor=1.9)
    _, found = drive(det, copy.deepcopy(started), days)
    assert len(found) == 1 and found[0]["evidence"]["alert_pct"] == 30
    picky = Context(meter_id="M000042", customer={**CUSTOMER, "preferences": {"bill_alert_pct": 60}})
    state = copy.deepcopy(started)
    found = []
    for d in days:
        state, f = det.process(state, [d], picky)
        found += f
    assert found == [] and state["counts"]["alerts"] == 0
