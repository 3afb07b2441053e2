"""Bill-spike alerts: a customer's projected bill for the current billing cycle is well above the usual one.

Input: the customer's closed days of usage (:mod:`detectors.usage`), as they close. A cycle starts on
``bill_cycle_day`` (1..28, default 1) of each month in the customer's local dates and ends the day before the
same day of the next month. Every day the detector projects the cycle's bill::

    projected kWh = measured kWh so far + r * (Prophet forecast of the days not yet measured)
    r             = measured / forecast over the last ``ratio_days`` (4) usable days of the cycle

Prophet supplies the shape of the rest of the cycle (weekly pattern, yearly season, the country's public
holidays) and its uncertainty; r puts it on the level the household is at now, measured against the
forecast's own shape. The projection (times the tariff's price, in the tariff's currency) is compared with
the *usual bill*:

- **same period last year** (the same dates one year earlier) when at least 80 % of those days are in the
  history and that period was not far below the eight weeks around it (under 60 %: a holiday or an empty
  house is no measure of a usual bill);
- else **recent cycles** (a customer in the first year, or after a vacancy): the highest of the last three
  complete cycles, per day, times this cycle's length. The highest rather than the mean, because on a
  rising season (autumn into winter) the mean of the last three cycles would alert nearly every household.

An alert (one ``event`` finding) needs all of:

- the projection at least ``bill_alert_pct`` (the customer's preference, default 30) above the usual bill,
  plus a margin for what is not measured yet: ``early_margin_pct`` (120) points times the share of the cycle
  still ahead ((days after today) / cycle days) to the power ``margin_power`` (3). In a 30-day cycle that is
  +47 points on day 7 (the first an alert may come), +12 on day 15, +1.5 on day 22 (the last): a projection made early is mostly forecast and the level it carries can still drift
  (a cold week, a guest), late it is mostly measured. A margin linear in that share (power 1) either held
  the late alerts back or let the early, mostly false, ones through;
- the level r at least ``min_level_ratio`` (1.0): use this cycle is not below what the forecast, which has
  seen the household's last months and last year's season, expected. A season the forecast expects high
  (a winter that is merely winter) does not alert on its own;
- at least ``min_excess_kwh`` above the usual bill;
- a day that is neither in the first nor in the last ``edge_days`` (7) days of the cycle, and no alert yet
  in this cycle.

The four numbers (4 days, 120 points, power 3, 1.0) were chosen by cross-validation across households
(``python -m benchmarks.bill_eval``: 152 real households, five folds; README, "Bill alerts"): on held-out
households 2.3 % of untouched cycles alerted (3.8 % of the winter ones), 92.2 % of the bills a step from
mid-cycle brought to 40 % above usual alerted at least 7 days before the end, 29.4 % of those a ramp brought
there (the naive projected rule: 8.4 %, 10.8 %, 59.0 % and 23.2 %). Prophet's interval as evidence
(alerting on its low end) and the level's trend carried over the rest of the cycle were tried and never
chosen, the trend also gated (carried only when the last 5 or 7 days' rise is significant:
``python -m benchmarks.bill_eval --try-trend``); the interval is reported in the alert.

Estimated reads and outage catch-up cannot cause it: their kWh count at no more than the level the forecast
expects for their day, r uses only complete days of measured reads, and the fits leave such days out.

Scaling: where the Prophet fits happen, and how many
----------------------------------------------------
Measured with ``python -m benchmarks.bill_forecast`` on this 2-core machine (at a load average of 9, which
inflates CPU time): a fit of ~460 days of history with the cycle's forecast, 300 predictive samples and the
country's holidays costs ~133 ms of CPU (110 ms in the fitting process and 23 ms in the CmdStan child process
it starts), plus ~1 CPU-s once per process to import Prophet. Refitting every customer every day would cost
that per customer per day, in a burst on every cycle day. So fits never run in :meth:`BillSpikeDetector.process`:

- ``process(state, days, ctx)`` stores the days, projects the bill from the *stored* forecast (the cycle's
  per-day values and the quantiles of the remaining days' total) and decides. It takes ~60-80 µs per day,
  O(length of a cycle), and never imports Prophet.
- ``fit_request(state, ctx)`` returns a picklable payload when a fit is due, else ``None``: **one fit per
  customer per cycle**, forecasting the whole cycle at once, on a day between the cycle's first and seventh
  day chosen by a hash of the customer id. No alert is allowed in the first seven days anyway, and the hash
  spreads the fits of customers who share a ``bill_cycle_day`` (the default is 1) over seven days instead of
  one. The fit sees the history without its vacant days (under ``vacant_share`` of the median day: an empty
  house or a move is no measure of the household) and with the public holidays of the customer's country
  (``country`` in the customer record, else the country of its timezone; none when Prophet does not know
  it). There is no refit when the projection crosses: the level ratio r already carries what the cycle has
  shown, and a decision that needs no second fit is one the evaluation replays exactly.
- the module-level :func:`fit` (``BillSpikeDetector.fit``, the :class:`~detectors.api.Fittable` hook) runs
  Prophet on a payload. It depends on the payload alone and pickles by name, so a ``ProcessPoolExecutor`` can
  run it; it is quiet (no cmdstanpy or Prophet logging, no warnings) and
  deterministic (its samples are seeded from the payload).
- ``apply_fit(state, result, ctx)`` stores the forecast and decides with it at once. It ignores a result for
  a cycle that is no longer current.

So a customer costs one fit per cycle: 4.3 ms of fit CPU per day plus 0.4 ms for the daily update and its
state's JSON round trip, 4.7 ms in all (same benchmark). Prophet is not what limits a worker: its reading
path costs ~10 ms per customer per day (96 readings).

State (JSON, ~10 KB with a full history): the last ``history_days`` (460) days in integer-Wh columns. That is
a year, plus a cycle and eight weeks on either side of last year's period. It also holds the current
cycle's flags and the stored forecast (the cycle's daily yhat with each day's interval, and the intervals of
the remaining totals; see :class:`_History`).

An alert's evidence also holds ``series``: the cycle's days so far, the comparison period's days and the
forecast of the rest of the cycle with its interval, one row per day, for a picture (see :func:`_series`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import resource
import time
import warnings
import zlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Iterable, Sequence
from zoneinfo import ZoneInfo

from .api import Context, Fittable, param
from .usage import local_date

__all__ = ["BillConfig", "BillSpikeDetector", "fit", "cycle_bounds", "usual_bill", "KIND",
           "BASIS_LAST_YEAR", "BASIS_RECENT"]

KIND = "bill_spike"
BASIS_LAST_YEAR = "same period last year"
BASIS_RECENT = "recent cycles"

#: the driver compares the last this many usable days of the cycle (a whole week) with the usual period
DRIVER_DAYS = 7

# the fields of a history row (see _History.get)
KWH, EST, CATCH_UP, NIGHT, EVENING, COMPLETE = range(6)


@dataclass(frozen=True)
class BillConfig:
    edge_days: int = param(7, "no alert in the first or the last this many days of a billing cycle")
    default_alert_pct: float = param(30.0, "alert threshold (% above the usual bill) when the customer has set "
                                           "none in preferences.bill_alert_pct")
    min_excess_kwh: float = param(5.0, "an alert also needs the projection this many kWh above the usual bill "
                                       "(no alert for +50 % of an empty flat's 2 kWh)")
    history_days: int = param(460, "days of usage kept per customer: a year, the cycle and 8 weeks either side")
    min_history_days: int = param(28, "usable days of history before the first forecast")
    ratio_days: int = param(4, "the last this many usable days of the cycle set the level of the forecast")
    min_ratio_days: int = param(3, "no projection from fewer usable days than this in the cycle")
    early_margin_pct: float = param(120.0, "the threshold is raised by this many points times the share of the "
                                          "cycle still ahead: the forecast part of the bill is uncertain, the "
                                          "measured part is not")
    margin_power: float = param(3.0, "... times that share to this power: 1 linear; 2 falls faster towards the "
                                     "cycle's end (the level can drift over the days still ahead, so the "
                                     "uncertainty of their use grows faster than their number)")
    fit_spread_days: int = param(7, "the cycle fit runs on one of the first this many days of the cycle "
                                    "(a hash of the customer id), so fits do not all fall on one day")
    yearly_order: int = param(3, "Fourier order of Prophet's yearly seasonality (used with a year of history)")
    weekly_order: int = param(3, "Fourier order of Prophet's weekly seasonality")
    samples: int = param(300, "Prophet's predictive samples, for the interval of the projection")
    interval: float = param(0.8, "width of the projection interval reported (0.8: the 10th to the 90th "
                                 "percentile)")
    last_year_coverage: float = param(0.8, "the same period last year is used when this share of its days is "
                                           "in the history (else recent cycles)")
    holiday_ratio: float = param(0.6, "... and its daily mean is at least this share of the 8 weeks around it")
    recent_cycles: int = param(3, "recent-cycles basis: the highest of this many complete cycles")
    min_level_ratio: float = param(1.0, "an alert also needs the household's level r (use against the forecast "
                                        "over the last ratio_days) at least this high: a change this cycle, not a "
                                        "level the forecast already expected")
    vacant_share: float = param(0.2, "days under this share of the history's median use (an empty house) are "
                                     "left out of the fits")
    flagged_share: float = param(0.1, "a day whose estimated + catch-up kWh exceed this share is no measure of "
                                      "the level (left out of r and the fits)")


class BillSpikeDetector(Fittable):
    """Projects each customer's bill for the current billing cycle with a Prophet forecast and raises one
    ``bill_spike`` event when it is well above the usual bill (see the module docstring).

    Besides ``process``, the caller runs the model fits (the :class:`~detectors.api.Fittable` hooks): after
    ``process`` it asks ``fit_request``; a payload goes to ``fit`` (anywhere: inline or in a process pool) and
    its result back through ``apply_fit``, which may also return the finding.
    """

    name = "bill_spike"
    detects = "a projected bill well above the usual one (Prophet forecast of the rest of the billing cycle)"
    key = "customer"
    input = "daily"
    kinds = (KIND,)
    Config = BillConfig

    def new_state(self) -> dict:
        return {"v": 1, "history": _History.empty(), "last": None, "cycle": None, "fc": None,
                "counts": {"days": 0, "duplicates": 0, "too_old": 0, "fits": 0, "fit_errors": 0,
                           "stale_fits": 0, "alerts": 0}}

    # -- the daily path: cheap, no model fit --------------------------------------------------------
    def process(self, state: dict | None, inputs: Iterable[dict], ctx: Context) -> tuple[dict, list[dict]]:
        cfg = self.config
        cust = _Customer.of(ctx, cfg)
        st = _copy_state(state) if state is not None else self.new_state()
        hist = _History(st)
        counts = st["counts"]
        findings: list[dict] = []
        for day in sorted((d for d in inputs if d), key=lambda d: _day_date(d, cust.tz)):
            d = _day_date(day, cust.tz)
            row = _row(day)
            if row is None:
                continue
            put = hist.put(d.toordinal(), row, cfg.history_days)
            if put != "new":
                counts["duplicates" if put == "dup" else "too_old"] += 1
                continue
            counts["days"] += 1
            if st["last"] is not None and d <= date.fromisoformat(st["last"]):
                continue                                 # a late day fills its slot; decisions stay with the newest
            st["last"] = d.isoformat()
            start, end = cycle_bounds(d, cust.cycle_day)
            if st["cycle"] is None or st["cycle"]["start"] != start.isoformat():
                st["cycle"] = {"start": start.isoformat(), "end": end.isoformat(), "alerted": False, "fits": 0,
                               "usual": None}
                if st["fc"] is not None and st["fc"]["cycle_start"] != start.isoformat():
                    st["fc"] = None
            found = self._decide(st, hist, cust, d, day.get("ts"))
            findings.extend(found)
        hist.trim(cfg.history_days)
        hist.store(st)
        return st, findings

    # -- the fit path ----------------------------------------------------------------------------------
    def fit_request(self, state: dict | None, ctx: Context) -> dict | None:
        """A payload for :func:`fit` when a fit is due for this customer, else ``None`` (see the module
        docstring: one fit per customer per cycle, early in the cycle)."""
        cfg = self.config
        if not state or not state.get("cycle") or state.get("last") is None:
            return None
        cust = _Customer.of(ctx, cfg)
        cyc = state["cycle"]
        start, end, last = (date.fromisoformat(cyc["start"]), date.fromisoformat(cyc["end"]),
                            date.fromisoformat(state["last"]))
        fc = state.get("fc")
        has_fc = fc is not None and fc["cycle_start"] == cyc["start"]
        if has_fc:
            return None
        offset = zlib.crc32((cust.customer_id or "").encode()) % max(1, cfg.fit_spread_days)
        if (last - start).days < offset or cyc["fits"] >= 2:   # not yet, or it failed twice this cycle
            return None
        hist = _History(state)
        lo = max(hist.first, last.toordinal() - cfg.history_days + 1)
        rows = [hist.get(o) for o in range(lo, last.toordinal() + 1)]
        y = [row[KWH] if row is not None and _usable(row, cfg) else None for row in rows]
        known = sorted(v for v in y if v is not None)
        if len(known) < cfg.min_history_days:
            return None
        # a vacancy (an empty house, a move) is no measure of the household: days far below its median use
        # stay out of the fit, as they stay out of the usual bill
        floor = cfg.vacant_share * known[len(known) // 2]
        y = [None if v is not None and v < floor else v for v in y]
        if sum(v is not None for v in y) < cfg.min_history_days:
            return None
        return {"v": 1, "reason": "cycle", "customer_id": cust.customer_id, "cycle_start": cyc["start"],
                "cycle_days": (end - start).days, "first": date.fromordinal(lo).isoformat(), "y": y,
                "data_end": state["last"], "yearly_order": cfg.yearly_order, "weekly_order": cfg.weekly_order,
                "samples": cfg.samples, "interval": cfg.interval, "country": cust.country,
                "seed": zlib.crc32(f"{cust.customer_id}|{cyc['start']}|{state['last']}".encode())}

    @staticmethod
    def fit(payload: dict) -> dict:
        """The module-level :func:`fit`: Prophet on a :meth:`fit_request` payload."""
        return fit(payload)

    def apply_fit(self, state: dict | None, result: dict, ctx: Context) -> tuple[dict, list[dict]]:
        """Store a :func:`fit` result as the cycle's forecast and decide with it at once."""
        cfg = self.config
        st = _copy_state(state) if state is not None else self.new_state()
        cyc, counts = st.get("cycle"), st["counts"]
        if cyc is None or result.get("cycle_start") != cyc["start"]:
            counts["stale_fits"] += 1
            return st, []
        cyc["fits"] += 1
        if result.get("error"):
            counts["fit_errors"] += 1
            return st, []
        counts["fits"] += 1
        st["fc"] = {k: result[k] for k in ("cycle_start", "data_end", "reason", "yhat", "tail_lo", "tail_hi")}
        if result.get("lo") is not None and result.get("hi") is not None:
            st["fc"]["lo"], st["fc"]["hi"] = result["lo"], result["hi"]
        cust = _Customer.of(ctx, cfg)
        last = date.fromisoformat(st["last"])
        return st, self._decide(st, _History(st), cust, last, None)

    def usual(self, state: dict | None, start: date, end: date) -> dict | None:
        """The usual bill of the cycle ``[start, end)`` from a state's history, as :func:`usual_bill` gives
        it (what an alert compares with; for evaluations and reports)."""
        return usual_bill(_History(state).get, start, end, self.config) if state else None

    # -- deciding ----------------------------------------------------------------------------------------
    def _decide(self, st: dict, hist: "_History", cust: "_Customer", d: date, day_ts: int | None
                ) -> list[dict]:
        cfg = self.config
        cyc = st["cycle"]
        start, end = date.fromisoformat(cyc["start"]), date.fromisoformat(cyc["end"])
        length, i = (end - start).days, (d - start).days
        if cyc["alerted"] or i < cfg.edge_days or length - 1 - i < cfg.edge_days:
            return []
        fc = st.get("fc")
        if fc is None or fc["cycle_start"] != cyc["start"]:
            return []
        if cyc["usual"] is None:
            u = usual_bill(hist.get, start, end, cfg)
            if u is None:
                return []
            cyc["usual"] = u
        usual = cyc["usual"]
        proj = project(hist.get, fc, start, end, d, cfg)
        if proj is None:
            return []
        usual_kwh = usual["kwh_per_day"] * length
        pct = proj["kwh"] / usual_kwh - 1 if usual_kwh > 0 else 0.0
        required = cust.alert_pct + cfg.early_margin_pct * ((length - 1 - i) / length) ** cfg.margin_power
        if usual_kwh <= 0 or pct * 100 < required or proj["kwh"] - usual_kwh < cfg.min_excess_kwh \
                or proj["ratio"] < cfg.min_level_ratio:
            return []
        cyc["alerted"] = True
        st["counts"]["alerts"] += 1
        return [self._finding(hist, cust, usual, proj, start, end, d, day_ts, pct, usual_kwh, required, fc)]

    def _finding(self, hist: "_History", cust: "_Customer", usual: dict, proj: dict, start: date, end: date,
                 d: date, day_ts: int | None, pct: float, usual_kwh: float, required: float, fc: dict) -> dict:
        length = (end - start).days
        now_rows = [(date.fromordinal(o), hist.get(o)) for o in range(start.toordinal(), d.toordinal() + 1)]
        now_rows = [p for p in now_rows if p[1] is not None and _usable(p[1], self.config)][-DRIVER_DAYS:]
        u_start = date.fromisoformat(usual["start"])
        u_rows = [(date.fromordinal(o), hist.get(o))
                  for o in range(u_start.toordinal(), date.fromisoformat(usual["end"]).toordinal())]
        driver, drivers = _driver(now_rows, u_rows, self.config)
        price = cust.price

        def money(kwh: float) -> float | None:
            return None if price is None else round(kwh * price, 2)

        at = int(day_ts) if day_ts is not None else _midnight(d, cust.tz)
        return {
            "kind": KIND, "status": "event", "meter_id": cust.meter_id, "customer_id": cust.customer_id,
            "started_at": _midnight(start, cust.tz), "detected_at": at, "at": at, "severity": "warning",
            "evidence": {
                "projected_amount": money(proj["kwh"]), "usual_amount": money(usual_kwh),
                "currency": cust.currency, "projected_kwh": round(proj["kwh"], 1), "usual_kwh": round(usual_kwh, 1),
                "pct_above": round(100 * pct, 1),
                "pct_interval": [round(100 * (proj["lo"] / usual_kwh - 1), 1),
                                 round(100 * (proj["hi"] / usual_kwh - 1), 1)],
                "basis": usual["basis"], "cycle_start": start.isoformat(),
                "cycle_end": (end - timedelta(days=1)).isoformat(), "days_left": length - 1 - (d - start).days,
                "driver": driver, "drivers": drivers, "estimated_share": round(proj["estimated_share"], 3),
                "measured_kwh": round(proj["measured_kwh"], 1), "level_ratio": round(proj["ratio"], 2),
                "forecast": {"fitted_through": proj["fitted_through"], "kind": proj["fit_reason"]},
                "alert_pct": cust.alert_pct, "required_pct": round(required, 1),
                "series": _series(hist, cust, usual, fc, start, end, d),
            },
        }


