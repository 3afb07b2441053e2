"""``gridwatch simulate``: a deterministic synthetic utility that speaks the wire contract.

Generation and publishing are separate. :class:`Simulator` is pure (no Kafka, no clock): it builds a
topology, the customer records, the ground truth of the injected faults, and yields the records to
publish, in order. :func:`publish` sends any such stream with kafka-python, optionally paced.

Topology
    feeders ``F001`` -> transformers ``T0001`` -> meters ``M000001``; one customer ``C000001`` per meter
    (same number). Meters are numbered consecutively through the transformers, transformers through the
    feeders. Each feeder has a region that fixes nominal voltage, time zone, currency and phone country:
    ``CN`` (220 V, Asia/Shanghai, CNY), ``GB`` (230 V, Europe/London, GBP), ``FR`` (230 V, Europe/Paris,
    EUR), ``US`` (120 V, America/New_York, USD); ``EU`` alternates GB and FR. Default region cycle
    ``CN,EU,US``: F001 is CN, F002 is GB. Segments ~82 % residential, ~14 % commercial, ~4 % industrial
    (every feeder of >= 6 meters has a commercial customer, of >= 12 an industrial one). Languages: CN
    customers ~80 % zh-CN / 20 % en (every CN transformer of >= 2 meters has both), elsewhere ~90 % en /
    10 % zh-CN. Opt-out: every transformer of >= 5 meters has max(1, round(10 %)) opted-out customers,
    smaller ones 10 % at random. Residential customers whose number is 2 mod 5 have a time-of-use tariff
    (peak 17:00-22:00 at 1.5x, off-peak 23:00-07:00 at 0.5x the flat price). Phone numbers are only ever
    in ranges reserved for fiction, one number per customer (:func:`fiction_phone`): GB customers
    +44 7700 900xxx (Ofcom's drama range), FR +33 6 39 98 xx xx (ARCEP's), and every other customer, CN
    included, +1 NXX 555-01xx (the North American fiction range, valid in every area code). China's
    numbering plan reserves no range for fiction, and any made-up +86 number (138..., 199...) may belong
    to a real subscriber; so CN customers get North American fiction numbers (nothing in gridwatch reads the
    country from a number). GB/FR customers beyond their range's size also get one.

Readings (``ts`` is the END of the interval; kwh per interval, 3 decimals; volts 1 decimal)
    load: per-segment daily shapes in the feeder's local time (residential morning + evening peaks and a
    later weekend morning, commercial weekday business hours, industrial two-shift plateau), a seasonal
    factor (summer peak in CN/US, winter peak in GB/FR), a lognormal per-customer size, multiplicative
    lognormal noise and, for homes, random appliance spikes.
    voltage: per transformer ``v = nominal * (1.02 - k * load_fraction) + meter offset + noise`` with
    ``k`` = 0.4 x the lower band width, the offset (distance down the LV line) 0 .. -0.15 x band and noise
    sigma 0.05 x band clipped at 2.5 sigma; v_min / v_max lie 0.3-1.5 % / 0.2-1 % of nominal around v_avg.
    Clean values are clamped to the standard band of :func:`detectors.standards.profile_for` shrunk by
    1 % of nominal on each side, so clean data never leaves the band. ~0.3 % of readings are
    ``estimated`` (kwh present, voltages null).

Faults (``--fault KIND:TARGET@START/ARG``, repeatable; ``START`` is RFC 3339, a date (midnight UTC) or
``+DURATION`` after ``--start``; durations like ``45m``, ``2h``, ``1h30m``, ``1d``)
    ``transformer_undervoltage:T0002@2026-07-01T10:00Z/2h``  all meters of T at ~0.86 x nominal, v_min lower
    ``meter_overvoltage:M000005@+14h/90m``                   ~1.12 x nominal, v_max higher
    ``feeder_outage:F002@2026-07-01T10:00Z/45m``             power_fail from ~60 % (a strict subset) of the
        feeder's meters at START, no reading with ``ts`` in (START, END] from any of its meters, power_restore
        from all of them at END; a reading whose interval straddles END carries the powered fraction of kwh.
        A meter still inside another outage fault sends no second power_fail, and its power_restore only
        when the last of its outages ends (``meter_outage:M000030@+10h/3h`` in a 45-minute feeder outage)
    ``bill_spike:C000003@2026-07-10/1.6``                    that customer's kwh x 1.6 from START on
    ``meter_sag:M000007@+3h/1h``                             every interval touching the window dips for a
        moment: v_min 0.6-0.8 x nominal while v_avg stays in band (``_swell``: v_max 1.15-1.3 x nominal)
    ``meter_looseneutral:M000007@+3h/4h``                    in every interval v_min 0.78-0.88 and v_max
        1.12-1.2 x nominal, v_avg swinging above and below nominal inside the band (meter level only)
    (generally ``{meter,transformer,feeder}_{undervoltage,overvoltage,outage,sag,swell}``,
    ``meter_looseneutral`` and ``bill_spike``). A reading
    whose interval partly overlaps a voltage fault mixes both levels in v_avg (v_min/v_max from both).
    Fault effects use their own random stream, so adding a fault never changes any other value.

Ordering guarantees of :meth:`Simulator.records` (and so of what ``simulate`` publishes)
    1. every customer record, in customer_id order (topic ``customers``, key customer_id); the publisher
       flushes before sending anything else;
    2. then reading messages and events, non-decreasing in event time. Readings go out in batch windows of
       ``batch`` consecutive intervals aligned to ``start`` (window w = intervals w*B .. w*B+B-1): ONE
       message per meter per window, a JSON array of that meter's readings of the window in ts order, key
       meter_id (a meter with no reading in the window -- outage -- sends none). A message's event time is
       the ts of its last reading (the window end unless an outage cut the window short). All messages of
       window w precede all of window w+1; events (topic ``meter.events``, key meter_id) are merged in at
       their ts. Ties at one instant: reading messages before events, then meter_id order.
    Identical arguments (seed included) give identical records; values do not depend on ``--batch``,
    ``--hours`` (a shorter run is a prefix) or on the faults (outside the faults' own effects).

Field realities (``--field``, ``SimConfig(field=True)``, scenario ``field``): a feed shaped like an AMI
head end's; without them every record is as above. Values are the same, delivery and events differ:
    - last gasps: each meter gets its ``power_fail`` through with its own chance, 40-70 % (drawn once per
      meter), so a transformer may have only a minority of them;
    - restore events: each meter's ``power_restore`` comes 0-90 s after the power is back;
    - batching: half the meters (chosen per meter) send each reading alone at its ``ts``, the others the
      hour's four readings as one array at the hour's end (``--batch`` is ignored);
    - ``--wrong-clock N``: N meters whose readings are dated 3 years ahead (their clock is wrong);
    - ``--late-meters N``: N meters whose customer record comes 6 h after the start while their readings
      come from the start (readings of meters not yet in the directory). Ordering guarantee 1 does not
      hold for them.
    Scenario ``field`` sets one wrong-clock meter and two late meters; its faults never target them alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from kafka import KafkaProducer
from tqdm import tqdm

from detectors.standards import profile_for
from gridwatch import config
from gridwatch import timefmt
from gridwatch.contract import format_ts
from gridwatch.timefmt import parse_duration

__all__ = [
    "REGIONS", "SCENARIOS", "DEFAULTS", "Fault", "SimConfig", "Simulator",
    "parse_fault", "parse_time", "parse_duration", "encode_value", "make_producer", "JsonLinesSink", "publish",
    "register", "config_from_args",
]

log = logging.getLogger(__name__)

SEGMENTS = ("residential", "commercial", "industrial")
_CHUNK = 256  # time steps generated together; fixed so values do not depend on batch or duration
_FIELD_ARRAY = 4  # field mode: the array meters send the hour's four readings at once
_P_ESTIMATED = 0.003
_UNDER_LEVEL = 0.86
_OVER_LEVEL = 1.12


# --------------------------------------------------------------------------------------------- regions

@dataclass(frozen=True)
class Region:
    code: str
    nominal: int
    timezone: str
    currency: str
    prices: tuple[float, float, float]  # per kWh for residential, commercial, industrial
    home_kw: float                     # mean residential load, kW
    season_peak_doy: int
    season_amp: tuple[float, float, float]
    main_language: str
    main_language_p: float

    def phone(self, n: int) -> str:
        return fiction_phone(self.code, n)


# North American area codes (NXX, N = 2-9; no N11 service codes, no N9X expansion codes): each holds the 100
# fiction numbers 555-0100..0199
_NANP_AREAS = tuple(a for a in range(201, 1000) if a % 100 != 11 and (a // 10) % 10 != 9)


def fiction_phone(region: str, n: int) -> str:
    """Customer ``n``'s phone number, in a range reserved for fiction, different for every ``n``."""
    if region == "GB" and n < 1000:
        return f"+447700900{n:03d}"                   # Ofcom: 07700 900000-900999, for drama
    if region == "FR" and n < 10000:
        return f"+3363998{n:04d}"                     # ARCEP: 06 39 98 00 00-99 99, for fiction
    if n >= 100 * len(_NANP_AREAS):
        raise ValueError(f"customer {n}: more customers than fiction phone numbers ({100 * len(_NANP_AREAS)})")
    return f"+1{_NANP_AREAS[n // 100]}55501{n % 100:02d}"  # NANPA: 555-0100..0199 in every area code


