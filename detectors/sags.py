"""Voltage sags and swells inside a meter's intervals, from the interval's minimum and maximum voltage.

An interval meter reports one mean voltage per 1 to 15 minutes, which hides a sag of a few cycles; the
``v_min`` / ``v_max`` fields of the same reading do not. This detector reads them on the IEEE 1159
magnitude scale (:func:`detectors.standards.ieee1159`): below 0.9 pu of nominal is a sag, above 1.1 pu a
swell. It is the worked example of "Adding a detector": a ``Config`` of ``param`` fields, a pure
``score`` per reading and a small ``decide`` that holds the memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from gridwatch.contract import Reading

from .api import Context, Detector, copy_state, param
from .standards import Profile, ieee1159, profile_for_context

__all__ = ["SagSwellConfig", "SagSwellDetector"]


@dataclass(frozen=True)
class SagSwellConfig:
    """Parameters of :class:`SagSwellDetector`."""
    warning_sag_pu: float = param(0.7, "a sag whose lowest voltage is below this (per unit of nominal) is a "
                                       "warning, a shallower one is info")
    warning_swell_pu: float = param(1.2, "a swell whose highest voltage is above this (per unit of nominal) "
                                         "is a warning, a smaller one is info")


class SagSwellDetector(Detector):
    """Short voltage sags and swells that the interval's mean voltage hides.

    A reading is a *sag interval* when its ``v_min`` is a sag on the IEEE 1159 scale (0.1 to 0.9 pu of the
    profile's nominal), a *swell interval* when its ``v_max`` is a swell (1.1 to 1.8 pu). Three rules keep
    the findings to what only this detector can say:

    - while the interval's ``v_avg`` is itself out of band the deviation is sustained: that is the
      ``voltage`` detector's finding, not a sag or a swell;
    - an interval that dips to a sag AND rises to a swell is a swinging voltage: the ``loose_neutral``
      detector's pattern;
    - consecutive sag (or swell) intervals are one finding, made at the first of them.

    A finding is ``{"kind": "sag"|"swell", "status": "event", "meter_id", "started_at", "detected_at", "at",
    "severity", "evidence"}``; the three times are the ``ts`` of the first interval of the run (the event
    happened somewhere inside it). ``severity`` is "warning" for a sag below ``warning_sag_pu`` or a swell
    above ``warning_swell_pu`` (deep enough to trip equipment), else "info". ``evidence`` holds ``v_min``
    (sag) or ``v_max`` (swell), ``pu``, ``category``, ``standard`` and ``nominal_v``.

    Readings without ``v_avg`` cannot be told from a sustained deviation: they neither start nor end a
    run. Readings at or before the newest one already processed (duplicates, late arrivals) are skipped
    and counted; a gap of missing intervals ends a run.
    """

    name = "sag_swell"
    detects = "voltage sags and swells within an interval, from its minimum and maximum voltage (IEEE 1159)"
    key = "meter"
    input = "readings"
    kinds = ("sag", "swell")
    Config = SagSwellConfig

    def new_state(self) -> dict:
        # last_ts: newest reading processed; run: the kinds the previous interval showed; skipped: dropped inputs
        return {"last_ts": None, "run": [], "skipped": 0}

    def score(self, reading: Reading, ctx: Context) -> list[tuple[str, float, float]] | None:
        """``[(kind, volts, pu)]`` for the sag and/or swell this interval shows; None when it cannot tell."""
        if reading.v_avg is None:
            return None
        profile = profile_for_context(ctx)
        if profile.classify(reading.v_avg) != "normal":
            return []  # a sustained deviation: the voltage detector's finding
        found = []
        if reading.v_min is not None and ieee1159(profile.pu(reading.v_min)) == "sag":
            found.append(("sag", reading.v_min, profile.pu(reading.v_min)))
        if reading.v_max is not None and ieee1159(profile.pu(reading.v_max)) == "swell":
            found.append(("swell", reading.v_max, profile.pu(reading.v_max)))
        return [] if len(found) == 2 else found  # both ways at once: the loose-neutral pattern

    def decide(self, state: dict, scored: list[tuple[Reading, list | None]], ctx: Context
               ) -> tuple[dict, list[dict]]:
        st, out = copy_state(state), []
        profile = profile_for_context(ctx)
        for r, events in scored:
            last = st["last_ts"]
            if last is not None and r.ts <= last:
                st["skipped"] += 1
                continue
            if last is not None and r.ts - r.interval_s > last:
                st["run"] = []  # missing intervals: whatever comes next is a new event
            st["last_ts"] = r.ts
            if events is None:
                continue
            for kind, volts, pu in events:
                if kind not in st["run"]:
                    out.append(self._finding(r, kind, volts, pu, profile))
            st["run"] = [kind for kind, _, _ in events]
        return st, out

    def _finding(self, r: Reading, kind: str, volts: float, pu: float, profile: Profile) -> dict:
        cfg = self.config
        deep = pu < cfg.warning_sag_pu if kind == "sag" else pu > cfg.warning_swell_pu
        return {"kind": kind, "status": "event", "meter_id": r.meter_id,
                "started_at": r.ts, "detected_at": r.ts, "at": r.ts,
                "severity": "warning" if deep else "info",
                "evidence": {"v_min" if kind == "sag" else "v_max": volts, "pu": round(pu, 3),
                             "category": ieee1159(pu), "standard": profile.name, "nominal_v": profile.nominal}}
