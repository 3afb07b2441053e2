"""Test a detector without Kafka: input builders, an event-time clock, and the contract suite.

Builders return what the pipeline hands a detector — :class:`~gridwatch.contract.Reading` and
:class:`~gridwatch.contract.MeterEvent` objects, days of usage, customers records, a
:class:`~detectors.api.Context`::

    clock = Clock("2026-07-01T00:00:00Z")
    ctx = context(customer(nominal_voltage=230))
    batch = readings("M000001", clock, 8, v=230.0, at={range(2, 6): {"v_avg": 196.0}})
    state, findings = VoltageDetector().process(None, batch, ctx)

Times are event time, epoch seconds (ints); anywhere a time is taken, an RFC 3339 string or a
:class:`Clock` (its ``now``) does too. A reading's ``ts`` is the END of its interval, as on the wire.

:func:`check_detector` runs the contract every registered detector keeps (see ``detectors.api``); each rule
is also a function in :data:`CHECKS`, so a test can parametrize over them::

    @pytest.mark.parametrize("check", CHECKS)
    def test_contract(check):
        CHECKS[check](MyDetector)

The inputs the suite feeds are built by :func:`scenario` for the detector's ``input`` type and contain real
anomalies (a sustained undervoltage, sags and swells, a swinging voltage, outages over a small feeder, a
jump in usage), so the rules are checked on runs that produce findings, not on quiet ones. They are fed as
the pipeline feeds them (:func:`run`): ``process`` per batch, ``advance`` to the batch's event time, and for
a :class:`~detectors.api.Fittable` its ``fit_request``, ``fit`` (memoised, :func:`fitter`) and ``apply_fit``.
The rules of an optional hook (:data:`HOOK_RULES`) check only detectors of its base class.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import pickle
import random
from dataclasses import dataclass
from datetime import date as _date, datetime, timedelta
from typing import Any, Callable, Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo

from gridwatch.contract import MeterEvent, Reading, check, format_ts
from gridwatch.timefmt import parse_duration, parse_time

from .api import FINDING_STATUSES, Context, Detector, Fittable, Muting
from .registry import DetectorError, validate
from .standards import profile_for_customer

__all__ = [
    "DEFAULT_START", "Clock", "Window", "window", "reading", "readings", "event", "customer", "context",
    "Feeder", "feeder", "day", "days", "Step", "Scenario", "scenario", "reading_scenario", "event_scenario",
    "daily_scenario", "run", "fitter", "CHECKS", "HOOK_RULES", "check_detector",
]

#: a Monday, 00:00 UTC: where builders start when given no time
DEFAULT_START = "2026-06-29T00:00:00Z"

# ------------------------------------------------------------------------------------------------ time

def _parse_time(text: str) -> int:
    """RFC 3339, a time without an offset read as UTC (:mod:`gridwatch.timefmt`)."""
    return int(parse_time(text, naive_utc=True, numbers=False))


def _epoch(t: Any) -> int:
    """An int (epoch s), an RFC 3339 string (no offset: UTC) or a :class:`Clock` -> epoch seconds."""
    if isinstance(t, Clock):
        return t.now
    if isinstance(t, bool):
        raise TypeError("a time cannot be a bool")
    if isinstance(t, (int, float)):
        return int(t)
    if isinstance(t, str):
        return _parse_time(t)
    raise TypeError(f"not a time: {t!r} (use epoch seconds, an RFC 3339 string or a Clock)")


class Clock:
    """A controllable event-time clock: time moves only when a test says so.

    ``Clock("2026-07-01T00:00:00Z")``; ``now`` (epoch s); ``advance(900)`` or ``advance("15m")``;
    ``ts()`` is ``now``, ``ts("+2h")`` / ``ts(7200)`` two hours later, ``ts("2026-07-01T10:00Z")`` that
    instant. Builders given a Clock start at ``now``; :func:`readings` moves it to its last reading.
    """

    def __init__(self, start: int | str = DEFAULT_START):
        self.now = _epoch(start)

    def advance(self, by: int | str) -> int:
        """Move forward by seconds or a duration (``"15m"``, ``"1h30m"``); returns the new ``now``."""
        step = parse_duration(by) if isinstance(by, str) else int(by)
        if step < 0:
            raise ValueError("event time does not go backwards; build a new Clock")
        self.now += step
        return self.now

    def ts(self, at: int | str | None = None) -> int:
        """``now``; ``now`` + seconds or a duration (``"+15m"``, ``"-1h"``); or an RFC 3339 instant."""
        if at is None:
            return self.now
        if isinstance(at, (int, float)) and not isinstance(at, bool):
            return self.now + int(at)
        if isinstance(at, str):
            text = at.strip()
            if text[:1] in "+-":
                return int(parse_time(text, relative_to=self.now))
            try:
                return _parse_time(text)
            except ValueError:
                try:
                    return self.now + parse_duration(text)
                except ValueError:
                    raise ValueError(f"not a time or a duration: {at!r} (use e.g. '+15m', '1h30m', "
                                     "'2026-07-01T10:00:00Z')") from None
        return _epoch(at)

    def iso(self, at: int | str | None = None) -> str:
        """:meth:`ts` as RFC 3339 (``2026-07-01T10:00:00Z``)."""
        return format_ts(self.ts(at))

    def __repr__(self) -> str:
        return f"Clock({format_ts(self.now)!r})"


# -------------------------------------------------------------------------------------------- readings

_DERIVED = object()  # v_min / v_max follow v_avg unless given


def reading(meter_id: str = "M000001", ts: Any = None, *, interval_s: int = 900, kwh: float | None = 0.25,
            v_avg: float | None = 230.0, v_min: Any = _DERIVED, v_max: Any = _DERIVED,
            quality: str = "actual") -> Reading:
    """One reading. ``ts`` (the END of the interval) defaults to one interval after :data:`DEFAULT_START`.

    ``v_min`` / ``v_max`` default to 1 % below / 0.5 % above ``v_avg`` (None when ``v_avg`` is None).
    """
    ts_ = _epoch(ts) if ts is not None else _epoch(DEFAULT_START) + interval_s
    if v_min is _DERIVED:
        v_min = None if v_avg is None else round(v_avg * 0.99, 1)
    if v_max is _DERIVED:
        v_max = None if v_avg is None else round(v_avg * 1.005, 1)
    return Reading(meter_id=meter_id, ts=ts_, interval_s=interval_s, kwh=kwh, v_avg=v_avg, v_min=v_min,
                   v_max=v_max, quality=quality)


@dataclass(frozen=True)
class Window:
    """Fields that hold for the readings whose interval ends in ``(start, end]`` (a fault window)."""
    start: int
    end: int
    fields: Mapping[str, Any]

    def covers(self, ts: int) -> bool:
        return self.start < ts <= self.end


def window(start: Any, duration: int | str, **fields: Any) -> Window:
    """``window("2026-07-01T10:00Z", "2h", v_avg=196.0)``: a fault window for :func:`readings`."""
    t0 = _epoch(start)
    return Window(t0, t0 + (parse_duration(duration) if isinstance(duration, str) else int(duration)), fields)


def _value(v: Any, i: int) -> Any:
    if callable(v):
        return v(i)
    if isinstance(v, (list, tuple)):
        return v[i]
    return v


def readings(meter_id: str = "M000001", start: Any = DEFAULT_START, n: int = 4, interval_s: int = 900,
             v: float | Sequence | Callable[[int], float] | None = 230.0,
             kwh: float | Sequence | Callable[[int], float] | None = 0.25, *,
             at: Mapping[Any, Mapping[str, Any]] | None = None, faults: Iterable[Window] = (),
             **fields: Any) -> list[Reading]:
    """``n`` consecutive readings of one meter from ``start`` (the start of the first interval).

    ``v`` (v_avg) and ``kwh`` are a number, a sequence of ``n`` or a function of the index. ``fields``
    hold for every reading (``quality="estimated"``, ``v_min=None``). Then, later winning:
    ``faults`` (:func:`window`) by event time, and ``at`` by index — ``{3: {"v_min": 150.0}}``,
    ``{range(4, 12): {"v_avg": 196.0}}``. A changed ``v_avg`` moves ``v_min``/``v_max`` with it unless
    they are given too. Given a :class:`Clock`, starts at its ``now`` and moves it to the last ``ts``.
    """
    t0 = _epoch(start)
    per_index: dict[int, dict[str, Any]] = {}
    for key, vals in (at or {}).items():
        idx = [key] if isinstance(key, int) else range(n)[key] if isinstance(key, slice) else list(key)
        for i in idx:
            per_index.setdefault(i, {}).update(vals)
    faults = list(faults)
    out = []
    for i in range(n):
        ts = t0 + (i + 1) * interval_s
        f: dict[str, Any] = {"v_avg": _value(v, i), "kwh": _value(kwh, i), **fields}
        for w in faults:
            if w.covers(ts):
                f.update(w.fields)
        f.update(per_index.get(i, {}))
        out.append(reading(meter_id, ts, interval_s=f.pop("interval_s", interval_s), **f))
    if isinstance(start, Clock) and out:
        start.now = out[-1].ts
    return out


def event(meter_id: str = "M000001", ts: Any = None, type: str = "power_fail") -> MeterEvent:
    """A meter event (``power_fail``, ``power_restore``, or any other type the contract keeps)."""
    return MeterEvent(meter_id=meter_id, ts=_epoch(ts if ts is not None else DEFAULT_START), type=type)


# ------------------------------------------------------------------------------------------- customers

def customer(**overrides: Any) -> dict:
    """A ``customers`` record valid against the contract (checked; schema defaults filled in).

    Default: C000001 on meter M000001, transformer T0001, feeder F001, 230 V (EN 50160), Europe/London,
    residential, English. ``customer(nominal_voltage=120, timezone="America/New_York")``.
    """
    n = overrides.get("customer_id", "C000001")
    rec = {
        "customer_id": "C000001", "meter_id": "M" + n[1:] if n[:1] == "C" else "M000001",
        "transformer_id": "T0001", "feeder_id": "F001", "segment": "residential", "phone": "+447700900001",
        "language": "en", "timezone": "Europe/London", "nominal_voltage": 230, "bill_cycle_day": 1,
        "tariff": {"currency": "GBP", "price_per_kwh": 0.245}, "opted_out": False,
        "preferences": {"quiet_hours": ["22:00", "08:00"], "bill_alert_pct": 30},
    }
    rec.update(overrides)
    return check("customers", copy.deepcopy(rec))


def _profile(cust: Mapping[str, Any]):
    """The customer's voltage profile: the standard it names, else the one for its nominal voltage."""
    return profile_for_customer(cust)