def _series(hist: "_History", cust: "_Customer", usual: dict, fc: dict, start: date, end: date, d: date) -> dict:
    """``evidence["series"]`` of an alert on day ``d``: the data for a picture of the cycle's consumption
    against the forecast, one row per day (dates are the customer's local dates, kWh as measured)::

        {"unit": "kWh", "currency": ...,
         "days": [[date, kwh], ...],                # the cycle so far, through d; days without a record left out
         "previous": [[date, kwh], ...],            # the same period last year when that is the usual bill's
                                                    # basis, else the cycle before this one (what history has)
         "forecast": [[date, yhat, lower, upper], ...]}   # the rest of the cycle, d+1 .. the cycle's last day

    ``forecast`` is Prophet's own forecast of each remaining day and its interval (the ``interval`` quantiles of
    the predictive samples, lower <= yhat <= upper; null for a forecast stored before the interval was kept).
    The projection scales it by the evidence's ``level_ratio``. The days sum to the evidence's ``measured_kwh``.
    """
    def rows(lo: date, hi: date) -> list[list]:
        out = []
        for o in range(lo.toordinal(), hi.toordinal()):
            row = hist.get(o)
            if row is not None:
                out.append([date.fromordinal(o).isoformat(), round(row[KWH], 3)])
        return out

    if usual["basis"] == BASIS_LAST_YEAR:
        prev = rows(date.fromisoformat(usual["start"]), date.fromisoformat(usual["end"]))
    else:
        prev = rows(_previous_cycle_start(start, start.day), start)
    yhat, lo, hi = fc["yhat"], fc.get("lo"), fc.get("hi")
    forecast = []
    for i in range((d - start).days + 1, (end - start).days):
        y = yhat[i]
        low, up = (None, None) if lo is None or hi is None else (round(min(lo[i], y), 3), round(max(hi[i], y), 3))
        forecast.append([(start + timedelta(days=i)).isoformat(), round(y, 3), low, up])
    return {"unit": "kWh", "currency": cust.currency, "days": rows(start, d + timedelta(days=1)),
            "previous": prev, "forecast": forecast}


