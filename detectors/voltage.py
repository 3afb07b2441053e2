"""Sustained under- and over-voltage of one meter, judged against its customer's standard profile.

A meter is *abnormal* once the ``v_avg`` of consecutive readings has stayed outside the band of its
profile (see :mod:`detectors.standards`) for at least ``min_duration_s`` of event time, and *normal*
again once it has been back in band for ``recover_s``. Both figures are counted in the readings' own
intervals, so they mean the same for 1-minute and 15-minute meters.

The detector is a pure function of (state, readings, context): state is a small JSON-serialisable dict the
worker keeps in a table, the input is never mutated, and wall-clock time is never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from gridwatch.contract import Reading

from .api import Context, Detector, param
from .compact import TimeSet
from .standards import Profile, profile_for_context

__all__ = ["VoltageConfig", "VoltageDetector", "KIND_BY_CLASS"]

KIND_BY_CLASS = {"under": "undervoltage", "over": "overvoltage"}


@dataclass(frozen=True)
class VoltageConfig:
    """Parameters of :class:`VoltageDetector`; durations are event time, summed reading intervals."""
    min_duration_s: int = param(
        1800, "out of band for this long before the meter is abnormal: two 15-minute means, so one noisy "
              "interval never alerts and a real fault is reported within 30 minutes")
    recover_s: int = param(900, "back in band for this long before the meter counts as normal again")
    dedup_memory: int = param(96, "how many recent timestamps per meter are remembered to drop duplicate readings")
    max_gap_intervals: int = param(2, "a gap longer than this many intervals breaks a run of abnormal readings")


class VoltageDetector(Detector):
    """Per-meter sustained voltage deviation (undervoltage, overvoltage) against the customer's standard.

    ``process(state, readings, ctx)`` returns ``(new_state, findings)``; a finding is a dict
    ``{"kind": "undervoltage"|"overvoltage", "status": "abnormal"|"normal", "meter_id", "started_at",
    "detected_at", "at", "v_extreme"}`` with event times in epoch seconds: ``started_at`` is the first
    reading out of band, ``detected_at`` the reading that made the run long enough, ``at`` the moment of
    this transition (for "normal", the first reading back in band) and ``v_extreme`` the lowest (under)
    or highest (over) ``v_avg`` seen. Duplicated ``(meter_id, ts)`` readings are dropped and counted;
    readings older than the newest one already processed are counted as late and do not change the decision.
    """

    name = "voltage"
    detects = "sustained under- and over-voltage of one meter against its customer's standard band"
    key = "meter"
    input = "readings"
    kinds = ("undervoltage", "overvoltage")
    Config = VoltageConfig

    def new_state(self) -> dict:
        return {"last_ts": None, "seen": [], "run": None, "active": None, "ok_s": 0,
                "duplicates": 0, "late": 0}

    def score(self, reading: Reading, ctx: Context) -> str | None:
        """'under', 'over' or 'normal' for the reading's ``v_avg``; None when it has no voltage."""
        if reading.v_avg is None:
            return None
        return profile_for_context(ctx).classify(reading.v_avg)

    def process(self, state: dict | None, readings: Iterable[Reading], ctx: Context | Profile
                ) -> tuple[dict, list[dict]]:
        """Score each reading in event-time order, then decide.

        This is the hot path of the worker, so instead of the base class's deep copy of the state,
        :meth:`decide` copies only what it changes. A bare :class:`Profile` is accepted in place of the
        Context (as ``Context(profile=...)``) for callers written before the Context existed.
        """
        if isinstance(ctx, Profile):
            ctx = Context(profile=ctx)
        items = sorted(readings, key=lambda r: r.ts)
        return self.decide(state or self.new_state(), [(r, self.score(r, ctx)) for r in items], ctx)

    def decide(self, state: dict, scored: list[tuple[Reading, str | None]], ctx: Context
               ) -> tuple[dict, list[dict]]:
        cfg = self.config
        st = state
        seen = TimeSet(st["seen"])
        run = dict(st["run"]) if st["run"] else None
        active = dict(st["active"]) if st["active"] else None
        ok_s, last_ts = st["ok_s"], st["last_ts"]
        duplicates, late = st["duplicates"], st["late"]
        out: list[dict] = []

        for r, cls in scored:
            if not seen.add(r.ts):
                duplicates += 1
                continue
            if last_ts is not None and r.ts < last_ts:
                late += 1
                continue
            gap = last_ts is not None and r.ts - last_ts > cfg.max_gap_intervals * r.interval_s
            last_ts = r.ts
            if cls is None:
                continue

            if active is not None:
                if cls == active["cls"] and not gap:
                    ok_s = 0
                    active["v_extreme"] = _extreme(cls, active["v_extreme"], r.v_avg)
                    continue
                ok_s += r.interval_s
                if ok_s >= cfg.recover_s or gap:
                    back_at = r.ts - ok_s + r.interval_s if not gap else r.ts
                    out.append(_finding(active["kind"], "normal", r.meter_id, active["started_at"],
                                        active["detected_at"], back_at, active["v_extreme"]))
                    active, ok_s = None, 0
                if cls == "normal" or active is not None:
                    run = None
                    continue
                # back from one side straight to the other: fall through and start a new run

            if cls == "normal":
                run = None
                continue
            if run is None or run["cls"] != cls or gap:
                run = {"cls": cls, "since": r.ts, "dur": 0, "v_extreme": r.v_avg}
            run["dur"] += r.interval_s
            run["v_extreme"] = _extreme(cls, run["v_extreme"], r.v_avg)
            if run["dur"] >= cfg.min_duration_s:
                active = {"cls": cls, "kind": KIND_BY_CLASS[cls], "started_at": run["since"],
                          "detected_at": r.ts, "v_extreme": run["v_extreme"]}
                out.append(_finding(active["kind"], "abnormal", r.meter_id, run["since"], r.ts, r.ts,
                                    run["v_extreme"]))
                run, ok_s = None, 0

        # the newest ``dedup_memory`` timestamps, as runs: one ``[first, step, count]`` for a meter on time
        new = {"last_ts": last_ts, "seen": seen.packed(cfg.dedup_memory), "run": run, "active": active,
               "ok_s": ok_s, "duplicates": duplicates, "late": late}
        return new, out

    @staticmethod
    def current(state: dict | None) -> str:
        """'undervoltage', 'overvoltage' or 'normal' as of the last processed reading."""
        if state and state.get("active"):
            return state["active"]["kind"]
        return "normal"


def _finding(kind: str, status: str, meter_id: str, started_at: int, detected_at: int, at: int,
             v_extreme: Any) -> dict:
    return {"kind": kind, "status": status, "meter_id": meter_id, "started_at": started_at,
            "detected_at": detected_at, "at": at, "v_extreme": v_extreme}


def _extreme(cls: str, a: float, b: float) -> float:
    return min(a, b) if cls == "under" else max(a, b)