def context(customer: Mapping[str, Any] | None = None, **kw: Any) -> Context:
    """The :class:`Context` of a customer's meter (default :func:`customer`), with its voltage profile.

    Keywords override fields: ``context(members=f.members, last_seen={...}, feeder_id="F001")``.
    """
    cust = dict(customer) if customer is not None else globals()["customer"]()
    base = {"meter_id": cust.get("meter_id"), "customer": cust, "profile": _profile(cust),
            "feeder_id": cust.get("feeder_id")}
    base.update(kw)
    return Context(**base)


@dataclass
class Feeder:
    """A small feeder: ``customers`` records, ``members`` (meter_id -> transformer_id, customer_id,
    partition) as the feeder stage keeps them, and the meters of each transformer."""
    feeder_id: str
    customers: list[dict]
    members: dict[str, dict]
    transformers: dict[str, list[str]]

    @property
    def meter_ids(self) -> list[str]:
        return list(self.members)

    def context(self, last_seen: Mapping[str, int] | None = None) -> Context:
        """The feeder's Context; ``last_seen`` maps meter_id -> event time of its newest reading."""
        return Context(feeder_id=self.feeder_id, members=copy.deepcopy(self.members),
                       last_seen=dict(last_seen or {}))


def feeder(feeder_id: str = "F001", transformers: int = 2, meters_per_transformer: int = 3,
           nominal_voltage: float = 230, first_meter: int = 1, first_transformer: int = 1) -> Feeder:
    """Meters ``M000001``... numbered through transformers ``T0001``... of one feeder, one customer each."""
    custs, members, trs = [], {}, {}
    n = first_meter
    for t in range(transformers):
        tid = f"T{first_transformer + t:04d}"
        trs[tid] = []
        for _ in range(meters_per_transformer):
            mid, cid = f"M{n:06d}", f"C{n:06d}"
            custs.append(customer(customer_id=cid, meter_id=mid, transformer_id=tid, feeder_id=feeder_id,
                                  nominal_voltage=nominal_voltage, phone=f"+4477009{n % 100000:05d}"))
            members[mid] = {"transformer_id": tid, "customer_id": cid, "partition": 0}
            trs[tid].append(mid)
            n += 1
    return Feeder(feeder_id, custs, members, trs)


