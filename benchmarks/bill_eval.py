"""``python -m benchmarks.bill_eval``: the bill-spike detector on real households it was not tuned on.

Households (../shared/data, see its README), every one a customer in Europe/London (the UCI one in
Europe/Paris) on a 1st-of-month billing cycle:

- the 280 London LCL households with two years of daily kWh (``lcl_daily_280hh.csv``); by default a fixed
  random sample of ``--households`` (150, ``random.Random(13)``) of them, so that a run with an empty fit
  cache stays under ~15 minutes on this machine; ``--households 0`` takes all 280;
- the two sub-daily households (LCL MAC000060 half-hourly, UCI hourly), folded into local days by
  :func:`detectors.usage.accumulate` as the worker does: the only ones with a night-time part of the day.

**Phase 1, the real detector on untouched data.** Each household's whole history goes through
:class:`detectors.bill.BillSpikeDetector` (``process`` every day, :func:`detectors.bill.fit` whenever
``fit_request`` asks), one Prophet fit per customer per cycle. Fits are cached on disk under
``.run/bill_eval/fits`` (keyed by the fit payload), so a second run costs seconds. A cycle is *evaluated*
when the whole cycle is in the data and at mid-cycle the detector had the cycle's forecast and a usual bill
(same period last year, else recent cycles; the first cycles of a household have neither).

**Cases.** The reference of a cycle is the detector's usual bill (a fixed rule, not tuned). *Untouched*
cycles ended < 30 % above it: any alert on them is false. *Natural spikes* ended >= 30 % above it. Injected
into untouched cycles, from mid-cycle (day ``length // 2``) to the end:

- ``step x1.4``, ``step x1.8``: use times 1.4 / 1.8 (x1.4 for half a cycle is a bill ~+20 %: mostly below
  the 30 % threshold, a low recall is right);
- ``step to +40 %``: use times the factor that brings the bill to 1.4 x usual (never below x1): **the target
  case**, recall >= 90 % alerted >= 7 days before the cycle ends;
- ``ramp to +40 %``: use rising linearly from mid-cycle, to the bill 1.4 x usual;
- ``base load to +40 %``: the same kWh every day from mid-cycle, to the bill 1.4 x usual (on the two
  sub-daily households it is all night-time base load, and the alert's driver names it).

The seasonal swing that must not alert is the real one: the untouched rows are also given for winter cycles
(November to February) and for customers in their first year (no same period last year).

**Parameters by cross-validation across households.** The decision (see :func:`decide`) has four
parameters: ``ratio_days`` (days of evidence for the level), ``early_margin_pct`` and ``margin_power`` (the
margin over the threshold for the share of the cycle still ahead) and ``min_level_ratio``. The households are
split into 5 fixed folds; for each fold a grid point is chosen on the *other* four folds (see :func:`_choose`:
false alerts <= 4 %, over all untouched cycles and over the winter ones, and >= 80 % of natural spikes
alerted, then the best target recall) and scored on the fold's households only. Every figure in the table is
a held-out one: pooled over the five held-out folds, with
Wilson 95 % intervals, and per household. :func:`decide` reproduces the detector's decision from the
stored forecast; the run checks that on every case of every cycle it alerts on the same day as the real
detector (``process`` from the mid-cycle state) for the detector's default parameters, and prints the count.

The naive rule, on the same cycles: "the cycle so far, projected to the whole cycle, > the last cycle x
1.3", checked daily on the days the detector may alert (8th .. 8th from last).

**The oracle**, on the same cycles: what the threshold allows at all on each shape. It knows the cycle's true
usual bill, the un-spiked cycle's own total (no detector has it), and projects the cycle so far with a simple
forecaster of the remaining days: the mean of the last 4 days carried flat (level), or the least-squares line
through the last 7 days carried forward (trend). Its recall is the share of spiked cycles whose projection
reaches 30 % above that usual bill on a day from mid-cycle to the 8th from last (see :func:`oracle`); its
rate on the untouched cycles (scanned from the 8th day) is its own false alerts. A causal rule with that
threshold and that forecaster cannot catch more, unless its usual bill errs low, which costs false alerts.
It is also given at the one threshold that leaves 5 % of the untouched cycles alerted (pooled; no bound on
a rule whose margin changes over the cycle, as the detector's does).

``--try-trend`` adds :data:`TREND_GRID`'s points, a gated trend the detector does not have, to the grid and
prints what each does in-sample on all households beside the point chosen there.

``--quick``: 20 households (~1 minute with a warm cache). ``--json``: the figures as JSON.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import random
import statistics
import sys
import time
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Iterable

__all__ = ["HOUSEHOLDS", "CASES", "TARGET", "GRID", "default_shared", "load_days", "load_daily", "evaluate",
           "decide", "naive", "oracle", "oracle_peak", "wilson", "format_report", "main"]

#: the sub-daily households: (name, file under data/, the clock it was logged on, the customer's timezone)
HOUSEHOLDS = (
    ("uci", "uci_household/uci_hourly_sums_2006_2010.csv", "Etc/GMT-1", "Europe/Paris"),
    ("lcl", "london_lcl/MAC000060_halfhourly.csv", "UTC", "Europe/London"),
)
DAILY = "london_lcl/lcl_daily_280hh.csv"
DAILY_TZ = "Europe/London"
SAMPLE_SEED = 13
DEFAULT_SAMPLE = 150
TARIFF = {"currency": "GBP", "price_per_kwh": 0.25}
ALERT_PCT = 30.0
NAIVE_FACTOR = 1.3
BILL_TARGET = 1.4
#: injected cases: name -> (shape, fixed factor or None for "to BILL_TARGET x usual")
CASES = {
    "step x1.4": ("step", 1.4),
    "step x1.8": ("step", 1.8),
    "step to +40 %": ("step", None),
    "ramp to +40 %": ("ramp", None),
    "base load to +40 %": ("base", None),
}
TARGET = "step to +40 %"
RAMP = "ramp to +40 %"
#: the decision's parameters tried by the cross-validation
GRID = {"ratio_days": (3, 4, 5, 6), "early_margin_pct": (0.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0, 120.0),
        "margin_power": (1.0, 2.0, 3.0), "min_level_ratio": (1.0, 1.1, 1.2)}
#: ``--try-trend``: grid points added with a gated trend (the level's least-squares slope over the last
#: ``trend_days`` usable days, carried over the days ahead times ``trend_weight``, only when it rises with a t
#: statistic >= ``trend_t``), around the region the cross-validation chooses without it
TREND_T = 2.0
TREND_GRID = {"ratio_days": (4, 5), "early_margin_pct": (100.0, 120.0), "margin_power": (3.0,),
              "min_level_ratio": (1.0,), "trend_days": (5, 7), "trend_weight": (0.5, 1.0), "trend_t": (1.0, 2.0)}
FOLDS = 5
#: the oracle's forecasters of the rest of the cycle (see :func:`oracle`)
ORACLES = ("level", "trend")
ORACLE_LEVEL_DAYS = 4
ORACLE_TREND_DAYS = 7
MAX_TRAIN_FALSE = 0.04
MIN_TRAIN_NATURAL = 0.8
CACHE = Path(__file__).resolve().parents[1] / ".run" / "bill_eval" / "fits"


def default_shared() -> Path:
    """``$GRIDWATCH_SHARED``, else the ``shared`` folder beside the repository."""
    return Path(os.environ.get("GRIDWATCH_SHARED") or Path(__file__).resolve().parents[2] / "shared")


# ------------------------------------------------------------------------------------------------ data

def load_days(path: Path, clock: str, tz: str, meter_id: str) -> list[dict]:
    """A sub-daily household file -> its closed local days (:mod:`detectors.usage` records), in date order."""
    from detectors.usage import accumulate
    from gridwatch.contract import Reading, parse_ts
    from devtools.replay import parse_file

    res = parse_file(path, tz=clock, meter_id=meter_id)
    readings = [Reading(meter_id=r["meter_id"], ts=parse_ts(r["ts"]), interval_s=r["interval_s"], kwh=r["kwh"],
                        quality=r.get("quality") or "actual") for r in res.readings]
    state, days = None, []
    for i in range(0, len(readings), 48):       # message-sized batches, as the worker would see them
        state, closed = accumulate(state, readings[i:i + 48], tz)
        days.extend(closed)
    return days


def load_daily(path: Path) -> dict[str, list[dict]]:
    """The daily LCL file -> household id -> day records (``date``, ``kwh``; no part-of-day split)."""
    out: dict[str, list[dict]] = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            out[row["household_id"]].append({"date": row["interval_start"][:10], "kwh": float(row["kwh"])})
    for days in out.values():
        days.sort(key=lambda d: d["date"])
    return dict(out)


def households(shared: Path, sample: int | None, progress: bool = False) -> list[tuple[str, str, list[dict]]]:
    """[(name, timezone, days)]: the sub-daily households, then the (sampled) daily ones, in a fixed order."""
    data = shared / "data"
    daily = load_daily(data / DAILY)
    names = sorted(daily)
    if sample and sample < len(names):
        names = sorted(random.Random(SAMPLE_SEED).sample(names, sample))
    out = [(name, tz, load_days(data / rel, clock, tz, f"M-{name}")) for name, rel, clock, tz in HOUSEHOLDS]
    return out + [(n, DAILY_TZ, daily[n]) for n in names]


def _customer(household: str, tz: str) -> dict:
    return {"customer_id": f"C-{household}", "meter_id": f"M-{household}", "timezone": tz, "bill_cycle_day": 1,
            "tariff": TARIFF, "preferences": {"bill_alert_pct": ALERT_PCT}}


# ------------------------------------------------------------------------------------- phase 1: detector

class FitCache:
    """:func:`detectors.bill.fit` results on disk, one JSON file per household, keyed by the payload."""

    def __init__(self, root: Path, household: str):
        self.path = root / f"{household}.json"
        self.data: dict[str, dict] = {}
        if self.path.exists():
            try:
                self.data = json.loads(self.path.read_text())
            except ValueError:
                self.data = {}
        self.hits = self.misses = 0
        self.fit_cpu_ms = 0.0

    def fit(self, payload: dict) -> dict:
        from detectors.bill import fit

        key = hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        if key in self.data:
            self.hits += 1
            return self.data[key]
        self.misses += 1
        res = fit(payload)
        self.fit_cpu_ms += res["cpu_ms"]["process"] + res["cpu_ms"]["children"]
        self.data[key] = res
        return res

    def save(self) -> None:
        if self.misses:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data))
            tmp.replace(self.path)


def replay_household(name: str, tz: str, days: list[dict], cache_root: Path, overrides: dict | None = None
                     ) -> dict:
    """Phase 1 for one household: the real detector over its untouched history; per cycle what the cases
    need (see the module docstring)."""
    from detectors.api import Context
    from detectors.bill import BillSpikeDetector, cycle_bounds

    cust = _customer(name, tz)
    det = BillSpikeDetector(**(overrides or {}))
    ctx = Context(meter_id=cust["meter_id"], customer=cust)
    cache = FitCache(cache_root, name)
    by_date = {d["date"]: d for d in days}
    first, last = date.fromisoformat(days[0]["date"]), date.fromisoformat(days[-1]["date"])
    state: dict | None = None
    alerts: dict[str, int] = {}
    mids: dict[str, dict | None] = {}
    for day in days:
        d = date.fromisoformat(day["date"])
        start, end = cycle_bounds(d, 1)
        key = start.isoformat()
        if (d - start).days >= (end - start).days // 2 and key not in mids:
            mids[key] = state
        state, found = det.process(state, [day], ctx)
        payload = det.fit_request(state, ctx)
        if payload is not None:
            state, more = det.apply_fit(state, cache.fit(payload), ctx)
            found += more
        for a in found:
            ev = a["evidence"]
            length = (date.fromisoformat(ev["cycle_end"]) - date.fromisoformat(ev["cycle_start"])).days + 1
            alerts[ev["cycle_start"]] = length - 1 - ev["days_left"]
    cache.save()
    cycles = []
    for key, st in mids.items():
        start = date.fromisoformat(key)
        _, end = cycle_bounds(start, 1)
        length = (end - start).days
        fc = (st or {}).get("fc")
        usual = det.usual(st, start, end) if st else None
        if not (first <= start and end - timedelta(days=1) <= last and fc and fc["cycle_start"] == key and usual):
            continue
        rows = [by_date.get((start + timedelta(days=i)).isoformat()) for i in range(length)]
        prev_start = date(start.year - (start.month == 1), (start.month - 2) % 12 + 1, 1)
        prev = [by_date.get((prev_start + timedelta(days=i)).isoformat()) for i in range((start - prev_start).days)]
        cycles.append({
            "start": key, "length": length, "mid": length // 2, "state": st,
            "rows": rows,
            "kwh": [round(r["kwh"], 3) if r else None for r in rows],      # the detector keeps Wh
            "usable": [bool(r) and _complete(r) for r in rows],
            "prev_kwh": [p["kwh"] if p else None for p in prev],
            "yhat": fc["yhat"], "usual_kwh": usual["kwh_per_day"] * length,
            "basis": usual["basis"], "alert_day": alerts.get(key),
        })
    return {"household": name, "tz": tz, "cycles": cycles, "fits": cache.hits + cache.misses,
            "fits_run": cache.misses, "fit_cpu_ms": cache.fit_cpu_ms, "days": len(days),
            "sub_daily": any(d.get("night_kwh") is not None for d in days[:5])}


def _complete(day: dict) -> bool:
    exp, got = day.get("expected_intervals"), day.get("intervals")
    return not exp or got is None or got >= 0.9 * exp


# --------------------------------------------------------------------------------------- the cases

def inject(cycle: dict, case: str) -> tuple[list[float | None], float, float] | None:
    """The cycle's daily kWh with the case injected from mid-cycle: (kWh, the factor or kWh/day added, the
    bill vs usual); None when the case cannot apply."""
    shape, factor = CASES[case]
    kwh, mid, usual = cycle["kwh"], cycle["mid"], cycle["usual_kwh"]
    first = sum(k for k in kwh[:mid] if k is not None)
    second = [k for k in kwh[mid:] if k is not None]
    if not second or sum(second) <= 0:
        return None
    need = BILL_TARGET * usual - first
    n = len(kwh) - mid
    if shape == "step":
        f = factor if factor is not None else max(1.0, need / sum(second))
        out = kwh[:mid] + [None if k is None else k * f for k in kwh[mid:]]
    elif shape == "ramp":
        w = [(j + 1) / n for j in range(n)]
        extra = sum(k * wj for k, wj in zip(kwh[mid:], w) if k is not None)
        g = max(0.0, (need - sum(second)) / extra) if extra > 0 else 0.0      # factor at the end is 1 + g
        f = 1 + g
        out = kwh[:mid] + [None if k is None else k * (1 + g * wj) for k, wj in zip(kwh[mid:], w)]
    else:
        c = max(0.0, (need - sum(second)) / len(second))
        f = c
        out = kwh[:mid] + [None if k is None else k + c for k in kwh[mid:]]
    out = [None if k is None else round(k, 3) for k in out]                 # the detector keeps Wh
    total = sum(k for k in out if k is not None)
    return out, f, total / usual - 1


def _injected_days(cycle: dict, case: str, f: float) -> list[dict]:
    """Day records of the second half of the cycle with the case injected (for the real detector)."""
    shape = CASES[case][0]
    mid, n = cycle["mid"], cycle["length"] - cycle["mid"]
    out = []
    for j, row in enumerate(cycle["rows"][mid:]):
        if row is None:
            continue
        r = dict(row)
        if shape == "base":
            r["kwh"] = row["kwh"] + f
            if row.get("night_kwh") is not None:
                r["night_kwh"] = row["night_kwh"] + f        # a new base load shows at night first
        else:
            scale = f if shape == "step" else 1 + (f - 1) * (j + 1) / n
            for k in ("kwh", "estimated_kwh", "catch_up_kwh", "night_kwh", "evening_kwh"):
                if r.get(k) is not None:
                    r[k] = r[k] * scale
        out.append(r)
    return out


# ---------------------------------------------------------------------------------------- the decision

def decide(kwh: list[float | None], usable: list[bool], yhat: list[float], usual_kwh: float,
           params: dict, *, alert_pct: float = ALERT_PCT, edge: int = 7, min_excess_kwh: float = 5.0,
           min_ratio_days: int = 3, from_day: int = 0) -> int | None:
    """The first cycle day (index, >= ``from_day``) on which the detector alerts, from the stored forecast:
    the same projection as :func:`detectors.bill.project` (days without estimated reads) and the same test
    as the detector's ``_decide``; None for no alert."""
    length = len(kwh)
    k = params["ratio_days"]
    margin, min_ratio = params["early_margin_pct"], params["min_level_ratio"]
    power = params.get("margin_power", 1.0)
    trend_days, trend_weight = params.get("trend_days", 0), params.get("trend_weight", 0.0)
    measured = missing = 0.0
    window: list[tuple[float, float]] = []                 # the last k usable days: (kWh, forecast)
    daily: list[tuple[int, float]] = []                    # the cycle's usable days: (index, kWh / forecast)
    rest = sum(yhat[:length])
    for i in range(length):
        rest -= yhat[i]
        if kwh[i] is None:                                    # no record: no decision that day either
            missing += yhat[i]
            continue
        measured += kwh[i]
        if usable[i]:
            window.append((kwh[i], yhat[i]))                  # type: ignore[arg-type]
            if len(window) > k:
                window.pop(0)
            if trend_days and yhat[i] > 0:
                daily.append((i, kwh[i] / yhat[i]))           # type: ignore[operator]
        if i < max(edge, from_day) or length - 1 - i < edge:
            continue
        a, f = sum(w[0] for w in window), sum(w[1] for w in window)
        if len(window) < min_ratio_days or f <= 0:
            continue
        r = min(4.0, max(0.25, a / f))
        proj = measured + r * (missing + rest)
        if trend_days and len(daily) >= trend_days:
            b = _rising(daily[-trend_days:], params.get("trend_t", TREND_T))
            if b:                                             # the level's rise carried over the days ahead
                proj += trend_weight * b * sum(yhat[j] * (j - i) for j in range(i + 1, length))
        required = alert_pct + margin * ((length - 1 - i) / length) ** power
        if usual_kwh > 0 and 100 * (proj / usual_kwh - 1) >= required and proj - usual_kwh >= min_excess_kwh \
                and r >= min_ratio:
            return i
    return None