REGIONS: dict[str, Region] = {
    "CN": Region("CN", 220, "Asia/Shanghai", "CNY", (0.56, 0.82, 0.64), 0.30, 205, (0.25, 0.15, 0.05), "zh-CN", 0.8),
    "GB": Region("GB", 230, "Europe/London", "GBP", (0.245, 0.27, 0.21), 0.35, 15, (0.20, 0.10, 0.05), "en", 0.9),
    "FR": Region("FR", 230, "Europe/Paris", "EUR", (0.2516, 0.23, 0.17), 0.45, 15, (0.25, 0.10, 0.05), "en", 0.9),
    "US": Region("US", 120, "America/New_York", "USD", (0.17, 0.13, 0.085), 1.00, 205, (0.30, 0.15, 0.05), "en", 0.9),
}
_EU_CYCLE = ("GB", "FR")
#: time-of-use periods of the residential customers whose number is 2 mod 5: (name, from, to, x base price)
_TOU = (("peak", "17:00", "22:00", 1.5), ("off-peak", "23:00", "07:00", 0.5))


def _time_of_use(price: float) -> list[dict]:
    """A customer's ``tariff.time_of_use`` around their flat ``price`` (see :data:`_TOU`)."""
    return [{"name": n, "from": a, "to": b, "price_per_kwh": round(price * k, 4)} for n, a, b, k in _TOU]


def _resolve_regions(spec: Iterable[str], n_feeders: int) -> list[str]:
    codes = [c.strip().upper() for c in spec if c.strip()]
    if not codes:
        raise ValueError("no region given")
    for c in codes:
        if c != "EU" and c not in REGIONS:
            raise ValueError(f"unknown region {c!r} (known: {', '.join(REGIONS)}, EU)")
    out, eu = [], 0
    for i in range(n_feeders):
        c = codes[i % len(codes)]
        if c == "EU":
            c = _EU_CYCLE[eu % len(_EU_CYCLE)]
            eu += 1
        out.append(c)
    return out


# ----------------------------------------------------------------------------------------- load shapes

def _daily_shapes() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    h = (np.arange(1440) + 0.5) / 60.0

    def g(mu, sd):  # circular gaussian bump, hours
        d = (h - mu + 12.0) % 24.0 - 12.0
        return np.exp(-0.5 * (d / sd) ** 2)

    def box(a, b, edge=0.6):
        return 1.0 / (1.0 + np.exp(-(h - a) * 4 / edge)) / (1.0 + np.exp((h - b) * 4 / edge))

    shapes = {
        "residential": (0.35 + 0.9 * g(7.5, 1.0) + 1.5 * g(19.5, 1.8) + 0.25 * g(13.0, 2.5),
                        0.40 + 0.8 * g(9.5, 1.5) + 0.6 * g(13.5, 3.0) + 1.4 * g(19.5, 2.0)),
        "commercial": (0.25 + 1.0 * box(8.0, 19.0), 0.25 + 0.35 * box(10.0, 17.0)),
        "industrial": (0.55 + 0.40 * box(6.0, 22.0), 0.45 + 0.15 * box(6.0, 22.0)),
    }
    # normalised so the weekday mean is 1: a customer's size is its mean weekday load
    return {k: (wd / wd.mean(), we / wd.mean()) for k, (wd, we) in shapes.items()}


_SHAPES = _daily_shapes()
_PEAK = {k: float(max(wd.max(), we.max())) for k, (wd, we) in _SHAPES.items()}
_SIZE_KW = {"commercial": 8.0, "industrial": 60.0}
_SIZE_SIGMA = {"residential": 0.4, "commercial": 0.5, "industrial": 0.4}
_NOISE_SIGMA = {"residential": 0.25, "commercial": 0.10, "industrial": 0.06}


# ----------------------------------------------------------------------------------------------- faults

def parse_time(text: str, base: int | None = None) -> int:
    """RFC 3339 (``2026-07-01T10:00Z``), a date (midnight UTC) or ``+DURATION`` after ``base`` -> epoch s.

    A timestamp without an offset is read as UTC (:mod:`gridwatch.timefmt`).
    """
    if text.strip().startswith("+") and base is None:
        raise ValueError(f"relative time {text!r} needs a start")
    return int(timefmt.parse_time(text, naive_utc=True, relative_to=base, numbers=False))


_FAULT_RE = re.compile(r"^(?P<kind>[a-z_]+):(?P<target>[^@\s]+)@(?P<start>[^/\s]+)(?:/(?P<arg>\S+))?$")
_EFFECTS = ("undervoltage", "overvoltage", "outage", "sag", "swell", "looseneutral")
#: effects inside an interval (its v_min / v_max), not of its mean; each has its own random stream
_SHORT_EFFECTS = ("sag", "swell", "looseneutral")
#: the finding kind a fault's effect should be found as, where the two are spelt differently
_EXPECTED_KIND = {"looseneutral": "loose_neutral"}
_LEVELS = ("meter", "transformer", "feeder")


@dataclass(frozen=True)
class Fault:
    kind: str        # e.g. "transformer_undervoltage", "bill_spike"
    level: str       # meter | transformer | feeder | customer
    effect: str      # undervoltage | overvoltage | outage | bill_spike
    target: str
    start: int       # epoch s
    end: int | None  # epoch s; None for bill_spike = until the end of the run
    factor: float = 1.0
    spec: str = ""


def parse_fault(spec: str, base: int) -> Fault:
    """``KIND:TARGET@START/DURATION`` (``bill_spike:C…@START/FACTOR``) -> :class:`Fault`.

    Targets are not checked here (:class:`Simulator` does, against its topology).
    """
    m = _FAULT_RE.match(spec.strip())
    if not m:
        raise ValueError(f"bad fault {spec!r}: expected KIND:TARGET@START/DURATION, "
                         "e.g. transformer_undervoltage:T0002@2026-07-01T10:00Z/2h")
    kind, target, arg = m["kind"], m["target"], m["arg"]
    start = parse_time(m["start"], base)
    if kind == "bill_spike":
        try:
            factor = float(arg) if arg else 1.5
        except ValueError:
            raise ValueError(f"bad fault {spec!r}: the bill_spike factor {arg!r} is not a number") from None
        if factor <= 0:
            raise ValueError(f"bad fault {spec!r}: the factor must be > 0")
        return Fault(kind, "customer", "bill_spike", target, start, None, factor, spec)
    level, _, effect = kind.partition("_")
    if level not in _LEVELS or effect not in _EFFECTS:
        raise ValueError(f"unknown fault kind {kind!r}: use bill_spike or "
                         f"{{{','.join(_LEVELS)}}}_{{{','.join(_EFFECTS)}}}")
    if effect == "looseneutral" and level != "meter":
        raise ValueError(f"bad fault {spec!r}: a loose neutral is one customer's wiring: use meter_looseneutral")
    if not arg:
        raise ValueError(f"bad fault {spec!r}: a duration is required after '/'")
    dur = parse_duration(arg)
    if dur <= 0:
        raise ValueError(f"bad fault {spec!r}: the duration must be > 0")
    return Fault(kind, level, effect, target, start, start + dur, 1.0, spec)


# ------------------------------------------------------------------------------------------- scenarios

DEFAULTS: dict[str, Any] = {
    "seed": 42, "feeders": 2, "transformers_per_feeder": 3, "meters_per_transformer": 8,
    "regions": "CN,EU,US", "start": "2026-07-01T00:00:00Z", "hours": 24.0, "interval": 900, "batch": 4,
}


def _pick_cn_transformer(sim: "Simulator") -> str:
    cn = [f for f in sim._feeders if f["region"] == "CN"] or sim._feeders
    trs = cn[0]["transformer_ids"]
    return trs[1] if len(trs) > 1 else trs[0]


def _pick_eu_meter(sim: "Simulator", avoid: set[str]) -> str:
    eu = [f for f in sim._feeders if f["region"] in ("GB", "FR")]
    feeders = eu or [f for f in sim._feeders if f["region"] != "CN"] or sim._feeders
    for f in feeders:
        trs = f["transformer_ids"]
        for tr in trs[1:] + trs[:1]:
            if tr in avoid:
                continue
            for mid in sim._tr_meters[tr]:
                c = sim._cust_by_meter[mid]
                if not c["opted_out"] and c["segment"] == "residential":
                    return mid
    rest = [m for m in sim._meter_ids if sim._meters[m]["transformer_id"] not in avoid]
    return (rest or sim._meter_ids)[0]


def _pick_bill_customer(sim: "Simulator") -> str:
    ids = sim._cust_ids
    order = ids[2:] + ids[:2]  # C000003 first, as in the examples
    for cid in order:
        c = sim._cust_by_id[cid]
        if not c["opted_out"] and c["segment"] == "residential":
            return cid
    return order[0]