# ------------------------------------------------------------------------------------------- daily usage

def day(date: str | _date = "2026-07-01", kwh: float | None = 10.0, *, tz: str = "UTC",
        intervals: int = 96, expected_intervals: int = 96, readings: int | None = None,
        estimated_kwh: float = 0.0, catch_up_kwh: float = 0.0, night_kwh: float | None = None,
        evening_kwh: float | None = None, **extra: Any) -> dict:
    """One closed day of a customer's usage, shaped as :func:`detectors.usage.accumulate` closes it.

    ``ts`` is the local midnight that starts the day in ``tz`` (epoch s); ``weekday`` is 0 for Monday;
    ``readings`` defaults to ``intervals``; ``night_kwh`` (00:00-05:00) and ``evening_kwh`` (17:00-22:00)
    default to 20 % and 30 % of ``kwh``.
    """
    d = _date.fromisoformat(date) if isinstance(date, str) else date
    start = datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(tz))
    share = (lambda f: None if kwh is None else round(f * kwh, 6))
    rec = {"ts": int(start.timestamp()), "date": d.isoformat(), "kwh": kwh, "estimated_kwh": estimated_kwh,
           "catch_up_kwh": catch_up_kwh, "intervals": intervals, "expected_intervals": expected_intervals,
           "readings": intervals if readings is None else readings,
           "night_kwh": share(0.2) if night_kwh is None else night_kwh,
           "evening_kwh": share(0.3) if evening_kwh is None else evening_kwh, "weekday": d.weekday()}
    rec.update(extra)
    return rec


