"""Sustained under- and over-voltage of one meter, judged against its customer's standard profile.

A meter is *abnormal* once the ``v_avg`` of consecutive readings has stayed outside the band of its
profile (see :mod:`detectors.standards`) for at least ``min_duration_s`` of event time, and *normal*
again once it has been back in band for ``recover_s``. Both figures are counted in the readings' own
intervals, so they mean the same for 1-minute and 15-minute meters.

The detector is a pure function of (state, readings): state is a small JSON-serialisable dict the worker
keeps in a table, the input is never mutated, and wall-clock time is never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from gridwatch.contract import Reading

from .standards import Profile

__all__ = ["VoltageConfig", "VoltageDetector", "KIND_BY_CLASS"]

KIND_BY_CLASS = {"under": "undervoltage", "over": "overvoltage"}


@dataclass(frozen=True)
class VoltageConfig:
    #: out of band for this long (event time, summed reading intervals) before the meter is abnormal.
    #: Two 15-minute means: one noisy interval never alerts, a real fault is reported within 30 minutes.
    min_duration_s: int = 1800
    #: back in band for this long before the meter counts as normal again.
    recover_s: int = 900
    #: how many recent timestamps per meter are remembered to drop duplicate readings.
    dedup_memory: int = 96
    #: a gap longer than this many intervals breaks a run of abnormal readings.
    max_gap_intervals: int = 2


class VoltageDetector:
    """Per-meter sustained voltage deviation.

    ``process(state, readings, profile)`` returns ``(new_state, transitions)``; a transition is a dict
    ``{"kind", "status": "abnormal"|"normal", "started_at", "detected_at", "at", "v_extreme"}`` with
    event times in epoch seconds. Duplicated ``(meter_id, ts)`` readings are dropped and counted; readings
    older than the newest one already processed are counted as late and do not change the decision.
    """

    name = "voltage"

    def __init__(self, config: VoltageConfig | None = None):
        self.config = config or VoltageConfig()

    @staticmethod
    def new_state() -> dict:
        return {"last_ts": None, "seen": [], "run": None, "active": None, "ok_s": 0,
                "duplicates": 0, "late": 0}

    def process(self, state: dict | None, readings: Iterable[Reading], profile: Profile) -> tuple[dict, list[dict]]:
        cfg = self.config
        st = dict(state) if state else self.new_state()
        seen = list(st["seen"])
        seen_set = set(seen)
        run = dict(st["run"]) if st["run"] else None
        active = dict(st["active"]) if st["active"] else None
        ok_s, last_ts = st["ok_s"], st["last_ts"]
        duplicates, late = st["duplicates"], st["late"]
        out: list[dict] = []

        for r in sorted(readings, key=lambda r: r.ts):
            if r.ts in seen_set:
                duplicates += 1
                continue
            seen.append(r.ts)
            seen_set.add(r.ts)
            if last_ts is not None and r.ts < last_ts:
                late += 1
                continue
            gap = last_ts is not None and r.ts - last_ts > cfg.max_gap_intervals * r.interval_s
            last_ts = r.ts
            if r.v_avg is None:
                continue
            cls = profile.classify(r.v_avg)

            if active is not None:
                if cls == active["cls"] and not gap:
                    ok_s = 0
                    active["v_extreme"] = _extreme(cls, active["v_extreme"], r.v_avg)
                    continue
                ok_s += r.interval_s
                if ok_s >= cfg.recover_s or gap:
                    back_at = r.ts - ok_s + r.interval_s if not gap else r.ts
                    out.append({"kind": active["kind"], "status": "normal", "started_at": active["started_at"],
                                "detected_at": active["detected_at"], "at": back_at,
                                "v_extreme": active["v_extreme"]})
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
                out.append({"kind": active["kind"], "status": "abnormal", "started_at": run["since"],
                            "detected_at": r.ts, "at": r.ts, "v_extreme": run["v_extreme"]})
                run, ok_s = None, 0

        if len(seen) > cfg.dedup_memory:
            seen = sorted(seen)[-cfg.dedup_memory:]
        new = {"last_ts": last_ts, "seen": seen, "run": run, "active": active, "ok_s": ok_s,
               "duplicates": duplicates, "late": late}
        return new, out

    @staticmethod
    def current(state: dict | None) -> str:
        """'undervoltage', 'overvoltage' or 'normal' as of the last processed reading."""
        if state and state.get("active"):
            return state["active"]["kind"]
        return "normal"


def _extreme(cls: str, a: float, b: float) -> float:
    return min(a, b) if cls == "under" else max(a, b)