# ------------------------------------------------------------------------------------------ the model fit

def fit(payload: dict) -> dict:
    """Fit Prophet to a :meth:`BillSpikeDetector.fit_request` payload and forecast the whole cycle.

    Returns ``{"v", "reason", "cycle_start", "data_end", "yhat": [kWh per cycle day], "lo", "hi": [the interval
    of each cycle day's kWh, Prophet's yhat_lower / yhat_upper], "tail_lo", "tail_hi": [the interval of the kWh
    total from cycle day i to the end, for i = 0 .. cycle_days], "cpu_ms": {"process", "children"}}``, or the same identifiers with ``"error"`` when the fit failed. Quiet (no
    logging, no warnings) and deterministic (the predictive samples are seeded from the payload).
    """
    cpu0, child0 = time.process_time(), _children_cpu()
    ident = {"v": 1, "reason": payload.get("reason"), "cycle_start": payload.get("cycle_start"),
             "data_end": payload.get("data_end")}
    try:
        with _quiet():
            out = {**ident, **_prophet_forecast(payload)}
    except Exception as exc:  # noqa: BLE001 - reported to apply_fit as data; the worker must not die of one fit
        out = {**ident, "error": f"{type(exc).__name__}: {exc}"}
    out["cpu_ms"] = {"process": round(1000 * (time.process_time() - cpu0), 1),
                     "children": round(1000 * (_children_cpu() - child0), 1)}
    return out


