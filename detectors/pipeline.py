"""The detection stages, in the order a reading meets them — the same code in the worker and the backtest.

    readings of one meter ──> MeterStage: every "readings" detector of the meter ──> findings
                                         └─ daily usage (customer's timezone) ──> closed days
    findings ──> FeederStage: per transformer, the voltage correlator (transformer vs meter scope)
    meter.events ──> FeederStage: the outage detector (meter -> transformer -> feeder scope)
    event time moves on (watermark) ──> FeederStage.advance: outage first, then voltage with the
                                        meters under an outage muted ──> alert records
    closed days ──> CustomerStage: the bill detector; Prophet fits run wherever ``fit`` says ──> alerts

The worker keeps the states in Faust tables and moves messages between the stages over Kafka topics;
:class:`Pipeline` keeps them in dicts and calls the stages in event-time order, for backtests and tests.
Nothing here reads the wall clock or imports Faust.

Voltage traces for the alerts' evidence: the meter stage keeps a ring of the meter's last
:data:`~detectors.topology.TRACE_POINTS` 15-minute voltage points (``_trace`` in the meter's states; a mean
of ``v_avg`` and the lowest ``v_min`` / highest ``v_max`` of each quarter hour, to 0.1 V; see
:mod:`detectors.trace`). For a batch with a voltage
finding, or with a ``v_avg`` out of the meter's band, it adds one more item to the batch's findings, a
*trace* ``{"kind": "trace", "status": "trace", "meter_id", "at", "points": [[ts, v_avg, v_min, v_max], ...]}``
(the whole ring, epoch seconds of each quarter hour's end, volts). It travels to the correlator with the
batch's transitions, which keeps the newest one of each meter while an alert may need it and draws the
evidence's ``trace`` from it (see :mod:`detectors.topology`). In-band batches without findings carry none,
so a clean meter costs the ring's upkeep only.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterable

from gridwatch import config as topics
from gridwatch.contract import MeterEvent, Reading, format_ts, parse_ts

from .api import CUSTOMER_DAILY, FEEDER_EVENTS, METER_READINGS, Context, Detector, Fittable, Muting
from .registry import enabled
from .standards import Profile, profile_for_customer
from .topology import VOLTAGE_KINDS, TransformerCorrelator, alert_id
from .trace import trace_points, trace_update
from .usage import accumulate
from .watermarks import PartitionClock

__all__ = ["MeterStage", "FeederStage", "CustomerStage", "Pipeline", "directory_entry", "profile_dict",
           "batch_gaps", "trace_points", "trace_update"]

#: customer fields a meter's detectors may use, copied into the meter directory
DIRECTORY_FIELDS = ("customer_id", "meter_id", "transformer_id", "feeder_id", "nominal_voltage", "timezone",
                    "voltage_standard", "segment", "language")


def directory_entry(customer: dict) -> dict:
    return {k: customer[k] for k in DIRECTORY_FIELDS if customer.get(k) is not None}


def batch_gaps(readings: list[Reading]) -> list[list[int]]:
    """Silences inside one batch, ``[[last reading before, first reading after], ...]``: a batch can span
    an outage (readings held back until their meter was known arrive as one batch)."""
    ts = sorted({r.ts for r in readings})
    step = 1.5 * min(r.interval_s for r in readings)
    return [[a, b] for a, b in zip(ts, ts[1:]) if b - a > step]


def profile_dict(p: Profile) -> dict:
    return {"name": p.name, "nominal": p.nominal, "low": p.low, "high": p.high}


class MeterStage:
    """Runs each enabled meter detector (input "readings") on one meter's batch; keeps daily usage and, when a
    voltage detector runs, the meter's voltage ring (see the module docstring)."""

    def __init__(self, detectors: list[Detector]):
        self.detectors = [d for d in detectors if (d.key, d.input) == METER_READINGS]
        self.usage = any(d.input == "daily" for d in detectors)
        self.trace = any(k in VOLTAGE_KINDS for d in self.detectors for k in d.kinds)

    def context(self, entry: dict) -> Context:
        return Context(meter_id=entry["meter_id"], customer=entry, profile=profile_for_customer(entry))

    def process(self, states: dict | None, readings: list[Reading], entry: dict
                ) -> tuple[dict, list[dict], list[dict]]:
        """(new states, findings, closed days of usage); ``states`` maps detector name -> its state.

        The findings end with the batch's voltage trace when it has one (status "trace", see the module
        docstring): not a detector's finding, it is for the correlator alone."""
        ctx = self.context(entry)
        new = dict(states or {})
        findings: list[dict] = []
        for det in self.detectors:
            st, found = det.process(new.get(det.name), readings, ctx)
            new[det.name] = st
            for f in found:
                f.setdefault("meter_id", entry["meter_id"])
                f.setdefault("detector", det.name)
            findings.extend(found)
        if self.trace:
            new["_trace"] = ring = trace_update(new.get("_trace"), readings)
            if _hot(readings, findings, ctx.profile):
                findings.append({"kind": "trace", "status": "trace", "meter_id": entry["meter_id"],
                                 "at": ring["last"], "points": trace_points(ring)})
        days: list[dict] = []
        if self.usage:
            new["_usage"], days = accumulate(new.get("_usage"), readings, entry.get("timezone") or "UTC")
        return new, findings, days

    def status_message(self, entry: dict, readings: list[Reading], transitions: list[dict], *, partition: int,
                       ts: int | None = None) -> dict:
        """The ``status`` message of one batch of the meter for the topology stage (``FeederStage.status``):
        how far the meter got (``ts``, its newest reading: the batch's newest unless given), the silences
        inside the batch, its transitions (the findings, reports left out) and its voltage profile; with its
        transformer and its source partition (a transformer's watermark waits for that partition). The
        worker's detect stage and :class:`Pipeline` both build it here, so the correlator gets the same
        message in the worker, the backtest and the tests."""
        return {"type": "status", "meter_id": entry["meter_id"], "customer_id": entry["customer_id"],
                "transformer_id": entry["transformer_id"], "partition": partition,
                "first_ts": min(r.ts for r in readings), "ts": max(r.ts for r in readings) if ts is None else ts,
                "interval_s": min(r.interval_s for r in readings), "gaps": batch_gaps(readings),
                "transitions": transitions, "profile": profile_dict(self.context(entry).profile)}


