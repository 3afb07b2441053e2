"""Weekly voltage compliance of one meter: the share of 10-minute mean voltages inside the standard band.

EN 50160 judges a supply over a week: at least 95 % of the 10-minute means of the supply voltage within
+/-10 % of nominal, and all of them within +10 % / -15 %. This detector keeps that statistic for every
meter and every standard (:mod:`detectors.standards`), so a utility can publish a figure per customer per
week, and raises a warning for a week that fails.

10-minute periods are built from the readings as they come:

- readings shorter than 10 minutes are averaged (weighted by their intervals) into clock-aligned 10-minute
  periods (aligned on UTC; a reading belongs to the period its end falls in);
- a reading of 10 minutes or longer counts as ONE period whose mean is its ``v_avg``. For 15-minute
  meters this is an approximation: a week has 672 such periods instead of 1,008, and a 15-minute mean
  smooths a little more than a 10-minute one.

A week runs from Monday 00:00 to the next Monday 00:00 in the customer's time zone (``timezone`` of the
customer record, default UTC); a period belongs to the week its start falls in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gridwatch.contract import Reading

from .api import Context, Detector, copy_state, param
from .standards import Profile, profile_for_context

__all__ = ["PERIOD_S", "ComplianceConfig", "VoltageComplianceDetector", "week_bounds"]

#: the averaging period of EN 50160's weekly statistic
PERIOD_S = 600


@dataclass(frozen=True)
class ComplianceConfig:
    """Parameters of :class:`VoltageComplianceDetector`."""
    required_share: float = param(0.95, "share of a week's 10-minute means that must be in band, for "
                                        "standards that set none themselves (EN 50160 sets 95 %)")
    min_coverage: float = param(0.5, "a week whose periods cover less than this share of it (a new meter, a "
                                     "long outage) gets a report without a verdict and no warning")


class VoltageComplianceDetector(Detector):
    """The share of a week's 10-minute mean voltages in the standard band, and whether the week complies.

    When a reading of the next week arrives, the finished week gives a ``report`` finding, and, when it does
    not comply, also an ``event`` finding with severity "warning" and the same evidence. A week complies when
    the share of its periods inside the band is at least the standard's weekly share (EN 50160: 95 %;
    ``required_share`` for standards without one) and, where the standard has outer limits (EN 50160:
    +10 % / -15 %), every period is inside them.

    Findings: ``{"kind": "voltage_compliance", "status": "report"|"event", "meter_id", "started_at" (the
    week's start), "detected_at" = "at" (the reading that closed the week), "severity" (event only),
    "evidence"}``. ``evidence``: ``week_start`` (RFC 3339, local time with its offset), ``timezone``,
    ``periods``, ``in_band_periods``, ``in_band_pct`` (one decimal), ``required_pct``, ``outer_ok`` and
    ``outside_outer_periods`` (None for a standard without outer limits), ``coverage_pct`` (share of the
    week covered by readings), ``compliant`` (None when coverage is below ``min_coverage``), ``standard``,
    ``band_v``, ``outer_band_v`` and ``text`` ("in band 96.8 % of 10-minute periods", followed by
    ", 3 outside 195.5-253 V" when periods left the outer limits).

    Readings without ``v_avg`` add no period but do close a week; readings at or before the newest one
    already processed (duplicates, late arrivals) are dropped and counted.
    """

    name = "voltage_compliance"
    detects = "weekly share of 10-minute mean voltages inside the standard band (EN 50160 style compliance)"
    key = "meter"
    input = "readings"
    kinds = ("voltage_compliance",)
    Config = ComplianceConfig

    def new_state(self) -> dict:
        # week: the week being counted; pending: the 10-minute period being averaged from short readings
        return {"last_ts": None, "week": None, "pending": None, "skipped": 0}

    def score(self, reading: Reading, ctx: Context) -> tuple[int, float | None]:
        """``(start of the reading's 10-minute period, v_avg)``."""
        if reading.interval_s < PERIOD_S:
            return (reading.ts - 1) // PERIOD_S * PERIOD_S, reading.v_avg
        return reading.ts - reading.interval_s, reading.v_avg

    def decide(self, state: dict, scored: list[tuple[Reading, tuple[int, float | None]]], ctx: Context
               ) -> tuple[dict, list[dict]]:
        st, out = copy_state(state), []
        profile = profile_for_context(ctx)
        tz = _zone(ctx)
        for r, (period, volts) in scored:
            if st["last_ts"] is not None and r.ts <= st["last_ts"]:
                st["skipped"] += 1
                continue
            st["last_ts"] = r.ts
            pending = st["pending"]
            if pending is not None and pending["start"] != period:
                _add_period(st["week"], pending["sum"] / pending["dur"], pending["dur"], profile)
                st["pending"] = None
            week = st["week"]
            if week is None or period >= week["end"]:
                if week is not None and week["periods"]:
                    out.extend(self._verdict(week, r, profile, tz))
                start, end = week_bounds(period, tz)
                st["week"] = week = {"start": start, "end": end, "periods": 0, "in_band": 0, "outer_bad": 0,
                                     "covered_s": 0}
            if volts is None:
                continue
            if r.interval_s >= PERIOD_S:
                _add_period(week, volts, r.interval_s, profile)
            else:
                p = st["pending"] or {"start": period, "sum": 0.0, "dur": 0}
                p["sum"] += volts * r.interval_s
                p["dur"] += r.interval_s
                st["pending"] = p
        return st, out

    def _verdict(self, week: dict, r: Reading, profile: Profile, tz: tzinfo) -> list[dict]:
        cfg = self.config
        share = week["in_band"] / week["periods"]
        required = profile.weekly_share if profile.weekly_share is not None else cfg.required_share
        has_outer = profile.outer_low is not None or profile.outer_high is not None
        outer_ok = week["outer_bad"] == 0 if has_outer else None
        coverage = week["covered_s"] / (week["end"] - week["start"])
        compliant = None
        if coverage >= cfg.min_coverage:
            compliant = share >= required and outer_ok is not False
        pct = round(100 * share, 1)
        text = f"in band {pct} % of 10-minute periods"
        if outer_ok is False:
            text += f", {week['outer_bad']} outside {profile.outer_low:g}-{profile.outer_high:g} V"
        evidence = {
            "week_start": datetime.fromtimestamp(week["start"], tz).isoformat(), "timezone": str(tz),
            "periods": week["periods"], "in_band_periods": week["in_band"], "in_band_pct": pct,
            "required_pct": round(100 * required, 1), "outer_ok": outer_ok,
            "outside_outer_periods": week["outer_bad"] if has_outer else None,
            "coverage_pct": round(100 * min(coverage, 1.0), 1), "compliant": compliant,
            "standard": profile.name, "band_v": [profile.low, profile.high],
            "outer_band_v": [profile.outer_low, profile.outer_high] if has_outer else None,
            "text": text,
        }
        base = {"kind": "voltage_compliance", "meter_id": r.meter_id, "started_at": week["start"],
                "detected_at": r.ts, "at": r.ts}
        out = [dict(base, status="report", evidence=evidence)]
        if compliant is False:
            out.append(dict(base, status="event", severity="warning", evidence=dict(evidence)))
        return out


def _add_period(week: dict, mean_v: float, covered_s: int, profile: Profile) -> None:
    week["periods"] += 1
    week["in_band"] += profile.classify(mean_v) == "normal"
    week["outer_bad"] += not profile.within_outer(mean_v)
    week["covered_s"] += covered_s


def _zone(ctx: Context) -> tzinfo:
    name = (ctx.customer or {}).get("timezone") or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc  # an unknown zone must not stop the meter's other detectors


def week_bounds(t: int, tz: tzinfo) -> tuple[int, int]:
    """Epoch seconds of the Monday 00:00 (local time in ``tz``) at or before ``t``, and of the next one."""
    local = datetime.fromtimestamp(t, tz)
    monday = local.date() - timedelta(days=local.weekday())
    start = datetime.combine(monday, time(), tz)
    end = datetime.combine(monday + timedelta(days=7), time(), tz)
    return int(start.timestamp()), int(end.timestamp())