def _demo(sim: "Simulator") -> list[str]:
    tr = _pick_cn_transformer(sim)
    meter = _pick_eu_meter(sim, {tr})
    # a power cut on another transformer of the overvoltage meter's feeder: notice, then "power is back"
    feeder = sim._feeder_by_id[sim._meters[meter]["feeder_id"]]
    out = next((t for t in feeder["transformer_ids"] if t != sim._meters[meter]["transformer_id"]), None)
    faults = [f"transformer_undervoltage:{tr}@+4h/2h",         # 12:00-14:00 Asia/Shanghai
              f"meter_overvoltage:{meter}@+14h/90m"]            # 15:00-16:30 Europe/London
    if out is not None:
        faults.append(f"transformer_outage:{out}@+18h/45m")     # 19:00-19:45 Europe/London
    return faults


def _outage(sim: "Simulator") -> list[str]:
    return [f"feeder_outage:{sim._feeders[-1]['feeder_id']}@+10h/45m"]


def _all(sim: "Simulator") -> list[str]:
    return _demo(sim) + [f"feeder_outage:{sim._feeders[-1]['feeder_id']}@+34h/45m",
                         f"bill_spike:{_pick_bill_customer(sim)}@+9d/1.6"]


_EVAL_DURATIONS = {  # effect -> (shortest, longest) fault, in 15-minute steps
    "undervoltage": (4, 16), "overvoltage": (4, 16), "outage": (2, 12), "sag": (1, 4), "swell": (1, 4),
    "looseneutral": (8, 24),
}