def _hot(readings: list[Reading], findings: list[dict], profile: Profile) -> bool:
    """Does the correlator need this batch's trace: a voltage finding, or a mean voltage out of band."""
    for f in findings:
        if f["kind"] in VOLTAGE_KINDS and f["status"] != "report":
            return True
    low, high = profile.low, profile.high
    for r in readings:
        if r.v_avg is not None and not low <= r.v_avg <= high:
            return True
    return False


class FeederStage:
    """Correlation over one feeder: voltage per transformer, outages over the whole feeder.

    State is split so a reading's status touches only its transformer: ``feeder`` state (membership and
    the outage detector's state) and one correlator state per transformer.
    """

    def __init__(self, detectors: list[Detector], correlator: TransformerCorrelator | None = None):
        self.correlator = correlator or TransformerCorrelator()
        self.outage = next((d for d in detectors if (d.key, d.input) == FEEDER_EVENTS), None)

    @staticmethod
    def new_feeder(feeder_id: str) -> dict:
        return {"feeder_id": feeder_id, "members": {}, "outage": None}

    def member(self, feeder: dict, transformer: dict | None, msg: dict) -> tuple[dict, dict]:
        """A meter joins or (``removed``) leaves; returns (feeder state, transformer state)."""
        tid = msg["transformer_id"]
        fst = copy.deepcopy(feeder)
        if msg.get("removed"):
            fst["members"].pop(msg["meter_id"], None)
        else:
            fst["members"][msg["meter_id"]] = {"transformer_id": tid, "customer_id": msg.get("customer_id"),
                                               "partition": msg.get("partition")}
        tst = transformer or self.correlator.new_state(tid)
        return fst, self.correlator.member(tst, msg)

    def status(self, transformer: dict, msg: dict) -> dict:
        return self.correlator.status(transformer, msg)

    def events(self, feeder: dict, events: list[MeterEvent], transformers: dict[str, dict]) -> dict:
        if self.outage is None:
            return feeder
        fst = dict(feeder)
        fst["outage"], _ = self.outage.process(feeder.get("outage"), events, self._ctx(feeder, transformers))
        return fst

    def partitions(self, feeder: dict) -> set[int]:
        return {m["partition"] for m in feeder["members"].values() if m.get("partition") is not None}

    def _ctx(self, feeder: dict, transformers: dict[str, dict]) -> Context:
        last_seen, gaps, cadence = {}, {}, {}
        for tst in transformers.values():
            for m, rec in (tst or {}).get("members", {}).items():
                if rec.get("last_seen") is not None:
                    last_seen[m] = rec["last_seen"]
                if rec.get("gaps"):
                    gaps[m] = rec["gaps"]
                if rec.get("span"):
                    cadence[m] = rec["span"]
        return Context(feeder_id=feeder["feeder_id"], members=feeder["members"], last_seen=last_seen,
                       gaps=gaps, cadence=cadence)

    def advance(self, feeder: dict, transformers: dict[str, dict], watermark: int
                ) -> tuple[dict, dict[str, dict], list[dict]]:
        """Decide up to ``watermark``: (feeder state, changed transformer states, alert records)."""
        records: list[dict] = []
        fst = feeder
        muted: Callable[[int], set] = lambda t: set()  # noqa: E731
        if self.outage is not None:
            fst = dict(feeder)
            fst["outage"], recs = self.outage.advance(feeder.get("outage"), watermark,
                                                      self._ctx(feeder, transformers))
            records.extend(recs)
            if isinstance(self.outage, Muting):  # its meters out are its alert, not the correlator's
                ost, det = fst["outage"], self.outage
                muted = lambda t: det.out_meters(ost, t)  # noqa: E731
        changed, voltage = {}, []
        for tid, tst in transformers.items():
            if tst is None:
                continue
            new, recs = self.correlator.advance(tst, watermark, muted=muted)
            if new != tst:
                changed[tid] = new
            voltage.extend(recs)
        if voltage:
            fst = dict(fst)
            voltage = self._roll_up(fst, voltage)
        return fst, changed, records + voltage

    def _roll_up(self, fst: dict, records: list[dict]) -> list[dict]:
        """Transformer alerts of one kind starting together on transformers that hold most of the feeder's
        meters are the feeder's incident: ONE feeder alert, whose lifecycle follows theirs."""
        members = fst["members"]
        size = {}
        for m in members.values():
            size[m["transformer_id"]] = size.get(m["transformer_id"], 0) + 1
        roll = {k: dict(v) for k, v in (fst.get("rollup") or {}).items()}  # feeder alert id -> children
        child_of = {c: fid for fid, kids in roll.items() for c in kids}
        groups: dict[tuple, list[dict]] = {}
        for r in records:
            if (r["scope"]["level"] == "transformer" and r["alert_id"] not in child_of
                    and not r["evidence"].get("merged_into")
                    and (r["status"] == "open" or r["resolved_at"] == r["detected_at"] or r["kind"] in ("sag", "swell"))):
                groups.setdefault((r["kind"], r["started_at"]), []).append(r)
        for (kind, started), rs in groups.items():
            covered = sum(size.get(r["scope"]["id"], 0) for r in rs)
            if len(rs) < 2 or covered <= self.correlator.config.majority * len(members):
                continue
            fid = alert_id(kind, "feeder", fst["feeder_id"], parse_ts(started))
            roll[fid] = {r["alert_id"]: None for r in rs}
            child_of.update({r["alert_id"]: fid for r in rs})
        out, touched = [], []
        for r in records:
            fid = child_of.get(r["alert_id"])
            if fid is None:
                out.append(r)
                continue
            roll[fid][r["alert_id"]] = r
            if fid not in touched:
                touched.append(fid)
        for fid in touched:
            kids = [k for k in roll[fid].values() if k is not None]
            rec = _merge(fid, fst["feeder_id"], kids, all(k["status"] == "resolved" for k in kids)
                         and None not in roll[fid].values())
            out.append(rec)
            if rec["status"] == "resolved":
                del roll[fid]
        fst["rollup"] = roll
        return out


