"""Backtests: run the detectors over labelled data without Kafka and score their alerts against the truth.

The run itself is :class:`detectors.pipeline.Pipeline` — the same stages, in the same event-time order, as
the worker — fed with the simulator's ``timed_records()`` or with a recorded CSV read by
:mod:`devtools.replay`. What comes out (alert records, exactly as on the ``alerts`` topic) is scored here by
pure functions:

:func:`alert_spans`
    the lifecycle records of one alert (open, grown, resolved) folded into one span per ``alert_id``.
:func:`match`
    which alert covers which truth record. An alert matches a truth record when

    - its kind is the truth's ``expected_kind`` (undervoltage <-> undervoltage, outage <-> outage, ...);
    - its event-time span ``[started_at, resolved_at]`` (open-ended while unresolved) overlaps the truth
      window ``[start, end]`` widened by ``tolerance_s`` on both sides;
    - its meters (or customers) intersect the truth's.

    A truth record is *found* when at least one alert matches it, and counted once however many do; its
    *scope* is right when one of them has the truth's scope (a transformer fault raised as ONE transformer
    alert, not one alert per meter). Alerts are *true* (the first to claim a truth, in order of detection),
    *duplicate* (they match only truths already claimed) or *false* (they match nothing). An alert folded
    into another (``evidence.merged_into``) counts for detection but never as a duplicate or false alert.
:func:`score`
    per finding kind and per detector: events found / missed / false, precision = found / (found + false),
    recall = found / truths, detection delay (``detected_at`` - labelled ``start``, event time) median and
    max, scope right / found.

Truth records are the JSON objects :meth:`devtools.simulator.Simulator.truth` returns (and
``gridwatch simulate --truth`` writes): ``fault, scope{level,id}, start, end, meter_ids, customer_ids,
expected_kind``.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from detectors.pipeline import Pipeline
from gridwatch.contract import parse_ts

__all__ = [
    "DEFAULT_TOLERANCE_S", "AlertSpan", "TruthEvent", "TruthOutcome", "AlertOutcome", "Matching",
    "alert_spans", "truth_events", "match", "score", "merge_scores", "format_report", "format_delays",
    "format_duration",
    "parse_settings", "build_detectors", "run_pipeline", "Evaluation", "evaluate",
]

#: how far (event time) an alert may lie outside a truth window and still match it: one 15-minute interval
DEFAULT_TOLERANCE_S = 900

#: expected_kind spellings of truth records that differ from the alert kind they expect
KIND_ALIASES = {"looseneutral": "loose_neutral", "bill": "bill_spike", "spike": "bill_spike"}


# ---------------------------------------------------------------------------------------------- spans

@dataclass(frozen=True)
class AlertSpan:
    """One alert over its whole lifecycle. Times are epoch seconds; ``resolved_at`` None = still open."""
    alert_id: str
    kind: str
    level: str
    scope_id: str
    meter_ids: frozenset[str]
    customer_ids: frozenset[str]
    started_at: int
    detected_at: int
    resolved_at: int | None
    merged_into: str | None = None
    #: every scope the alert had, with the event time of its first record at that scope (an outage
    #: incident keeps its id while its scope grows): ``((level, id, time), ...)``
    scope_times: tuple[tuple[str, str, int], ...] = ()

    def reached(self, level: str, scope_id: str) -> int | None:
        """When the alert first had this scope (None: never)."""
        return min((t for lv, sid, t in self.scope_times if (lv, sid) == (level, scope_id)), default=None)

    @property
    def end(self) -> float:
        """The end of the span; an unresolved alert lasts for ever."""
        if self.resolved_at is not None:
            return max(self.resolved_at, self.started_at)
        return math.inf


@dataclass(frozen=True)
class TruthEvent:
    """One truth record, with times as epoch seconds and the alert kind it expects."""
    index: int
    fault: str
    kind: str
    level: str
    scope_id: str
    meter_ids: frozenset[str]
    customer_ids: frozenset[str]
    start: int
    end: int
    record: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _ts(v: Any) -> int | None:
    if v is None:
        return None
    if isinstance(v, (int, float)):
        return int(v)
    return parse_ts(v)


def alert_spans(records: Iterable[Mapping[str, Any]]) -> list[AlertSpan]:
    """Fold alert records (every lifecycle change is a record with the same ``alert_id``) into spans.

    Meters and customers are the union over the records (a transformer alert grows as meters join); the
    scope and kind are the latest record's, and ``scope_times`` every scope it had since when (a record's
    time is its ``evidence.updated_at``, else its ``detected_at``); ``detected_at`` is the earliest seen.
    Spans come in order of their first record.
    """
    acc: dict[str, dict] = {}
    for rec in records:
        aid = rec["alert_id"]
        a = acc.get(aid)
        if a is None:
            a = acc[aid] = {"kind": rec["kind"], "scope": rec["scope"], "meters": set(), "customers": set(),
                            "started_at": _ts(rec["started_at"]), "detected_at": _ts(rec["detected_at"]),
                            "resolved_at": None, "merged_into": None, "scopes": {}}
        a["kind"], a["scope"] = rec["kind"], rec["scope"]
        at = _ts((rec.get("evidence") or {}).get("updated_at") or rec.get("detected_at"))
        key = (rec["scope"]["level"], rec["scope"]["id"])
        if at is not None and (key not in a["scopes"] or at < a["scopes"][key]):
            a["scopes"][key] = at
        a["meters"].update(rec.get("meter_ids") or ())
        a["customers"].update(rec.get("customer_ids") or ())
        started, detected = _ts(rec.get("started_at")), _ts(rec.get("detected_at"))
        if started is not None:
            a["started_at"] = started if a["started_at"] is None else min(a["started_at"], started)
        if detected is not None:
            a["detected_at"] = detected if a["detected_at"] is None else min(a["detected_at"], detected)
        if rec.get("status") == "resolved":
            a["resolved_at"] = _ts(rec.get("resolved_at"))
        merged = (rec.get("evidence") or {}).get("merged_into")
        if merged:
            a["merged_into"] = merged
    out = []
    for aid, a in acc.items():
        started = a["started_at"] if a["started_at"] is not None else a["detected_at"]
        out.append(AlertSpan(aid, a["kind"], a["scope"]["level"], a["scope"]["id"], frozenset(a["meters"]),
                             frozenset(a["customers"]), started, a["detected_at"], a["resolved_at"],
                             a["merged_into"], tuple((lv, sid, t) for (lv, sid), t in a["scopes"].items())))
    return out


def truth_events(records: Iterable[Mapping[str, Any]]) -> list[TruthEvent]:
    """Truth records (``Simulator.truth()`` / a labels file) -> :class:`TruthEvent`, in the given order."""
    out = []
    for i, rec in enumerate(records):
        kind = rec.get("expected_kind") or rec["fault"]
        kind = KIND_ALIASES.get(kind, kind)
        scope = rec.get("scope") or {}
        start = _ts(rec["start"])
        end = _ts(rec.get("end"))
        out.append(TruthEvent(i, rec.get("fault", kind), kind, scope.get("level", "meter"), scope.get("id", ""),
                              frozenset(rec.get("meter_ids") or ()), frozenset(rec.get("customer_ids") or ()),
                              start, end if end is not None else start, rec))
    return out


# --------------------------------------------------------------------------------------------- match

@dataclass
class TruthOutcome:
    truth: TruthEvent
    alert_ids: list[str]          # every matching alert, in order of detection
    scope_ok: bool
    detected_at: int | None       # earliest detection among the matching alerts
    scope_at: int | None = None   # when a matching alert first had the truth's scope

    @property
    def scope_delay_s(self) -> int | None:
        return None if self.scope_at is None else self.scope_at - self.truth.start

    @property
    def found(self) -> bool:
        return bool(self.alert_ids)

    @property
    def delay_s(self) -> int | None:
        return None if self.detected_at is None else self.detected_at - self.truth.start


@dataclass
class AlertOutcome:
    alert: AlertSpan
    truths: list[int]             # indexes of the truth records it matches
    status: str                   # true | duplicate | false | merged
    #: for a false alert: it overlaps a truth of another kind on the same meters (a side effect of a fault)
    during_other_fault: bool = False


@dataclass
class Matching:
    truths: list[TruthOutcome]
    alerts: list[AlertOutcome]
    tolerance_s: int


def _overlaps(a: AlertSpan, t: TruthEvent, tol: int) -> bool:
    return a.started_at <= t.end + tol and a.end >= t.start - tol


def _touches(a: AlertSpan, t: TruthEvent) -> bool:
    return bool(a.meter_ids & t.meter_ids) or bool(a.customer_ids & t.customer_ids)


def match(alerts: Sequence[AlertSpan], truth: Sequence[TruthEvent], tolerance_s: int = DEFAULT_TOLERANCE_S
          ) -> Matching:
    """Match alert spans against truth events (see the module docstring for the rules)."""
    order = sorted(alerts, key=lambda a: (a.detected_at, a.alert_id))
    hits: dict[str, list[int]] = {
        a.alert_id: [t.index for t in truth if a.kind == t.kind and _overlaps(a, t, tolerance_s) and _touches(a, t)]
        for a in order
    }
    outcomes = []
    for t in truth:
        matched = [a for a in order if t.index in hits[a.alert_id]]
        scope_ok = any((a.level == t.level and a.scope_id == t.scope_id) or a.reached(t.level, t.scope_id) is not None
                       for a in matched if a.merged_into is None)
        at_scope = [x for a in matched if a.merged_into is None
                    for x in [a.reached(t.level, t.scope_id)] if x is not None]
        outcomes.append(TruthOutcome(t, [a.alert_id for a in matched], scope_ok,
                                     min((a.detected_at for a in matched), default=None),
                                     min(at_scope, default=None)))
    claimed: set[int] = set()
    alert_out = []
    for a in order:
        idx = hits[a.alert_id]
        if a.merged_into is not None:
            status = "merged"
        elif not idx:
            status = "false"
        elif set(idx) - claimed:
            status = "true"
        else:
            status = "duplicate"
        if a.merged_into is None:
            claimed.update(idx)
        other = status == "false" and any(
            t.kind != a.kind and _overlaps(a, t, tolerance_s) and _touches(a, t) for t in truth)
        alert_out.append(AlertOutcome(a, idx, status, other))
    return Matching(outcomes, alert_out, tolerance_s)


# --------------------------------------------------------------------------------------------- score

def _metrics(truths: list[TruthOutcome], alerts: list[AlertOutcome]) -> dict[str, Any]:
    found = [t for t in truths if t.found]
    n_false = sum(a.status == "false" for a in alerts)
    delays = sorted(t.delay_s for t in found if t.delay_s is not None)
    return {
        "truths": len(truths), "found": len(found), "missed": len(truths) - len(found), "false": n_false,
        "false_during_other_fault": sum(a.during_other_fault for a in alerts),
        "duplicates": sum(a.status == "duplicate" for a in alerts),
        "alerts": sum(a.status != "merged" for a in alerts),
        "precision": len(found) / (len(found) + n_false) if found or n_false else None,
        "recall": len(found) / len(truths) if truths else None,
        "delay_s": delays,
        "scope_delay_s": sorted(t.scope_delay_s for t in found if t.scope_delay_s is not None),
        "delay_median_s": statistics.median(delays) if delays else None,
        "delay_max_s": max(delays) if delays else None,
        "scope_ok": sum(t.scope_ok for t in found),
        "scope_levels": sorted({t.truth.level for t in truths}),
    }


def score(m: Matching, kinds_by_detector: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """Metrics from a :class:`Matching`: ``{"kinds": {kind: metrics}, "detectors": {name: metrics and
    its "kinds"}, "uncovered": [truth kinds no detector emits]}``.

    With ``kinds_by_detector`` (detector name -> the finding kinds it declares) the figures are also summed
    per detector, and truths of kinds no chosen detector emits are left out of the per-detector figures
    (listed under ``uncovered``) instead of counting as misses.
    """
    kinds = sorted({t.truth.kind for t in m.truths} | {a.alert.kind for a in m.alerts})
    by_kind = {k: _metrics([t for t in m.truths if t.truth.kind == k], [a for a in m.alerts if a.alert.kind == k])
               for k in kinds}
    out: dict[str, Any] = {"kinds": by_kind, "detectors": {}, "uncovered": []}
    if kinds_by_detector is not None:
        covered = {k for ks in kinds_by_detector.values() for k in ks}
        for name, ks in kinds_by_detector.items():
            ks = set(ks)
            d = _metrics([t for t in m.truths if t.truth.kind in ks], [a for a in m.alerts if a.alert.kind in ks])
            d["kinds"] = sorted(k for k in ks if k in by_kind)
            out["detectors"][name] = d
        out["uncovered"] = sorted({t.truth.kind for t in m.truths} - covered)
    return out


def merge_scores(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Sum the scores of several runs (seeds) into one, recomputing the ratios and delays."""
    def add(items: list[dict]) -> dict:
        keys = ("truths", "found", "missed", "false", "false_during_other_fault", "duplicates", "alerts",
                "scope_ok")
        tot = {k: sum(i[k] for i in items) for k in keys}
        delays = sorted(d for i in items for d in i["delay_s"])
        f, n_false = tot["found"], tot["false"]
        tot["scope_delay_s"] = sorted(d for i in items for d in i.get("scope_delay_s", ()))
        tot.update(precision=f / (f + n_false) if f or n_false else None,
                   recall=f / tot["truths"] if tot["truths"] else None, delay_s=delays,
                   delay_median_s=statistics.median(delays) if delays else None,
                   delay_max_s=max(delays) if delays else None,
                   scope_levels=sorted({lv for i in items for lv in i["scope_levels"]}))
        return tot

    out: dict[str, Any] = {"kinds": {}, "detectors": {}, "uncovered": []}
    for section in ("kinds", "detectors"):
        names = sorted({n for p in parts for n in p[section]})
        for n in names:
            items = [p[section][n] for p in parts if n in p[section]]
            out[section][n] = add(items)
            if section == "detectors":
                out[section][n]["kinds"] = sorted({k for i in items for k in i["kinds"]})
    out["uncovered"] = sorted({k for p in parts for k in p["uncovered"]})
    return out