def _prophet_forecast(payload: dict) -> dict:
    # Prophet (and the pandas frames it takes) is heavy to import (~2 s): only the fit, in the fit processes
    import numpy as np
    import pandas as pd
    from prophet import Prophet

    first = date.fromisoformat(payload["first"])
    pairs = [(first + timedelta(days=i), v) for i, v in enumerate(payload["y"]) if v is not None]
    if len(pairs) < 2:
        raise ValueError("fewer than two usable days")
    df = pd.DataFrame({"ds": pd.to_datetime([p[0] for p in pairs]), "y": [p[1] for p in pairs]})
    span = (pairs[-1][0] - pairs[0][0]).days + 1
    m = Prophet(growth="linear", yearly_seasonality=payload["yearly_order"] if span >= 365 else False,
                weekly_seasonality=payload["weekly_order"], daily_seasonality=False,
                uncertainty_samples=payload["samples"], interval_width=payload["interval"])
    if payload.get("country") and _known_country(payload["country"]):
        m.add_country_holidays(country_name=payload["country"])
    m.fit(df)
    start, n = date.fromisoformat(payload["cycle_start"]), payload["cycle_days"]
    future = pd.DataFrame({"ds": pd.to_datetime([start + timedelta(days=i) for i in range(n)])})
    np.random.seed(payload["seed"] % (2 ** 32))
    samples = np.clip(m.predictive_samples(future)["yhat"], 0.0, None)     # (days, samples)
    m.uncertainty_samples = 0                                               # the point forecast alone
    floor = 0.05 * float(df["y"].mean())
    point = np.maximum(m.predict(future)["yhat"].to_numpy(), floor)
    tails = samples[::-1].cumsum(axis=0)[::-1]                              # row i: total of days i..n-1
    q = (1.0 - payload["interval"]) / 2
    lo, hi = np.quantile(tails, q, axis=1), np.quantile(tails, 1 - q, axis=1)
    # each day's interval, as Prophet's predict() makes yhat_lower / yhat_upper: quantiles of the same samples
    day_lo, day_hi = np.quantile(samples, q, axis=1), np.quantile(samples, 1 - q, axis=1)
    return {"yhat": [round(float(v), 4) for v in point],
            "lo": [round(float(min(a, y)), 3) for a, y in zip(day_lo, point)],
            "hi": [round(float(max(b, y)), 3) for b, y in zip(day_hi, point)],
            "tail_lo": [round(float(v), 3) for v in lo] + [0.0],
            "tail_hi": [round(float(v), 3) for v in hi] + [0.0]}