def days(start: str | _date = "2026-05-01", n: int = 28, kwh: float | Sequence | Callable[[int], float] = 10.0,
         *, at: Mapping[Any, Mapping[str, Any]] | None = None, **fields: Any) -> list[dict]:
    """``n`` consecutive days from ``start``; ``kwh`` and ``at`` work as in :func:`readings`."""
    d0 = _date.fromisoformat(start) if isinstance(start, str) else start
    per_index: dict[int, dict[str, Any]] = {}
    for key, vals in (at or {}).items():
        idx = [key] if isinstance(key, int) else range(n)[key] if isinstance(key, slice) else list(key)
        for i in idx:
            per_index.setdefault(i, {}).update(vals)
    out = []
    for i in range(n):
        f = {"kwh": _value(kwh, i), **fields, **per_index.get(i, {})}
        out.append(day(d0 + timedelta(days=i), **f))
    return out


# --------------------------------------------------------------------------------------------- running

@dataclass
class Step:
    """One call the pipeline would make: ``process(state, inputs, ctx)`` when there are inputs, then
    ``advance(state, watermark, ctx)`` when a watermark is given."""
    inputs: list
    ctx: Context
    watermark: int | None = None


@dataclass
class Scenario:
    """Steps fed in order to one key's state; ``about`` says what anomalies they hold."""
    steps: list[Step]
    about: str = ""

    def map_inputs(self, fn: Callable[[int, list], list]) -> "Scenario":
        """The same steps with ``inputs`` replaced by ``fn(step index, inputs)``."""
        return Scenario([dataclasses.replace(s, inputs=fn(i, list(s.inputs))) for i, s in enumerate(self.steps)],
                        self.about)


def _calls(detector: Detector, s: Step, fit: Callable[[Any], Any] | None):
    """The calls the pipeline makes for one step, as (name, state -> (state, findings))."""
    if s.inputs:
        yield "process", lambda st: detector.process(st, s.inputs, s.ctx)
        if fit is not None and isinstance(detector, Fittable):
            def fit_and_apply(st: dict) -> tuple[dict, list[dict]]:
                payload = detector.fit_request(st, s.ctx)
                if payload is None:
                    return st, []
                return detector.apply_fit(st, fit(payload), s.ctx)
            yield "fit_request/apply_fit", fit_and_apply
    if s.watermark is not None:
        yield "advance", lambda st: detector.advance(st, s.watermark, s.ctx)


def run(detector: Detector, steps: Scenario | Iterable[Step], state: dict | None = None, *,
        between: Callable[[dict], dict] | None = None, fit: Callable[[Any], Any] | None = None
        ) -> tuple[dict, list[list[dict]]]:
    """Feed the steps to one detector; returns (final state, the findings of each step).

    ``between(state)`` is applied to the state after every call (the suite passes a JSON round trip).
    With ``fit`` (a :class:`~detectors.api.Fittable`'s ``fit``, or :func:`fitter`), a Fittable is asked for a
    ``fit_request`` after each ``process`` and given the result through ``apply_fit``, as the pipeline does.
    """
    items = steps.steps if isinstance(steps, Scenario) else steps
    st = state if state is not None else detector.new_state()
    per_step: list[list[dict]] = []
    for s in items:
        found: list[dict] = []
        for _, call in _calls(detector, s, fit):
            st, f = call(st)
            found += list(f)
            st = between(st) if between else st
        per_step.append(found)
    return st, per_step


_FIT_CACHE: dict[str, Any] = {}


def fitter(cls: type[Detector]) -> Callable[[Any], Any] | None:
    """The ``fit`` of a :class:`~detectors.api.Fittable`, memoised on the payload so the suite's repeated
    runs pay for each distinct fit once; None for other detectors."""
    if not (isinstance(cls, type) and issubclass(cls, Fittable)):
        return None
    fn = cls.fit

    def cached(payload: Any) -> Any:
        key = f"{cls.__module__}|{json.dumps(payload, sort_keys=True, default=repr)}"
        if key not in _FIT_CACHE:
            _FIT_CACHE[key] = fn(payload)
        return copy.deepcopy(_FIT_CACHE[key])

    return cached


# ------------------------------------------------------------------------------------------- scenarios

_BATCH = 4          # readings per message, as the simulator sends them
_IV = 900


def _normal_v(nominal: float) -> Callable[[int], float]:
    # a deterministic daily wave well inside every band: +/- 1.5 % around 99 % of nominal
    return lambda i: round(nominal * (0.99 + 0.015 * math.sin(2 * math.pi * (i % 96) / 96)), 1)


def _kwh(i: int) -> float:
    return round(0.15 + 0.1 * (1 + math.sin(2 * math.pi * ((i % 96) - 30) / 96)), 3)