# -------------------------------------------------------------------------------------------- format

def format_duration(seconds: float | None) -> str:
    """``None`` -> ``-``; 0 -> ``0s``; 2700 -> ``45m``; 5400 -> ``1h30m``; 90061 -> ``1d1h1m``."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    sign, s = ("-", -s) if s < 0 else ("", s)
    if s < 60:
        return f"{sign}{s}s"
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m = rem // 60
    parts = [f"{d}d" if d else "", f"{h}h" if h else "", f"{m}m" if m else ""]
    return sign + "".join(parts)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _scope(m: dict) -> str:
    if not m["found"]:
        return "-"
    return f"{m['scope_ok']}/{m['found']}"


def format_report(scores: dict[str, Any], detector_kinds: Mapping[str, Sequence[str]] | None = None) -> str:
    """A readable table: one line per detector, then one per finding kind it emits."""
    head = ("detector / kind", "truths", "found", "missed", "false", "dup", "precision", "recall",
            "delay med", "delay max", "scope")
    rows: list[tuple[str, ...]] = []

    def row(label: str, m: dict) -> tuple[str, ...]:
        false = str(m["false"]) + (f" ({m['false_during_other_fault']})" if m["false_during_other_fault"] else "")
        return (label, str(m["truths"]), str(m["found"]), str(m["missed"]), false, str(m["duplicates"]),
                _pct(m["precision"]), _pct(m["recall"]), format_duration(m["delay_median_s"]),
                format_duration(m["delay_max_s"]), _scope(m))

    shown: set[str] = set()
    for name, m in scores["detectors"].items():
        rows.append(row(name, m))
        kinds = m["kinds"] if detector_kinds is None else [k for k in detector_kinds.get(name, ()) if k in scores["kinds"]]
        declared = detector_kinds.get(name, kinds) if detector_kinds is not None else kinds
        for k in kinds:
            if list(declared) != [name]:  # a detector named after its only kind needs no second line
                rows.append(row(f"  {k}", scores["kinds"][k]))
            shown.add(k)
    uncovered = []
    for k, m in scores["kinds"].items():
        if k in shown:
            continue
        if k in scores.get("uncovered", ()) and not m["alerts"]:
            uncovered.append(f"{k} {m['truths']}")
        else:
            rows.append(row(k, m))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [head, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    if uncovered:
        lines.append(f"not scored, no chosen detector emits them: {', '.join(uncovered)} labelled faults")
    lines += ["", "found/missed: labelled faults; false: alerts matching no fault (in brackets: during a fault of "
                  "another kind);", "dup: more alerts for a fault already found; delay: detected_at - fault start "
                  "(event time);", "scope: faults found with an alert at the labelled scope (one transformer "
                  "alert, not one per meter)."]
    return "\n".join(lines)


def _quantile(xs: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile of sorted ``xs`` (nearest rank), None when empty."""
    if not xs:
        return None
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