def _eval(sim: "Simulator") -> list[str]:
    """Every fault kind once, at seed-dependent targets and times on two thirds of the feeders (the rest stay
    clean), for backtests (``gridwatch backtest --scenario eval``).

    No two faults touch the same meter within two hours of each other. The bill spike starts at the local
    midnight that opens a billing cycle of its customer, at least 33 days in (four weeks of history and one
    complete cycle before it) and two weeks before the end, so a bill detector has something to judge it by.
    """
    rng = np.random.default_rng([sim.seed, 9])
    step, day, guard = 900, 86400, 2 * 3600
    n = len(sim._feeders)
    faulty = [sim._feeders[i] for i in sorted(rng.choice(n, size=max(1, n - n // 3), replace=False))]
    busy: list[tuple[set[str], int, int]] = []

    def free(meters: set[str], t0: int, t1: int) -> bool:
        return all(not (meters & m) or t1 + guard <= a or b + guard <= t0 for m, a, b in busy)

    out = []
    start_day = datetime.fromtimestamp(sim.start, timezone.utc).date()
    choices = []
    for offset in range(33, (sim.end - sim.start) // day - 13):
        d = start_day.toordinal() + offset
        for f in faulty:
            for tr in f["transformer_ids"]:
                for mid in sim._tr_meters[tr]:
                    c = sim._cust_by_meter[mid]
                    if c["bill_cycle_day"] == datetime.fromordinal(d).day:
                        choices.append((d, c))
    if choices:
        d, c = choices[int(rng.integers(len(choices)))]
        dt = datetime.fromordinal(d)
        t0 = int(datetime(dt.year, dt.month, dt.day, tzinfo=ZoneInfo(c["timezone"])).timestamp())
        busy.append(({c["meter_id"]}, t0, sim.end))
        out.append(f"bill_spike:{c['customer_id']}@{format_ts(t0)}/{rng.uniform(1.8, 2.2):.2f}")

    kinds = [f"{lv}_{eff}" for eff in ("undervoltage", "overvoltage", "outage", "sag", "swell") for lv in _LEVELS]
    margin = min(day, (sim.end - sim.start) // 10)
    for kind in kinds + ["meter_looseneutral"]:
        level, _, effect = kind.partition("_")
        lo_steps, hi_steps = _EVAL_DURATIONS[effect]
        for _ in range(200):
            f = faulty[int(rng.integers(len(faulty)))]
            tr = f["transformer_ids"][int(rng.integers(len(f["transformer_ids"])))]
            target = {"feeder": f["feeder_id"], "transformer": tr,
                      "meter": sim._tr_meters[tr][int(rng.integers(len(sim._tr_meters[tr])))]}[level]
            dur = int(rng.integers(lo_steps, hi_steps + 1)) * step
            slots = (sim.end - margin - dur - (sim.start + margin)) // step
            if slots < 0:
                break  # the run is too short for this fault
            t0 = sim.start + margin + int(rng.integers(slots + 1)) * step
            meters = set(sim._fault_meters(Fault(kind, level, effect, target, t0, t0 + dur)))
            if free(meters, t0, t0 + dur):
                busy.append((meters, t0, t0 + dur))
                out.append(f"{kind}:{target}@{format_ts(t0)}/{dur // 60}m")
                break
    return out


def _field(sim: "Simulator") -> list[str]:
    """Outages at every scope on a feed shaped like an AMI head end's (``field`` realities), plus a
    transformer undervoltage, at seed-dependent targets and second-precise times after the first day (the
    late meters have joined by then). No two faults touch the same meter within three hours."""
    rng = np.random.default_rng([sim.seed, 11])
    day, guard = 86400, 3 * 3600
    busy: list[tuple[set[str], int, int]] = []
    feeders = list(sim._feeders)
    odd = set(sim._wrong_clock) | set(sim._late)
    out = []
    plan = ["feeder_outage"] * max(1, len(feeders) // 2) + ["transformer_outage"] * 3 + ["meter_outage"] * 3 \
        + ["transformer_undervoltage"]
    for kind in plan:
        level = kind.partition("_")[0]
        for _ in range(200):
            f = feeders[int(rng.integers(len(feeders)))]
            tr = f["transformer_ids"][int(rng.integers(len(f["transformer_ids"])))]
            meters = [m for m in sim._tr_meters[tr] if m not in odd]
            target = {"feeder": f["feeder_id"], "transformer": tr,
                      "meter": meters[int(rng.integers(len(meters)))] if meters else tr}[level]
            dur = int(rng.integers(30 * 60, 3 * 3600 + 1))
            if kind == "transformer_undervoltage":
                dur = int(rng.integers(4, 13)) * 900
            lo, hi = sim.start + day, sim.end - 6 * 3600 - dur
            if hi <= lo:
                break
            t0 = int(rng.integers(lo, hi))
            if kind == "transformer_undervoltage":
                t0 -= (t0 - sim.start) % 900
            touched = set(sim._fault_meters(Fault(kind, level, kind.partition("_")[2], target, t0, t0 + dur)))
            if all(not (touched & m) or t0 + dur + guard <= a or b + guard <= t0 for m, a, b in busy):
                busy.append((touched, t0, t0 + dur))
                out.append(f"{kind}:{target}@{format_ts(t0)}/{dur}s")
                break
    return out


# name -> (option defaults, fault builder, description). Fault times are relative to --start.
SCENARIOS: dict[str, tuple[dict[str, Any], Any, str]] = {
    "clean": ({}, lambda sim: [], "no faults"),
    "demo": ({"hours": 24.0}, _demo,
             "24 h; undervoltage on a CN transformer (zh-CN and en customers) +4h for 2 h, "
             "overvoltage on one EU meter +14h for 90 min, a power cut on another EU transformer +18h for 45 min"),
    "outage": ({"hours": 24.0}, _outage, "24 h; the last feeder out +10h for 45 min"),
    "all": ({"hours": 336.0}, _all,
            "14 days; the demo faults, the last feeder out +34h for 45 min, a 1.6x bill spike from +9d"),
    "eval": ({"hours": 1344.0, "feeders": 6, "transformers_per_feeder": 2, "meters_per_transformer": 4}, _eval,
             "8 weeks, 6 feeders of 2 x 4 meters; every fault kind once at seed-dependent targets and times on "
             "4 of the feeders, the other 2 clean; a bill spike from a billing cycle's start after day 33"),
    "field": ({"hours": 168.0, "feeders": 4, "transformers_per_feeder": 4, "meters_per_transformer": 8,
               "field": True, "wrong_clock": 1, "late_meters": 2}, _field,
              "7 days, 4 feeders of 4 x 8 meters, AMI field realities (last gasps from 40 to 70 percent of meters, "
              "restore jitter, single readings and hourly arrays, a wrong-clock meter, meters joining the "
              "directory late); 2 feeder, 3 transformer and 3 meter outages at second-precise times, a "
              "transformer undervoltage"),
}


# ------------------------------------------------------------------------------------------- simulator

@dataclass(frozen=True)
class SimConfig:
    seed: int = DEFAULTS["seed"]
    feeders: int = DEFAULTS["feeders"]
    transformers_per_feeder: int = DEFAULTS["transformers_per_feeder"]
    meters_per_transformer: int = DEFAULTS["meters_per_transformer"]
    regions: str | tuple[str, ...] = DEFAULTS["regions"]
    start: str | int = DEFAULTS["start"]
    hours: float = DEFAULTS["hours"]
    interval: int = DEFAULTS["interval"]
    batch: int = DEFAULTS["batch"]
    scenario: str | None = None
    faults: tuple[str | Fault, ...] = field(default_factory=tuple)
    #: AMI field realities (see the module docstring, "Field realities"); off: the records are as before
    field: bool = False
    #: field mode: meters whose clock is WRONG_CLOCK_S ahead, and meters whose customer record comes late
    wrong_clock: int = 0
    late_meters: int = 0


def _overlap(a0: np.ndarray, a1: np.ndarray, b0: float, b1: float) -> np.ndarray:
    """Fraction of each interval [a0, a1) inside [b0, b1)."""
    return np.clip((np.minimum(a1, b1) - np.maximum(a0, b0)) / (a1 - a0), 0.0, 1.0)


class Simulator:
    """The synthetic utility. Pure and deterministic: the same :class:`SimConfig` gives the same records.

    ``records()`` / ``timed_records()`` yield what ``simulate`` publishes, in publishing order (see the
    module docstring); ``topology()``, ``customers()``, ``truth()`` describe the grid and the faults.
    """

    def __init__(self, cfg: SimConfig | None = None, **overrides: Any):
        if cfg is None:
            cfg = SimConfig(**overrides)
        elif overrides:
            raise TypeError("pass a SimConfig or keyword options, not both")
        self.cfg = cfg
        if cfg.feeders < 1 or cfg.transformers_per_feeder < 1 or cfg.meters_per_transformer < 1:
            raise ValueError("feeders, transformers per feeder and meters per transformer must be >= 1")
        if not 1 <= cfg.interval <= 86400:
            raise ValueError("interval must be 1..86400 s")
        if cfg.batch < 1:
            raise ValueError("batch must be >= 1")
        if cfg.hours <= 0:
            raise ValueError("hours must be > 0")
        if cfg.scenario is not None and cfg.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {cfg.scenario!r} (known: {', '.join(SCENARIOS)})")
        self.seed = int(cfg.seed)
        self.start = cfg.start if isinstance(cfg.start, int) else parse_time(str(cfg.start))
        self.interval = int(cfg.interval)
        self.batch = int(cfg.batch)
        self.n_steps = int(cfg.hours * 3600 // self.interval)
        if self.n_steps < 1:
            raise ValueError("the run is shorter than one interval")
        self.end = self.start + self.n_steps * self.interval
        regions = cfg.regions.split(",") if isinstance(cfg.regions, str) else cfg.regions
        self._regions = _resolve_regions(regions, cfg.feeders)
        self._build_topology()
        self._build_arrays()
        self._build_field()
        specs: list[str | Fault] = []
        if cfg.scenario:
            specs += SCENARIOS[cfg.scenario][1](self)
        specs += list(cfg.faults)
        self.faults = [self._check_fault(f if isinstance(f, Fault) else parse_fault(f, self.start)) for f in specs]
        self._build_fault_effects()
        self._chunk_cache: dict[int, dict[str, np.ndarray]] = {}

    # ------------------------------------------------------------------ topology and customers

    def _build_topology(self) -> None:
        cfg = self.cfg
        self._feeders: list[dict] = []
        self._transformers: list[dict] = []
        self._meters: dict[str, dict] = {}
        self._meter_ids: list[str] = []
        self._tr_meters: dict[str, list[str]] = {}
        self._customers: list[dict] = []
        n_tr = n_m = 0
        for fi in range(cfg.feeders):
            region = REGIONS[self._regions[fi]]
            rng = np.random.default_rng([self.seed, 0, fi])
            fid = f"F{fi + 1:03d}"
            feeder = {"feeder_id": fid, "region": region.code, "timezone": region.timezone,
                      "nominal_voltage": region.nominal, "transformer_ids": []}
            self._feeders.append(feeder)
            f_meters: list[dict] = []
            for _ in range(cfg.transformers_per_feeder):
                n_tr += 1
                tid = f"T{n_tr:04d}"
                feeder["transformer_ids"].append(tid)
                mids = []
                n = cfg.meters_per_transformer
                segs = rng.choice(3, size=n, p=(0.82, 0.14, 0.04))
                main_lang = rng.random(n) < region.main_language_p
                if region.code == "CN" and n >= 2 and (main_lang.all() or not main_lang.any()):
                    main_lang[rng.integers(n)] = not main_lang[0]
                opted = np.zeros(n, bool)
                if n >= 5:
                    opted[rng.choice(n, size=max(1, int(round(0.1 * n))), replace=False)] = True
                else:
                    opted = rng.random(n) < 0.1
                size_z = rng.normal(size=n)
                offset_u = rng.random(n)
                quiet = rng.choice(4, size=n, p=(0.7, 0.15, 0.1, 0.05))
                pct = rng.choice(3, size=n, p=(0.7, 0.15, 0.15))
                cycle = rng.integers(1, 29, size=n)
                for j in range(n):
                    n_m += 1
                    mid, cid = f"M{n_m:06d}", f"C{n_m:06d}"
                    mids.append(mid)
                    meter = {"meter_id": mid, "customer_id": cid, "transformer_id": tid, "feeder_id": fid,
                             "region": region.code, "segment": SEGMENTS[segs[j]],
                             "_size_z": float(size_z[j]), "_offset_u": float(offset_u[j]),
                             "_lang_main": bool(main_lang[j]), "_opted": bool(opted[j]),
                             "_quiet": int(quiet[j]), "_pct": int(pct[j]), "_cycle": int(cycle[j])}
                    self._meters[mid] = meter
                    self._meter_ids.append(mid)
                    f_meters.append(meter)
                self._tr_meters[tid] = mids
                self._transformers.append({"transformer_id": tid, "feeder_id": fid, "meter_ids": mids})
            # every larger feeder shows the segment mix
            for seg, min_meters in (("commercial", 6), ("industrial", 12)):
                if len(f_meters) >= min_meters and not any(m["segment"] == seg for m in f_meters):
                    homes = [m for m in f_meters if m["segment"] == "residential"]
                    if homes:
                        homes[int(rng.integers(len(homes)))]["segment"] = seg
        other = {"zh-CN": "en", "en": "zh-CN"}
        quiet_choices = (("22:00", "08:00"), ("23:00", "07:00"), ("21:00", "07:30"), ("00:00", "06:00"))
        for mid in self._meter_ids:
            m = self._meters[mid]
            region = REGIONS[m["region"]]
            seg = m["segment"]
            si = SEGMENTS.index(seg)
            n = int(mid[1:])
            lang = region.main_language if m["_lang_main"] else other[region.main_language]
            cust = {
                "customer_id": m["customer_id"], "meter_id": mid, "transformer_id": m["transformer_id"],
                "feeder_id": m["feeder_id"], "segment": seg, "phone": region.phone(n), "language": lang,
                "timezone": region.timezone, "nominal_voltage": region.nominal,
                "bill_cycle_day": m["_cycle"],
                "tariff": {"currency": region.currency, "price_per_kwh": region.prices[si],
                           **({"time_of_use": _time_of_use(region.prices[si])} if seg == "residential"
                              and n % 5 == 2 else {})},
                "opted_out": m["_opted"],
                "preferences": {"quiet_hours": list(quiet_choices[m["_quiet"]]),
                                "bill_alert_pct": (30, 20, 50)[m["_pct"]]},
            }
            self._customers.append(cust)
        self._cust_ids = [c["customer_id"] for c in self._customers]
        self._cust_by_id = {c["customer_id"]: c for c in self._customers}
        self._cust_by_meter = {c["meter_id"]: c for c in self._customers}
        self._feeder_by_id = {f["feeder_id"]: f for f in self._feeders}
        self._tr_by_id = {t["transformer_id"]: t for t in self._transformers}

    def _build_arrays(self) -> None:
        ms = [self._meters[m] for m in self._meter_ids]
        M = len(ms)
        self.M = M
        self._col = {m: i for i, m in enumerate(self._meter_ids)}
        scale = np.empty(M)
        nom = np.empty(M)
        lo = np.empty(M)
        hi = np.empty(M)
        lp = np.empty(M)
        noise_sigma = np.empty(M)
        spike_p = np.zeros(M)
        spike_kw = np.zeros(M)
        season_amp = np.empty(M)
        season_peak = np.empty(M)
        self._groups: dict[tuple[str, str], list[int]] = {}
        for j, m in enumerate(ms):
            region = REGIONS[m["region"]]
            seg = m["segment"]
            si = SEGMENTS.index(seg)
            mean_kw = region.home_kw if seg == "residential" else _SIZE_KW[seg]
            sig = _SIZE_SIGMA[seg]
            scale[j] = mean_kw * np.exp(sig * m["_size_z"] - sig * sig / 2)
            prof = profile_for(region.nominal)
            nom[j] = region.nominal
            lo[j] = prof.low + 0.01 * region.nominal
            hi[j] = prof.high - 0.01 * region.nominal
            lp[j] = prof.low_pct
            noise_sigma[j] = _NOISE_SIGMA[seg]
            if seg == "residential":
                spike_p[j] = 0.04
                spike_kw[j] = 1.5 if region.code == "US" else 1.0
            season_amp[j] = region.season_amp[si]
            season_peak[j] = region.season_peak_doy
            self._groups.setdefault((region.timezone, seg), []).append(j)
        self._scale, self._nom, self._lo, self._hi = scale, nom, lo, hi
        self._k = 0.4 * lp
        self._off = -0.15 * lp * np.array([m["_offset_u"] for m in ms])
        self._vsig = 0.05 * lp
        self._noise_sigma, self._spike_p, self._spike_kw = noise_sigma, spike_p, spike_kw
        self._season_amp, self._season_peak = season_amp, season_peak
        self._groups_idx = {k: np.array(v) for k, v in self._groups.items()}
        # transformers: meters are contiguous per transformer
        tr_ids = [t["transformer_id"] for t in self._transformers]
        self._tr_index = {t: i for i, t in enumerate(tr_ids)}
        self._tr_starts = np.array([self._col[self._tr_meters[t][0]] for t in tr_ids])
        self._tr_of_meter = np.array([self._tr_index[m["transformer_id"]] for m in ms])
        # capacity: undersized against the sum of individual peaks (diversity), so the busiest hours load ~90-110 %
        peak = np.array([_PEAK[m["segment"]] for m in ms]) * scale * (1 + season_amp) + spike_kw * 0.5
        cap = np.add.reduceat(peak, self._tr_starts) * 1.0
        self._capacity = np.maximum(cap, 1.0)
        for t, c in zip(self._transformers, self._capacity):
            t["capacity_kw"] = round(float(c), 1)
        self._steps_ts = self.start + (np.arange(self.n_steps, dtype=np.int64) + 1) * self.interval
        self._ts_text = [format_ts(int(t)) for t in self._steps_ts]

    # ------------------------------------------------------------------ field realities

    #: how far ahead the wrong-clock meter's readings are dated (three years)
    WRONG_CLOCK_S = 3 * 365 * 86400
    #: last gasps are sent by 40-70 % of meters, each meter with its own chance
    GASP_P = (0.4, 0.7)
    #: restore events come up to this long after power is back
    RESTORE_JITTER_S = 90
    #: the meters that join the directory late do so this long after the start
    LATE_JOIN_S = 6 * 3600

    def _build_field(self) -> None:
        """Per-meter realities of ``field`` mode, from their own random stream (nothing else changes)."""
        self._gasp_p = np.full(self.M, 0.6)
        self._array = np.zeros(self.M, bool)
        self._wrong_clock: dict[str, int] = {}
        self._late: dict[str, int] = {}
        if not self.cfg.field:
            return
        rng = np.random.default_rng([self.seed, 5])
        self._gasp_p = rng.uniform(*self.GASP_P, size=self.M)
        self._array = rng.random(self.M) < 0.5
        ids = self._meter_ids
        odd = rng.permutation(self.M)
        n_wrong = min(max(0, self.cfg.wrong_clock), self.M)
        self._wrong_clock = {ids[int(j)]: self.WRONG_CLOCK_S for j in odd[:n_wrong]}
        for j in odd[n_wrong:n_wrong + max(0, self.cfg.late_meters)]:
            self._late[ids[int(j)]] = self.start + self.LATE_JOIN_S

    # ------------------------------------------------------------------ faults

    def _check_fault(self, f: Fault) -> Fault:
        valid = {"meter": self._meters, "transformer": self._tr_by_id, "feeder": self._feeder_by_id}
        if f.level == "customer":
            if f.target in self._cust_by_id:
                return f
            if f.target in self._meters:  # a meter id names its customer
                return Fault(f.kind, f.level, f.effect, self._meters[f.target]["customer_id"],
                             f.start, f.end, f.factor, f.spec)
            raise ValueError(f"fault {f.spec or f.kind!r}: no customer {f.target!r} "
                             f"(C000001..{self._cust_ids[-1]})")
        if f.target not in valid[f.level]:
            ids = list(valid[f.level])
            raise ValueError(f"fault {f.spec or f.kind!r}: no {f.level} {f.target!r} ({ids[0]}..{ids[-1]})")
        return f

    def _fault_meters(self, f: Fault) -> list[str]:
        if f.level == "meter":
            return [f.target]
        if f.level == "transformer":
            return list(self._tr_meters[f.target])
        if f.level == "feeder":
            return [m for t in self._feeder_by_id[f.target]["transformer_ids"] for m in self._tr_meters[t]]
        return [self._cust_by_id[f.target]["meter_id"]]

    def _dark_elsewhere(self, i: int, meter: str, t: int, ending: bool) -> bool:
        """Whether an outage fault other than fault ``i`` keeps ``meter`` without power at ``t``: one begun
        before ``t`` (so no second last gasp) or, with ``ending``, one not over at ``t`` (so no restore yet)."""
        for j, g in enumerate(self.faults):
            if j != i and meter in self._outage_meters[j] and (
                    g.start <= t < g.end if ending else g.start < t <= g.end):
                return True
        return False

    def _build_fault_effects(self) -> None:
        self._fault_cols = [np.array([self._col[m] for m in self._fault_meters(f)]) for f in self.faults]
        self._outage_meters = [set(self._fault_meters(f)) if f.effect == "outage" else set() for f in self.faults]
        events: list[tuple[int, int, str, str]] = []  # (ts, meter col, meter_id, type)
        self._power_fail: list[list[str]] = []
        for i, f in enumerate(self.faults):
            fails: list[str] = []
            if f.effect == "outage":
                meters = self._fault_meters(f)
                rng = np.random.default_rng([self.seed, 2, i])
                n = len(meters)
                if self.cfg.field:  # each meter gets its last gasp through with its own chance
                    p = self._gasp_p[[self._col[m] for m in meters]]
                    fails = [m for m, ok in zip(meters, rng.random(n) < p) if ok]
                else:
                    k = n if n == 1 else int(np.clip(round(0.6 * n), 1, n - 1))  # a strict subset sends last gasps
                    fails = [meters[c] for c in sorted(rng.choice(n, size=k, replace=False))]
                # overlapping outage faults are one outage to a meter in both: no second last gasp, and
                # the restore only when the last of them ends (a nested outage)
                fails = [m for m in fails if not self._dark_elsewhere(i, m, f.start, ending=False)]
                if self.start <= f.start <= self.end:
                    events += [(f.start, self._col[m], m, "power_fail") for m in fails]
                if self.start <= f.end <= self.end:
                    back = [m for m in meters if not self._dark_elsewhere(i, m, f.end, ending=True)]
                    # field: restore events spread over RESTORE_JITTER_S after the power is back
                    lag = (rng.integers(0, self.RESTORE_JITTER_S + 1, size=len(back)) if self.cfg.field
                           else np.zeros(len(back), int))
                    events += [(f.end + int(d), self._col[m], m, "power_restore") for m, d in zip(back, lag)]
            self._power_fail.append(fails)
        events.sort(key=lambda e: (e[0], e[1]))
        self._events = list(dict.fromkeys(events))  # faults starting or ending together: one event each

    # ------------------------------------------------------------------ accessors

    def topology(self) -> dict[str, list[dict]]:
        """Feeders, transformers and meters as plain dicts (JSON-ready)."""
        return {
            "feeders": [dict(f, transformer_ids=list(f["transformer_ids"])) for f in self._feeders],
            "transformers": [dict(t, meter_ids=list(t["meter_ids"])) for t in self._transformers],
            "meters": [{k: v for k, v in self._meters[m].items() if not k.startswith("_")}
                       for m in self._meter_ids],
        }

    def customers(self) -> list[dict]:
        """The ``customers`` records (values), in customer_id order. Copies: safe to modify."""
        return json.loads(json.dumps(self._customers))

    def truth(self) -> list[dict]:
        """One ground-truth record per fault, in the order the faults were given."""
        out = []
        for f, fails in zip(self.faults, self._power_fail):
            meters = self._fault_meters(f)
            if f.effect == "bill_spike":
                scope = {"level": "meter", "id": meters[0]}
            else:
                scope = {"level": f.level, "id": f.target}
            rec = {"fault": f.kind, "scope": scope, "start": format_ts(f.start),
                   "end": format_ts(f.end if f.end is not None else self.end),
                   "meter_ids": meters, "customer_ids": [self._meters[m]["customer_id"] for m in meters],
                   "expected_kind": _EXPECTED_KIND.get(f.effect, f.effect)}
            if f.effect == "bill_spike":
                rec["factor"] = f.factor
            if f.effect == "outage":
                rec["power_fail_meter_ids"] = fails
            out.append(rec)
        return out

    def counts(self) -> dict[str, int]:
        """Exact numbers of what :meth:`records` yields: customers, readings, events, messages."""
        dropped = np.zeros((self.n_steps, self.M), bool)
        for f, cols in zip(self.faults, self._fault_cols):
            if f.effect == "outage":
                rows = (self._steps_ts > f.start) & (self._steps_ts <= f.end)
                dropped[np.ix_(rows, cols)] = True
        kept = ~dropped
        msgs = 0
        if self.cfg.field:
            msgs += int(kept[:, ~self._array].sum())
            for w0 in range(0, self.n_steps, _FIELD_ARRAY):
                msgs += int(kept[w0:w0 + _FIELD_ARRAY][:, self._array].any(axis=0).sum())
            return {"customers": len(self._customers), "readings": int(kept.sum()), "events": len(self._events),
                    "messages": len(self._customers) + msgs + len(self._events)}
        for w0 in range(0, self.n_steps, self.batch):
            msgs += int(kept[w0:w0 + self.batch].any(axis=0).sum())
        return {"customers": len(self._customers), "readings": int(kept.sum()), "events": len(self._events),
                "messages": len(self._customers) + msgs + len(self._events)}

    # ------------------------------------------------------------------ values

    def _chunk(self, c: int) -> dict[str, np.ndarray]:
        cached = self._chunk_cache.get(c)
        if cached is not None:
            return cached
        C, M, iv = _CHUNK, self.M, self.interval
        ts_end = self.start + (np.arange(c * C, (c + 1) * C, dtype=np.int64) + 1) * iv
        ts_begin = ts_end - iv
        mid = ts_end - iv // 2
        rng = np.random.default_rng([self.seed, 1, c])
        utc = pd.to_datetime(mid, unit="s", utc=True)
        prof = np.empty((C, M))
        local_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for (tz, seg), cols in self._groups_idx.items():
            if tz not in local_cache:
                loc = utc.tz_convert(tz)
                local_cache[tz] = (np.asarray(loc.hour * 60 + loc.minute), np.asarray(loc.day_of_week >= 5))
            mod, weekend = local_cache[tz]
            wd, we = _SHAPES[seg]
            prof[:, cols] = np.where(weekend, we[mod], wd[mod])[:, None]
        doy = np.asarray(utc.day_of_year, dtype=float)
        season = 1.0 + self._season_amp * np.cos(2 * np.pi * (doy[:, None] - self._season_peak) / 365.25)
        sig = self._noise_sigma
        noise = rng.lognormal(-sig * sig / 2, sig, size=(C, M))
        spikes = (rng.random((C, M)) < self._spike_p) * rng.uniform(0.3, 2.0, size=(C, M)) * self._spike_kw
        kw = prof * season * self._scale * noise + spikes
        vnoise = np.clip(rng.standard_normal((C, M)), -2.5, 2.5) * self._vsig
        spread_lo = rng.uniform(0.003, 0.015, size=(C, M))
        spread_hi = rng.uniform(0.002, 0.010, size=(C, M))
        estimated = rng.random((C, M)) < _P_ESTIMATED

        dropped = np.zeros((C, M), bool)
        for f, cols in zip(self.faults, self._fault_cols):
            end = f.end if f.end is not None else np.inf
            frac = _overlap(ts_begin, ts_end, f.start, end)
            if not frac.any():
                continue
            if f.effect == "bill_spike":
                kw[:, cols] *= (1 + (f.factor - 1) * frac)[:, None]
            elif f.effect == "outage":
                out = (ts_end > f.start) & (ts_end <= f.end)
                dropped[np.ix_(out, cols)] = True
                part = ~out & (frac > 0)
                if part.any():
                    kw[np.ix_(part, cols)] *= (1 - frac[part])[:, None]

        load = np.add.reduceat(kw, self._tr_starts, axis=1) / self._capacity
        lf = np.minimum(load, 1.3)[:, self._tr_of_meter]
        vfrac = 1.02 - self._k * lf + self._off + vnoise
        v_avg = np.clip(self._nom * vfrac, self._lo, self._hi)
        v_min = np.clip(v_avg - self._nom * spread_lo, self._lo, None)
        v_max = np.clip(v_avg + self._nom * spread_hi, None, self._hi)

        vfaults = [(i, f, cols) for i, (f, cols) in enumerate(zip(self.faults, self._fault_cols))
                   if f.effect in ("undervoltage", "overvoltage")]
        if vfaults:
            frng = np.random.default_rng([self.seed, 3, c])
            for i, f, cols in vfaults:
                frac = _overlap(ts_begin, ts_end, f.start, f.end)
                # drawn whether or not the fault touches this chunk, so each fault's noise is stable
                z = np.clip(frng.standard_normal((C, len(cols))), -2.5, 2.5)
                a = frng.uniform(0.0, 1.0, size=(C, len(cols)))
                b = frng.uniform(0.0, 1.0, size=(C, len(cols)))
                rows = frac > 0
                if not rows.any():
                    continue
                nom = self._nom[cols]
                if f.effect == "undervoltage":
                    fa = nom * (_UNDER_LEVEL + 0.5 * self._off[cols] + 0.004 * z)
                    fmin = fa - nom * (0.01 + 0.03 * a)
                    fmax = fa + nom * (0.002 + 0.008 * b)
                else:
                    fa = nom * (_OVER_LEVEL + 0.004 * z)
                    fmin = fa - nom * (0.002 + 0.006 * a)
                    fmax = fa + nom * (0.01 + 0.02 * b)
                fa, fmin, fmax = fa[rows], fmin[rows], fmax[rows]
                fr = frac[rows][:, None]
                sub = np.ix_(rows, cols)
                full = fr >= 1.0
                v_avg[sub] = fr * fa + (1 - fr) * v_avg[sub]
                v_min[sub] = np.where(full, fmin, np.minimum(fmin, v_min[sub]))
                v_max[sub] = np.where(full, fmax, np.maximum(fmax, v_max[sub]))

        for i, (f, cols) in enumerate(zip(self.faults, self._fault_cols)):
            if f.effect not in _SHORT_EFFECTS:
                continue
            rows = _overlap(ts_begin, ts_end, f.start, f.end) > 0
            if not rows.any():
                continue
            # a stream per fault and chunk: these faults change no value of any other fault or meter
            srng = np.random.default_rng([self.seed, 4, i, c])
            size = (C, len(cols))
            nom, sub = self._nom[cols], np.ix_(rows, cols)
            if f.effect == "sag":
                v_min[sub] = np.minimum(v_min[sub], (nom * srng.uniform(0.6, 0.8, size))[rows])
            elif f.effect == "swell":
                v_max[sub] = np.maximum(v_max[sub], (nom * srng.uniform(1.15, 1.3, size))[rows])
            else:  # loose neutral: the mean swings inside the clean band, the extremes leave the band both ways
                lo, hi = self._lo[cols], self._hi[cols]
                a = srng.uniform(0.3, 1.0, size)
                swing = np.where(srng.random(size) < 0.5, nom + a * (hi - nom), nom - a * (nom - lo))
                dip = nom * srng.uniform(0.78, 0.88, size)     # below every standard's band, a sag too
                peak = nom * srng.uniform(1.12, 1.2, size)     # above every standard's band, a swell too
                fr = _overlap(ts_begin, ts_end, f.start, f.end)[rows][:, None]
                v_avg[sub] = fr * swing[rows] + (1 - fr) * v_avg[sub]
                v_min[sub] = np.minimum(v_min[sub], dip[rows])
                v_max[sub] = np.maximum(v_max[sub], peak[rows])

        out = {"kwh": np.round(kw * (iv / 3600.0), 3), "v_avg": np.round(v_avg, 1),
               "v_min": np.round(v_min, 1), "v_max": np.round(v_max, 1),
               "estimated": estimated, "dropped": dropped}
        if len(self._chunk_cache) > 2:
            self._chunk_cache.clear()
        self._chunk_cache[c] = out
        return out

    def _block(self, s0: int, s1: int) -> dict[str, np.ndarray]:
        c0, c1 = s0 // _CHUNK, (s1 - 1) // _CHUNK
        parts = []
        for c in range(c0, c1 + 1):
            ch = self._chunk(c)
            a = max(s0, c * _CHUNK) - c * _CHUNK
            b = min(s1, (c + 1) * _CHUNK) - c * _CHUNK
            parts.append({k: v[a:b] for k, v in ch.items()})
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def values(self, s0: int = 0, s1: int | None = None) -> dict[str, np.ndarray]:
        """Arrays (steps x meters, columns in meter_id order) for steps s0..s1: kwh, v_avg, v_min, v_max,
        estimated, dropped. Handy for backtests; ``records`` is built from the same arrays."""
        return self._block(s0, self.n_steps if s1 is None else s1)

    # ------------------------------------------------------------------ records

    def timed_records(self, include_customers: bool = True) -> Iterator[tuple[int, str, str, Any]]:
        """``(event_time_epoch_s, topic, key, value)`` in publishing order. ``value`` is a dict (customers,
        events) or a list of reading dicts (one meter's readings of one batch window)."""
        if self.cfg.field:
            yield from self._field_records(include_customers)
            return
        if include_customers:
            for c in self.customers():
                yield self.start, config.CUSTOMERS, c["customer_id"], c
        iv, B, ids = self.interval, self.batch, self._meter_ids
        ts_text, ts_epoch = self._ts_text, self._steps_ts
        events, ei, n_ev = self._events, 0, len(self._events)
        READ, EVT = config.READINGS, config.EVENTS
        for w0 in range(0, self.n_steps, B):
            w1 = min(w0 + B, self.n_steps)
            close = int(ts_epoch[w1 - 1])
            blk = self._block(w0, w1)
            kwh = blk["kwh"].T.tolist()
            va, vn, vx = blk["v_avg"].T.tolist(), blk["v_min"].T.tolist(), blk["v_max"].T.tolist()
            est = blk["estimated"].T
            drop = blk["dropped"].T
            any_est = est.any(axis=1).tolist()
            any_drop = drop.any(axis=1).tolist()
            n = w1 - w0
            msgs: list[tuple[int, int, int, str, str, Any]] = []
            truncated = False
            for j, mid in enumerate(ids):
                kj, aj, nj, xj = kwh[j], va[j], vn[j], vx[j]
                if not any_est[j] and not any_drop[j]:
                    batch = [{"meter_id": mid, "ts": ts_text[w0 + i], "interval_s": iv, "kwh": kj[i],
                              "v_avg": aj[i], "v_min": nj[i], "v_max": xj[i], "quality": "actual"}
                             for i in range(n)]
                    msgs.append((close, 0, j, READ, mid, batch))
                    continue
                ej, dj = est[j], drop[j]
                batch = []
                last = -1
                for i in range(n):
                    if dj[i]:
                        continue
                    last = i
                    if ej[i]:
                        batch.append({"meter_id": mid, "ts": ts_text[w0 + i], "interval_s": iv, "kwh": kj[i],
                                      "v_avg": None, "v_min": None, "v_max": None, "quality": "estimated"})
                    else:
                        batch.append({"meter_id": mid, "ts": ts_text[w0 + i], "interval_s": iv, "kwh": kj[i],
                                      "v_avg": aj[i], "v_min": nj[i], "v_max": xj[i], "quality": "actual"})
                if batch:
                    t_msg = int(ts_epoch[w0 + last])
                    truncated |= t_msg != close
                    msgs.append((t_msg, 0, j, READ, mid, batch))
            evs = []
            while ei < n_ev and events[ei][0] <= close:
                t, col, mid, typ = events[ei]
                evs.append((t, 1, col, EVT, mid, {"meter_id": mid, "ts": format_ts(t), "type": typ}))
                ei += 1
            if evs or truncated:
                msgs += evs
                msgs.sort(key=lambda r: (r[0], r[1], r[2]))
            for t, _, _, topic, key, value in msgs:
                yield t, topic, key, value

    def _field_records(self, include_customers: bool) -> Iterator[tuple[int, str, str, Any]]:
        """``timed_records`` of ``field`` mode: single-reading meters send each reading at its ``ts``, the
        others an array of the hour's four at the hour's end (what they have: an outage shortens it); the
        wrong-clock meter's readings are dated ``WRONG_CLOCK_S`` ahead; a late meter's customer record comes
        at its join time, its readings from the start (a meter not yet in the directory)."""
        iv, ids, A = self.interval, self._meter_ids, _FIELD_ARRAY
        ts_epoch, ts_text = self._steps_ts, self._ts_text
        READ, EVT, CUST = config.READINGS, config.EVENTS, config.CUSTOMERS
        late = sorted((t, c["customer_id"], c) for c in self.customers() if (t := self._late.get(c["meter_id"])))
        if include_customers:
            for c in self.customers():
                if c["meter_id"] not in self._late:
                    yield self.start, CUST, c["customer_id"], c
        events, ei, n_ev = self._events, 0, len(self._events)
        li = 0
        for w0 in range(0, self.n_steps, A):
            w1 = min(w0 + A, self.n_steps)
            close = int(ts_epoch[w1 - 1])
            blk = self._block(w0, w1)
            msgs: list[tuple[int, int, int, str, str, Any]] = []
            for j, mid in enumerate(ids):
                shift = self._wrong_clock.get(mid, 0)
                batch = []
                for i in range(w1 - w0):
                    if blk["dropped"][i, j]:
                        continue
                    est = bool(blk["estimated"][i, j])
                    ts = ts_text[w0 + i] if not shift else format_ts(int(ts_epoch[w0 + i]) + shift)
                    r = {"meter_id": mid, "ts": ts, "interval_s": iv, "kwh": float(blk["kwh"][i, j]),
                         "v_avg": None if est else float(blk["v_avg"][i, j]),
                         "v_min": None if est else float(blk["v_min"][i, j]),
                         "v_max": None if est else float(blk["v_max"][i, j]),
                         "quality": "estimated" if est else "actual"}
                    if self._array[j]:
                        batch.append(r)
                    else:
                        msgs.append((int(ts_epoch[w0 + i]), 0, j, READ, mid, r))
                if batch:
                    msgs.append((close, 0, j, READ, mid, batch))
            while ei < n_ev and events[ei][0] <= close:
                t, col, mid, typ = events[ei]
                msgs.append((t, 1, col, EVT, mid, {"meter_id": mid, "ts": format_ts(t), "type": typ}))
                ei += 1
            while include_customers and li < len(late) and late[li][0] <= close:
                t, cid, c = late[li]
                msgs.append((t, -1, 0, CUST, cid, c))
                li += 1
            msgs.sort(key=lambda r: (r[0], r[1], r[2]))
            for t, _, _, topic, key, value in msgs:
                yield t, topic, key, value

    def records(self, include_customers: bool = True) -> Iterator[tuple[str, str, Any]]:
        """``(topic, key, value)`` in publishing order (see :meth:`timed_records`)."""
        for _, topic, key, value in self.timed_records(include_customers):
            yield topic, key, value


# ------------------------------------------------------------------------------------------ publishing

def encode_value(value: Any) -> bytes:
    """The wire encoding of a message value: compact JSON, UTF-8 (non-ASCII kept as is)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def make_producer(bootstrap: str | list[str] | None = None):
    """A kafka-python producer for gridwatch's topics: idempotent, acks=all, str keys, JSON values.

    Topics are not auto-created (``gridwatch topics create`` makes them with the right partitions).
    """
    servers = bootstrap or config.Settings().bootstrap_list
    if isinstance(servers, str):
        servers = [s.strip() for s in servers.split(",") if s.strip()]
    return KafkaProducer(
        bootstrap_servers=servers,
        key_serializer=lambda k: None if k is None else k.encode("utf-8"),
        value_serializer=encode_value,
        acks="all", enable_idempotence=True, linger_ms=20, batch_size=256 * 1024,
        allow_auto_create_topics=False, max_block_ms=30000,
    )


class TopicSink:
    """A producer that sends to the deployed topic names (``GRIDWATCH_TOPIC_PREFIX`` + contract name)."""

    def __init__(self, producer, settings: "config.Settings | None" = None):
        self.producer, self.settings = producer, settings or config.Settings()

    def send(self, topic: str, key: str | None, value: Any) -> None:
        self.producer.send(self.settings.topic(topic), key=key, value=value)

    def flush(self) -> None:
        self.producer.flush()


class JsonLinesSink:
    """Where records go: a Kafka producer, or JSON lines on a file (``--out``)."""

    def __init__(self, producer=None, out=None):
        self.producer, self.out = producer, out

    def send(self, topic: str, key: str | None, value: Any) -> None:
        if self.producer is not None:
            self.producer.send(topic, key=key, value=value)
        else:
            self.out.write(json.dumps({"topic": topic, "key": key, "value": value}, ensure_ascii=False,
                                      separators=(",", ":")) + "\n")

    def flush(self) -> None:
        if self.producer is not None:
            self.producer.flush()
        else:
            self.out.flush()


def publish(timed: Iterable[tuple[int, str, str, Any]], sink, *, speedup: float | None = None,
            total: int | None = None, progress: bool = True, desc: str = "publishing",
            flush_after: str | None = config.CUSTOMERS) -> dict[str, int]:
    """Send ``(event_time, topic, key, value)`` records in order; returns counts per topic and ``messages``.

    ``sink`` has ``send(topic, key=, value=)`` and ``flush()`` (a KafkaProducer or :class:`JsonLinesSink`).
    ``speedup`` X paces sending so that event time advances X times faster than wall time, measured from
    the first record; None or 0 = as fast as possible. The sink is flushed once after the leading records
    of ``flush_after`` (the customers must be in place before the readings) and at the end.
    """
    counts: dict[str, int] = {}
    bar = tqdm(total=total, desc=desc, unit="msg", file=sys.stderr, disable=not progress, smoothing=0.1)
    t0 = w0 = None
    pending_flush = flush_after is not None
    n = 0
    try:
        for t, topic, key, value in timed:
            if pending_flush and topic != flush_after:
                sink.flush()
                pending_flush = False
            if speedup:
                if t0 is None:
                    t0, w0 = t, time.monotonic()
                delay = w0 + (t - t0) / speedup - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            sink.send(topic, key=key, value=value)
            counts[topic] = counts.get(topic, 0) + 1
            n += 1
            bar.update(1)
        sink.flush()
    finally:
        bar.close()
    counts["messages"] = n
    return counts


# ------------------------------------------------------------------------------------------------ CLI

def register(subparsers) -> None:
    scen = "; ".join(f"{k}: {v[2]}" for k, v in SCENARIOS.items())
    p = subparsers.add_parser(
        "simulate", help="publish a synthetic utility's customers, readings and events (deterministic)",
        description="Generate a synthetic utility (feeders -> transformers -> meters, one customer per meter), "
                    "publish every customer record, then readings and events in event-time order. "
                    "Faults can be injected and their ground truth written with --truth.")
    p.add_argument("--seed", type=int, default=None, help=f"random seed (default {DEFAULTS['seed']})")
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default=None,
                   help=f"named scenario; explicit options override its defaults and --fault adds to its "
                        f"faults ({scen})")
    p.add_argument("--feeders", type=int, default=None, help=f"number of feeders (default {DEFAULTS['feeders']})")
    p.add_argument("--transformers-per-feeder", type=int, default=None,
                   help=f"transformers on each feeder (default {DEFAULTS['transformers_per_feeder']})")
    p.add_argument("--meters-per-transformer", type=int, default=None,
                   help=f"meters (= customers) on each transformer (default {DEFAULTS['meters_per_transformer']})")
    p.add_argument("--regions", default=None,
                   help="comma-separated regions cycled over the feeders: CN, GB, FR, US, or EU (GB and FR "
                        f"alternately) (default {DEFAULTS['regions']})")
    p.add_argument("--start", default=None, help=f"start of the first interval, RFC 3339 (default {DEFAULTS['start']})")
    p.add_argument("--hours", type=float, default=None,
                   help=f"simulated duration in hours (default {DEFAULTS['hours']:g}; scenario 'all': 336)")
    p.add_argument("--interval", type=int, default=None,
                   help=f"seconds per reading interval (default {DEFAULTS['interval']})")
    p.add_argument("--fault", action="append", default=[], metavar="KIND:TARGET@START/DURATION",
                   help="inject a fault (repeatable): transformer_undervoltage:T0002@2026-07-01T10:00Z/2h, "
                        "meter_overvoltage:M000005@+14h/90m, feeder_outage:F002@+10h/45m, "
                        "bill_spike:C000003@2026-07-10/1.6 (factor); KIND is LEVEL_EFFECT with LEVEL meter, "
                        "transformer or feeder and EFFECT undervoltage, overvoltage, sag, swell or outage, or "
                        "meter_looseneutral; START may be +DURATION after --start")
    p.add_argument("--truth", metavar="FILE", default=None,
                   help="write the ground truth of the faults as JSON lines (one per fault)")
    p.add_argument("--batch", type=int, default=None,
                   help=f"readings per meter.readings message (a JSON array) (default {DEFAULTS['batch']})")
    p.add_argument("--field", action="store_true", default=None,
                   help="AMI field realities: last gasps from 40 to 70 percent of meters (each its own chance), restore "
                        "events spread over 90 s, single readings and hourly arrays of 4 (--batch is ignored) "
                        "(scenario 'field' turns it on)")
    p.add_argument("--wrong-clock", type=int, default=None, metavar="N",
                   help="with --field: N meters whose readings are dated 3 years ahead (scenario 'field': 1)")
    p.add_argument("--late-meters", type=int, default=None, metavar="N",
                   help="with --field: N meters whose customer record comes 6 h after the start, their "
                        "readings from the start (scenario 'field': 2)")
    p.add_argument("--speedup", type=float, default=None,
                   help="pace publishing: event time runs X times faster than wall time (3600 = one simulated "
                        "hour per second); default: as fast as possible")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--topic-prefix", default=None, metavar="PREFIX",
                       help="publish to PREFIX + the topic names (default: GRIDWATCH_TOPIC_PREFIX); one of this, "
                            "GRIDWATCH_TOPIC_PREFIX, --contract-topics or --out is required")
    where.add_argument("--contract-topics", action="store_true",
                       help="publish to the contract's own topic names (meter.readings, customers, ...) without "
                            "a prefix: only for a cluster that holds nothing but simulated data")
    p.add_argument("--real-twilio", action="store_true",
                   help="publish although TWILIO_* is set (a worker with real credentials would send real SMS "
                        "to the simulated customers' fiction numbers)")
    add_publish_options(p)
    p.set_defaults(func=run)


def add_publish_options(p: argparse.ArgumentParser) -> None:
    """Where ``simulate`` and ``replay`` send their records (see :func:`publish_for_command`)."""
    p.add_argument("--bootstrap", default=None,
                   help="Kafka bootstrap servers (default: KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="write the records as JSON lines {topic,key,value} to FILE ('-' = stdout) instead of Kafka")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def publish_for_command(command: str, timed, total: int, args: argparse.Namespace) -> tuple[int, dict | None]:
    """Publish for ``simulate`` and ``replay``: to Kafka, or JSON lines with ``--out``.

    Returns ``(0, counts)``, or ``(exit code, None)`` after printing a one-line error.
    """
    producer = out = None
    try:
        if args.out:
            out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")
            sink = JsonLinesSink(out=out)
        else:
            try:
                producer = make_producer(args.bootstrap)
            except Exception as exc:  # NoBrokersAvailable and friends
                servers = args.bootstrap or config.Settings().bootstrap_servers
                print(f"gridwatch {command}: cannot reach Kafka at {servers}: {exc} "
                      "(start it with 'gridwatch kafka start')", file=sys.stderr)
                return 1, None
            prefix = getattr(args, "topic_prefix", None)  # simulate --topic-prefix
            sink = TopicSink(producer, config.Settings(topic_prefix=prefix) if prefix else None)
        return 0, publish(timed, sink, speedup=args.speedup, total=total,
                          progress=not args.no_progress and args.out != "-", desc=command)
    except BrokenPipeError:  # --out - piped into head & co.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0, None
    except Exception as exc:
        if producer is None:
            raise
        print(f"gridwatch {command}: publishing failed: {type(exc).__name__}: {exc} "
              "(do the topics exist? 'gridwatch topics create')", file=sys.stderr)
        return 1, None
    finally:
        if producer is not None:
            producer.close(timeout=10)
        if out is not None and out is not sys.stdout:
            out.close()


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """Explicit options > scenario defaults > global defaults."""
    scen = SCENARIOS[args.scenario][0] if args.scenario else {}
    vals = {}
    for name in ("seed", "feeders", "transformers_per_feeder", "meters_per_transformer", "regions", "start",
                 "hours", "interval", "batch"):
        v = getattr(args, name, None)
        vals[name] = v if v is not None else scen.get(name, DEFAULTS[name])
    field_mode = bool(getattr(args, "field", False) or scen.get("field", False))
    odd = {k: getattr(args, k, None) if getattr(args, k, None) is not None else scen.get(k, 0)
           for k in ("wrong_clock", "late_meters")}
    return SimConfig(scenario=args.scenario, faults=tuple(args.fault or ()), field=field_mode, **odd, **vals)


def _quiet_kafka_logs(args: argparse.Namespace) -> None:
    """kafka-python logs every connection at INFO; keep the console to the progress bar and the summary."""
    if not getattr(args, "verbose", False):
        logging.getLogger("kafka").setLevel(logging.WARNING)


def _topic_choice(args: argparse.Namespace) -> str | None:
    """Why ``simulate`` may not publish as asked (None: it may). Writing the contract topics of a real
    deployment takes an explicit choice, and so does publishing next to real Twilio credentials."""
    if args.out:
        return None
    if not (getattr(args, "topic_prefix", None) or config.Settings().topic_prefix
            or getattr(args, "contract_topics", False)):
        return ("choose the topics: --topic-prefix PREFIX (or GRIDWATCH_TOPIC_PREFIX) for topics of their own, or "
                "--contract-topics to write simulated data to the contract topics themselves (meter.readings, "
                "customers, ...)")
    if config.Settings().twilio_configured and not getattr(args, "real_twilio", False):
        return ("TWILIO_* is set: a worker with these credentials would send real SMS to the simulated customers; "
                "pass --real-twilio if that is meant, or unset TWILIO_* to use the SMS sandbox")
    return None


def run(args: argparse.Namespace) -> int:
    _quiet_kafka_logs(args)
    refused = _topic_choice(args)
    if refused:
        print(f"gridwatch simulate: {refused}", file=sys.stderr)
        return 2
    try:
        sim = Simulator(config_from_args(args))
    except ValueError as exc:
        print(f"gridwatch simulate: error: {exc}", file=sys.stderr)
        return 2
    if args.truth:
        with open(args.truth, "w", encoding="utf-8") as fh:
            for rec in sim.truth():
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    counts = sim.counts()
    t_start = time.monotonic()
    code, sent = publish_for_command("simulate", sim.timed_records(), counts["messages"], args)
    if sent is None:
        return code
    secs = time.monotonic() - t_start
    print(f"simulate: {counts['customers']} customers, {counts['readings']} readings, {counts['events']} events, "
          f"{sent['messages']} messages in {secs:.1f} s (seed {sim.seed}, scenario {args.scenario or 'none'}, "
          f"{len(sim.faults)} faults, {format_ts(sim.start)} .. {format_ts(sim.end)})",
          file=sys.stderr if args.out == "-" else sys.stdout)
    return 0
