"""Energy-saving tips chosen from a customer's own usage, with an estimated saving in their currency.

Pure functions (no Kafka, no Faust, no clock): the worker hands in what the ``bills`` table keeps for the
customer and the customer record, and gets back one tip or ``None``.

:func:`usage_summary` reads the history of the ``bill_spike`` detector (:mod:`detectors.bill`): per local day
the kWh of the whole day, of the night band (00:00-05:00) and of the evening band (17:00-22:00), the bands of
:mod:`detectors.usage`. Only *usable* days count, the same rule as the detector's: at least 90 % of the day
covered by readings and at most 10 % of its kWh estimated or outage catch-up. It compares the last
:data:`RECENT_DAYS` days with the :data:`BEFORE_DAYS` days before them.

:func:`choose_tip` picks at most one tip. Every estimate uses the customer's own kWh and their own tariff
(``tariff.price_per_kwh``, or under a time-of-use tariff the price in force in the hours concerned), over a
month of :data:`DAYS_PER_MONTH` days; no tip when the data does not support one (no tariff, too few days, no
clear change), never a made-up figure:

``night_base_load``
    The night-time base load (median over recent days of night kWh / 5 h) rose to at least
    :data:`NIGHT_RISE_RATIO` times the customer's own earlier level (the median of the days before)::

        saving = (night kW now - night kW before) x 5 h x 30 days x price during 00:00-05:00

    Only the five night hours are counted, though a load that stays on at night often runs all day: the
    estimate is a floor, not a promise.
``standby``
    No recent rise, but the night base load is at least :data:`STANDBY_RATIO` times the customer's own
    quietest nights (the 10th percentile of night kW over the whole history, at least :data:`MIN_FLOOR_DAYS`
    usable days): devices on standby or left running::

        saving = (night kW now - night kW of the quietest nights) x 5 h x 30 days x price during 00:00-05:00
``peak_shift``
    A time-of-use tariff whose evening (17:00-22:00) costs more than its cheapest hours, and at least
    :data:`PEAK_SHARE_MIN` of the customer's use in the evening::

        saving = evening kWh a day x SHIFT_SHARE x 30 days x (mean price over 17:00-22:00 - cheapest price)

    i.e. moving a fifth (:data:`SHIFT_SHARE`) of the evening's use to the cheapest hours. The day records
    have no finer resolution than the band, so use is taken as spread evenly over 17:00-22:00.

Each candidate also needs at least :data:`MIN_MONTHLY_KWH` kWh a month behind it. The night tip, when
there is one, is preferred over the standby tip (they describe the same load; a recent rise is the more
specific finding). Between the night-time tip and the peak-shift tip, the one the bill alert's main change
points at wins (``driver`` "night-time base load ..." or "weekday evenings ..."), else the larger saving.

Time-of-use tariff (``customers.schema.json``)::

    "tariff": {"currency": "GBP", "price_per_kwh": 0.245,
               "time_of_use": [{"name": "peak", "from": "17:00", "to": "22:00", "price_per_kwh": 0.36},
                               {"name": "off-peak", "from": "23:00", "to": "07:00", "price_per_kwh": 0.12}]}

Periods are local ``[from, to)``, every day; ``to`` before ``from`` wraps midnight; ``from == to`` is empty;
the first listed period wins where two overlap; hours in no period cost ``price_per_kwh``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, timedelta
from statistics import median

from detectors.usage import EVENING, NIGHT
from gridwatch import kinds

__all__ = ["Tip", "usage_summary", "choose_tip", "format_money", "price_at", "band_price", "TIP_KINDS",
           "RECENT_DAYS", "BEFORE_DAYS", "DAYS_PER_MONTH", "SHIFT_SHARE"]

#: the recent window: the last this many calendar days of the history
RECENT_DAYS = 14
#: ... compared with this many calendar days before it
BEFORE_DAYS = 56
#: usable days needed in the recent window for any summary, and in the earlier one for a comparison
MIN_RECENT_DAYS = 7
MIN_BEFORE_DAYS = 14
#: usable days of the whole history needed for the "quietest nights" floor
MIN_FLOOR_DAYS = 28
#: the quietest nights: this quantile of the night kW of all usable days
FLOOR_QUANTILE = 0.10
#: a month, for the estimates
DAYS_PER_MONTH = 30
#: a night-time tip needs the night load at least this many times the earlier level ...
NIGHT_RISE_RATIO = 1.3
#: ... a standby tip this many times the quietest nights
STANDBY_RATIO = 1.3
#: a peak-shift tip needs at least this share of the day's kWh in the evening band
PEAK_SHARE_MIN = 0.30
#: the share of the evening's use a peak-shift tip suggests moving
SHIFT_SHARE = 0.2
#: no tip for fewer kWh a month than this behind it
MIN_MONTHLY_KWH = 5.0
#: the detector's usable-day rule (detectors.bill: ``_usable``, ``flagged_share``)
_MIN_COVERED_PCT = 90
_MAX_FLAGGED_SHARE = 0.1

#: alert kinds a tip goes with (a tip can also be sent on its own, with no alert)
TIP_KINDS = kinds.having("tip")

NIGHT_HOURS = NIGHT[1] - NIGHT[0]
EVENING_HOURS = EVENING[1] - EVENING[0]

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True)
class Tip:
    """One energy-saving tip.

    ``key``: ``night_base_load``, ``standby`` or ``peak_shift``; ``text``: one sentence for an SMS in the
    customer's language, the saving included; ``saving``: estimated money a month in ``currency``;
    ``kwh_per_month``: the kWh the estimate rests on (saved, or moved to cheaper hours); ``basis``: the
    formula in words with the customer's figures, for an email.
    """

    key: str
    text: str
    saving: float
    currency: str
    kwh_per_month: float
    basis: str


# --------------------------------------------------------------------------------------------- summary

def usage_summary(bill_state: dict | None) -> dict | None:
    """What a customer's usage looks like lately, from the ``bills`` table's value for them.

    ``bill_state`` is ``bills_tb[customer_id]`` (``{detector name: state}``, the ``bill_spike`` state is read)
    or that detector state itself. Returns ``None`` when there is no history or fewer than
    :data:`MIN_RECENT_DAYS` usable days in the last :data:`RECENT_DAYS`; else::

        {"last": ISO date of the newest day in the history,
         "days": usable days in the history,
         "recent_days": usable days in the recent window, "before_days": ... in the window before it,
         "avg_daily_kwh": mean kWh a day (recent),
         "night_kw": median night kWh / 5 h (recent),
         "night_kw_before": the same over the earlier window, or None with fewer than MIN_BEFORE_DAYS days,
         "night_kw_floor": the 10th percentile of night kW over every usable day, or None (< MIN_FLOOR_DAYS),
         "evening_kwh": mean evening kWh a day (recent),
         "evening_share": evening_kwh / avg_daily_kwh, or None when no use at all}
    """
    st = bill_state
    if isinstance(st, dict) and "history" not in st:
        st = st.get("bill_spike")
    if not isinstance(st, dict) or not isinstance(st.get("history"), dict):
        return None
    h = st["history"]
    try:
        first = date.fromisoformat(h["first"])
    except (KeyError, TypeError, ValueError):
        return None
    kwh, night, evening = h.get("kwh") or [], h.get("night") or [], h.get("evening") or []
    est, cu, cov = h.get("estimated") or {}, h.get("catch_up") or {}, h.get("covered") or {}

    days: list[tuple[int, float, float, float]] = []    # (ordinal, kWh, night kWh, evening kWh)
    last = None
    for i, wh in enumerate(kwh):
        if not _finite(wh):
            continue
        d = first + timedelta(days=i)
        last = d
        key = d.isoformat()
        flagged = (_num(est.get(key)) or 0) + (_num(cu.get(key)) or 0)
        covered = _num(cov.get(key, 100))
        if wh < 0 or covered is None or covered < _MIN_COVERED_PCT or flagged > _MAX_FLAGGED_SHARE * max(wh, 1e-9):
            continue
        n_wh = _num(night[i]) if i < len(night) else None
        e_wh = _num(evening[i]) if i < len(evening) else None
        days.append((d.toordinal(), wh / 1000, (n_wh or 0) / 1000, (e_wh or 0) / 1000))
    if last is None:
        return None

    end = last.toordinal()
    recent = [r for r in days if end - RECENT_DAYS < r[0] <= end]
    before = [r for r in days if end - RECENT_DAYS - BEFORE_DAYS < r[0] <= end - RECENT_DAYS]
    if len(recent) < MIN_RECENT_DAYS:
        return None
    avg = sum(r[1] for r in recent) / len(recent)
    eve = sum(r[3] for r in recent) / len(recent)
    night_kw = median(r[2] for r in recent) / NIGHT_HOURS
    before_kw = median(r[2] for r in before) / NIGHT_HOURS if len(before) >= MIN_BEFORE_DAYS else None
    floor_kw = (_quantile(sorted(r[2] for r in days), FLOOR_QUANTILE) / NIGHT_HOURS
                if len(days) >= MIN_FLOOR_DAYS else None)
    return {
        "last": last.isoformat(), "days": len(days), "recent_days": len(recent), "before_days": len(before),
        "avg_daily_kwh": round(avg, 4), "night_kw": round(night_kw, 4),
        "night_kw_before": None if before_kw is None else round(before_kw, 4),
        "night_kw_floor": None if floor_kw is None else round(floor_kw, 4),
        "evening_kwh": round(eve, 4), "evening_share": round(eve / avg, 4) if avg > 0 else None,
    }


def _quantile(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks of sorted ``values``."""
    pos = q * (len(values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def _num(value: object) -> float | None:
    return float(value) if _finite(value) else None


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --------------------------------------------------------------------------------------------- tariff

def _minutes(text: object) -> int | None:
    m = _HHMM.match(text) if isinstance(text, str) else None
    return int(m.group(1)) * 60 + int(m.group(2)) if m else None


def _periods(tariff: dict) -> list[tuple[int, int, float, str]]:
    """The valid time-of-use periods: (from minute, to minute, price, name)."""
    out = []
    for p in tariff.get("time_of_use") or ():
        if not isinstance(p, dict):
            continue
        a, b, price = _minutes(p.get("from")), _minutes(p.get("to")), _num(p.get("price_per_kwh"))
        if a is None or b is None or price is None or price < 0 or a == b:
            continue
        out.append((a, b, price, str(p.get("name") or "")))
    return out


def _in(minute: int, a: int, b: int) -> bool:
    return a <= minute < b if a < b else (minute >= a or minute < b)


def _schedule(tariff: dict) -> list[float] | None:
    """The price per kWh of each minute of the local day (1440 values); ``None`` without a valid base price."""
    base = _num(tariff.get("price_per_kwh"))
    if base is None or base < 0:
        return None
    prices: list[float | None] = [None] * 1440
    for a, b, price, _ in _periods(tariff):          # the first listed period wins where two overlap
        for m in range(1440):
            if prices[m] is None and _in(m, a, b):
                prices[m] = price
    return [base if p is None else p for p in prices]


def price_at(tariff: dict, minute: int) -> float | None:
    """The price per kWh at ``minute`` (0..1439) of the local day: the first time-of-use period that covers
    it, else ``tariff["price_per_kwh"]``; ``None`` without a valid base price."""
    prices = _schedule(tariff)
    return None if prices is None else prices[minute % 1440]


def band_price(tariff: dict, first_hour: int, end_hour: int) -> float | None:
    """The mean price per kWh over the local hours ``[first_hour, end_hour)``, minute by minute (use taken
    as spread evenly over the band)."""
    prices = _schedule(tariff)
    if prices is None or end_hour <= first_hour:
        return None
    band = prices[first_hour * 60:end_hour * 60]
    return sum(band) / len(band)


def _cheapest(tariff: dict) -> tuple[float, tuple[int, int] | None]:
    """The cheapest price in force at some minute of the day, and the period it is (None: the base price)."""
    prices = _schedule(tariff) or []
    low = min(prices)
    base = float(tariff["price_per_kwh"])
    if base == low and base in prices:
        return low, None
    return low, next(((a, b) for a, b, price, _ in _periods(tariff) if price == low), None)


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


# --------------------------------------------------------------------------------------------- money

def format_money(value: float, currency: str, lang: str) -> str:
    """``GBP 5.51`` (``5.51元`` for yuan in Chinese); whole units from 100 up."""
    amount = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    if lang == "zh-CN" and currency == "CNY":
        return f"{amount}元"
    return f"{currency} {amount}"


def _kw(value: float) -> str:
    if value < 10:
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _price(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".")


# --------------------------------------------------------------------------------------------- texts

_TEXT = {
    "en": {
        "night_base_load": {
            "residential": "Tip: your night-time use has risen from {before} to {now} kW. Switching off what "
                           "runs overnight could save about {saving} a month.",
            "commercial": "Energy tip: out-of-hours base load up from {before} to {now} kW. Equipment, lights "
                          "and HVAC off overnight could save about {saving} a month.",
            "industrial": "Energy tip: night base load (00:00-05:00) up from {before} to {now} kW. Cutting it "
                          "back could save about {saving} a month.",
        },
        "standby": {
            "residential": "Tip: your home draws {now} kW at night against {before} kW on its quietest nights. "
                           "Switching standby devices off at the wall could save about {saving} a month.",
            "commercial": "Energy tip: your site draws {now} kW at night against {before} kW on its quietest "
                          "nights. Timers on idle equipment could save about {saving} a month.",
            "industrial": "Energy tip: night base load {now} kW against {before} kW on the quietest nights. "
                          "Shutting down idle plant could save about {saving} a month.",
        },
        "peak_shift": {
            "residential": "Tip: {share} of your use is 17:00-22:00, when your tariff costs more. Moving a fifth "
                           "of it to {cheap} could save about {saving} a month.",
            "commercial": "Energy tip: {share} of your use is 17:00-22:00, at your tariff's higher price. "
                          "Moving a fifth of it to {cheap} could save about {saving} a month.",
            "industrial": "Energy tip: {share} of load in 17:00-22:00 at the higher tariff price. Shifting a "
                          "fifth to {cheap} could save about {saving} a month.",
        },
        "cheap_hours": "off-peak hours",
        "basis": {
            "night_base_load": "({now} kW now - {before} kW before) x 5 night hours x 30 days x {price} per kWh "
                               "= {saving} a month. Only the night hours 00:00-05:00 are counted.",
            "standby": "({now} kW now - {before} kW on your quietest nights) x 5 night hours x 30 days x {price} "
                       "per kWh = {saving} a month. Only the night hours 00:00-05:00 are counted.",
            "peak_shift": "{eve} kWh a day in 17:00-22:00 x 1/5 moved x 30 days x ({peak} - {low} per kWh) "
                          "= {saving} a month.",
        },
    },
    "zh-CN": {
        "night_base_load": {
            "residential": "小贴士：您家夜间用电从{before}千瓦升至{now}千瓦，关掉夜间不用的电器，每月约可省{saving}。",
            "commercial": "节能建议：贵单位非营业时段基础负荷从{before}千瓦升至{now}千瓦，夜间关闭设备、照明和空调，"
                          "每月约可省{saving}。",
            "industrial": "节能建议：夜间（0-5点）基础负荷从{before}千瓦升至{now}千瓦，降低后每月约可省{saving}。",
        },
        "standby": {
            "residential": "小贴士：您家夜间用电{now}千瓦，最低时仅{before}千瓦，拔掉待机电器插头每月约可省{saving}。",
            "commercial": "节能建议：贵单位夜间负荷{now}千瓦，最低时仅{before}千瓦，为闲置设备加装定时器每月约可省{saving}。",
            "industrial": "节能建议：夜间基础负荷{now}千瓦，最低时仅{before}千瓦，关停闲置设备每月约可省{saving}。",
        },
        "peak_shift": {
            "residential": "小贴士：您家{share}的用电在17-22点电价较高时段，把其中五分之一移到{cheap}，每月约可省{saving}。",
            "commercial": "节能建议：贵单位{share}的用电在17-22点高峰电价时段，移出五分之一到{cheap}，每月约可省{saving}。",
            "industrial": "节能建议：{share}的负荷在17-22点高峰电价时段，转移五分之一到{cheap}，每月约可省{saving}。",
        },
        "cheap_hours": "低谷时段",
        "basis": {
            "night_base_load": "（现在{now}千瓦 - 之前{before}千瓦）× 夜间5小时 × 30天 × 每度{price} = 每月约{saving}。"
                               "只计算了0-5点的夜间时段。",
            "standby": "（现在{now}千瓦 - 最低夜间{before}千瓦）× 夜间5小时 × 30天 × 每度{price} = 每月约{saving}。"
                       "只计算了0-5点的夜间时段。",
            "peak_shift": "17-22点每天{eve}度 × 移出五分之一 × 30天 ×（每度{peak} - {low}）= 每月约{saving}。",
        },
    },
}


def _lang(lang: str | None) -> str:
    return "zh-CN" if lang == "zh-CN" else "en"


def _pct(share: float, lang: str) -> str:
    return f"{round(100 * share)}%" if lang == "zh-CN" else f"{round(100 * share)} %"


# --------------------------------------------------------------------------------------------- choosing

def choose_tip(customer: dict, usage: dict | None, alert: dict | None = None, lang: str = "en") -> Tip | None:
    """The one tip that this customer's usage supports best, in ``lang``; ``None`` when none does.

    ``usage`` is a :func:`usage_summary`. ``alert`` (optional) is the alert the tip goes with: only a bill
    alert (or a ``tip`` message) gets one, and its main change decides between a night-time and a
    peak-shift tip. The candidates, their formulas and the choice are in the module docstring.
    """
    if not usage or not isinstance(customer, dict):
        return None
    if alert is not None and alert.get("kind") not in TIP_KINDS:
        return None
    tariff = customer.get("tariff")
    if not isinstance(tariff, dict):
        return None
    currency, base = tariff.get("currency"), _num(tariff.get("price_per_kwh"))
    if not isinstance(currency, str) or not _CURRENCY.match(currency) or base is None or base <= 0:
        return None
    lang = _lang(lang)
    segment = customer.get("segment") if customer.get("segment") in ("commercial", "industrial") else "residential"

    night = _night_tip(tariff, usage, segment, lang, currency)
    peak = _peak_tip(tariff, usage, segment, lang, currency)
    candidates = [t for t in (night, peak) if t is not None]
    if not candidates:
        return None
    driver = ((alert or {}).get("evidence") or {}).get("driver")
    if isinstance(driver, str):
        if driver.startswith("night-time base load") and night is not None:
            return night
        if driver.startswith("weekday evenings") and peak is not None:
            return peak
    return max(candidates, key=lambda t: t.saving)


def _night_tip(tariff: dict, usage: dict, segment: str, lang: str, currency: str) -> Tip | None:
    """``night_base_load`` if the night load rose against the earlier level, else ``standby`` if it stands
    well above the quietest nights, else None."""
    now = _num(usage.get("night_kw"))
    price = band_price(tariff, *NIGHT)
    if now is None or price is None or price <= 0:
        return None
    for key, ref_name, ratio in (("night_base_load", "night_kw_before", NIGHT_RISE_RATIO),
                                 ("standby", "night_kw_floor", STANDBY_RATIO)):
        ref = _num(usage.get(ref_name))
        if ref is None or ref < 0 or now < ratio * ref:
            continue
        kwh_month = (now - ref) * NIGHT_HOURS * DAYS_PER_MONTH
        if kwh_month < MIN_MONTHLY_KWH:
            continue
        saving = round(kwh_month * price, 2)
        if saving <= 0:
            continue
        money = format_money(saving, currency, lang)
        figures = {"now": _kw(now), "before": _kw(ref), "saving": money}
        t = _TEXT[lang]
        basis = t["basis"][key].format(**figures, price=_price_text(price, currency, lang))
        return Tip(key, t[key][segment].format(**figures), saving, currency, round(kwh_month, 1), basis)
    return None


def _peak_tip(tariff: dict, usage: dict, segment: str, lang: str, currency: str) -> Tip | None:
    """``peak_shift`` under a time-of-use tariff whose evening costs more than its cheapest hours."""
    if not _periods(tariff):
        return None
    eve, share = _num(usage.get("evening_kwh")), _num(usage.get("evening_share"))
    p_eve = band_price(tariff, *EVENING)
    if eve is None or share is None or p_eve is None or share < PEAK_SHARE_MIN:
        return None
    low, period = _cheapest(tariff)
    diff = p_eve - low
    kwh_month = eve * SHIFT_SHARE * DAYS_PER_MONTH
    if diff <= 0 or kwh_month < MIN_MONTHLY_KWH:
        return None
    saving = round(kwh_month * diff, 2)
    if saving <= 0:
        return None
    t = _TEXT[lang]
    cheap = f"{_hhmm(period[0])}-{_hhmm(period[1])}" if period else t["cheap_hours"]
    money = format_money(saving, currency, lang)
    text = t["peak_shift"][segment].format(share=_pct(share, lang), cheap=cheap, saving=money)
    basis = t["basis"]["peak_shift"].format(eve=f"{eve:.1f}", peak=_price_text(p_eve, currency, lang),
                                            low=_price_text(low, currency, lang), saving=money)
    return Tip("peak_shift", text, saving, currency, round(kwh_month, 1), basis)


def _price_text(price: float, currency: str, lang: str) -> str:
    """A unit price with its own precision (``GBP 0.245``, ``0.56元``)."""
    if lang == "zh-CN" and currency == "CNY":
        return f"{_price(price)}元"
    return f"{currency} {_price(price)}"
