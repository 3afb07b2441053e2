"""``python -m benchmarks.bill_eval``: the bill-spike detector on the real shared households.

Data (../shared/data, see its README): the London LCL household MAC000060 (half-hourly kWh, 2011-12 ->
2014-02) and the UCI household in Sceaux (hourly sums, ``Global_active_power / 60`` = kWh, 2006-12 ->
2010-11). Both files are read by :func:`streams.replay.parse_file` on the clock they were logged on (GMT and
CET all year) and folded into the customer's local days (Europe/London, Europe/Paris) by
:func:`detectors.usage.accumulate`, exactly as the worker does. Each household becomes one customer per
billing-cycle day (``--cycle-days``, default 1,8,15,22), all on one tariff, so one household gives several
customer-cycles per month.

A customer-cycle is *evaluated* when the whole cycle is in the data and, at mid-cycle, the detector had a
forecast for it and a usual bill to compare with (its first cycles, before a month of history and a
complete previous cycle, are not). Reported:

(a) untouched data: every bill alert is a false alert (the households' bills did not spike by design);
    target <= 5 % of customer-cycles. Each alert is listed with its day, % above usual, basis and driver.
(b) injected spikes from mid-cycle (day ``length // 2``) to the end of the cycle; recall = cycles with an
    alert on or after the spike start and at least 7 days before the cycle end (the detector's own window
    guarantees the second part). Three injections:

    - ``use +40 %``: consumption x1.4 from mid-cycle. Half a cycle at +40 % raises the whole bill only
      ~20 %, below the default 30 % threshold: a low recall is the expected, correct answer;
    - ``x1.8``: consumption x1.8 from mid-cycle (the bill ~+40 % above what it would have been);
    - ``bill +40 %``: from mid-cycle, consumption times the factor that brings the cycle's bill to 1.4 x the
      usual bill (the detector's usual: same period last year, else recent cycles; never below x1).
      Target recall >= 90 %.

    A cycle whose untouched run already alerted before mid-cycle cannot alert again and is left out of the
    recall (counted in ``excluded``).
(c) the same figures for the naive rule "the cycle so far > the same number of days of the last cycle x
    1.3", checked daily in the same window (days 8 .. length-7).

Fits run in a process pool (``--jobs``, default: every core): phase 1 replays each customer's untouched
history (one process per customer); phase 2 replays the second half of each evaluated cycle, injected,
from the state the untouched run had at mid-cycle. ``--quick``: cycle days 1 and 15, and only the
``bill +40 %`` injection (~15 s on 2 cores; the default ~40 s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Iterable

__all__ = ["HOUSEHOLDS", "CASES", "TARIFF", "default_shared", "load_days", "evaluate", "format_report", "main"]

#: (name, file under data/, the clock it was logged on, the customer's timezone)
HOUSEHOLDS = (
    ("uci", "uci_household/uci_hourly_sums_2006_2010.csv", "Etc/GMT-1", "Europe/Paris"),
    ("lcl", "london_lcl/MAC000060_halfhourly.csv", "UTC", "Europe/London"),
)
#: one tariff for every customer (the detector's decision is in kWh; the amounts only scale)
TARIFF = {"currency": "EUR", "price_per_kwh": 0.25}
#: injected spikes: name -> fixed factor from mid-cycle, or None for "to 1.4 x the usual bill"
CASES = {"use +40 %": 1.4, "x1.8": 1.8, "bill +40 %": None}
QUICK_CASES = ("bill +40 %",)
NAIVE_FACTOR = 1.3
BILL_TARGET = 1.4


def default_shared() -> Path:
    """``$GRIDWATCH_SHARED``, else the ``shared`` folder beside the repository."""
    return Path(os.environ.get("GRIDWATCH_SHARED") or Path(__file__).resolve().parents[2] / "shared")


def load_days(path: Path, clock: str, tz: str, meter_id: str) -> list[dict]:
    """A household file -> its closed local days (:mod:`detectors.usage` records), in date order."""
    from detectors.usage import accumulate
    from gridwatch.contract import Reading, parse_ts
    from streams.replay import parse_file

    res = parse_file(path, tz=clock, meter_id=meter_id)
    readings = [Reading(meter_id=r["meter_id"], ts=parse_ts(r["ts"]), interval_s=r["interval_s"], kwh=r["kwh"],
                        quality=r.get("quality") or "actual") for r in res.readings]
    state, days = None, []
    for i in range(0, len(readings), 48):       # message-sized batches, as the worker would see them
        state, closed = accumulate(state, readings[i:i + 48], tz)
        days.extend(closed)
    return days


def _customer(household: str, tz: str, cycle_day: int) -> dict:
    return {"customer_id": f"C-{household}-{cycle_day:02d}", "meter_id": f"M-{household}", "timezone": tz,
            "bill_cycle_day": cycle_day, "tariff": TARIFF, "preferences": {"bill_alert_pct": 30}}


def _run(det: Any, ctx: Any, state: dict | None, days: Iterable[dict]) -> tuple[dict | None, list[dict], int, int]:
    """Feed days one by one, running every fit the detector asks for inline; (state, findings, fits, refits)."""
    from detectors.bill import fit

    found: list[dict] = []
    fits = refits = 0
    for day in days:
        state, f = det.process(state, [day], ctx)
        found += f
        payload = det.fit_request(state, ctx)
        if payload is not None:
            fits += payload["reason"] == "cycle"
            refits += payload["reason"] == "confirm"
            state, f = det.apply_fit(state, fit(payload), ctx)
            found += f
    return state, found, fits, refits


def _untouched(job: tuple) -> dict:
    """Phase 1: one customer's whole history, untouched. Returns its alerts and, per cycle, the state at
    mid-cycle and what the injections need."""
    from detectors.api import Context
    from detectors.bill import BillSpikeDetector, cycle_bounds

    household, tz, cycle_day, days, overrides = job
    cust = _customer(household, tz, cycle_day)
    det = BillSpikeDetector(**overrides)
    ctx = Context(meter_id=cust["meter_id"], customer=cust)
    by_date = {d["date"]: d for d in days}
    first, last = date.fromisoformat(days[0]["date"]), date.fromisoformat(days[-1]["date"])
    state: dict | None = None
    alerts: list[dict] = []
    cycles: dict[str, dict] = {}
    fits = refits = 0
    cpu0 = time.process_time()
    for day in days:
        d = date.fromisoformat(day["date"])
        start, end = cycle_bounds(d, cycle_day)
        length, mid = (end - start).days, (end - start).days // 2
        key = start.isoformat()
        if (d - start).days >= mid and key not in cycles:
            cycles[key] = _cycle_info(det, state, start, end, mid, first, last, by_date, alerts)
        state, found, f, r = _run(det, ctx, state, [day])
        fits, refits = fits + f, refits + r
        alerts += [{"customer_id": cust["customer_id"], "cycle_start": a["evidence"]["cycle_start"],
                    "date": date.fromordinal(start.toordinal() + (length - 1 - a["evidence"]["days_left"])).isoformat(),
                    **{k: a["evidence"][k] for k in ("pct_above", "pct_interval", "basis", "driver",
                                                     "projected_kwh", "usual_kwh", "estimated_share")}}
                   for a in found]
    return {"household": household, "cycle_day": cycle_day, "customer_id": cust["customer_id"], "alerts": alerts,
            "cycles": cycles, "fits": fits, "refits": refits, "cpu_s": time.process_time() - cpu0,
            "days": len(days)}


def _cycle_info(det: Any, state: dict | None, start: date, end: date, mid: int, first: date, last: date,
                by_date: dict, alerts: list[dict]) -> dict:
    length = (end - start).days
    cycle_days = [by_date.get((start + timedelta(days=i)).isoformat()) for i in range(length)]
    info: dict[str, Any] = {"start": start.isoformat(), "length": length, "mid": mid}
    whole = first <= start and end - timedelta(days=1) <= last
    fc = (state or {}).get("fc")
    usual = det.usual(state, start, end) if state else None
    info["evaluated"] = bool(whole and fc and fc["cycle_start"] == start.isoformat() and usual)
    if not info["evaluated"]:
        return info
    kwh = [d["kwh"] if d else 0.0 for d in cycle_days]
    prev_start = _prev_cycle(start)
    prev = [by_date.get((prev_start + timedelta(days=i)).isoformat()) for i in range(length)]
    info.update(state=state, usual_kwh=usual["kwh_per_day"] * length, basis=usual["basis"],
                first_half=sum(kwh[:mid]), second_half=sum(kwh[mid:]), kwh=kwh,
                prev_kwh=[p["kwh"] if p else None for p in prev],
                second_days=[d for d in cycle_days[mid:] if d],
                alerted_before=any(a["cycle_start"] == start.isoformat() for a in alerts))
    return info


def _prev_cycle(start: date) -> date:
    return date(start.year - (start.month == 1), (start.month - 2) % 12 + 1, start.day)


def _spiked(job: tuple) -> dict:
    """Phase 2: the second half of one cycle, consumption times ``factor``, from the mid-cycle state."""
    from detectors.api import Context
    from detectors.bill import BillSpikeDetector

    household, tz, cycle_day, overrides, state, days, factor = job
    cust = _customer(household, tz, cycle_day)
    det = BillSpikeDetector(**overrides)
    ctx = Context(meter_id=cust["meter_id"], customer=cust)
    spiked = [_scale(d, factor) for d in days]
    _, found, fits, refits = _run(det, ctx, state, spiked)
    a = found[0] if found else None
    return {"alert": None if a is None else {"days_left": a["evidence"]["days_left"],
                                             "pct_above": a["evidence"]["pct_above"],
                                             "driver": a["evidence"]["driver"]},
            "fits": fits, "refits": refits}


def _scale(day: dict, factor: float) -> dict:
    out = dict(day)
    for k in ("kwh", "estimated_kwh", "catch_up_kwh", "night_kwh", "evening_kwh"):
        if out.get(k) is not None:
            out[k] = out[k] * factor
    return out


def _naive(kwh: list[float], prev: list[float | None], edge: int = 7, factor: float = NAIVE_FACTOR) -> int | None:
    """The first cycle day (index) on which the cycle so far exceeds the same days of the last cycle x factor."""
    now = before = 0.0
    length = len(kwh)
    for i in range(length):
        if prev[i] is not None:          # compare like with like: days missing last cycle count on neither side
            now += kwh[i]
            before += prev[i]
        if edge <= i <= length - 1 - edge and before > 0 and now > factor * before:
            return i
    return None


def evaluate(shared: Path | None = None, cycle_days: Iterable[int] = (1, 8, 15, 22), *, quick: bool = False,
             cases: Iterable[str] | None = None, jobs: int | None = None, progress: bool = True,
             overrides: dict | None = None) -> dict:
    """Run the whole evaluation; returns the figures as a JSON-ready dict (see the module docstring)."""
    from tqdm import tqdm

    shared = Path(shared) if shared else default_shared()
    cycle_days = (1, 15) if quick else tuple(cycle_days)
    cases = tuple(cases) if cases is not None else (QUICK_CASES if quick else tuple(CASES))
    overrides = dict(overrides or {})
    jobs = jobs or os.cpu_count() or 1
    started = time.monotonic()
    loaded = {}
    for name, rel, clock, tz in tqdm(HOUSEHOLDS, desc="read households", disable=not progress, file=sys.stderr):
        loaded[name] = (tz, load_days(shared / "data" / rel, clock, tz, f"M-{name}"))
    phase1 = [(name, tz, cd, days, overrides) for name, (tz, days) in loaded.items() for cd in cycle_days]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        customers = list(tqdm(pool.map(_untouched, phase1), total=len(phase1), desc="untouched customers",
                              disable=not progress, file=sys.stderr))
        evaluated = [(c, info) for c in customers for info in c["cycles"].values() if info["evaluated"]]
        tasks, where = [], []
        for case in cases:
            for c, info in evaluated:
                if info["alerted_before"]:
                    continue
                factor = CASES[case]
                if factor is None:
                    need = (BILL_TARGET * info["usual_kwh"] - info["first_half"]) / max(info["second_half"], 1e-9)
                    factor = max(1.0, need)
                tz = loaded[c["household"]][0]
                tasks.append((c["household"], tz, c["cycle_day"], overrides, info["state"], info["second_days"],
                              factor))
                where.append((case, c, info, factor))
        results = list(tqdm(pool.map(_spiked, tasks, chunksize=4), total=len(tasks), desc="injected cycles",
                            disable=not progress, file=sys.stderr))
    return _figures(customers, evaluated, cases, where, results, cycle_days, quick, jobs,
                    time.monotonic() - started)


def _figures(customers: list[dict], evaluated: list, cases: tuple, where: list, results: list,
             cycle_days: tuple, quick: bool, jobs: int, wall_s: float) -> dict:
    n = len(evaluated)
    keys = {(c["customer_id"], info["start"]) for c, info in evaluated}
    finals = {(c["customer_id"], info["start"]): sum(k for k in info["kwh"]) / info["usual_kwh"] - 1
              for c, info in evaluated}
    false = [{**a, "final_pct": round(100 * finals[(a["customer_id"], a["cycle_start"])], 1)}
             for c in customers for a in c["alerts"] if (a["customer_id"], a["cycle_start"]) in keys]
    outside = [a for c in customers for a in c["alerts"] if (a["customer_id"], a["cycle_start"]) not in keys]
    naive_false = [(c["customer_id"], info["start"], i) for c, info in evaluated
                   if (i := _naive(info["kwh"], info["prev_kwh"])) is not None]
    out: dict[str, Any] = {
        "cycle_days": list(cycle_days), "quick": quick, "jobs": jobs, "wall_s": round(wall_s, 1),
        "customers": [{k: c[k] for k in ("customer_id", "days", "fits", "refits")} | {"cpu_s": round(c["cpu_s"], 1)}
                      for c in customers],
        "customer_cycles": n,
        "by_basis": {b: sum(info["basis"] == b for _, info in evaluated)
                     for b in sorted({info["basis"] for _, info in evaluated})},
        "untouched_bills_30pct_above_usual": sum(f >= 0.3 for f in finals.values()),
        "detector": {"false_alerts": len(false), "false_rate": len(false) / n if n else None, "alerts": false,
                     "false_alerts_on_real_high_bills": sum(a["final_pct"] >= 30 for a in false),
                     "alerts_outside_evaluated_cycles": outside, "recall": {}},
        "naive": {"rule": f"cycle so far > same days of last cycle x {NAIVE_FACTOR}", "false_alerts": len(naive_false),
                  "false_rate": len(naive_false) / n if n else None, "recall": {}},
        "fits_per_customer_cycle": None,
    }
    cycles_total = sum(len(c["cycles"]) for c in customers)
    out["fits_per_customer_cycle"] = round(sum(c["fits"] + c["refits"] for c in customers) / max(cycles_total, 1), 3)
    for case in cases:
        rows = [(c, info, factor, res) for (k, c, info, factor), res in zip(where, results) if k == case]
        excluded = sum(info["alerted_before"] for _, info in evaluated)
        found = [r for r in rows if r[3]["alert"] is not None and r[3]["alert"]["days_left"] >= 7]
        bill_up = [(info["first_half"] + factor * info["second_half"]) / info["usual_kwh"] - 1
                   for _, info, factor, _ in rows]
        naive_found = 0
        for _, info, factor, _ in rows:
            kwh = info["kwh"][:info["mid"]] + [k * factor for k in info["kwh"][info["mid"]:]]
            i = _naive(kwh, info["prev_kwh"])
            naive_found += i is not None and i >= info["mid"]
        m = len(rows)
        out["detector"]["recall"][case] = {
            "cycles": m, "excluded": excluded, "found": len(found), "recall": len(found) / m if m else None,
            "refits_per_cycle": round(sum(r[3]["refits"] for r in rows) / m, 2) if m else None,
            "median_days_left": statistics.median(r[3]["alert"]["days_left"] for r in found) if found else None,
            "median_factor": round(statistics.median(r[2] for r in rows), 2) if m else None,
            "median_bill_vs_usual_pct": round(100 * statistics.median(bill_up), 1) if m else None,
            "bills_at_least_30pct_above_usual": sum(b >= 0.3 for b in bill_up),
            "found_of_those": sum(r in found for r, b in zip(rows, bill_up) if b >= 0.3),
            "missed": [{"customer_id": c["customer_id"], "cycle_start": info["start"],
                        "bill_vs_usual_pct": round(100 * b, 1), "factor": round(f, 2)}
                       for (c, info, f, res), b in zip(rows, bill_up) if res["alert"] is None and b >= 0.3],
        }
        out["naive"]["recall"][case] = {"cycles": m, "found": naive_found, "recall": naive_found / m if m else None}
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def format_report(res: dict) -> str:
    """The evaluation as a readable table, the false alerts with their reasons, and the notes."""
    cases = list(res["detector"]["recall"])
    head = ["rule", "customer-cycles", "false alerts", *[f"recall {c}" for c in cases]]
    det, naive = res["detector"], res["naive"]

    def rec(r: dict) -> str:
        return f"{r['found']}/{r['cycles']} = {_pct(r['recall'])}"

    rows = [
        ["bill_spike (Prophet projection)", str(res["customer_cycles"]),
         f"{det['false_alerts']} = {_pct(det['false_rate'])}", *[rec(det["recall"][c]) for c in cases]],
        [f"naive: to date > last cycle x{NAIVE_FACTOR}", str(res["customer_cycles"]),
         f"{naive['false_alerts']} = {_pct(naive['false_rate'])}", *[rec(naive["recall"][c]) for c in cases]],
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [head, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("")
    lines.append(f"cycle days {','.join(map(str, res['cycle_days']))}; usual bill basis of the evaluated cycles: "
                 + ", ".join(f"{b} {n}" for b, n in res["by_basis"].items())
                 + f"; model fits per customer-cycle (untouched): {res['fits_per_customer_cycle']}")
    for c in cases:
        r = det["recall"][c]
        lines.append(f"{c}: median factor x{r['median_factor']}, median bill {r['median_bill_vs_usual_pct']:+} % vs "
                     f"usual; {r['bills_at_least_30pct_above_usual']} cycles ended >= 30 % above usual, "
                     f"{r['found_of_those']} of them alerted; median days left at the alert "
                     f"{r['median_days_left']}; refits per cycle {r['refits_per_cycle']}; "
                     f"{r['excluded']} cycles left out (alerted before mid-cycle untouched)")
        for m in r["missed"][:10]:
            lines.append(f"    missed: {m['customer_id']} cycle {m['cycle_start']} (bill {m['bill_vs_usual_pct']:+} %, "
                         f"x{m['factor']})")
    lines.append("")
    lines.append(f"false alerts on untouched data (day, projected % above usual [interval], basis, driver; and "
                 f"where the cycle's bill really ended): {det['false_alerts_on_real_high_bills']} of them in "
                 f"cycles that did end >= 30 % above usual ({res['untouched_bills_30pct_above_usual']} such cycles "
                 f"in all)")
    for a in det["alerts"] or []:
        lines.append(f"  {a['customer_id']} cycle {a['cycle_start']}: {a['date']} +{a['pct_above']} % "
                     f"[{a['pct_interval'][0]}, {a['pct_interval'][1]}] vs {a['basis']} "
                     f"({a['projected_kwh']} vs {a['usual_kwh']} kWh), {a['driver']}, "
                     f"estimated share {a['estimated_share']}; ended {a['final_pct']:+} %")
    if not det["alerts"]:
        lines.append("  none")
    if det["alerts_outside_evaluated_cycles"]:
        lines.append(f"  (+{len(det['alerts_outside_evaluated_cycles'])} in cycles not evaluated)")
    lines.append(f"wall time {res['wall_s']} s with {res['jobs']} processes")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bill_eval", description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=None, help="the shared folder (default: $GRIDWATCH_SHARED or "
                                                               "../shared beside the repository)")
    ap.add_argument("--cycle-days", default="1,8,15,22", help="bill_cycle_day of the customers made of each household")
    ap.add_argument("--quick", action="store_true", help="cycle days 1,15 and only the 'bill +40 %%' injection")
    ap.add_argument("--jobs", type=int, default=None, help="processes for the fits (default: every core)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead of the table")
    args = ap.parse_args(argv)
    shared = args.shared or default_shared()
    if not (shared / "data").is_dir():
        print(f"no shared data folder at {shared / 'data'} (see ../shared/data/README.md)", file=sys.stderr)
        return 2
    res = evaluate(shared, [int(x) for x in args.cycle_days.split(",") if x.strip()], quick=args.quick,
                   jobs=args.jobs)
    print(json.dumps(res, indent=1) if args.json else format_report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