def _known_country(country: str) -> bool:
    import holidays  # Prophet's holiday calendars: loaded only to check a customer's country

    try:
        holidays.country_holidays(country)
    except (NotImplementedError, KeyError, AttributeError):
        return False
    return True


@contextlib.contextmanager
def _quiet():
    """No log lines or warnings from Prophet, cmdstanpy or pandas while fitting."""
    logging.getLogger("prophet.plot").disabled = True      # "Importing plotly failed" at import
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # set up before the levels are set: importing prophet sets its logger's level, and cmdstanpy's
        # get_logger() sets its own (on first use) unless something has already configured it
        import prophet  # noqa: F401
        from cmdstanpy.utils import get_logger

        get_logger()
        for name in ("cmdstanpy", "prophet"):
            logging.getLogger(name).setLevel(logging.ERROR)
        yield


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


# ------------------------------------------------------------------------------------ projection, usual

def project(get: Any, fc: dict, start: date, end: date, d: date, cfg: BillConfig) -> dict | None:
    """The cycle's projected kWh as of day ``d`` from the stored forecast ``fc``; ``None`` without enough
    usable days. ``get(ordinal)`` returns a history row or ``None``.

    Estimated and catch-up kWh count at most at the level the forecast expects for their day, so neither
    can make a spike; measured kWh count in full.
    """
    yhat = fc["yhat"]
    length, i_t = (end - start).days, (d - start).days
    rows = [get(start.toordinal() + i) for i in range(i_t + 1)]
    a = f = 0.0
    used = 0
    for i in range(i_t, -1, -1):                         # the last ratio_days usable days
        row = rows[i]
        if row is not None and _usable(row, cfg):
            a, f, used = a + row[KWH], f + yhat[i], used + 1
            if used == cfg.ratio_days:
                break
    if used < cfg.min_ratio_days or f <= 0:
        return None
    r = min(4.0, max(0.25, a / f))
    rest = sum(yhat[i_t + 1:length])
    measured = raw = flagged = missing = 0.0
    for i, row in enumerate(rows):
        if row is None:
            missing += yhat[i]
            continue
        extra = (row[EST] or 0.0) + (row[CATCH_UP] or 0.0)
        raw += row[KWH]
        flagged += extra
        measured += row[KWH] - extra + min(extra, r * yhat[i])
    base = measured + r * missing
    return {"kwh": base + r * rest, "lo": base + r * fc["tail_lo"][i_t + 1],
            "hi": base + r * fc["tail_hi"][i_t + 1], "ratio": r, "measured_kwh": raw,
            "estimated_share": flagged / raw if raw > 0 else 0.0,
            "fitted_through": fc["data_end"], "fit_reason": fc.get("reason", "cycle")}


