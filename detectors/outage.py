"""Power outages of one feeder's meters, reported once at the scope that lost power: detector ``outage``.

Signals
    A meter is *out* from its last gasp (a ``power_fail`` event) or, when it sent none, from its last sign
    of life (its newest reading, or its last ``power_restore``) once it has been silent for
    ``missing_reads_s``: only a share of the meters of an outage get a last gasp through to the head end,
    silence is the other signal. It is *back* at its ``power_restore`` event, or at the first reading
    newer than the moment it went out.

Scope
    An incident is reported once, at the highest level where most meters are out: the feeder when more
    than ``majority`` of its members are out; otherwise each transformer where more than ``majority`` of
    its members are out (and at least ``min_meters``, or all of a transformer with fewer meters);
    otherwise each meter on its own (the feeder level needs ``ctx.feeder_id``). A meter that goes dark
    later joins the incident that covers it (the feeder's, or its transformer's). An incident raised at a
    higher level takes in the lower ones of its meters; a lower alert already open is then resolved with
    ``merged_into`` in its evidence.

Lifecycle (EN 50160: an interruption longer than 3 minutes is long)
    - an incident that lasts ``sustained_s`` becomes an ``outage`` alert, severity critical: an "open"
      record detected ``sustained_s`` after its scope went out, and a new "open" record with the same
      ``alert_id`` each time it grows;
    - when most of its meters are back it is "resolved". Its meters still out stay out in *child*
      incidents, scoped by the same rule over those meters, with ``parent_alert_id`` in their evidence:
      a nested outage (a transformer or a meter still dark after its feeder came back);
    - an incident that is over before ``sustained_s`` is a single ``momentary_interruption`` record,
      severity info, status resolved; no "open" record is ever sent for it.

Time
    ``process`` only remembers events (duplicates dropped, order irrelevant, unknown meters kept for when
    they join the feeder). ``advance(state, watermark, ctx)`` decides, in event-time order, every moment up
    to the watermark at which anything can change — an event, a silence deadline, a reading that ends an
    outage, an incident reaching ``sustained_s`` — and never decides a moment twice. An event that comes
    in after its moment was decided is applied at the next watermark; what was decided stands. Only event
    time is used, so a replay at any speed gives the same records.

State (one JSON-serialisable dict per feeder; never mutated: a new one is returned, which may share the
parts it did not change with the old one)
    ``events``: meter_id -> ``[[ts, type], ...]`` sorted; ``periods``: meter_id -> ``[[since, until], ...]``
    (``until`` None while out), what :meth:`OutageDetector.out_meters` answers from; ``incidents``:
    alert_id -> incident (level, scope_id, meters -> how each was found out, started_at, alerted,
    detected_at, parent); ``decided``: the last watermark; ``counts`` of events kept, duplicates, late,
    too old and ignored (other types).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Iterable

from gridwatch.contract import format_ts

from .api import Context, Detector, param
from .topology import alert_id

__all__ = ["OutageConfig", "OutageDetector", "OUTAGE", "MOMENTARY", "LAST_GASP", "MISSING_READS"]

OUTAGE, MOMENTARY = "outage", "momentary_interruption"
#: how a meter was found out, as counted in the evidence
LAST_GASP, MISSING_READS = "last_gasp", "missing_reads"
FAIL, RESTORE = "power_fail", "power_restore"
# Two events of one meter in the same second: the restore first, so the meter ends up out (a new gasp).
_EVENT_ORDER = {RESTORE: 0, FAIL: 1}
# Higher scopes first: they take new meters and absorb lower incidents before those are looked at.
_LEVEL_ORDER = {"feeder": 0, "transformer": 1, "meter": 2}


@dataclass(frozen=True)
class OutageConfig:
    """Parameters of :class:`OutageDetector`; durations are event time in seconds."""
    sustained_s: int = param(
        180, "an outage becomes an alert once it has lasted this long; one over sooner is a momentary "
             "interruption (EN 50160: an interruption longer than 3 minutes is long)")
    missing_reads_s: int = param(
        1800, "a meter that used to report and has been silent this long counts as out without a last gasp "
              "(two 15-minute intervals)")
    majority: float = param(
        0.5, "a transformer or feeder is out when more than this fraction of its meters is out; an alert "
             "is resolved when more than this fraction of its meters is back")
    min_meters: int = param(
        2, "a transformer-scope outage needs at least this many meters out (all of a smaller transformer)")
    min_silent_meters: int = param(
        2, "an outage seen only through missing reads (no last gasp) needs at least this many meters: one "
           "silent meter is more often a communication or data gap than a loss of supply")
    history_s: int = param(
        86400, "finished outages and applied events are remembered this long, to answer out_meters() for "
               "past times and to recognise a redelivered event; an older event is ignored")


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def _as_int(v: Any) -> int | None:
    try:
        return None if v is None or isinstance(v, bool) else int(v)
    except (TypeError, ValueError):
        return None


def _seen_at(seen: int | None, gaps, t: int) -> int | None:
    """The newest reading of a meter as of event time ``t``, from its newest reading and its recent gaps
    (``[last reading before, first reading after]``): readings arrive ahead of the decisions, so a meter
    may already be reporting again when the moment it was silent is decided."""
    if seen is None or seen <= t:
        return seen
    for a, b in gaps:
        if a <= t < b:
            return a
    return seen  # no silence known around t: judged as before (a gasp stands, no missing reads)


def _transformer(members: dict, meter_id: str) -> str | None:
    return (members.get(meter_id) or {}).get("transformer_id")


class OutageDetector(Detector):
    """Outages of a feeder's meters from last gasps and missing reads, one alert per incident.

    Key ``feeder``, input ``events`` (:class:`~gridwatch.contract.MeterEvent`: ``power_fail`` = last gasp,
    ``power_restore``; other types are counted and ignored). ``ctx.members`` maps each meter of the feeder
    to its ``transformer_id`` and ``customer_id``, ``ctx.last_seen`` each meter to the event time of its
    newest reading, ``ctx.feeder_id`` names the feeder.

    - ``process(state, events, ctx) -> (state, [])`` remembers the events; decisions wait for the watermark.
    - ``advance(state, watermark, ctx) -> (state, records)`` decides everything up to ``watermark`` and
      returns complete alert records (``gridwatch/schemas/alerts.schema.json``), in event-time order.
    - ``out_meters(state, t) -> set`` the meters out at event time ``t`` as decided so far (the feeder
      stage mutes the voltage alerts of those meters: the outage is the alert).

    A record's ``alert_id`` is ``detectors.topology.alert_id(kind, level, scope_id, started_at)``;
    ``kind`` is ``outage`` (severity critical; "open" when raised or grown, then "resolved") or
    ``momentary_interruption`` (severity info; one "resolved" record). Its evidence: ``meters_out`` (meters
    of the alert), ``meters_back`` (of those, back at the record's time), ``meters_total`` (meters at the
    scope), ``last_gasps`` / ``missing_reads`` (how its meters were found out), ``feeder_id``,
    ``transformer_ids``, ``duration_class`` ("sustained" / "momentary"), and when they apply
    ``parent_alert_id`` (a nested outage), ``merged_into`` (taken in by a higher scope) and ``duration_s``
    (resolved records). See the module docstring for the rules.
    """

    name = "outage"
    detects = ("power outages from last gasps and missing reads, one alert per incident at the feeder, "
               "transformer or meter that lost power; momentary interruptions under 3 minutes")
    key = "feeder"
    input = "events"
    kinds = (OUTAGE, MOMENTARY)
    Config = OutageConfig

    def __init__(self, config: OutageConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        c = self.config
        if not 0 <= c.majority < 1:
            raise ValueError(f"majority must be in [0, 1), not {c.majority!r}")
        if c.sustained_s < 0 or c.missing_reads_s <= 0 or c.history_s < 0 or c.min_meters < 1:
            raise ValueError("sustained_s and history_s must be >= 0, missing_reads_s > 0, min_meters >= 1")

    def new_state(self) -> dict:
        return {"feeder_id": None, "decided": None, "events": {}, "periods": {}, "incidents": {},
                "counts": {"events": 0, "duplicates": 0, "late": 0, "too_old": 0, "ignored": 0}}

    # -- inputs -------------------------------------------------------------------------------------
    def process(self, state: dict | None, events: Iterable[Any], ctx: Context | None = None
                ) -> tuple[dict, list[dict]]:
        """Remember ``power_fail`` / ``power_restore`` events; returns ``(new state, [])``."""
        # Called for every batch of events: copy only what changes (the counts and the event lists
        # touched), not the whole state.
        base = state if state is not None else self.new_state()
        st = {**base, "events": dict(base["events"]), "counts": dict(base["counts"])}
        if ctx is not None and ctx.feeder_id:
            st["feeder_id"] = ctx.feeder_id
        copied: set[str] = set()
        decided, counts = st["decided"], st["counts"]
        for ev in events:
            meter, ts, typ = _field(ev, "meter_id"), _as_int(_field(ev, "ts")), _field(ev, "type")
            if typ not in _EVENT_ORDER or not meter or ts is None:
                counts["ignored"] += 1
                continue
            if decided is not None and ts < decided - self.config.history_s:
                counts["too_old"] += 1  # beyond what is remembered: it could not be told from a redelivery
                continue
            evs = st["events"].get(meter, [])
            item = [ts, typ]
            if item in evs:
                counts["duplicates"] += 1
                continue
            if meter not in copied:
                evs = st["events"][meter] = [list(e) for e in evs]
                copied.add(meter)
            evs.append(item)
            evs.sort(key=lambda e: (e[0], _EVENT_ORDER[e[1]]))
            counts["events"] += 1
            if decided is not None and ts <= decided:
                counts["late"] += 1
        return st, []

    # -- decisions ----------------------------------------------------------------------------------
    def advance(self, state: dict | None, watermark: int, ctx: Context | None = None
                ) -> tuple[dict, list[dict]]:
        """Decide every moment up to ``watermark`` not decided yet; returns ``(new state, alert records)``."""
        ctx = ctx or Context()
        st = self._begin(state, ctx)
        wm = int(watermark)
        if st["decided"] is not None and wm <= st["decided"]:
            return st, []
        lo = st["decided"]
        moments = self._moments(st, ctx, lo, wm)
        records: list[dict] = []
        i = 0
        while True:
            # the next moment anything can change: a fixed moment, or an incident reaching sustained_s
            while i < len(moments) and lo is not None and moments[i] <= lo:
                i += 1
            nxt = moments[i:i + 1]
            nxt += [inc["started_at"] + self.config.sustained_s for inc in st["incidents"].values()
                    if not inc["alerted"] and (lo is None or inc["started_at"] + self.config.sustained_s > lo)
                    and inc["started_at"] + self.config.sustained_s <= wm]
            if not nxt:
                break
            lo = min(nxt)
            records.extend(self._decide_at(st, lo, ctx))
        st["decided"] = wm
        self._prune(st)
        return st, records

    def out_meters(self, state: dict | None, t: int) -> set[str]:
        """Meters out at event time ``t``, as decided so far (an outage not over yet extends past it)."""
        out = set()
        for m, periods in ((state or {}).get("periods") or {}).items():
            if any(since <= t and (until is None or t < until) for since, until in periods):
                out.add(m)
        return out

    # -- internals ----------------------------------------------------------------------------------
    def _begin(self, state: dict | None, ctx: Context | None) -> dict:
        st = copy.deepcopy(state) if state is not None else self.new_state()
        if ctx is not None and ctx.feeder_id:
            st["feeder_id"] = ctx.feeder_id
        return st

    @staticmethod
    def _known(st: dict, ctx: Context) -> list[str]:
        return sorted(set(ctx.members or {}) | set(st["events"]))

    def _moments(self, st: dict, ctx: Context, lo: int | None, hi: int) -> list[int]:
        """Every moment in (lo, hi] at which a meter can go out or come back, and ``hi`` itself (where an
        event that came in late, or a reading of a meter not seen before, is taken into account)."""
        silence = self.config.missing_reads_s
        moments = {hi}
        for evs in st["events"].values():
            for ts, typ in evs:
                moments.add(ts)
                if typ == RESTORE:
                    moments.add(ts + silence)
        for m in self._known(st, ctx):
            seen = _as_int((ctx.last_seen or {}).get(m))
            if seen is not None:
                moments.update((seen, seen + silence))
            for a, _ in (ctx.gaps or {}).get(m, ()):
                moments.update((a, a + silence))
        return sorted(t for t in moments if (lo is None or t > lo) and t <= hi)

    def _meter_out(self, evs: list, seen: int | None, t: int) -> tuple[int, str] | None:
        """``(since, how)`` when the meter is out at ``t``, else None."""
        since = restored = None
        for ts, typ in evs:
            if ts > t:
                break
            if typ == RESTORE:
                since, restored = None, ts
            elif since is None:
                since = ts  # a second gasp while out changes nothing
        if since is not None:
            if seen is None or not since < seen <= t:
                return since, LAST_GASP
            restored = seen  # a reading after the gasp: power came back
        if seen is None or seen > t:
            return None  # never reported (nothing to miss), or reported after t
        alive = seen if restored is None else max(seen, restored)
        if t >= alive + self.config.missing_reads_s:
            return alive, MISSING_READS
        return None

    def _most(self, k: int, n: int) -> bool:
        return n > 0 and k > self.config.majority * n and k >= min(self.config.min_meters, n)

    def _onset(self, sinces: list[int], n: int) -> int:
        """When the scope went out: since when enough of its meters (those out now) have been out together."""
        ordered = sorted(sinces)
        k = next(k for k in range(1, len(ordered) + 1) if self._most(k, n))
        return ordered[k - 1]

    @staticmethod
    def _ordered(incs: dict) -> list[dict]:
        return sorted(incs.values(), key=lambda i: (_LEVEL_ORDER[i["level"]], i["started_at"], i["alert_id"]))

    def _decide_at(self, st: dict, t: int, ctx: Context) -> list[dict]:
        cfg, members, incs = self.config, ctx.members or {}, st["incidents"]
        gaps = ctx.gaps or {}
        last_seen = {m: _seen_at(_as_int(v), gaps.get(m, ()), t) for m, v in (ctx.last_seen or {}).items()}
        out: dict[str, tuple[int, str]] = {}
        for m in self._known(st, ctx):
            s = self._meter_out(st["events"].get(m, []), _as_int(last_seen.get(m)), t)
            if s is not None:
                out[m] = s
        self._note_periods(st, out, t)
        records: list[dict] = []

        # 1. incidents most of whose meters are back end: resolved, or a momentary interruption
        ended: list[tuple[str, list[str]]] = []
        for inc in self._ordered(incs):
            meters = inc["meters"]
            if sum(m not in out for m in meters) <= cfg.majority * len(meters):
                continue
            del incs[inc["alert_id"]]
            if not inc["alerted"] and LAST_GASP not in inc["meters"].values():
                continue  # silence that never became an outage: no interruption to report either
            if inc["alerted"]:
                rec = self._record(st, inc, "resolved", t, out, ctx)
            else:
                rec = self._record(st, inc, "resolved", t, out, ctx, kind=MOMENTARY)
            records.append(rec)
            ended.append((rec["alert_id"], sorted(m for m in meters if m in out and m in members)))

        # 2. their meters still out stay out in child incidents; 3. newly dark meters find their incident
        for parent, remaining in ended:
            records += self._place(st, remaining, out, t, ctx, parent)
        covered = {m for inc in incs.values() for m in inc["meters"]}
        records += self._place(st, sorted(m for m in out if m in members and m not in covered), out, t, ctx, None)

        # 4. incidents that have lasted sustained_s become alerts, taking in the lower ones in their scope
        for inc in self._ordered(incs):
            if inc["alerted"] or inc["alert_id"] not in incs or inc["started_at"] + cfg.sustained_s > t:
                continue
            for other in self._ordered(incs):
                if _LEVEL_ORDER[other["level"]] <= _LEVEL_ORDER[inc["level"]] or not self._within(other, inc, members):
                    continue
                del incs[other["alert_id"]]
                if other["alerted"]:
                    records.append(self._record(st, other, "resolved", t, out, ctx, merged_into=inc["alert_id"]))
                for m, how in other["meters"].items():
                    inc["meters"].setdefault(m, how)
            # a meter already back had a momentary interruption, not this outage
            inc["meters"] = {m: how for m, how in inc["meters"].items() if m in out}
            if not inc["meters"]:
                del incs[inc["alert_id"]]
                continue
            if (inc["parent"] is None and LAST_GASP not in inc["meters"].values()
                    and len(inc["meters"]) < cfg.min_silent_meters):
                continue  # not corroborated (yet): a last gasp or another silent meter would make it one
            inc["alerted"], inc["detected_at"] = True, t
            records.append(self._record(st, inc, "open", t, out, ctx))
        return records

    @staticmethod
    def _within(lower: dict, higher: dict, members: dict) -> bool:
        if higher["level"] == "feeder":
            return True
        return (higher["level"] == "transformer" and lower["level"] == "meter"
                and _transformer(members, lower["scope_id"]) == higher["scope_id"])

    def _place(self, st: dict, meters: list[str], out: dict, t: int, ctx: Context, parent: str | None
               ) -> list[dict]:
        """Put out meters that belong to no incident into one: the feeder's or their transformer's if there
        is one (an open alert grows), else new incidents at the scope the rule gives."""
        if not meters:
            return []
        members, incs, records = ctx.members or {}, st["incidents"], []
        feeder_inc = next((i for i in incs.values() if i["level"] == "feeder"), None)
        by_transformer = {i["scope_id"]: i for i in incs.values() if i["level"] == "transformer"}
        grown: dict[str, dict] = {}
        rest = []
        for m in meters:
            inc = feeder_inc or by_transformer.get(_transformer(members, m))
            if inc is None:
                rest.append(m)
            else:
                inc["meters"][m] = out[m][1]
                grown[inc["alert_id"]] = inc
        records += [self._record(st, inc, "open", t, out, ctx) for _, inc in sorted(grown.items()) if inc["alerted"]]
        if not rest:
            return records

        out_members = [m for m in out if m in members]
        if st["feeder_id"] and self._most(len(out_members), len(members)):
            taken = {m: out[m][1] for m in rest}
            for other in [i for i in incs.values() if not i["alerted"]]:  # pending lower incidents join
                del incs[other["alert_id"]]
                taken.update(other["meters"])
            onset = self._onset([out[m][0] for m in out_members], len(members))
            self._new(st, "feeder", st["feeder_id"], taken, onset, parent)
            return records

        groups: dict[str | None, list[str]] = {}
        for m in rest:
            groups.setdefault(_transformer(members, m), []).append(m)
        for tid, ms in sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] or "")):
            size = sum(1 for m in members if _transformer(members, m) == tid)
            dark = [m for m in out_members if _transformer(members, m) == tid]
            if tid is not None and self._most(len(dark), size):
                taken = {m: out[m][1] for m in ms}
                for other in [i for i in incs.values() if i["level"] == "meter" and not i["alerted"]
                              and _transformer(members, i["scope_id"]) == tid]:
                    del incs[other["alert_id"]]
                    taken.update(other["meters"])
                self._new(st, "transformer", tid, taken, self._onset([out[m][0] for m in dark], size), parent)
            else:
                for m in ms:
                    self._new(st, "meter", m, {m: out[m][1]}, out[m][0], parent)
        return records

    @staticmethod
    def _new(st: dict, level: str, scope_id: str, meters: dict, started_at: int, parent: str | None) -> None:
        aid = alert_id(OUTAGE, level, scope_id, started_at)
        same = st["incidents"].get(aid)
        if same is not None:  # the same scope out since the same moment: one incident
            same["meters"].update(meters)
            return
        st["incidents"][aid] = {"alert_id": aid, "level": level, "scope_id": scope_id, "meters": dict(meters),
                                "started_at": started_at, "alerted": False, "detected_at": None,
                                "parent": parent}

    def _record(self, st: dict, inc: dict, status: str, t: int, out: dict, ctx: Context, *,
                kind: str = OUTAGE, merged_into: str | None = None) -> dict:
        members = ctx.members or {}
        meters = sorted(inc["meters"])
        level, scope_id = inc["level"], inc["scope_id"]
        if level == "feeder":
            total = len(members)
        elif level == "transformer":
            total = sum(1 for m in members if _transformer(members, m) == scope_id)
        else:
            total = 1
        momentary = kind == MOMENTARY
        hows = list(inc["meters"].values())
        evidence: dict[str, Any] = {
            "meters_out": len(meters), "meters_back": sum(m not in out for m in meters), "meters_total": total,
            "last_gasps": hows.count(LAST_GASP), "missing_reads": hows.count(MISSING_READS),
            "feeder_id": st["feeder_id"],
            "transformer_ids": sorted({tid for m in meters if (tid := _transformer(members, m))}),
            "duration_class": "momentary" if momentary else "sustained",
        }
        if inc["parent"]:
            evidence["parent_alert_id"] = inc["parent"]
        if merged_into:
            evidence["merged_into"] = merged_into
        if status == "resolved":
            evidence["duration_s"] = t - inc["started_at"]
            # who is still dark (they stay in a child outage): no "power is back" message for them
            evidence["still_out_customer_ids"] = sorted({members[m]["customer_id"] for m in meters if m in out
                                                         and (members.get(m) or {}).get("customer_id")})
        return {
            "alert_id": alert_id(kind, level, scope_id, inc["started_at"]), "kind": kind,
            "severity": "info" if momentary else "critical", "status": status,
            "scope": {"level": level, "id": scope_id}, "meter_ids": meters,
            "customer_ids": sorted({members[m]["customer_id"] for m in meters
                                    if (members.get(m) or {}).get("customer_id")}),
            "started_at": format_ts(inc["started_at"]),
            "detected_at": format_ts(t if momentary else inc["detected_at"]),
            "resolved_at": format_ts(t) if status == "resolved" else None,
            "evidence": evidence,
        }

    @staticmethod
    def _note_periods(st: dict, out: dict, t: int) -> None:
        periods = st["periods"]
        for m in sorted(set(periods) | set(out)):
            ps = periods.get(m) or []
            is_open = bool(ps) and ps[-1][1] is None
            if m in out and not is_open:
                periods[m] = ps + [[out[m][0], None]]
            elif m not in out and is_open:
                ps[-1][1] = t

    def _prune(self, st: dict) -> None:
        """Forget what lies more than ``history_s`` before the watermark and cannot matter any more."""
        cutoff = st["decided"] - self.config.history_s
        for m in list(st["periods"]):
            kept = [p for p in st["periods"][m] if p[1] is None or p[1] >= cutoff]
            if kept:
                st["periods"][m] = kept
            else:
                del st["periods"][m]
        for m, evs in st["events"].items():
            # everything before the last restore older than the cutoff is settled
            last = max((i for i, (ts, typ) in enumerate(evs) if typ == RESTORE and ts < cutoff), default=0)
            if last:
                st["events"][m] = evs[last:]