class CustomerStage:
    """The daily-usage detectors of a customer (bill spikes). A :class:`~detectors.api.Fittable` one is asked
    for a ``fit_request`` after ``process``; the caller runs the payload through :meth:`fit_function` (the
    worker in a process pool, the backtest inline) and hands the result to :meth:`apply`."""

    def __init__(self, detectors: list[Detector]):
        self.detectors = [d for d in detectors if (d.key, d.input) == CUSTOMER_DAILY]

    def process(self, states: dict | None, days: list[dict], customer: dict) -> tuple[dict, list[dict], list]:
        """(new states, alert records, fit requests [(detector name, payload)])."""
        new = dict(states or {})
        ctx = Context(meter_id=customer.get("meter_id"), customer=customer)
        records, requests = [], []
        for det in self.detectors:
            st, found = det.process(new.get(det.name), days, ctx)
            new[det.name] = st
            records.extend(customer_alert(f, customer) for f in found)
            payload = det.fit_request(st, ctx) if isinstance(det, Fittable) else None
            if payload is not None:
                requests.append((det.name, payload))
        return new, records, requests

    def fit_function(self, name: str) -> Callable[[Any], Any]:
        """The ``fit`` of detector ``name`` (a staticmethod of its :class:`~detectors.api.Fittable`: it pickles
        by name, so it can go to a process pool)."""
        return next(d for d in self.detectors if d.name == name).fit

    def apply(self, states: dict, name: str, result: Any, customer: dict) -> tuple[dict, list[dict]]:
        det = next(d for d in self.detectors if d.name == name)
        ctx = Context(meter_id=customer.get("meter_id"), customer=customer)
        new = dict(states)
        new[name], found = det.apply_fit(states.get(name), result, ctx)
        return new, [customer_alert(f, customer) for f in found]