def format_delays(scores: dict[str, Any]) -> str:
    """The delay distribution per finding kind: first detection, and reaching the labelled scope (an
    outage found at a meter that grows to its feeder reaches the feeder scope later)."""
    head = ("kind", "found", "delay p50", "p90", "max", "at scope", "p50", "p90", "max")
    rows = []
    for k, m in scores["kinds"].items():
        if not m["found"]:
            continue
        d, sd = m["delay_s"], m.get("scope_delay_s") or []
        rows.append((k, str(m["found"]), *(format_duration(_quantile(d, q)) for q in (0.5, 0.9, 1.0)),
                     str(len(sd)), *(format_duration(_quantile(sd, q)) for q in (0.5, 0.9, 1.0))))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [head, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines + ["", "delay: detected_at - fault start; at scope: faults with an alert at the labelled "
                                   "scope, and when it first had that scope (event time)."])


# ------------------------------------------------------------------------------------------- running

def parse_settings(specs: Iterable[str], classes: Mapping[str, type]) -> dict[str, dict[str, Any]]:
    """``["voltage.min_duration_s=2700"]`` -> ``{"voltage": {"min_duration_s": 2700}}``.

    The value is converted to the type of the parameter's default (int, float, bool, str; JSON for
    anything else). Raises ValueError naming the detector and parameter when one is unknown.
    """
    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        name_param, sep, text = spec.partition("=")
        det, dot, pname = name_param.strip().partition(".")
        if not sep or not dot or not det or not pname:
            raise ValueError(f"--set {spec!r}: expected DETECTOR.PARAMETER=VALUE, e.g. voltage.min_duration_s=2700")
        if det not in classes:
            raise ValueError(f"--set {spec!r}: no detector {det!r} (installed: {', '.join(classes) or 'none'})")
        params = {p.name: p for p in classes[det].parameters()}
        if pname not in params:
            raise ValueError(f"--set {spec!r}: detector {det!r} has no parameter {pname!r} "
                             f"(parameters: {', '.join(params) or 'none'})")
        default = params[pname].default
        text = text.strip()
        try:
            if isinstance(default, bool):
                low = text.lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                value: Any = low in ("true", "1", "yes")
            elif isinstance(default, int):
                value = int(text)
            elif isinstance(default, float):
                value = float(text)
            elif isinstance(default, str):
                value = text
            else:
                value = json.loads(text)
        except ValueError:
            raise ValueError(f"--set {spec!r}: {text!r} is not a valid {type(default).__name__} "
                             f"(default {default!r})") from None
        out.setdefault(det, {})[pname] = value
    return out