def usual_bill(get: Any, start: date, end: date, cfg: BillConfig) -> dict | None:
    """The usual kWh per day for the cycle ``[start, end)``: ``{"kwh_per_day", "basis", "start", "end"}`` (the
    period it comes from, end exclusive) or ``None`` when the history has neither basis.

    Same period last year when history allows (see the module docstring), else the highest of the recent
    complete cycles. ``get(ordinal)`` returns a history row or ``None``.
    """
    ly_start, ly_end = _year_before(start), _year_before(end)
    vals = _complete_kwh(get, ly_start.toordinal(), ly_end.toordinal())
    if vals and len(vals) >= cfg.last_year_coverage * (ly_end - ly_start).days:
        mean = sum(vals) / len(vals)
        around = (_complete_kwh(get, ly_start.toordinal() - 56, ly_start.toordinal())
                  + _complete_kwh(get, ly_end.toordinal(), ly_end.toordinal() + 56))
        if len(around) < 28 or mean >= cfg.holiday_ratio * sum(around) / len(around):
            return {"kwh_per_day": mean, "basis": BASIS_LAST_YEAR, "start": ly_start.isoformat(),
                    "end": ly_end.isoformat()}
    best = None
    cycle_end = start
    for _ in range(cfg.recent_cycles):
        cycle_start = _previous_cycle_start(cycle_end, start.day)
        vals = _complete_kwh(get, cycle_start.toordinal(), cycle_end.toordinal())
        if vals and len(vals) >= cfg.last_year_coverage * (cycle_end - cycle_start).days:
            mean = sum(vals) / len(vals)
            if best is None or mean > best["kwh_per_day"]:
                best = {"kwh_per_day": mean, "basis": BASIS_RECENT, "start": cycle_start.isoformat(),
                        "end": cycle_end.isoformat()}
        cycle_end = cycle_start
    return best


def _complete_kwh(get: Any, lo: int, hi: int) -> list[float]:
    out = []
    for o in range(lo, hi):
        row = get(o)
        if row is not None and row[COMPLETE]:
            out.append(row[KWH])
    return out


_GROUPS = {
    "night": "night-time base load",
    "weekday_evening": "weekday evenings",
    "weekday_day": "weekday daytime use",
    "weekend": "weekend use",
}


