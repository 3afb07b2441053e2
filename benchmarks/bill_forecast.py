"""``python -m benchmarks.bill_forecast``: what the bill-spike detector costs per customer, and how far 2 cores go.

Measured:

1. **CPU per Prophet fit**, in a separate fitting process (a ``ProcessPoolExecutor`` of one spawned process,
   as the worker runs them): ``time.process_time()`` inside :func:`detectors.bill.fit`, plus the CPU of the
   CmdStan child process each fit starts (``RUSAGE_CHILDREN``), which ``process_time`` does not see. The
   one-off import of Prophet in a fresh process is reported apart. Payloads are real cycle fits: a year of
   history of the shared households when ../shared is there, else of a synthetic household.
2. **The daily update**: ``process()`` + ``fit_request()`` for one closed day, in µs (``process_time``), over a
   year of days per customer, and the JSON round trip of the state the worker's table does for it.
3. **Fits per customer per cycle actually done** over the last year of each customer (the shared households
   as customers on bill-cycle days 1, 8, 15 and 22, untouched; or synthetic households).

Then CPU seconds per customer per day, and how many customers 2 cores serve: bound by the Prophet fits alone
(fits spread evenly over the month; and the worst day when every customer has the same ``bill_cycle_day``,
whose cycle fits the detector spreads over 7 days), and in total (fits + daily updates + state JSON).
``--quick`` does fewer fits and customers.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date, timedelta
from pathlib import Path

__all__ = ["synthetic_days", "customer_days", "measure_fits", "replay_year", "main"]

CORES = 2
DAY_S = 86_400
MEAN_CYCLE_DAYS = 365.25 / 12


def synthetic_days(seed: int, start: date, n: int) -> list[dict]:
    """A deterministic household: ~12 kWh/day, a winter peak, busier weekends, day-to-day noise (day records
    as :mod:`detectors.usage` makes them)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        d = start + timedelta(days=i)
        season = 1 + 0.3 * math.cos(2 * math.pi * (d.timetuple().tm_yday - 15) / 365.25)
        kwh = 12 * season * (1.2 if d.weekday() >= 5 else 1.0) * rng.lognormvariate(0, 0.15)
        out.append({"ts": 0, "date": d.isoformat(), "kwh": kwh, "estimated_kwh": 0.0, "catch_up_kwh": 0.0,
                    "intervals": 48, "expected_intervals": 48, "night_kwh": 0.2 * kwh, "evening_kwh": 0.3 * kwh,
                    "weekday": d.weekday()})
    return out


def customer_days(shared: Path | None, quick: bool) -> tuple[str, list[tuple[str, str, list[dict]]]]:
    """(where the data came from, [(household, timezone, day records)])."""
    if shared is not None and (shared / "data").is_dir():
        from benchmarks.bill_eval import HOUSEHOLDS, load_days

        out = [(name, tz, load_days(shared / "data" / rel, clock, tz, f"M-{name}"))
               for name, rel, clock, tz in HOUSEHOLDS]
        return f"real households ({', '.join(n for n, *_ in HOUSEHOLDS)}) from {shared / 'data'}", out
    n = 2 if quick else 4
    return (f"{n} synthetic households (no shared data folder)",
            [(f"syn{i}", "UTC", synthetic_days(i, date(2021, 1, 1), 800)) for i in range(n)])


def _customer(household: str, tz: str, cycle_day: int) -> dict:
    return {"customer_id": f"C-{household}-{cycle_day:02d}", "meter_id": f"M-{household}", "timezone": tz,
            "bill_cycle_day": cycle_day, "tariff": {"currency": "EUR", "price_per_kwh": 0.25},
            "preferences": {"bill_alert_pct": 30}}