def reading_scenario(days_: int = 15, nominal: float = 230.0, meter_id: str = "M000001",
                     start: str = DEFAULT_START) -> Scenario:
    """``days_`` days of 15-minute readings of one meter in batches of four, with faults.

    Day 1 10:00-13:00 sustained undervoltage (0.85 x nominal); day 2 a one-interval sag at 08:00
    (v_min 0.65 x), a swell at 14:00 (v_max 1.17 x), a two-interval sag at 20:00; day 3 09:00-15:00 a
    swinging voltage (v_avg alternating 1.06 / 0.93 x, v_min 0.86 x, v_max 1.12 x: a loose neutral); day 4
    12:00-14:30 sustained overvoltage (1.12 x); the rest clean. Two weeks, so a weekly report closes.
    """
    cust = customer(meter_id=meter_id, nominal_voltage=nominal)
    ctx = context(cust)
    t0 = _epoch(start)
    n = days_ * 96
    D = 96
    nom = nominal
    at: dict[Any, dict] = {
        range(D + 40, D + 52): {"v_avg": round(0.85 * nom, 1)},
        2 * D + 32: {"v_min": round(0.65 * nom, 1)},
        2 * D + 56: {"v_max": round(1.17 * nom, 1)},
        range(2 * D + 80, 2 * D + 82): {"v_min": round(0.80 * nom, 1)},
        range(4 * D + 48, 4 * D + 58): {"v_avg": round(1.12 * nom, 1)},
    }
    for k, i in enumerate(range(3 * D + 36, 3 * D + 60)):
        at[i] = {"v_avg": round((1.06 if k % 2 == 0 else 0.93) * nom, 1),
                 "v_min": round(0.86 * nom, 1), "v_max": round(1.12 * nom, 1)}
    rs = readings(meter_id, t0, n, _IV, v=_normal_v(nom), kwh=_kwh, at=at)
    steps = [Step(rs[i:i + _BATCH], ctx, rs[min(i + _BATCH, n) - 1].ts) for i in range(0, n, _BATCH)]
    return Scenario(steps, "15-minute readings: sustained under- and overvoltage, sags, a swell, a swinging "
                           "voltage, two weeks")


def event_scenario(start: str = DEFAULT_START) -> Scenario:
    """One day of a feeder (F001: T0001 with M000001-3, T0002 with M000004-6) in 15-minute ticks.

    10:00-10:45 T0001 out (power_fail from two of its three meters, then power_restore from all three);
    14:00-15:00 the whole feeder out (power_fail from four of six); 20:00-20:30 M000006 alone out. Meters
    out of power send no reading, so their ``last_seen`` stops.
    """
    f = feeder()
    t0 = _epoch(start)
    H = 3600
    outages = [  # (start, end, meters out, meters sending a last gasp)
        (t0 + 10 * H, t0 + 10 * H + 2700, f.transformers["T0001"], ["M000001", "M000002"]),
        (t0 + 14 * H, t0 + 15 * H, f.meter_ids, ["M000001", "M000003", "M000004", "M000006"]),
        (t0 + 20 * H, t0 + 20 * H + 1800, ["M000006"], ["M000006"]),
    ]
    evs: list[MeterEvent] = []
    for a, b, out, gasp in outages:
        evs += [event(m, a, "power_fail") for m in gasp]
        evs += [event(m, b, "power_restore") for m in out]
    last_seen = {m: t0 for m in f.meter_ids}
    steps = []
    for k in range(1, 24 * 4 + 1):
        t = t0 + k * _IV
        for m in f.meter_ids:
            if not any(a < t <= b and m in out for a, b, out, _ in outages):
                last_seen[m] = t
        batch = [e for e in evs if t - _IV < e.ts <= t]
        steps.append(Step(batch, f.context(last_seen), t))
    return Scenario(steps, "a feeder's day: a transformer outage, a feeder outage, a single meter outage")


def daily_scenario(n: int = 84, start: str = "2026-04-06") -> Scenario:
    """``n`` days of one customer's usage, ~10 kWh a day with a weekly pattern, x 1.8 from day ``n - 21``."""
    cust = customer()
    ctx = context(cust)
    jump = n - 21

    def kwh(i: int) -> float:
        base = 10.0 + (2.0 if i % 7 in (5, 6) else 0.0) + 0.6 * math.sin(i * 1.3)
        return round(base * (1.8 if i >= jump else 1.0), 3)

    ds = days(start, n, kwh, tz=cust["timezone"])
    return Scenario([Step([d], ctx, d["ts"]) for d in ds], f"{n} days of usage, a x1.8 jump from day {jump}")


