"""A loose or broken neutral at one customer: the meter's voltage swings both above and below its band.

With the neutral conductor loose, the voltage a customer sees depends on how the load is shared between
the phases (or the two legs of a split-phase service): it rises when the other side draws more, falls when
this side does, and keeps swinging as appliances switch. Appliances burn out and connections heat up, so
this is a safety finding. The same swinging on every meter of a transformer points at the transformer
instead; that check needs the neighbours and is made downstream by the transformer correlator
(:mod:`detectors.topology`) from the evidence of this detector's findings.
"""

from __future__ import annotations

from dataclasses import dataclass

from gridwatch.contract import Reading

from .api import Context, Detector, copy_state, param
from .standards import Profile, profile_for_context

__all__ = ["LooseNeutralConfig", "LooseNeutralDetector"]


@dataclass(frozen=True)
class LooseNeutralConfig:
    """Parameters of :class:`LooseNeutralDetector`; durations are event time."""
    window_s: int = param(6 * 3600, "swings are counted over the readings of this trailing window")
    min_swings: int = param(4, "this many swings between above-band and below-band voltage within the window "
                               "make the meter abnormal")
    calm_s: int = param(2 * 3600, "no excursion out of band for this long and the meter is normal again")


class LooseNeutralDetector(Detector):
    """A meter whose voltage swings both above and below its standard band: a loose neutral (critical).

    Each reading is an *excursion* high (``v_max`` or ``v_avg`` above the band), low (``v_min`` or ``v_avg``
    below it) or both ways within the interval. A *swing* is an excursion on the other side from the one
    before it within the window, or one that goes both ways by itself. A meter with at least
    ``min_swings`` swings within ``window_s`` is abnormal; after ``calm_s`` without any excursion it is
    normal again. A steady deviation to one side (a sustained undervoltage, a sag) never swings.

    Findings: ``{"kind": "loose_neutral", "status": "abnormal"|"normal", "meter_id", "started_at",
    "detected_at", "at", "severity": "critical" (abnormal only), "evidence"}``. ``started_at`` is the first
    excursion of the window that tripped it, ``detected_at`` the reading that did, ``at`` the moment of the
    transition (for "normal", the reading that completed the calm period). ``evidence``: ``window_s``,
    ``swings`` (the most seen within one window), ``v_min`` / ``v_max`` (extremes while swinging),
    ``standard``, ``nominal_v``, ``band_v`` and ``last_swing_at`` (the newest excursion).

    Readings without any voltage are skipped; readings at or before the newest one already processed
    (duplicates, late arrivals) are dropped and counted.
    """

    name = "loose_neutral"
    detects = "a meter whose voltage swings above and below its band again and again (loose neutral)"
    key = "meter"
    input = "readings"
    kinds = ("loose_neutral",)
    Config = LooseNeutralConfig

    def new_state(self) -> dict:
        # marks: excursions in the window, [ts, side "H"|"L"|"B", lowest v, highest v]; active: the open finding
        return {"last_ts": None, "marks": [], "last_excursion": None, "active": None, "skipped": 0}

    def score(self, reading: Reading, ctx: Context) -> tuple[str, float | None, float | None] | None:
        """``(side, lowest v, highest v)``: side "H", "L", "B" (both) or "" (in band); None without voltage."""
        lows = [v for v in (reading.v_min, reading.v_avg) if v is not None]
        highs = [v for v in (reading.v_max, reading.v_avg) if v is not None]
        if not lows and not highs:
            return None
        profile = profile_for_context(ctx)
        lo, hi = (min(lows) if lows else None), (max(highs) if highs else None)
        low = lo is not None and lo < profile.low
        high = hi is not None and hi > profile.high
        return ("B" if low and high else "L" if low else "H" if high else ""), lo, hi

    def decide(self, state: dict, scored: list[tuple[Reading, tuple | None]], ctx: Context
               ) -> tuple[dict, list[dict]]:
        cfg, st, out = self.config, copy_state(state), []
        profile = profile_for_context(ctx)
        for r, s in scored:
            if st["last_ts"] is not None and r.ts <= st["last_ts"]:
                st["skipped"] += 1
                continue
            st["last_ts"] = r.ts
            if s is None:
                continue
            side, lo, hi = s
            if side:
                st["marks"].append([r.ts, side, lo, hi])
                st["last_excursion"] = r.ts
            st["marks"] = [m for m in st["marks"] if m[0] > r.ts - cfg.window_s]
            swings = _swings(st["marks"])
            active = st["active"]
            if active is None:
                if swings >= cfg.min_swings:
                    st["active"] = {"started_at": st["marks"][0][0], "detected_at": r.ts, "swings": swings,
                                    "v_min": _lowest(st["marks"]), "v_max": _highest(st["marks"])}
                    out.append(self._finding("abnormal", r, st, profile))
            elif side:
                active["swings"] = max(active["swings"], swings)
                active["v_min"] = _min(active["v_min"], lo)
                active["v_max"] = _max(active["v_max"], hi)
            elif r.ts - st["last_excursion"] >= cfg.calm_s:
                out.append(self._finding("normal", r, st, profile))
                st["active"], st["marks"] = None, []  # a new finding needs new swings
        return st, out

    def _finding(self, status: str, r: Reading, st: dict, profile: Profile) -> dict:
        a = st["active"]
        f = {"kind": "loose_neutral", "status": status, "meter_id": r.meter_id, "started_at": a["started_at"],
             "detected_at": a["detected_at"], "at": r.ts,
             "evidence": {"window_s": self.config.window_s, "swings": a["swings"], "v_min": a["v_min"],
                          "v_max": a["v_max"], "standard": profile.name, "nominal_v": profile.nominal,
                          "band_v": [profile.low, profile.high], "last_swing_at": st["last_excursion"]}}
        if status == "abnormal":
            f["severity"] = "critical"  # appliance damage and a fire risk: never a mere warning
        return f


def _swings(marks: list[list]) -> int:
    """Excursions on the other side from the previous one, plus those that went both ways at once."""
    n, prev = 0, None
    for _, side, _, _ in marks:
        if side == "B" or (prev is not None and side != prev):
            n += 1
        prev = side
    return n


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _lowest(marks: list[list]) -> float | None:
    out = None
    for m in marks:
        out = _min(out, m[2])
    return out


def _highest(marks: list[list]) -> float | None:
    out = None
    for m in marks:
        out = _max(out, m[3])
    return out