def _payloads(data: list[tuple[str, str, list[dict]]], count: int) -> list[dict]:
    """Real cycle-fit payloads: a year and more of history, at cycle starts spread over the data."""
    from detectors.api import Context
    from detectors.bill import BillSpikeDetector

    det = BillSpikeDetector(fit_spread_days=1)
    out: list[dict] = []
    per = max(1, math.ceil(count / len(data)))
    for name, tz, days in data:
        ctx = Context(meter_id=f"M-{name}", customer=_customer(name, tz, 1))
        st = None
        starts = [i for i, d in enumerate(days) if d["date"].endswith("-01") and i >= 430]
        picks = set(starts[:: max(1, len(starts) // per)][:per])
        for i, day in enumerate(days):
            st, _ = det.process(st, [day], ctx)
            if i in picks:
                p = det.fit_request(st, ctx)
                if p is not None:
                    out.append(p)
    return out[:count]


def _import_cost() -> dict:
    cpu, child, wall = time.process_time(), _children(), time.perf_counter()
    from detectors.bill import _quiet

    with _quiet():
        import prophet  # noqa: F401
    return {"cpu_s": time.process_time() - cpu, "children_s": _children() - child,
            "wall_s": time.perf_counter() - wall}


def _children() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def measure_fits(payloads: list[dict]) -> dict:
    """Run the payloads one by one in one spawned fitting process; CPU per fit from inside it."""
    from detectors.bill import fit

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        imp = pool.submit(_import_cost).result()
        runs = []
        for p in payloads:
            t = time.perf_counter()
            res = pool.submit(fit, p).result()
            if res.get("error"):
                raise RuntimeError(res["error"])
            runs.append({**res["cpu_ms"], "wall": 1000 * (time.perf_counter() - t), "days": len(p["y"])})
    warm = runs[1:] if len(runs) > 2 else runs          # the first fit also loads the compiled Stan model
    med = {k: statistics.median(r[k] for r in warm) for k in ("process", "children", "wall")}
    return {"import": imp, "fits": len(runs), "first": runs[0], "median_ms": med,
            "median_total_ms": med["process"] + med["children"],
            "history_days": statistics.median(r["days"] for r in runs)}


def replay_year(job: tuple) -> dict:
    """One customer: warm-up history (process only), then its last year with every fit run inline; the time
    of process() + fit_request() per day, the state's JSON round trip, and the fits asked for."""
    from detectors.api import Context
    from detectors.bill import BillSpikeDetector, cycle_bounds, fit

    name, tz, days, cycle_day = job
    det = BillSpikeDetector()
    ctx = Context(meter_id=f"M-{name}", customer=_customer(name, tz, cycle_day))
    split = max(0, len(days) - 365)
    st = None
    for day in days[:split]:
        st, _ = det.process(st, [day], ctx)
    update, codec, sizes = [], [], []
    fits = {"cycle": 0}
    cycles = set()
    alerts = 0
    for day in days[split:]:
        cycles.add(cycle_bounds(date.fromisoformat(day["date"]), cycle_day)[0])
        t = time.process_time()
        text = json.dumps(st)
        st = json.loads(text)
        codec.append(time.process_time() - t)
        sizes.append(len(text))
        t = time.process_time()
        st, found = det.process(st, [day], ctx)
        payload = det.fit_request(st, ctx)
        update.append(time.process_time() - t)
        alerts += len(found)
        if payload is not None:
            fits[payload["reason"]] += 1
            st, found = det.apply_fit(st, fit(payload), ctx)
            alerts += len(found)
    return {"customer": ctx.customer["customer_id"], "days": len(days) - split, "cycles": len(cycles),
            "fits": fits, "alerts": alerts, "update_us": [1e6 * u for u in update],
            "codec_us": [1e6 * c for c in codec], "state_bytes": statistics.median(sizes)}


def main(argv: list[str] | None = None) -> int:
    from benchmarks.bill_eval import default_shared
    from benchmarks.common import code_version, loadavg

    ap = argparse.ArgumentParser(prog="python -m benchmarks.bill_forecast", description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=None, help="the shared folder (default: $GRIDWATCH_SHARED or "
                                                               "../shared beside the repository)")
    ap.add_argument("--fits", type=int, default=None, help="Prophet fits to time (default 12, --quick 5)")
    ap.add_argument("--quick", action="store_true", help="fewer fits and customers")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    print(f"{code_version()}; load average {loadavg()}; {os.cpu_count()} cores", file=sys.stderr)
    source, data = customer_days(args.shared or default_shared(), args.quick)
    n_fits = args.fits or (5 if args.quick else 12)
    fits = measure_fits(_payloads(data, n_fits))
    cycle_days = (1, 15) if args.quick else (1, 8, 15, 22)
    jobs = [(name, tz, days, cd) for name, tz, days in data for cd in cycle_days]
    with ProcessPoolExecutor(max_workers=1) as pool:          # one process: the machine is shared
        years = list(pool.map(replay_year, jobs))

    upd = statistics.median(u for y in years for u in y["update_us"])
    upd_mean = statistics.fmean(u for y in years for u in y["update_us"])
    codec = statistics.median(c for y in years for c in y["codec_us"])
    cyc = sum(y["cycles"] for y in years)
    n_cycle = sum(y["fits"]["cycle"] for y in years)
    per_cycle = n_cycle / cyc
    fit_s = fits["median_total_ms"] / 1000
    fit_day = per_cycle * fit_s / MEAN_CYCLE_DAYS                 # CPU-s per customer per day, fits
    upd_day = (upd_mean + codec) / 1e6                             # one closed day per customer per day
    budget = CORES * DAY_S
    res = {
        "data": source, "fits": fits, "update_us_median": round(upd, 1), "update_us_mean": round(upd_mean, 1),
        "state_json_roundtrip_us": round(codec, 1),
        "state_kb": round(statistics.median(y["state_bytes"] for y in years) / 1024, 1),
        "customer_years": len(years), "customer_cycles": cyc, "cycle_fits": n_cycle,
        "alerts": sum(y["alerts"] for y in years), "fits_per_customer_cycle": round(per_cycle, 3),
        "cpu_s_per_customer_day": {"fits": fit_day, "update": upd_day, "total": fit_day + upd_day},
        "customers_on_2_cores": {
            "prophet_even": int(budget / fit_day),
            "prophet_same_cycle_day": int(budget * 7 / fit_s),
            "prophet_same_cycle_day_unspread": int(budget / fit_s),
            "total": int(budget / (fit_day + upd_day)),
        },
    }
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    from detectors.bill import BillConfig

    f, imp = fits, fits["import"]
    print(f"data: {source}")
    print(f"Prophet import, once per fitting process: {imp['cpu_s']:.2f} CPU-s ({imp['wall_s']:.2f} s wall)")
    print(f"CPU per Prophet fit (median of {f['fits'] - 1 if f['fits'] > 2 else f['fits']}, ~{f['history_days']:.0f} "
          f"days of history, cycle forecast + {BillConfig().samples} predictive samples, the country's holidays): "
          f"{f['median_ms']['process']:.0f} ms in the fitting process + {f['median_ms']['children']:.0f} ms in "
          f"CmdStan = {f['median_total_ms']:.0f} ms ({f['median_ms']['wall']:.0f} ms wall seen by the caller; "
          f"first fit {f['first']['process'] + f['first']['children']:.0f} ms)")
    print(f"daily update (process + fit_request, one day): median {upd:.0f} µs, mean {upd_mean:.0f} µs; state JSON "
          f"round trip {codec:.0f} µs ({res['state_kb']} KB)")
    print(f"fits in a year of {len(years)} customers ({cyc} customer-cycles): {n_cycle} cycle fits = {per_cycle:.2f} "
          f"per customer per cycle ({res['alerts']} alerts)")
    c = res["cpu_s_per_customer_day"]
    print(f"CPU per customer per day: fits {1000 * c['fits']:.2f} ms + daily update {1000 * c['update']:.2f} ms = "
          f"{1000 * c['total']:.2f} ms")
    n = res["customers_on_2_cores"]
    print(f"customers on 2 cores: Prophet-bound {n['prophet_even']:,} (fits spread over the month); "
          f"{n['prophet_same_cycle_day']:,} if all share one bill_cycle_day (cycle fits spread over 7 days; "
          f"{n['prophet_same_cycle_day_unspread']:,} without the spread); total {n['total']:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