def scenario(cls: type[Detector]) -> Scenario:
    """The suite's inputs for a detector class, by its ``input`` type."""
    if cls.input == "readings":
        return reading_scenario()
    if cls.input == "events":
        return event_scenario()
    if cls.input == "daily":
        return daily_scenario()
    raise AssertionError(f"{_label(cls)}: input {cls.input!r} has no scenario in detectors.testing")


# ---------------------------------------------------------------------------------------------- checks

def _label(cls: Any) -> str:
    return getattr(cls, "name", "") or getattr(cls, "__name__", repr(cls))


def _fail(cls: Any, rule: str, why: str) -> None:
    raise AssertionError(f"detector {_label(cls)!r} breaks '{rule}': {why}")


def _canon(per_step: list[list[dict]]) -> list[list[str]]:
    """Findings per step as sorted JSON, so order inside one step does not matter."""
    return [sorted(json.dumps(f, sort_keys=True, default=repr) for f in fs) for fs in per_step]


def _first_difference(a: list[list[str]], b: list[list[str]]) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"step {i}: expected {x[:3]} but got {y[:3]}"
    return f"{sum(map(len, a))} findings expected, {sum(map(len, b))} produced"


def _diff_path(a: Any, b: Any, path: str = "state") -> str | None:
    """Where two JSON-like values first differ (type included: a tuple is not a list)."""
    if type(a) is not type(b):
        return f"{path}: {type(a).__name__} became {type(b).__name__}"
    if isinstance(a, dict):
        for k in a.keys() | b.keys():
            if k not in a or k not in b:
                return f"{path}[{k!r}] appears or disappears"
            d = _diff_path(a[k], b[k], f"{path}[{k!r}]")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: length {len(a)} became {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = _diff_path(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b or (a != a and b != b) else f"{path}: {a!r} became {b!r}"


def _the(cls: type[Detector], sc: Scenario | None) -> tuple[Detector, Scenario]:
    return cls(), sc if sc is not None else scenario(cls)


def check_docstring(cls: type[Detector], sc: Scenario | None = None) -> None:
    """The class says what it detects and how, in a docstring of its own (not the base class's)."""
    doc = cls.__dict__.get("__doc__") or ""
    if not doc.strip():
        _fail(cls, "docstring", "the class has no docstring of its own")


def check_registry(cls: type[Detector], sc: Scenario | None = None) -> None:
    """``detectors.registry.validate`` accepts it."""
    try:
        validate(cls)
    except DetectorError as exc:
        _fail(cls, "registry", str(exc))


def check_findings(cls: type[Detector], sc: Scenario | None = None) -> None:
    """The suite's inputs produce findings, each a JSON-ready dict of a declared kind and a known status."""
    det, sc = _the(cls, sc)
    _, per_step = run(det, sc, fit=fitter(cls))
    found = [f for fs in per_step for f in fs]
    if not found:
        _fail(cls, "findings", f"no finding from inputs with real anomalies ({sc.about})")
    statuses = set(FINDING_STATUSES) | {"open", "resolved"}  # alert records from a correlating detector
    for f in found:
        if not isinstance(f, dict):
            _fail(cls, "findings", f"a finding is a {type(f).__name__}, not a dict: {f!r}")
        if f.get("kind") not in cls.kinds:
            _fail(cls, "findings", f"kind {f.get('kind')!r} is not among the declared kinds {cls.kinds}")
        if f.get("status") not in statuses:
            _fail(cls, "findings", f"status {f.get('status')!r} is not one of {FINDING_STATUSES}")
        if f.get("severity") is not None and f["severity"] not in ("info", "warning", "critical"):
            _fail(cls, "findings", f"severity {f['severity']!r} is not info, warning or critical")
        try:
            json.dumps(f, allow_nan=False)
        except (TypeError, ValueError) as exc:
            _fail(cls, "findings", f"a finding is not JSON-ready ({exc}): {f!r}")


def check_no_mutation(cls: type[Detector], sc: Scenario | None = None) -> None:
    """``process`` and ``advance`` leave their state, inputs and context as they found them."""
    det, sc = _the(cls, sc)
    sc = sc.map_inputs(lambda i, items: items[::-1])  # newest first, so sorting the caller's list shows
    st = det.new_state()
    for i, s in enumerate(sc.steps):
        for what, call in _calls(det, s, fitter(cls)):
            before = copy.deepcopy((st, s.inputs, s.ctx))
            new, _ = call(st)
            if (st, s.inputs, s.ctx) != before:
                which = ("state" if st != before[0] else "inputs" if s.inputs != before[1] else "context")
                where = _diff_path(before[0], st) if which == "state" else ""
                _fail(cls, "no_mutation", f"{what}() at step {i} changed its {which}"
                                          + (f" ({where})" if where else "") + "; return a new state instead")
            st = new


def check_json_state(cls: type[Detector], sc: Scenario | None = None) -> None:
    """The state is plain JSON after every call, and continuing from a JSON copy changes nothing."""
    det, sc = _the(cls, sc)

    def roundtrip(state: dict) -> dict:
        try:
            back = json.loads(json.dumps(state, allow_nan=False))
        except (TypeError, ValueError) as exc:
            _fail(cls, "json_state", f"the state is not JSON ({exc})")
        diff = _diff_path(state, back)
        if diff:
            _fail(cls, "json_state", f"the state changes in a JSON round trip: {diff}")
        return back

    _, plain = run(cls(), sc, fit=fitter(cls))
    _, via_json = run(det, sc, between=roundtrip, fit=fitter(cls))
    if _canon(plain) != _canon(via_json):
        _fail(cls, "json_state", "continuing from a JSON copy of the state gives other findings: "
                                 + _first_difference(_canon(plain), _canon(via_json)))


def _with_missing(cls: type[Detector], sc: Scenario) -> Scenario:
    rng = random.Random(7)

    def blank(i: int, items: list) -> list:
        out = []
        for x in items:
            if isinstance(x, Reading) and rng.random() < 0.2:
                x = dataclasses.replace(x, kwh=None, v_avg=None, v_min=None, v_max=None, quality="estimated")
            elif isinstance(x, Reading) and rng.random() < 0.1:
                x = dataclasses.replace(x, v_min=None, v_max=None)
            elif isinstance(x, dict) and rng.random() < 0.2:
                x = {**x, **{k: None for k in ("night_kwh", "evening_kwh") if k in x}}
            out.append(x)
        if cls.input == "events":
            t = items[0].ts if items else (sc.steps[i].watermark or 0)
            out += [MeterEvent("M000002", t, "tamper"), MeterEvent("M999999", t, "power_fail")]
        return out

    return sc.map_inputs(blank)


def check_missing_fields(cls: type[Detector], sc: Scenario | None = None) -> None:
    """Null values (readings with no kwh or voltage), unknown event types and unknown meters do not raise."""
    det, sc = _the(cls, sc)
    try:
        _, per_step = run(det, _with_missing(cls, sc), fit=fitter(cls))
    except Exception as exc:  # noqa: BLE001 - what it raised is the finding
        _fail(cls, "missing_fields", f"raised {type(exc).__name__}: {exc} on inputs with null fields")
    for f in (f for fs in per_step for f in fs):
        try:
            json.dumps(f, allow_nan=False)
        except (TypeError, ValueError) as exc:
            _fail(cls, "missing_fields", f"a finding from null fields is not JSON-ready ({exc}): {f!r}")


def check_out_of_order(cls: type[Detector], sc: Scenario | None = None) -> None:
    """The inputs of a call in any order give the findings of the same inputs sorted by time."""
    det, sc = _the(cls, sc)
    rng = random.Random(11)

    def shuffle(i: int, items: list) -> list:
        items = list(reversed(items))
        rng.shuffle(items)
        return items

    _, plain = run(cls(), sc, fit=fitter(cls))
    _, shuffled = run(det, sc.map_inputs(shuffle), fit=fitter(cls))
    if _canon(plain) != _canon(shuffled):
        _fail(cls, "out_of_order", "shuffled inputs give other findings than sorted ones: "
                                   + _first_difference(_canon(plain), _canon(shuffled)))


def check_duplicates(cls: type[Detector], sc: Scenario | None = None) -> None:
    """Inputs delivered twice — in the same call, or again with the next call (a redelivery after a
    restart) — give the findings of the inputs delivered once."""
    det, sc = _the(cls, sc)
    prev: list = []

    def twice(i: int, items: list) -> list:
        nonlocal prev
        out = prev[-1:] + items + items[::-1] if items else []
        prev = items or prev
        return out

    _, plain = run(cls(), sc, fit=fitter(cls))
    _, doubled = run(det, sc.map_inputs(twice), fit=fitter(cls))
    if _canon(plain) != _canon(doubled):
        _fail(cls, "duplicates", "duplicated inputs give other findings than unique ones: "
                                 + _first_difference(_canon(plain), _canon(doubled)))


def check_reproducible(cls: type[Detector], sc: Scenario | None = None) -> None:
    """Two runs over the same inputs end in the same state with the same findings."""
    sc = sc if sc is not None else scenario(cls)
    st1, one = run(cls(), sc, fit=fitter(cls))
    st2, two = run(cls(), sc, fit=fitter(cls))
    if _canon(one) != _canon(two):
        _fail(cls, "reproducible", "two runs over the same inputs give different findings: "
                                   + _first_difference(_canon(one), _canon(two)))
    diff = _diff_path(st1, st2)
    if diff:
        _fail(cls, "reproducible", f"two runs over the same inputs end in different states: {diff}")


def check_fits(cls: type[Detector], sc: Scenario | None = None) -> None:
    """A :class:`~detectors.api.Fittable` asks for a fit on the suite's inputs; its payloads and results
    survive a pickle round trip (the worker runs ``fit`` in a process pool); a result handed back twice (a
    retried step) gives no second finding. Nothing to check for other detectors."""
    if not issubclass(cls, Fittable):
        return
    det, sc = _the(cls, sc)
    fit = fitter(cls)
    assert fit is not None
    exchanges: list[tuple[Any, Any]] = []

    def recording(payload: Any) -> Any:
        result = fit(payload)
        exchanges.append((payload, result))
        return result

    st, _ = run(det, sc, fit=recording)
    if not exchanges:
        _fail(cls, "fits", f"fit_request() never asked for a fit on the suite's inputs ({sc.about})")
    for what, obj in ((w, x) for pair in exchanges for w, x in zip(("payload", "result"), pair)):
        try:
            back = pickle.loads(pickle.dumps(obj))
        except Exception as exc:  # noqa: BLE001 - what it raised is the finding
            _fail(cls, "fits", f"a fit {what} cannot be pickled ({exc!r}), so it cannot cross to a process pool")
        if back != obj:
            _fail(cls, "fits", f"a fit {what} changes in a pickle round trip")
    # hand every result back once more after the run: a state that has taken a result does not find again
    ctx = next((s.ctx for s in reversed(sc.steps) if s.inputs), context())
    for _, result in exchanges:
        st, again = det.apply_fit(st, copy.deepcopy(result), ctx)
        if again:
            _fail(cls, "fits", f"apply_fit() of a result already applied found again: {again[0]!r}")


def check_mutes(cls: type[Detector], sc: Scenario | None = None) -> None:
    """A :class:`~detectors.api.Muting` detector names meters out on the suite's inputs (outages over a feeder):
    after every ``advance``, ``out_meters(state, t)`` at the watermark is a set of the feeder's meter ids, leaves
    the state as it found it and answers the same from a JSON copy of the state; a new state (and ``None``) has
    no meter out. Nothing to check for other detectors."""
    if not issubclass(cls, Muting):
        return
    det, sc = _the(cls, sc)
    first = next((s.watermark for s in sc.steps if s.watermark is not None), 0)
    for what, state in (("a new state", det.new_state()), ("no state (None)", None)):
        if det.out_meters(state, first):
            _fail(cls, "mutes", f"out_meters() of {what} names meters out: {det.out_meters(state, first)!r}")
    st, named = det.new_state(), set()
    for i, s in enumerate(sc.steps):
        for what, call in _calls(det, s, fitter(cls)):
            st, _ = call(st)
            if what != "advance":
                continue
            before = copy.deepcopy(st)
            out = det.out_meters(st, s.watermark)
            if st != before:
                _fail(cls, "mutes", f"out_meters() at step {i} changed its state ({_diff_path(before, st)})")
            if not isinstance(out, (set, frozenset)) or not all(isinstance(m, str) for m in out):
                _fail(cls, "mutes", f"out_meters() at step {i} returned {out!r}, not a set of meter ids")
            strangers = sorted(out - set(s.ctx.members)) if s.ctx.members else []
            if strangers:
                _fail(cls, "mutes", f"out_meters() at step {i} names meters not of the feeder: {strangers}")
            if det.out_meters(json.loads(json.dumps(st)), s.watermark) != out:
                _fail(cls, "mutes", f"out_meters() at step {i} answers otherwise from a JSON copy of the state")
            named |= out
    if not named:
        _fail(cls, "mutes", f"out_meters() never named a meter out on the suite's inputs ({sc.about})")


#: rule name -> check(cls, scenario=None); each raises AssertionError naming the detector and the rule
CHECKS: dict[str, Callable[..., None]] = {
    "docstring": check_docstring,
    "registry": check_registry,
    "findings": check_findings,
    "no_mutation": check_no_mutation,
    "json_state": check_json_state,
    "missing_fields": check_missing_fields,
    "out_of_order": check_out_of_order,
    "duplicates": check_duplicates,
    "reproducible": check_reproducible,
    "fits": check_fits,
    "mutes": check_mutes,
}
#: the rules of an optional hook of ``detectors.api`` -> its base class: they check only its subclasses
HOOK_RULES: dict[str, type[Detector]] = {"fits": Fittable, "mutes": Muting}


def check_detector(cls: type[Detector], inputs: Scenario | None = None) -> None:
    """Run every rule of :data:`CHECKS` on a detector class; the first broken one raises AssertionError
    naming the detector and the rule.

    ``inputs`` replaces the suite's (see :func:`scenario`) for a detector whose anomalies they do not hold.
    """
    for rule in ("docstring", "registry"):
        CHECKS[rule](cls)
    sc = inputs if inputs is not None else scenario(cls)
    for rule, fn in CHECKS.items():
        if rule not in ("docstring", "registry"):
            fn(cls, sc)