def _merge(fid: str, feeder_id: str, kids: list[dict], resolved: bool) -> dict:
    """One feeder-scope record from the latest records of its transformer alerts. Its ``v_extreme`` and
    ``trace`` are those of the worst transformer alert (the lowest undervoltage, the highest overvoltage, the
    deepest event), so the trace shows the worst meter of the feeder."""
    first = kids[0]
    order = {"info": 0, "warning": 1, "critical": 2}
    ev = dict(first["evidence"])
    worst = _worst(first["kind"], kids)
    ev["v_extreme"] = worst["evidence"].get("v_extreme")
    if "trace" in worst["evidence"]:
        ev["trace"] = worst["evidence"]["trace"]
    ev.update(meters_abnormal=sum(len(k["meter_ids"]) for k in kids),
              meters_reporting=sum(k["evidence"].get("meters_reporting") or 0 for k in kids),
              transformer_ids=sorted(k["scope"]["id"] for k in kids), transformer_alert_ids=sorted(
                  k["alert_id"] for k in kids))
    ev.pop("transformer_id", None)
    return {
        "alert_id": fid, "kind": first["kind"],
        "severity": max((k["severity"] for k in kids), key=lambda x: order.get(x, 0)),
        "status": "resolved" if resolved else "open", "scope": {"level": "feeder", "id": feeder_id},
        "meter_ids": sorted(m for k in kids for m in k["meter_ids"]),
        "customer_ids": sorted(c for k in kids for c in k["customer_ids"]),
        "started_at": min(k["started_at"] for k in kids), "detected_at": max(k["detected_at"] for k in kids),
        "resolved_at": max(k["resolved_at"] for k in kids) if resolved else None, "evidence": ev,
    }


def _worst(kind: str, kids: list[dict]) -> dict:
    def badness(k: dict) -> float:
        ev = k["evidence"]
        v = ev.get("v_extreme")
        if kind in ("undervoltage", "overvoltage") and v is not None:
            return -v if kind == "undervoltage" else v
        pu = ev.get("pu")
        return abs(1 - pu) if pu is not None else float("-inf")

    return max(kids, key=badness)