def _driver(now: Sequence[tuple[date, tuple | None]], usual: Sequence[tuple[date, tuple | None]], cfg: BillConfig
            ) -> tuple[str, dict]:
    """What grew most against the usual period, in words, and the % change of each part of the day.

    ``now`` is the last week of usable days of the cycle (``DRIVER_DAYS``).

    The day is split into parts that add up to the whole: the night (00-05, every day), weekday evenings
    (17-22), the rest of weekdays, and the rest of weekend days. The part whose growth adds most kWh per
    average day is the driver; when every part grew by a similar share, it is use at all hours.
    """
    def means(rows: Sequence[tuple[date, tuple | None]]) -> dict[str, float | None]:
        acc = {k: [] for k in _GROUPS}
        total = []
        for d, row in rows:
            if row is None or not _usable(row, cfg):
                continue
            kwh, night, eve = row[KWH], row[NIGHT] or 0.0, row[EVENING] or 0.0
            total.append(kwh)
            acc["night"].append(night)
            if d.weekday() < 5:
                acc["weekday_evening"].append(eve)
                acc["weekday_day"].append(kwh - night - eve)
            else:
                acc["weekend"].append(kwh - night)
        out: dict[str, float | None] = {k: (sum(v) / len(v) if v else None) for k, v in acc.items()}
        out["total"] = sum(total) / len(total) if total else None
        return out

    a, b = means(now), means(usual)
    weight = {"night": 1.0, "weekday_evening": 5 / 7, "weekday_day": 5 / 7, "weekend": 2 / 7}
    pct: dict[str, float] = {}
    gain: dict[str, float] = {}
    for k in _GROUPS:
        if a[k] is None or b[k] is None or b[k] <= 0.05:
            continue
        pct[k] = round(100 * (a[k] / b[k] - 1), 1)
        gain[k] = (a[k] - b[k]) * weight[k]
    total = None if a["total"] is None or not b["total"] else round(100 * (a["total"] / b["total"] - 1))
    rising = [k for k in gain if gain[k] > 0]
    if not rising:
        return (f"use up {total} %" if total is not None else "use up"), pct
    top = max(rising, key=lambda k: gain[k])
    if len(pct) == len(_GROUPS) and min(pct.values()) >= 0.6 * max(pct.values()) and total is not None:
        return f"use up about {total} % at all hours", pct
    return f"{_GROUPS[top]} up {round(pct[top])} %", pct


# --------------------------------------------------------------------------------------------- helpers

def cycle_bounds(d: date, cycle_day: int) -> tuple[date, date]:
    """The billing cycle containing ``d``: (first day, the day after the last)."""
    if d.day >= cycle_day:
        start = date(d.year, d.month, cycle_day)
    else:
        start = _previous_cycle_start(date(d.year, d.month, cycle_day), cycle_day)
    nxt = date(start.year + (start.month == 12), start.month % 12 + 1, cycle_day)
    return start, nxt


def _previous_cycle_start(start: date, cycle_day: int) -> date:
    return date(start.year - (start.month == 1), (start.month - 2) % 12 + 1, cycle_day)


def _year_before(d: date) -> date:
    try:
        return d.replace(year=d.year - 1)
    except ValueError:          # 29 February
        return d.replace(year=d.year - 1, day=28)


def _midnight(d: date, tz: str) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(tz)).timestamp())


def _day_date(day: dict, tz: str) -> date:
    if day.get("date"):
        return date.fromisoformat(day["date"])
    return local_date(day["ts"], tz)


def _row(day: dict) -> tuple | None:
    """A day record of :mod:`detectors.usage` -> (Wh, estimated Wh, catch-up Wh, night Wh, evening Wh, % of
    the day covered by readings); None when it has no kWh."""
    kwh = day.get("kwh")
    if kwh is None:
        return None
    exp, got = day.get("expected_intervals"), day.get("intervals")
    covered = 100 if not exp or got is None else min(100, int(100 * got / exp))

    def wh(key: str) -> int:
        return int(round(1000 * float(day.get(key) or 0.0)))

    return int(round(1000 * float(kwh))), wh("estimated_kwh"), wh("catch_up_kwh"), wh("night_kwh"), \
        wh("evening_kwh"), covered


def _usable(row: tuple, cfg: BillConfig) -> bool:
    """A complete day of (mostly) measured reads: a fair measure of the household's level."""
    return bool(row[COMPLETE]) and (row[EST] + row[CATCH_UP]) <= cfg.flagged_share * max(row[KWH], 1e-9)


def _copy_state(state: dict) -> dict:
    """A copy deep enough that nothing the caller holds changes (:class:`_History` copies the history's
    columns before it writes to them)."""
    st = dict(state)
    st["counts"] = dict(state["counts"])
    if state.get("cycle") is not None:
        st["cycle"] = dict(state["cycle"])
    return st