def build_detectors(names: Sequence[str] | None, settings: Mapping[str, Mapping[str, Any]],
                    classes: Mapping[str, type]) -> list:
    """Instances of the named detectors (all when ``names`` is empty), with ``settings`` applied."""
    chosen = list(names) if names else list(classes)
    unknown = [n for n in chosen if n not in classes]
    if unknown:
        raise ValueError(f"no detector {unknown[0]!r} (installed: {', '.join(classes) or 'none'})")
    not_chosen = [n for n in settings if n not in chosen]
    if not_chosen:
        raise ValueError(f"--set for {not_chosen[0]!r}, which is not among the chosen detectors")
    return [classes[n](**dict(settings.get(n, {}))) for n in chosen]


def run_pipeline(detectors: list, timed_records: Iterable[tuple[int, str, str, Any]], progress: Any = None):
    """Run :class:`detectors.pipeline.Pipeline` over the records; returns it (``.alerts``, ``.reports``)."""
    return Pipeline(detectors).run(timed_records, progress=progress)


@dataclass
class Evaluation:
    """One backtest run: the pipeline after the run (``.alerts``, ``.reports``), the matching, the scores."""
    pipeline: Any
    matching: Matching
    scores: dict[str, Any]


def evaluate(detectors: list, timed_records: Iterable[tuple[int, str, str, Any]],
             truth: Iterable[Mapping[str, Any]], *, tolerance_s: int = DEFAULT_TOLERANCE_S,
             progress: Any = None) -> Evaluation:
    """Run the detectors over the records and score their alerts against the truth records.

    ``timed_records`` are ``(event_time, topic, key, value)`` as :meth:`Simulator.timed_records` yields
    them; ``progress`` (a tqdm bar, say) is updated once per record.
    """
    pipe = run_pipeline(detectors, timed_records, progress)
    m = match(alert_spans(pipe.alerts), truth_events(truth), tolerance_s)
    return Evaluation(pipe, m, score(m, {d.name: tuple(d.kinds) for d in detectors}))