def customer_alert(f: dict, customer: dict) -> dict:
    """A customer-level finding (a bill spike) as an alert record on the customer's meter."""
    meter = f.get("meter_id") or customer["meter_id"]
    return {
        "alert_id": alert_id(f["kind"], "meter", meter, f["started_at"]), "kind": f["kind"],
        "severity": f.get("severity", "warning"), "status": "open",
        "scope": {"level": "meter", "id": meter}, "meter_ids": [meter],
        "customer_ids": [customer["customer_id"]], "started_at": format_ts(f["started_at"]),
        "detected_at": format_ts(f["detected_at"]), "resolved_at": None,
        "evidence": dict(f.get("evidence") or {}),
    }



class Pipeline:
    """All stages in one process, driven in event-time order: the backtest's (and tests') worker.

    ``fit(payload)`` runs a detector's model fit (default: inline, its :class:`~detectors.api.Fittable` ``fit``).
    """

    def __init__(self, detectors: list[Detector] | None = None, fit: Callable | None = None):
        if detectors is None:
            detectors = enabled()
        self.detectors = detectors
        self.meter_stage, self.feeder_stage = MeterStage(detectors), FeederStage(detectors)
        self.customer_stage = CustomerStage(detectors)
        self._fit = fit
        self.directory: dict[str, dict] = {}     # meter_id -> directory entry
        self.customers: dict[str, dict] = {}
        self.meter_states: dict[str, dict] = {}
        self.customer_states: dict[str, dict] = {}
        self.feeders: dict[str, dict] = {}
        self.transformers: dict[str, dict] = {}
        self.alerts: list[dict] = []
        self.reports: list[dict] = []
        self.findings: list[dict] = []
        self.watermark: int | None = None
        self.fits = 0
        #: what the worker would dead-letter: ``(reason, meter_id, first ts, last ts)``
        self.dead_letters: list[tuple[str, str, int, int]] = []
        #: readings and events of meters not (yet) in the directory, decided on when their record comes
        self.held: dict[str, list] = {}
        self.clock = PartitionClock(lateness_s=900)

    # -- inputs -------------------------------------------------------------------------------------
    def add_customer(self, rec: dict) -> None:
        self.customers[rec["customer_id"]] = rec
        entry = directory_entry(rec)
        self.directory[rec["meter_id"]] = entry
        fid, tid = rec["feeder_id"], rec["transformer_id"]
        feeder = self.feeders.get(fid) or self.feeder_stage.new_feeder(fid)
        self.feeders[fid], self.transformers[tid] = self.feeder_stage.member(
            feeder, self.transformers.get(tid), {**entry, "partition": 0})
        held = self.held.pop(rec["meter_id"], None)
        if held:  # as the worker: what came before the customer record is decided on now (late, if it is)
            self.clock.unpark(rec["meter_id"])
            readings = [x for x in held if isinstance(x, Reading)]
            if readings:
                self.add_readings(readings)
            events = [x for x in held if isinstance(x, MeterEvent)]
            if events:
                self.add_events(events)

    def add_readings(self, readings: list[Reading]) -> None:
        meter = readings[0].meter_id
        entry = self.directory.get(meter)
        if entry is None:
            self.held.setdefault(meter, []).extend(readings)
            self.clock.park(meter, min(r.ts for r in readings), len(readings))
            return
        self.clock.batch(meter, min(r.ts for r in readings), max(r.ts for r in readings))
        before = self.meter_states.get(meter)
        states, findings, days = self.meter_stage.process(before, readings, entry)
        self.meter_states[meter] = states
        if findings:
            self.findings.extend(f for f in findings if f["status"] != "trace")
            self.reports.extend(f for f in findings if f["status"] == "report")
        tid = entry["transformer_id"]
        self.transformers[tid] = self.feeder_stage.status(self.transformers[tid], self.meter_stage.status_message(
            entry, readings, [f for f in findings if f["status"] != "report"], partition=0))
        if days:
            self._days(entry["customer_id"], days)

    def _days(self, cid: str, days: list[dict]) -> None:
        cust = self.customers[cid]
        states, records, requests = self.customer_stage.process(self.customer_states.get(cid), days, cust)
        self.alerts.extend(records)
        for name, payload in requests:
            self.fits += 1
            result = self._fit(payload) if self._fit else self.customer_stage.fit_function(name)(payload)
            states, recs = self.customer_stage.apply(states, name, result, cust)
            self.alerts.extend(recs)
        self.customer_states[cid] = states

    def add_events(self, events: list[MeterEvent]) -> None:
        by_feeder: dict[str, list[MeterEvent]] = {}
        for ev in events:
            entry = self.directory.get(ev.meter_id)
            if entry is not None:
                by_feeder.setdefault(entry["feeder_id"], []).append(ev)
            else:
                self.held.setdefault(ev.meter_id, []).append(ev)
        for fid, evs in by_feeder.items():
            self.feeders[fid] = self.feeder_stage.events(self.feeders[fid], evs, self._transformers_of(fid))

    def _transformers_of(self, fid: str) -> dict[str, dict]:
        tids = {m["transformer_id"] for m in self.feeders[fid]["members"].values()}
        return {t: self.transformers.get(t) for t in sorted(tids)}

    def advance(self, watermark: int) -> None:
        if self.watermark is not None and watermark <= self.watermark:
            return
        self.watermark = watermark
        for fid in sorted(self.feeders):
            trs = self._transformers_of(fid)
            self.feeders[fid], changed, records = self.feeder_stage.advance(self.feeders[fid], trs, watermark)
            self.transformers.update(changed)
            self.alerts.extend(records)

    # -- driving ------------------------------------------------------------------------------------
    def run(self, timed_records: Iterable[tuple[int, str, str, Any]], progress: Any = None) -> "Pipeline":
        """Feed ``(event_time, topic, key, value)`` tuples (the simulator's ``timed_records()``, or a replay)
        in time order. The watermark trails the newest reading by twice the longest batch seen (at least an
        hour): messages of one time window may come in any order, and deciding late changes nothing —
        decisions are made at the event times they concern, as in the worker, whose watermark trails too.

        As the worker, it refuses a batch dated ahead of the rest of the feed (``ts_in_future``, in
        :attr:`dead_letters`; see :mod:`detectors.watermarks`) and holds readings of meters not yet in the
        directory until their customer record comes."""
        last, span = None, 3600
        for t, topic, key, value in timed_records:
            if topic == topics.CUSTOMERS:
                self.add_customer(value)
            elif topic == topics.READINGS:
                items = value if isinstance(value, list) else [value]
                rs = [_reading(v) for v in items]
                first, newest = min(r.ts for r in rs), max(r.ts for r in rs)
                if self.clock.ahead(rs[0].meter_id, first, newest, len(rs), min(r.interval_s for r in rs)):
                    self.clock.claim(rs[0].meter_id, newest)
                    self.dead_letters.append(("ts_in_future", rs[0].meter_id, first, newest))
                else:
                    span = max(span, newest - first + rs[0].interval_s)
                    self.add_readings(rs)
                    last = newest if last is None else max(last, newest)
                    self.advance(last - 2 * span)
            elif topic == topics.EVENTS:
                ev = MeterEvent(value["meter_id"], parse_ts(value["ts"]), value["type"])
                if ev.type in ("power_fail", "power_restore"):
                    self.clock.claim(ev.meter_id, ev.ts)
                self.add_events([ev])
            if progress is not None:
                progress.update(1)
        if last is not None:
            self.advance(last)
        return self


def _reading(v: dict) -> Reading:
    return Reading(meter_id=v["meter_id"], ts=parse_ts(v["ts"]), interval_s=v.get("interval_s", 900),
                   kwh=v.get("kwh"), v_avg=v.get("v_avg"), v_min=v.get("v_min"), v_max=v.get("v_max"),
                   quality=v.get("quality", "actual"))