def _rising(points: list[tuple[int, float]], t_min: float = TREND_T) -> float:
    """The least-squares slope (per day) of ``points`` when it rises with a t statistic >= ``t_min``, else 0."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if n < 3 or sxx <= 0:
        return 0.0
    b = sum((x - mx) * (y - my) for x, y in points) / sxx
    sse = sum((y - my - b * (x - mx)) ** 2 for x, y in points)
    se = math.sqrt(sse / (n - 2) / sxx)
    return b if b > 0 and (se == 0 or b / se >= t_min) else 0.0


def naive(kwh: list[float | None], prev: list[float | None], edge: int = 7, factor: float = NAIVE_FACTOR
          ) -> int | None:
    """The first cycle day (index) on which the cycle so far, projected to the whole cycle (mean of the days
    measured x the cycle's length), exceeds the last cycle's bill x ``factor`` (its measured days' mean x its
    length); None for no alert or no last cycle."""
    got = [p for p in prev if p is not None]
    if len(got) < 0.8 * len(prev) or not got:
        return None
    last_bill = sum(got) / len(got) * len(prev)
    length = len(kwh)
    total = n = 0
    for i, k in enumerate(kwh):
        if k is not None:
            total, n = total + k, n + 1
        if edge <= i <= length - 1 - edge and n and total / n * length > factor * last_bill:
            return i
    return None


def oracle(kwh: list[float | None], usual_kwh: float, forecaster: str, *, from_day: int = 0, edge: int = 7,
           alert_pct: float = ALERT_PCT) -> int | None:
    """The first cycle day (index, >= ``from_day``, outside the first and last ``edge`` days) on which a
    projection that knows the cycle's true usual bill ``usual_kwh`` exceeds it by ``alert_pct``; None for none.

    The projection is the kWh measured so far plus the rest of the cycle (the days ahead and any day without a
    record) forecast from the cycle so far by ``forecaster``: ``"level"``, the mean of the last
    ``ORACLE_LEVEL_DAYS`` days with a record carried flat; ``"trend"``, the least-squares line through the
    last ``ORACLE_TREND_DAYS`` days with a record carried forward (never below 0 kWh a day). No margin, no
    minimum excess: an upper bound on what a causal rule with that threshold and that forecaster can catch."""
    for i, pct in _oracle_pcts(kwh, usual_kwh, forecaster, from_day, edge):
        if pct >= alert_pct:
            return i
    return None


def oracle_peak(kwh: list[float | None], usual_kwh: float, forecaster: str, *, from_day: int = 0, edge: int = 7
                ) -> float | None:
    """The highest % above ``usual_kwh`` the :func:`oracle`'s projection reaches on the days it may alert:
    it alerts at a threshold iff this is at least the threshold."""
    return max((pct for _, pct in _oracle_pcts(kwh, usual_kwh, forecaster, from_day, edge)), default=None)


def _oracle_pcts(kwh: list[float | None], usual_kwh: float, forecaster: str, from_day: int, edge: int
                 ) -> Iterable[tuple[int, float]]:
    length = len(kwh)
    measured = 0.0
    seen: list[tuple[int, float]] = []
    if usual_kwh <= 0:
        return
    for i in range(length):
        if kwh[i] is not None:
            measured += kwh[i]                                # type: ignore[operator]
            seen.append((i, kwh[i]))                          # type: ignore[arg-type]
        if i < max(edge, from_day) or length - 1 - i < edge or not seen:
            continue
        todo = [j for j in range(length) if j > i or kwh[j] is None]
        if forecaster == "level":
            last = [k for _, k in seen[-ORACLE_LEVEL_DAYS:]]
            rest = sum(last) / len(last) * len(todo)
        else:
            pts = seen[-ORACLE_TREND_DAYS:]
            mx = sum(x for x, _ in pts) / len(pts)
            my = sum(y for _, y in pts) / len(pts)
            sxx = sum((x - mx) ** 2 for x, _ in pts)
            b = sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else 0.0
            rest = sum(max(0.0, my + b * (j - mx)) for j in todo)
        yield i, 100 * ((measured + rest) / usual_kwh - 1)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of k successes in n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def _grid(spec: dict | None = None) -> list[dict]:
    spec = spec or GRID
    out = [{}]
    for key in spec:
        out = [{**p, key: v} for p in out for v in spec[key]]
    return out


# ------------------------------------------------------------------------------------------ evaluation

def evaluate(shared: Path | None = None, sample: int | None = DEFAULT_SAMPLE, *, quick: bool = False,
             progress: bool = True, cache_root: Path | None = None, check: bool = True,
             try_trend: bool = False) -> dict:
    """The whole evaluation; a JSON-ready dict (see the module docstring)."""
    from tqdm import tqdm

    from detectors.bill import BillConfig

    t0, cpu0 = time.monotonic(), time.process_time()
    shared = Path(shared) if shared else default_shared()
    if quick:
        sample = 18
    homes = households(shared, sample)
    cache_root = cache_root or CACHE
    reps = [replay_household(n, tz, days, cache_root)
            for n, tz, days in tqdm(homes, desc="households (detector, untouched)", disable=not progress,
                                    file=sys.stderr)]
    grid = _grid() + (_grid(TREND_GRID) if try_trend else [])
    defaults = {k: getattr(BillConfig(), k) for k in GRID}
    if defaults not in grid:
        grid.append(defaults)
    # per household, per cycle: the outcome of every case under every grid point
    table: dict[str, list[dict]] = {}
    for rep in tqdm(reps, desc="cases x grid", disable=not progress, file=sys.stderr):
        table[rep["household"]] = [_cycle_outcomes(c, grid) for c in rep["cycles"]]
    names = [r["household"] for r in reps]
    order = names[:]
    random.Random(SAMPLE_SEED).shuffle(order)
    fold_of = {n: i % FOLDS for i, n in enumerate(order)}
    chosen = []
    held: dict[str, int] = {}
    for fold in range(FOLDS):
        train = [n for n in names if fold_of[n] != fold]
        best = _choose(table, train, grid)
        chosen.append({"fold": fold, "households": sum(fold_of[n] == fold for n in names), "params": grid[best],
                       "train": _score(table, train, best)})
        for n in names:
            if fold_of[n] == fold:
                held[n] = best
    out: dict[str, Any] = {
        "households": len(names), "sub_daily": [r["household"] for r in reps if r["sub_daily"]],
        "sample": None if not sample else {"of": 280, "n": len(names) - len(HOUSEHOLDS), "seed": SAMPLE_SEED},
        "quick": quick, "folds": chosen, "defaults": defaults,
        "fits": sum(r["fits"] for r in reps), "fits_run": sum(r["fits_run"] for r in reps),
        "fit_cpu_s": round(sum(r["fit_cpu_ms"] for r in reps) / 1000, 1),
        "customer_cycles": sum(len(r["cycles"]) for r in reps),
    }
    out["held_out"] = _report(table, names, held)
    best_all = _choose(table, names, grid)
    out["chosen_on_all"] = grid[best_all]
    if try_trend:                      # what the gated trend does, in-sample on all households, beside the choice
        out["trend_points"] = [{"params": grid[gi], **_score(table, names, gi)} for gi in range(len(grid))
                               if "trend_days" in grid[gi] or gi == best_all]
    default_idx = grid.index(defaults)
    out["defaults_in_sample"] = _report(table, names, {n: default_idx for n in names})
    if check:
        out["check"] = _check(reps, table, default_idx, progress)
    out["wall_s"] = round(time.monotonic() - t0, 1)
    out["cpu_s"] = round(time.process_time() - cpu0, 1)
    return out


def _cycle_outcomes(c: dict, grid: list[dict]) -> dict:
    """What every grid point and the naive rule do on this cycle, untouched and in every case."""
    L, mid = c["length"], c["mid"]
    final = sum(k for k in c["kwh"] if k is not None) / c["usual_kwh"] - 1
    untouched = [decide(c["kwh"], c["usable"], c["yhat"], c["usual_kwh"], p) for p in grid]
    got = [k for k in c["kwh"] if k is not None]
    true_usual = sum(got) / len(got) * L                    # the oracle's usual: the un-spiked cycle itself
    o: dict[str, Any] = {"start": c["start"], "final": final, "natural": final >= 0.3, "basis": c["basis"],
                         "winter": c["start"][5:7] in ("11", "12", "01", "02"), "untouched": untouched,
                         "naive": naive(c["kwh"], c["prev_kwh"]),
                         "oracle": {f: oracle_peak(c["kwh"], true_usual, f) for f in ORACLES}, "cases": {}}
    if final >= 0.3:
        return o
    for case in CASES:
        inj = inject(c, case)
        if inj is None:
            continue
        kwh, f, bill = inj
        days = [None if u is not None and u < mid else
                decide(kwh, c["usable"], c["yhat"], c["usual_kwh"], p, from_day=mid)
                for p, u in zip(grid, untouched)]
        nv = naive(kwh, c["prev_kwh"])
        o["cases"][case] = {"days": days, "factor": f, "bill": bill, "naive": None if nv is None else nv,
                            "naive_before": o["naive"] is not None and o["naive"] < mid, "length": L, "mid": mid,
                            "oracle": {f: oracle_peak(kwh, true_usual, f, from_day=mid) for f in ORACLES}}
    return o


def _score(table: dict, names: Iterable[str], gi: int) -> dict:
    untouched = false = natural = alerted = winter = winter_false = 0
    found = {TARGET: 0, RAMP: 0}
    n = {TARGET: 0, RAMP: 0}
    for name in names:
        for o in table[name]:
            if o["natural"]:
                natural += 1
                alerted += o["untouched"][gi] is not None
                continue
            untouched += 1
            false += o["untouched"][gi] is not None
            if o["winter"]:
                winter += 1
                winter_false += o["untouched"][gi] is not None
            for case in (TARGET, RAMP):
                t = o["cases"].get(case)
                if t is None or t["days"][gi] is None and o["untouched"][gi] is not None \
                        and o["untouched"][gi] < t["mid"]:
                    continue
                n[case] += 1
                found[case] += t["days"][gi] is not None
    return {"false_rate": false / untouched if untouched else 0.0,
            "winter_false_rate": winter_false / winter if winter else 0.0,
            "recall": found[TARGET] / n[TARGET] if n[TARGET] else 0.0,
            "ramp_recall": found[RAMP] / n[RAMP] if n[RAMP] else 0.0,
            "natural": alerted / natural if natural else 1.0}


def _choose(table: dict, names: list[str], grid: list[dict]) -> int:
    """The grid point with the best target recall among those with at most MAX_TRAIN_FALSE false alerts, both
    over all untouched cycles and over the winter ones, and at least MIN_TRAIN_NATURAL of the natural spikes
    alerted on ``names`` (ties: fewer false alerts, then the earlier point); else the fewest false alerts."""
    scores = [_score(table, names, gi) for gi in range(len(grid))]
    ok = [gi for gi, s in enumerate(scores)
          if s["false_rate"] <= MAX_TRAIN_FALSE and s["winter_false_rate"] <= MAX_TRAIN_FALSE
          and s["natural"] >= MIN_TRAIN_NATURAL]
    if ok:
        return max(ok, key=lambda gi: (scores[gi]["recall"], -scores[gi]["false_rate"], -gi))
    return min(range(len(grid)), key=lambda gi: (scores[gi]["false_rate"], gi))


def _rate(k: int, n: int) -> dict:
    lo, hi = wilson(k, n)
    return {"k": k, "n": n, "rate": k / n if n else None, "ci95": [round(lo, 4), round(hi, 4)]}


def _report(table: dict, names: list[str], pick: dict[str, int]) -> dict:
    """Pooled and per-household figures of the detector (grid point ``pick[household]``) and the naive rule."""
    cols = ("det", "naive", *(f"oracle_{f}" for f in ORACLES))
    rows: dict[str, dict[str, list[int]]] = defaultdict(lambda: {col: [0, 0] for col in cols})
    per_house: dict[str, dict[str, list[int]]] = {}
    lead: dict[str, list[int]] = defaultdict(list)
    for name in names:
        gi = pick[name]
        mine: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for o in table[name]:
            alert, nv = o["untouched"][gi], o["naive"]
            groups = ["natural spikes (ended >= 30 % above usual)"] if o["natural"] else \
                ["untouched: false alerts"] + (["  of which winter (Nov-Feb)"] if o["winter"] else []) \
                + (["  of which first year (recent cycles basis)"] if o["basis"] != "same period last year" else [])
            for g in groups:
                rows[g]["det"][0] += alert is not None
                rows[g]["det"][1] += 1
                rows[g]["naive"][0] += nv is not None
                rows[g]["naive"][1] += 1
                for f in ORACLES:                      # its usual is the cycle itself: no natural spikes
                    if not o["natural"]:
                        rows[g][f"oracle_{f}"][0] += _hit(o["oracle"][f], ALERT_PCT)
                        rows[g][f"oracle_{f}"][1] += 1
            if not o["natural"]:
                mine["false"][0] += alert is not None
                mine["false"][1] += 1
            for case, t in o["cases"].items():
                day = t["days"][gi]
                if not (alert is not None and alert < t["mid"]):      # not already alerted before the spike
                    rows[case]["det"][0] += day is not None
                    rows[case]["det"][1] += 1
                    mine[case][0] += day is not None
                    mine[case][1] += 1
                    if day is not None:
                        lead[case].append(t["length"] - 1 - day)
                if not t["naive_before"]:
                    rows[case]["naive"][0] += t["naive"] is not None and t["length"] - 1 - t["naive"] >= 7
                    rows[case]["naive"][1] += 1
                for f in ORACLES:                      # scanned from mid-cycle: every cycle of the case counts
                    rows[case][f"oracle_{f}"][0] += _hit(t["oracle"][f], ALERT_PCT)
                    rows[case][f"oracle_{f}"][1] += 1
        per_house[name] = {k: list(v) for k, v in mine.items()}
    out = {"rows": {g: {col: _rate(*v[col]) for col in cols} for g, v in rows.items()},
           "median_days_left": {c: statistics.median(v) for c, v in lead.items() if v},
           "min_days_left": {c: min(v) for c, v in lead.items() if v},
           "per_household": per_house}
    out["households"] = _per_household_summary(per_house)
    out["oracle_at_5pct_false"] = _oracle_matched(table, names)
    return out


def _hit(peak: float | None, threshold: float) -> bool:
    return peak is not None and peak >= threshold


def _oracle_matched(table: dict, names: list[str], false: float = 0.05) -> dict:
    """Per forecaster: the lowest threshold at which the oracle alerts on at most ``false`` of the untouched
    cycles (never under ALERT_PCT), and its recall per case there."""
    out = {}
    for f in ORACLES:
        peaks = sorted((o["oracle"][f] if o["oracle"][f] is not None else -math.inf)
                       for n in names for o in table[n] if not o["natural"])
        allowed = int(false * len(peaks))            # cycles allowed to reach the threshold
        th = ALERT_PCT
        if allowed < len(peaks) and peaks[len(peaks) - 1 - allowed] >= th:
            th = peaks[len(peaks) - 1 - allowed] + 1e-6          # just above the (allowed+1)-th highest peak
        cases = defaultdict(lambda: [0, 0])
        for n in names:
            for o in table[n]:
                for case, t in o["cases"].items():
                    cases[case][0] += _hit(t["oracle"][f], th)
                    cases[case][1] += 1
        out[f] = {"threshold_pct": round(th, 1), "false": _rate(sum(p >= th for p in peaks), len(peaks)),
                  "cases": {c: _rate(*v) for c, v in cases.items()}}
    return out


def _per_household_summary(per_house: dict) -> dict:
    """Across households: the distribution of the target recall and of the false-alert rate."""
    rec = sorted(v[TARGET][0] / v[TARGET][1] for v in per_house.values() if v.get(TARGET) and v[TARGET][1])
    fal = sorted(v["false"][0] / v["false"][1] for v in per_house.values() if v.get("false") and v["false"][1])

    def q(xs: list[float], p: float) -> float | None:
        return None if not xs else xs[min(len(xs) - 1, int(p * len(xs)))]

    return {"target_recall": {"households": len(rec), "min": q(rec, 0), "p10": q(rec, 0.1), "median": q(rec, 0.5),
                              "at_least_90pct": sum(r >= 0.9 for r in rec)},
            "false_rate": {"households": len(fal), "median": q(fal, 0.5), "p90": q(fal, 0.9), "max": q(fal, 1.0),
                           "none": sum(r == 0 for r in fal), "over_10pct": sum(r > 0.1 for r in fal)}}


def _check(reps: list[dict], table: dict, gi: int, progress: bool) -> dict:
    """The real detector (default parameters) against :func:`decide` on every case of every cycle: the
    same alert day, untouched (from phase 1) and injected (``process`` from the mid-cycle state)."""
    from tqdm import tqdm

    from detectors.api import Context
    from detectors.bill import BillSpikeDetector

    det = BillSpikeDetector()
    same = total = 0
    differ: list[dict] = []
    drivers: dict[str, int] = defaultdict(int)
    for rep in tqdm(reps, desc="check against the real detector", disable=not progress, file=sys.stderr):
        cust = _customer(rep["household"], rep["tz"])
        ctx = Context(meter_id=cust["meter_id"], customer=cust)
        for c, o in zip(rep["cycles"], table[rep["household"]]):
            total += 1
            ok = c["alert_day"] == o["untouched"][gi]
            same += ok
            if not ok:
                differ.append({"household": rep["household"], "cycle": c["start"], "case": "untouched",
                               "detector": c["alert_day"], "decide": o["untouched"][gi]})
            if c["alert_day"] is not None and c["alert_day"] < c["mid"]:
                continue
            for case, t in o["cases"].items():
                state, day = c["state"], None
                for rec in _injected_days(c, case, t["factor"]):
                    state, found = det.process(state, [rec], ctx)
                    if found:
                        ev = found[0]["evidence"]
                        day = c["length"] - 1 - ev["days_left"]
                        if rep["sub_daily"] and case.startswith("base"):
                            drivers[ev["driver"].split(" up ")[0]] += 1
                        break
                total += 1
                ok = day == t["days"][gi]
                same += ok
                if not ok:
                    differ.append({"household": rep["household"], "cycle": c["start"], "case": case,
                                   "detector": day, "decide": t["days"][gi]})
    return {"same": same, "total": total, "differ": differ[:20], "base_load_drivers_sub_daily": dict(drivers)}


# --------------------------------------------------------------------------------------------- report

def _fmt(r: dict) -> str:
    if not r["n"]:
        return "-"
    lo, hi = r["ci95"]
    return f"{r['k']}/{r['n']} = {100 * r['rate']:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]"


def format_report(res: dict) -> str:
    """The held-out table, the per-household spread, the parameters chosen and the check."""
    h = res["held_out"]
    order = ["untouched: false alerts", "  of which winter (Nov-Feb)", "  of which first year (recent cycles basis)",
             "natural spikes (ended >= 30 % above usual)", *[f"{c}" for c in CASES]]
    head = ["cycles (1st-of-month billing)", "bill_spike, held-out [95 % CI]", "naive rule [95 % CI]",
            f"oracle, level {ORACLE_LEVEL_DAYS} d [95 % CI]", f"oracle, trend {ORACLE_TREND_DAYS} d [95 % CI]"]
    cols = ("det", "naive", *(f"oracle_{f}" for f in ORACLES))
    rows = []
    for g in order:
        if g in h["rows"]:
            label = g if g not in CASES else f"recall >= 7 d lead: {g}"
            rows.append([label, *(_fmt(h["rows"][g][col]) for col in cols)])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [head, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    lines.append(f"oracle: knows the cycle's true usual bill (its own un-spiked total) and alerts on the first day "
                 f"(from mid-cycle for the spikes) >= 7 d before the end whose projection is >= {ALERT_PCT:g} % "
                 f"above it: the kWh so far plus the rest at the mean of the last {ORACLE_LEVEL_DAYS} days (level) or "
                 f"on the least-squares line of the last {ORACLE_TREND_DAYS} days (trend); its untouched rows are "
                 f"its false alerts")
    for f, m in h.get("oracle_at_5pct_false", {}).items():
        lines.append(f"oracle, {f}, at the threshold that leaves <= 5 % of untouched cycles alerted "
                     f"({m['threshold_pct']:g} %; false alerts {_fmt(m['false'])}): "
                     + "; ".join(f"{c} {_fmt(r)}" for c, r in m["cases"].items()))
    s = res["sample"]
    lines += [
        "",
        f"{res['households']} households ({', '.join(res['sub_daily'])} sub-daily; "
        + (f"{s['n']} of the {s['of']} daily LCL households, random.Random({s['seed']}) sample"
           if s else "all daily LCL households") + f"), {res['customer_cycles']} evaluated customer-cycles; "
        f"median days left at the alert: "
        + ", ".join(f"{c} {v}" for c, v in h["median_days_left"].items())
        + f"; fewest days left: {min(h['min_days_left'].values()) if h['min_days_left'] else '-'}",
    ]
    hh = h["households"]
    t, f = hh["target_recall"], hh["false_rate"]
    lines.append(f"per household ({TARGET}): recall min {_p(t['min'])}, 10th percentile {_p(t['p10'])}, median "
                 f"{_p(t['median'])}, {t['at_least_90pct']} of {t['households']} households >= 90 %; false-alert rate "
                 f"median {_p(f['median'])}, 90th percentile {_p(f['p90'])}, max {_p(f['max'])}, "
                 f"{f['none']} of {f['households']} households with none")
    lines.append(f"parameters chosen on the other four folds (there: false alerts <= {100 * MAX_TRAIN_FALSE:.0f} % "
                 f"of all and of winter cycles, natural spikes alerted >= {100 * MIN_TRAIN_NATURAL:.0f} %, then the best "
                 f"'{TARGET}' recall):")
    for c in res["folds"]:
        t = c["train"]
        lines.append(f"  fold {c['fold']} ({c['households']} households): {_params(c['params'])} "
                     f"(train: false {_p(t['false_rate'])}, winter {_p(t['winter_false_rate'])}, natural "
                     f"{_p(t['natural'])}, recall {_p(t['recall'])}, ramp {_p(t['ramp_recall'])})")
    lines.append(f"chosen on all households: {_params(res['chosen_on_all'])}; the detector's defaults: "
                 f"{_params(res['defaults'])}")
    if res.get("trend_points"):
        lines.append("--try-trend, in-sample on all households (false alerts, winter false alerts, natural spikes, "
                     f"'{TARGET}' and '{RAMP}' recall):")
        for t in res["trend_points"]:
            lines.append(f"  {_params(t['params'])}: {_p(t['false_rate'])}, {_p(t['winter_false_rate'])}, "
                         f"{_p(t['natural'])}, {_p(t['recall'])}, {_p(t['ramp_recall'])}")
    if "check" in res:
        ck = res["check"]
        lines.append(f"check: the real detector (defaults) and decide() alert on the same day in {ck['same']} of "
                     f"{ck['total']} cycle-cases; base-load alerts on the sub-daily households named: "
                     + (", ".join(f"{k} {v}" for k, v in ck["base_load_drivers_sub_daily"].items()) or "-"))
        for d in ck["differ"][:5]:
            lines.append(f"  differs: {d}")
    lines.append(f"Prophet fits {res['fits']} ({res['fits_run']} run now, {res['fit_cpu_s']} CPU-s; the rest from "
                 f"the cache); wall {res['wall_s']} s, CPU {res['cpu_s']} s in this process")
    return "\n".join(lines)


def _p(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f} %"


def _params(p: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in p.items())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bill_eval", description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=None, help="the shared folder (default: $GRIDWATCH_SHARED or "
                                                               "../shared beside the repository)")
    ap.add_argument("--households", type=int, default=DEFAULT_SAMPLE,
                    help=f"daily LCL households, a fixed random sample (default {DEFAULT_SAMPLE}; 0: all 280)")
    ap.add_argument("--quick", action="store_true", help="18 daily households + the two sub-daily ones")
    ap.add_argument("--no-check", action="store_true", help="skip replaying the cases through the real detector")
    ap.add_argument("--try-trend", action="store_true",
                    help="add grid points with a gated trend (see TREND_GRID; the detector has none)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead of the table")
    args = ap.parse_args(argv)
    shared = args.shared or default_shared()
    if not (shared / "data").is_dir():
        print(f"no shared data folder at {shared / 'data'} (see ../shared/data/README.md)", file=sys.stderr)
        return 2
    res = evaluate(shared, args.households or None, quick=args.quick, check=not args.no_check,
                   try_trend=args.try_trend)
    if args.json:
        print(json.dumps(res, indent=1, default=str))
    else:
        print(format_report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