class _History:
    """The state's ``history`` seen as ordinal -> row, copied on the first write.

    Stored in columns of integer Wh (a JSON round trip of 460 days costs a third of what rows of floats
    did): ``kwh``, ``night``, ``evening`` lists from ``first`` (null: no record), and sparse maps keyed by
    date for what most days lack: ``estimated`` and ``catch_up`` Wh, and ``covered`` (% of the day covered by
    readings, only when under 100). :meth:`get` returns a row in kWh: ``(kwh, estimated, catch_up, night,
    evening, complete)``, complete meaning at least 90 % covered.
    """

    COLUMNS = ("kwh", "night", "evening")
    SPARSE = ("estimated", "catch_up", "covered")

    def __init__(self, st: dict):
        h = st["history"]
        self.first = date.fromisoformat(h["first"]).toordinal() if h.get("first") else None
        self.cols = {k: h[k] for k in self.COLUMNS}
        self.sparse = {k: h[k] for k in self.SPARSE}
        self._own: set[str] = set()

    @staticmethod
    def empty() -> dict:
        return {"first": None, "kwh": [], "night": [], "evening": [], "estimated": {}, "catch_up": {},
                "covered": {}}

    def get(self, o: int) -> tuple | None:
        if self.first is None:
            return None
        i = o - self.first
        kwh = self.cols["kwh"]
        if not 0 <= i < len(kwh) or kwh[i] is None:
            return None
        est = cu = 0
        covered = 100
        if self.sparse["estimated"] or self.sparse["catch_up"] or self.sparse["covered"]:
            key = date.fromordinal(o).isoformat()
            est, cu = self.sparse["estimated"].get(key, 0), self.sparse["catch_up"].get(key, 0)
            covered = self.sparse["covered"].get(key, 100)
        return (kwh[i] / 1000, est / 1000, cu / 1000, (self.cols["night"][i] or 0) / 1000,
                (self.cols["evening"][i] or 0) / 1000, covered >= 90)

    def _mine(self, name: str) -> None:
        if name not in self._own:
            self._own.add(name)
            src = self.cols if name in self.cols else self.sparse
            src[name] = list(src[name]) if isinstance(src[name], list) else dict(src[name])

    def put(self, o: int, row: tuple, keep: int) -> str:
        """Store a :func:`_row`; 'new', 'dup' (already there) or 'old' (before what the history keeps)."""
        n = len(self.cols["kwh"])
        if self.first is not None:
            i = o - self.first
            if i < 0 and n - i > keep:
                return "old"
            if 0 <= i < n and self.cols["kwh"][i] is not None:
                return "dup"
        for name in self.COLUMNS:
            self._mine(name)
        if self.first is None:
            self.first = o
        i = o - self.first
        if i < 0:
            for col in self.cols.values():
                col[:0] = [None] * -i
            self.first, i = o, 0
        for name, value in zip(self.COLUMNS, (row[0], row[3], row[4])):
            col = self.cols[name]
            if i >= len(col):
                col.extend([None] * (i + 1 - len(col)))
            col[i] = value
        key = date.fromordinal(o).isoformat()
        for name, value, default in (("estimated", row[1], 0), ("catch_up", row[2], 0), ("covered", row[5], 100)):
            if value != default:
                self._mine(name)
                self.sparse[name][key] = value
        return "new"

    def trim(self, keep: int) -> None:
        n = len(self.cols["kwh"])
        if n <= keep:
            return
        cut = n - keep
        for name in self.COLUMNS:
            self._own.add(name)
            self.cols[name] = self.cols[name][cut:]
        self.first += cut  # type: ignore[operator]
        oldest = date.fromordinal(self.first).isoformat()
        for name, m in self.sparse.items():
            if any(k < oldest for k in m):
                self._own.add(name)
                self.sparse[name] = {k: v for k, v in m.items() if k >= oldest}

    def store(self, st: dict) -> None:
        st["history"] = {"first": date.fromordinal(self.first).isoformat() if self.first is not None else None,
                         **self.cols, **self.sparse}


class _Customer:
    """What the detector reads from the customer record, with the contract's defaults."""

    __slots__ = ("tz", "cycle_day", "price", "currency", "alert_pct", "customer_id", "meter_id", "country")

    @classmethod
    def of(cls, ctx: Context | None, cfg: BillConfig) -> "_Customer":
        c = (ctx.customer if ctx is not None else None) or {}
        self = cls()
        self.tz = c.get("timezone") or "UTC"
        try:
            self.cycle_day = min(28, max(1, int(c.get("bill_cycle_day") or 1)))
        except (TypeError, ValueError):
            self.cycle_day = 1
        tariff = c.get("tariff") or {}
        self.price = tariff.get("price_per_kwh")
        self.currency = tariff.get("currency")
        self.alert_pct = float((c.get("preferences") or {}).get("bill_alert_pct") or cfg.default_alert_pct)
        self.customer_id = c.get("customer_id")
        self.meter_id = (ctx.meter_id if ctx is not None else None) or c.get("meter_id")
        self.country = c.get("country") or _tz_country(self.tz)
        return self


def _tz_country(tz: str) -> str | None:
    """The ISO country code of an IANA timezone (the system's ``zone.tab``), or None."""
    return _zone_countries().get(tz)


@functools.lru_cache(maxsize=1)
def _zone_countries() -> dict[str, str]:
    out: dict[str, str] = {}
    for base in ("/usr/share/zoneinfo", "/usr/lib/zoneinfo", "/usr/share/lib/zoneinfo"):
        with contextlib.suppress(OSError):
            with open(f"{base}/zone.tab", encoding="utf-8") as f:
                for line in f:
                    if line and not line.startswith("#"):
                        parts = line.split("\t")
                        if len(parts) >= 3:
                            out[parts[2].strip()] = parts[0]
            break
    return out
