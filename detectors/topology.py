"""Topology correlation of per-meter voltage findings into alerts, one transformer at a time.

When most reporting meters of one transformer are abnormal the same way at the same event time, that is
ONE transformer-scope alert; a meter that stays abnormal alone through the correlation window gets a
meter-scope alert. An alert resolves at the event time all of its meters are back in band.

Findings of other kinds (sags, swells, a loose neutral, a week's compliance) concern one meter: an
``abnormal``/``normal`` pair opens and resolves a meter-scope alert, an ``event`` is an alert that opens and
resolves at once. A loose neutral is raised only while most of the meter's neighbours are in band — when
they all swing, it is the transformer, not the meter's wiring. Meters under an outage (``muted``) count as
neither abnormal nor reporting: the outage is the alert.

Decisions are made in event time and only up to a *watermark*: the time up to which every source
partition that carries one of the transformer's meters has been processed. Meter findings arrive from
many partitions in no fixed order; waiting for the watermark is what makes a replay at any speed give the
same alerts. The caller (the worker) computes the watermark; this module never reads a clock.

Every record of a voltage alert (undervoltage, overvoltage, sag, swell, loose_neutral) carries
``evidence["trace"]``, the data for a picture of the voltage against the standard's band::

    {"unit": "V", "standard": <profile name>, "nominal": <V>, "band": [low, high], "meter_id": <meter shown>,
     "points": [[ts (RFC 3339), v_avg, v_min, v_max], ...]}

one point per quarter hour (``ts`` its end; ``v_avg`` the mean, ``v_min`` / ``v_max`` the extremes, each
possibly null), at most :data:`TRACE_POINTS`, from up to :data:`TRACE_LEAD_S` before ``started_at`` (as far
as the meter's ring reaches) through the record's own event time: an open record shows the readings up
to the moment it was decided, a resolved one the return into the band. The meter shown is the alert's
meter; for a transformer (or feeder) alert it is the *worst* meter, the one whose value is the evidence's
``v_extreme`` (for a transformer-wide sag or swell, the deepest one). The points come from the traces the
meter stage sends with a meter's batches while it is out of band or has a voltage finding
(:mod:`detectors.pipeline`); the state keeps a meter's newest trace only while an alert or a pending
decision may still need it.

State is one JSON-serialisable dict per transformer; functions return a new state and never mutate input.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from gridwatch import kinds
from gridwatch.contract import format_ts

__all__ = ["CorrelatorConfig", "TransformerCorrelator", "alert_id", "CORRELATED_KINDS", "VOLTAGE_KINDS",
           "TRACE_POINTS", "TRACE_STEP_S", "TRACE_LEAD_S"]

#: kinds decided over the whole transformer; every other finding kind is about its own meter
CORRELATED_KINDS = kinds.having("correlated")
#: how long a meter's silences are remembered (event time)
GAP_MEMORY_S = 86400
#: meter findings that need the neighbours in band to stand
NEEDS_CALM_NEIGHBOURS = kinds.having("needs_calm_neighbours")
#: alert kinds whose evidence carries a voltage trace
VOLTAGE_KINDS = kinds.having("voltage_trace")
#: a voltage trace: at most this many points, one per this many seconds, from this long before started_at
TRACE_POINTS = 96
TRACE_STEP_S = 900
TRACE_LEAD_S = 2 * 3600


@dataclass(frozen=True)
class CorrelatorConfig:
    #: a lone abnormal meter waits this long for neighbours before it becomes a meter-scope alert
    window_s: int = 900
    #: fraction of reporting meters that must be abnormal together for a transformer-scope alert
    majority: float = 0.5
    #: ... and at least this many meters
    min_meters: int = 2
    #: a meter silent for longer than this (event time) no longer counts as reporting
    stale_s: int = 3 * 3600


def alert_id(kind: str, level: str, scope_id: str, started_at: int) -> str:
    """Deterministic, so re-processing after a restart or a replay yields the same alert."""
    return f"{kind}:{level}:{scope_id}:{format_ts(started_at)}"


def _severity(kind: str, v: float | None, nominal: float | None) -> str:
    if v is None or not nominal:
        return "warning"
    pu = v / nominal
    # EN 50160's outer limit (-15 %) and IEEE 1159's overvoltage band (> 1.1 pu) call for prompt action.
    if (kind == "undervoltage" and pu < 0.85) or (kind == "overvoltage" and pu > 1.10):
        return "critical"
    return "warning"


class TransformerCorrelator:
    """Turns member, status and watermark messages of one transformer into alert records."""

    name = "voltage-topology"

    def __init__(self, config: CorrelatorConfig | None = None):
        self.config = config or CorrelatorConfig()

    @staticmethod
    def new_state(transformer_id: str) -> dict:
        return {"transformer_id": transformer_id, "feeder_id": None, "members": {}, "decided": None,
                "pending": {}, "open": {}, "findings": []}

    # -- inputs ---------------------------------------------------------------------------------------
    def member(self, state: dict, msg: dict) -> dict:
        """A meter joins (or, with ``removed``, leaves) the transformer; from the customer directory."""
        st = copy.deepcopy(state)
        m = msg["meter_id"]
        if msg.get("removed"):
            st["members"].pop(m, None)
            st["pending"].pop(m, None)
            if m in st.get("traces", {}):
                del st["traces"][m]
            return st
        st["feeder_id"] = msg.get("feeder_id") or st["feeder_id"]
        rec = st["members"].setdefault(m, {"first_seen": None, "last_seen": None, "tl": [], "profile": None})
        rec["customer_id"] = msg.get("customer_id")
        rec["partition"] = msg.get("partition")
        return st

    def status(self, state: dict, msg: dict) -> dict:
        """A batch of one meter was processed: how far it got and which transitions it saw."""
        # Called once per batch of every meter: copy only what changes (this meter's record), not the
        # whole transformer; the input state is still never mutated.
        m = msg["meter_id"]
        old = state["members"].get(m)
        if old is not None and old["last_seen"] is not None and msg["ts"] <= old["last_seen"]:
            return state  # redelivered after a restart: already applied
        st = dict(state)
        st["members"] = dict(state["members"])
        rec = copy.deepcopy(old) if old is not None else {
            "first_seen": None, "last_seen": None, "tl": [], "profile": None,
            "customer_id": msg.get("customer_id"), "partition": msg.get("partition")}
        st["members"][m] = rec
        first = msg.get("first_ts", msg["ts"])
        gaps = [list(g) for g in msg.get("gaps", ())]
        if rec["last_seen"] is not None and first - rec["last_seen"] > 1.5 * msg.get("interval_s", 900):
            gaps.insert(0, [rec["last_seen"], first])
        if gaps:
            # silences are kept for a day, so an outage detector deciding later still sees them
            rec["gaps"] = rec.get("gaps", []) + gaps
        rec["first_seen"] = first if rec["first_seen"] is None else min(rec["first_seen"], first)
        rec["last_seen"] = msg["ts"]
        # how often the meter's messages come (one reading, or an array): when its next one is due
        rec["span"] = msg["ts"] - first + msg.get("interval_s", 900)
        rec["profile"] = msg.get("profile") or rec["profile"]
        for t in msg.get("transitions", ()):
            if t["status"] == "trace":
                # the meter's newest trace; traces are replaced, never changed in place, so copies share them
                st["traces"] = {**st.get("traces", {}), m: list(t.get("points") or ())}
                continue
            if t["kind"] in CORRELATED_KINDS:
                kind = t["kind"] if t["status"] == "abnormal" else "normal"
                rec["tl"].append([t["at"], kind, t["started_at"], t.get("v_extreme")])
            elif t["status"] in ("abnormal", "normal", "event"):
                st["findings"] = list(st.get("findings", ())) + [[t["at"], m, copy.deepcopy(t)]]
        return st

    def partitions(self, state: dict) -> set[int]:
        """Source partitions whose progress bounds this transformer's watermark."""
        return {r["partition"] for r in state["members"].values() if r.get("partition") is not None}

    # -- decisions ------------------------------------------------------------------------------------
    def advance(self, state: dict, watermark: int, muted=None) -> tuple[dict, list[dict]]:
        """Decide everything that happened up to ``watermark``; returns (new state, alert records).

        ``muted(t)`` -> set of meters under an outage at event time t (their findings raise no alert).
        """
        st = _copy_state(state)
        st.setdefault("findings", [])
        muted = muted or (lambda t: set())
        decided = st["decided"]
        if decided is not None and watermark <= decided:
            return st, []
        lo = decided if decided is not None else float("-inf")
        out: list[dict] = []
        while True:
            # next moment anything can change: a meter's transition or a lone meter's deadline
            nxt = [e[0] for rec in st["members"].values() for e in rec["tl"] if lo < e[0] <= watermark]
            nxt += [p["due"] for p in st["pending"].values() if lo < p["due"] <= watermark]
            nxt += [f[0] for f in st["findings"] if lo < f[0] <= watermark]
            if not nxt:
                break
            lo = min(nxt)
            out.extend(self._decide_at(st, lo, muted(lo)))
        self._prune(st, watermark)
        st["decided"] = watermark
        return st, out

    def _state_at(self, rec: dict, t: int) -> tuple[str, int | None, float | None]:
        kind, started, v = "normal", None, None
        for at, k, s, vx in rec["tl"]:
            if at > t:
                break
            kind, started, v = k, s, vx
        return kind, started, v

    def _reporting(self, rec: dict, t: int) -> bool:
        return (rec["first_seen"] is not None and rec["first_seen"] <= t
                and rec["last_seen"] + self.config.stale_s >= t)

    def _decide_at(self, st: dict, t: int, muted: set) -> list[dict]:
        cfg, out = self.config, []
        now = {m: (("normal", None, None) if m in muted else self._state_at(rec, t))
               for m, rec in st["members"].items()}

        # 1. open alerts: grow, or resolve when every meter is back in band
        for aid in list(st["open"]):
            a = st["open"][aid]
            if a.get("key"):
                continue  # a meter finding's alert: opened and resolved by its own findings (step 5)
            if a["scope"]["level"] == "transformer":
                joined = sorted(m for m, (k, _, _) in now.items() if k == a["kind"] and m not in a["meter_ids"])
                if joined:
                    a["meter_ids"] = sorted(a["meter_ids"] + joined)
                    for m in joined:
                        st["pending"].pop(m, None)
                    self._note_extreme(a, now)
                    out.append(self._record(st, a, "open", t))
            if all(now.get(m, ("normal",))[0] != a["kind"] for m in a["meter_ids"]):
                a["resolved_at"] = t
                out.append(self._record(st, a, "resolved", t))
                del st["open"][aid]

        # 2. a transformer-scope alert when most reporting meters deviate the same way together
        reporting = [m for m, rec in st["members"].items() if self._reporting(rec, t) and m not in muted]
        for kind in ("undervoltage", "overvoltage"):
            if any(a["kind"] == kind and a["scope"]["level"] == "transformer" for a in st["open"].values()):
                continue
            abn = sorted(m for m in reporting if now[m][0] == kind)
            if len(abn) >= cfg.min_meters and len(abn) > cfg.majority * len(reporting):
                started = min(now[m][1] for m in abn)
                a = {"alert_id": alert_id(kind, "transformer", st["transformer_id"], started), "kind": kind,
                     "scope": {"level": "transformer", "id": st["transformer_id"]}, "meter_ids": abn,
                     "started_at": started, "detected_at": t, "resolved_at": None,
                     "reporting": len(reporting), "v_extreme": None}
                self._note_extreme(a, now)
                for m in abn:
                    st["pending"].pop(m, None)
                # a lone-meter alert raised earlier becomes part of the transformer's incident
                for aid in [i for i, o in st["open"].items()
                            if o["scope"]["level"] == "meter" and o["kind"] == kind and o["meter_ids"][0] in abn]:
                    o = st["open"].pop(aid)
                    o["resolved_at"] = t
                    o["merged_into"] = a["alert_id"]
                    out.append(self._record(st, o, "resolved", t))
                st["open"][a["alert_id"]] = a
                out.append(self._record(st, a, "open", t))

        covered = {m for a in st["open"].values() if not a.get("key") for m in a["meter_ids"]}
        # 3. new abnormal meters not covered by an open alert wait for their neighbours
        for m, rec in st["members"].items():
            for at, k, started, v in rec["tl"]:
                if at == t and k != "normal" and m not in covered and m not in st["pending"]:
                    st["pending"][m] = {"kind": k, "started_at": started, "due": t + cfg.window_s}
        # 4. ... and become meter-scope alerts when none came
        for m, p in list(st["pending"].items()):
            if p["due"] > t:
                continue
            del st["pending"][m]
            k, started, v = now.get(m, ("normal", None, None))
            if k != p["kind"] or m in covered:
                continue
            a = {"alert_id": alert_id(k, "meter", m, started), "kind": k,
                 "scope": {"level": "meter", "id": m}, "meter_ids": [m], "started_at": started,
                 "detected_at": t, "resolved_at": None, "reporting": len(reporting), "v_extreme": v}
            st["open"][a["alert_id"]] = a
            out.append(self._record(st, a, "open", t))
        # 5. findings about one meter; the same momentary event on most meters at once is the transformer's
        due = [(m, f) for at, m, f in st["findings"] if at == t and m not in muted]
        for kind in sorted({f["kind"] for m, f in due if f["status"] == "event"}):
            same = [(m, f) for m, f in due if f["kind"] == kind and f["status"] == "event"]
            if len(same) >= cfg.min_meters and len(same) > cfg.majority * len(reporting):
                out.append(self._transformer_event(st, kind, same, t, reporting))
                due = [(m, f) for m, f in due if not (f["kind"] == kind and f["status"] == "event")]
        for m, f in due:
            out.extend(self._meter_finding(st, m, f, t, now, reporting))
        return out

    def _transformer_event(self, st: dict, kind: str, same: list, t: int, reporting: list) -> dict:
        meters = sorted(m for m, _ in same)
        worst_m, worst = max(same, key=lambda mf: abs(1 - (mf[1].get("evidence") or {}).get("pu", 1)))
        started = min(f["started_at"] for _, f in same)
        a = {"alert_id": alert_id(kind, "transformer", st["transformer_id"], started), "kind": kind,
             "scope": {"level": "transformer", "id": st["transformer_id"]}, "meter_ids": meters,
             "started_at": started, "detected_at": t, "resolved_at": max(f["at"] for _, f in same),
             "v_extreme": None, "reporting": len(reporting), "severity": worst.get("severity"),
             "finding": worst.get("evidence") or {}, "worst": worst_m}
        return self._record(st, a, "resolved", t)

    def _meter_finding(self, st: dict, m: str, f: dict, t: int, now: dict, reporting: list) -> list[dict]:
        key = f"{f['kind']}|{m}"
        opened = next((a for a in st["open"].values() if a.get("key") == key), None)
        if f["status"] == "normal":
            if opened is None:
                return []
            del st["open"][opened["alert_id"]]
            opened["resolved_at"] = t
            return [self._record(st, opened, "resolved", t)]
        if opened is not None:
            return []
        if f["kind"] in NEEDS_CALM_NEIGHBOURS:
            others = [n for n in reporting if n != m]
            swinging = [n for n in others if now[n][0] != "normal"]
            if others and len(swinging) > self.config.majority * len(others):
                return []
        a = {"alert_id": alert_id(f["kind"], "meter", m, f["started_at"]), "kind": f["kind"], "key": key,
             "scope": {"level": "meter", "id": m}, "meter_ids": [m], "started_at": f["started_at"],
             "detected_at": f.get("detected_at", t), "resolved_at": None, "v_extreme": None,
             "reporting": len(reporting), "severity": f.get("severity"), "finding": f.get("evidence") or {}}
        if f["status"] == "event":
            a["resolved_at"] = f["at"]
            return [self._record(st, a, "resolved", t)]
        st["open"][a["alert_id"]] = a
        return [self._record(st, a, "open", t)]

    @staticmethod
    def _note_extreme(a: dict, now: dict) -> None:
        """The alert's ``v_extreme`` and ``worst``, the meter it belongs to (the one the trace shows)."""
        vs = [(a["v_extreme"], a.get("worst"))] if a["v_extreme"] is not None else []
        vs += [(now[m][2], m) for m in a["meter_ids"] if m in now and now[m][2] is not None]
        if vs:
            pick = min if a["kind"] == "undervoltage" else max
            a["v_extreme"], a["worst"] = pick(vs, key=lambda p: p[0])

    def _trace(self, st: dict, a: dict, t: int) -> dict:
        """``evidence["trace"]`` of a record decided at event time ``t`` (see the module docstring)."""
        traces = st.get("traces") or {}
        m = a.get("worst")
        if m not in traces:
            m = next((x for x in a["meter_ids"] if x in traces), m or a["meter_ids"][0])
        prof = (st["members"].get(m) or {}).get("profile") or {}
        since = a["started_at"] - TRACE_LEAD_S
        pts = [[format_ts(p[0]), p[1], p[2], p[3]] for p in traces.get(m) or ()
               if since <= p[0] and p[0] - TRACE_STEP_S < t]
        return {"unit": "V", "standard": prof.get("name"), "nominal": prof.get("nominal"),
                "band": [prof.get("low"), prof.get("high")], "meter_id": m, "points": pts[-TRACE_POINTS:]}

    def _record(self, st: dict, a: dict, status: str, t: int) -> dict:
        members = st["members"]
        profile = next((members[m]["profile"] for m in a["meter_ids"]
                        if m in members and members[m].get("profile")), None) or {}
        evidence = {
            "standard": profile.get("name"), "nominal_v": profile.get("nominal"),
            "band_v": [profile.get("low"), profile.get("high")], "v_extreme": a["v_extreme"],
            "meters_abnormal": len(a["meter_ids"]), "meters_reporting": a["reporting"],
            "transformer_id": st["transformer_id"], "feeder_id": st["feeder_id"],
        }
        if a.get("merged_into"):
            evidence["merged_into"] = a["merged_into"]
        evidence.update(a.get("finding") or {})
        if a["kind"] in VOLTAGE_KINDS:
            evidence["trace"] = self._trace(st, a, t)
        return {
            "alert_id": a["alert_id"], "kind": a["kind"],
            "severity": a.get("severity") or _severity(a["kind"], a["v_extreme"], profile.get("nominal")),
            "status": status, "scope": dict(a["scope"]), "meter_ids": list(a["meter_ids"]),
            "customer_ids": sorted(members[m]["customer_id"] for m in a["meter_ids"]
                                   if m in members and members[m].get("customer_id")),
            "started_at": format_ts(a["started_at"]), "detected_at": format_ts(a["detected_at"]),
            "resolved_at": format_ts(a["resolved_at"]), "evidence": evidence,
        }

    @staticmethod
    def _prune(st: dict, watermark: int) -> None:
        # Keep the last transition at or before the watermark (it is the current state) and all after it.
        for rec in st["members"].values():
            tl = rec["tl"]
            keep_from = 0
            for i, e in enumerate(tl):
                if e[0] <= watermark:
                    keep_from = i
            rec["tl"] = tl[keep_from:]
            if rec.get("gaps"):
                rec["gaps"] = [g for g in rec["gaps"] if g[1] > watermark - GAP_MEMORY_S]
        st["findings"] = [f for f in st.get("findings", []) if f[0] > watermark]
        if st.get("traces"):
            # a meter's trace is kept while a record may still be made from it: an open alert or a pending
            # decision on the meter, a finding not yet decided, or a transition not back to normal
            needed = set(st["pending"]) | {f[1] for f in st["findings"]}
            for a in st["open"].values():
                needed.update(a["meter_ids"])
            members = st["members"]
            st["traces"] = {m: pts for m, pts in st["traces"].items() if m in needed or (
                m in members and any(e[1] != "normal" for e in members[m]["tl"]))}
        if "traces" in st and not st["traces"]:
            del st["traces"]


def _copy_state(state: dict) -> dict:
    """A deep copy of a transformer's state whose ``traces`` (meter -> points; replaced, never changed in
    place) are shared rather than copied."""
    if "traces" not in state:
        return copy.deepcopy(state)
    st = copy.deepcopy({k: v for k, v in state.items() if k != "traces"})
    st["traces"] = dict(state["traces"])
    return st
