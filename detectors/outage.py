"""Power outages of one feeder's meters, reported once at the scope that lost power: detector ``outage``.

Signals
    A meter is *out* on its own evidence from its last gasp (a ``power_fail`` event) or, when it sent none,
    from its last sign of life (its newest reading, or its last ``power_restore``) once it has been silent
    for ``missing_reads_s``. Sooner, a meter that has *missed its next message* (its newest message's span —
    15 minutes for one reading, an hour for an hourly array — plus ``read_slack_s``) is out when most of its
    transformer is dark at the same time with a last gasp among them. And a meter is *in scope* of an
    incident whose transformer or feeder was decided out as long as it has shown no power since (no reading,
    no restore). Only a share of the meters of an outage get a last gasp through to the head end: silence
    and the scope are the other signals. A meter is *back* at its ``power_restore`` event, or at the first
    reading newer than the moment it went out.

Scope
    A transformer is out when most of its meters are out, or when at least ``majority`` of them (and
    ``min_meters``) gasped at once; the feeder when most of its meters are out, or when at least
    ``majority`` of them gasped from most of its transformers — so a feeder with half its meters gasping,
    unevenly over its transformers, is decided at the gasps. Otherwise each meter is on its own. An
    incident has the highest of these scopes that holds; when a higher one comes to hold later the
    incidents inside it become ONE: the incident kept is the one alerted first (of several alerted at the
    same moment the widest), its scope grows, and the others — alerted before it was known they were one —
    end with ``merged_into`` (their ids in the kept one's ``merged_from``). A meter that goes dark later
    joins the incident that covers it.

Identity
    An incident's ``alert_id`` is fixed by its first record: ``kind:level:scope:started_at`` of the scope
    it had then. It never changes while the scope grows, so a replay, which decides the same moments in
    the same order, gives the same id (a nested outage of the very scope and start of its parent takes the
    moment it was split off instead). Scope changes are "open" records of the same id with the new
    ``scope`` (``evidence.updated_at`` says when).

Lifecycle (EN 50160: an interruption longer than 3 minutes is long)
    - an incident that lasts ``sustained_s`` becomes an ``outage`` alert, severity critical: an "open"
      record detected ``sustained_s`` after its scope went out, and a new "open" record with the same
      ``alert_id`` each time it grows;
    - once more than ``majority`` of its meters out on evidence are back, the others get
      ``restore_grace_s`` to come back (restore events arrive spread over minutes); then — or as soon as
      all are back — it is "resolved", ``resolved_at`` the moment most were back. Its meters still out stay
      out in *child* incidents, scoped by the same rule over those meters, with ``parent_alert_id`` in
      their evidence: a nested outage (a transformer or a meter still dark after its feeder came back);
    - an incident that is over before ``sustained_s`` is a single ``momentary_interruption`` record,
      severity info, status resolved; no "open" record is ever sent for it;
    - a silent incident without a last gasp that ends with a ``power_restore`` event is an outage known
      only at its end: one "resolved" record (``evidence.found_by``).

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
    (``until`` None while out), what :meth:`OutageDetector.out_meters` answers from; ``incidents``: a
    list of incidents (key, alert_id once alerted, level, scope_id, scope_since, meters -> how each was
    found out, started_at, alerted, detected_at, parent, back_since, merged_from); ``decided``: the last
    watermark; ``counts`` of events kept, duplicates, late,
    too old and ignored (other types).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Iterable

from gridwatch.contract import format_ts

from .api import Context, Muting, param
from .topology import alert_id

__all__ = ["OutageConfig", "OutageDetector", "OUTAGE", "MOMENTARY", "LAST_GASP", "MISSING_READS", "MISSED_READ",
           "IN_SCOPE"]

OUTAGE, MOMENTARY = "outage", "momentary_interruption"
#: how a meter was found out, as counted in the evidence
LAST_GASP, MISSING_READS = "last_gasp", "missing_reads"
#: a meter that missed its next message while most of its transformer is dark with a last gasp among them
MISSED_READ = "missed_read"
#: a meter taken in because its transformer or feeder was decided out (and it has shown no power since)
IN_SCOPE = "in_scope"
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
    feeder_gasp_share: float = param(
        1 / 3, "a feeder is out from last gasps alone when at least this share of its meters gasped together "
               "(within coincident_s), from most of its transformers: with 40 to 70 percent of last gasps "
               "getting through, a third of a feeder gasping at once is the feeder")
    coincident_s: int = param(120, "last gasps this close together count as one moment's (feeder_gasp_share)")
    read_slack_s: int = param(
        120, "a meter has missed its next message this long after it was due (its newest message's span "
             "after it: 15 minutes for one reading, an hour for an hourly array)")
    default_cadence_s: int = param(
        900, "how long until a meter's next message is due when its messages' span is not known")
    restore_grace_s: int = param(
        300, "once most of an outage's meters are back, the others have this long to come back (restore "
             "events arrive spread out) before they are a nested outage of their own")
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


class OutageDetector(Muting):
    """Outages of a feeder's meters from last gasps and missing reads, one alert per incident.

    Key ``feeder``, input ``events`` (:class:`~gridwatch.contract.MeterEvent`: ``power_fail`` = last gasp,
    ``power_restore``; other types are counted and ignored). ``ctx.members`` maps each meter of the feeder
    to its ``transformer_id`` and ``customer_id``, ``ctx.last_seen`` each meter to the event time of its
    newest reading, ``ctx.feeder_id`` names the feeder.

    - ``process(state, events, ctx) -> (state, [])`` remembers the events; decisions wait for the watermark.
    - ``advance(state, watermark, ctx) -> (state, records)`` decides everything up to ``watermark`` and
      returns complete alert records (``gridwatch/schemas/alerts.schema.json``), in event-time order.
    - ``out_meters(state, t) -> set`` the meters out at event time ``t`` as decided so far (the
      :class:`~detectors.api.Muting` hook: the feeder stage mutes the voltage alerts of those meters, the
      outage is the alert).

    A record's ``alert_id`` is ``detectors.topology.alert_id(kind, level, scope_id, started_at)``;
    ``kind`` is ``outage`` (severity critical; "open" when raised, grown or re-scoped, then "resolved") or
    ``momentary_interruption`` (severity info; one "resolved" record). Its evidence: ``meters_out`` (meters
    of the alert), ``meters_back`` (of those, back at the record's time), ``meters_total`` (meters at the
    scope), ``last_gasps`` / ``missing_reads`` / ``missed_reads`` / ``in_scope`` (how its meters were
    found out), ``feeder_id``, ``transformer_ids``, ``duration_class`` ("sustained" / "momentary"),
    ``updated_at`` (the event time the record was decided), and when they apply ``parent_alert_id`` (a
    nested outage), ``merged_from`` / ``merged_into`` (alerts that turned out to be one incident),
    ``duration_s`` and ``still_out_customer_ids`` (resolved records), ``found_by``. See the module
    docstring for the rules.
    """

    name = "outage"
    detects = ("power outages from last gasps and missing reads, one alert per incident from the first "
               "evidence to the restoration, its scope growing meter -> transformer -> feeder; momentary "
               "interruptions under 3 minutes")
    key = "feeder"
    input = "events"
    kinds = (OUTAGE, MOMENTARY)
    Config = OutageConfig

    def __init__(self, config: OutageConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        c = self.config
        if not 0 <= c.majority < 1:
            raise ValueError(f"majority must be in [0, 1), not {c.majority!r}")
        if not 0 < c.feeder_gasp_share <= 1 or c.coincident_s < 0:
            raise ValueError("feeder_gasp_share must be in (0, 1] and coincident_s >= 0")
        if (c.sustained_s < 0 or c.missing_reads_s <= 0 or c.history_s < 0 or c.min_meters < 1
                or c.read_slack_s < 0 or c.default_cadence_s <= 0 or c.restore_grace_s < 0):
            raise ValueError("sustained_s, history_s, read_slack_s and restore_grace_s must be >= 0, "
                             "missing_reads_s and default_cadence_s > 0, min_meters >= 1")

    def new_state(self) -> dict:
        return {"feeder_id": None, "decided": None, "events": {}, "periods": {}, "incidents": [],
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
            for inc in st["incidents"]:
                if not inc["alerted"]:
                    due = inc["started_at"] + self.config.sustained_s
                elif inc.get("back_since") is not None:
                    due = inc["back_since"] + self.config.restore_grace_s
                else:
                    continue
                if (lo is None or due > lo) and due <= wm:
                    nxt.append(due)
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
        if isinstance(st["incidents"], dict):  # a state kept before incidents had a key of their own
            st["incidents"] = [dict(i, key=i["alert_id"], back_since=None) for i in st["incidents"].values()]
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
        slack = self.config.read_slack_s
        for m in self._known(st, ctx):
            due = self._cadence(ctx, m) + slack
            seen = _as_int((ctx.last_seen or {}).get(m))
            if seen is not None:
                moments.update((seen, seen + due, seen + silence))
            for a, _ in (ctx.gaps or {}).get(m, ()):
                moments.update((a, a + due, a + silence))
        return sorted(t for t in moments if (lo is None or t > lo) and t <= hi)

    def _cadence(self, ctx: Context, m: str) -> int:
        c = _as_int((ctx.cadence or {}).get(m))
        return c if c and c > 0 else self.config.default_cadence_s

    def _meter_out(self, evs: list, seen: int | None, t: int, cadence: int) -> tuple[int, str] | None:
        """``(since, how)`` when the meter shows it is out at ``t`` (``how`` LAST_GASP or MISSING_READS),
        ``(last sign of life, MISSED_READ)`` when it has only missed its next message, else None."""
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
        if t >= alive + cadence + self.config.read_slack_s:
            return alive, MISSED_READ
        return None

    def _alive_after(self, evs: list, seen: int | None, since: int, t: int) -> bool:
        """Whether the meter showed power after ``since`` (a reading or a restore, as of ``t``)."""
        if seen is not None and since < seen <= t:
            return True
        return any(typ == RESTORE and since < ts <= t for ts, typ in evs)

    def _most(self, k: int, n: int) -> bool:
        return n > 0 and k > self.config.majority * n and k >= min(self.config.min_meters, n)

    def _onset(self, sinces: list[int], n: int) -> int:
        """When the scope went out: since when enough of its meters (those out now) have been out together."""
        ordered = sorted(sinces)
        k = next((k for k in range(1, len(ordered) + 1) if self._most(k, n)), len(ordered))
        return ordered[k - 1]

    @staticmethod
    def _ordered(incs: list) -> list[dict]:
        return sorted(incs, key=lambda i: (_LEVEL_ORDER[i["level"]], i["started_at"], i["key"]))

    def _evidence(self, st: dict, t: int, ctx: Context) -> dict[str, tuple[int, str]]:
        """The meters out at ``t`` on their own evidence: a last gasp, a long silence, or a missed message
        when most of their transformer is dark at the same time with a last gasp among them."""
        members, gaps = ctx.members or {}, ctx.gaps or {}
        last_seen = {m: _seen_at(_as_int(v), gaps.get(m, ()), t) for m, v in (ctx.last_seen or {}).items()}
        st["_seen"] = last_seen
        out, missed = {}, {}
        for m in self._known(st, ctx):
            s = self._meter_out(st["events"].get(m, []), _as_int(last_seen.get(m)), t, self._cadence(ctx, m))
            if s is None:
                continue
            (missed if s[1] == MISSED_READ else out)[m] = s
        if missed:
            by_tr: dict[str, list[str]] = {}
            for m in members:
                by_tr.setdefault(_transformer(members, m) or "", []).append(m)
            for tid, ms in by_tr.items():
                gasps = [out[m][0] for m in ms if m in out and out[m][1] == LAST_GASP]
                dark = [m for m in ms if m in out or m in missed]
                if tid and gasps and self._most(len(dark), len(ms)):
                    first = min(gasps)
                    for m in ms:
                        if m in missed:
                            out[m] = (max(missed[m][0], first), MISSED_READ)
        return out

    def _restored_after_silence(self, st: dict, inc: dict, back: list[str], t: int) -> bool:
        """A silent incident that ends with a restore event from a meter of it, longer than sustained_s:
        an outage whose last gasp was lost, known only now."""
        if t - inc["started_at"] <= self.config.sustained_s:
            return False
        return any(typ == RESTORE and inc["started_at"] < ts <= t
                   for m in back for ts, typ in st["events"].get(m, []))

    def _feeder_out(self, out: dict, members: dict) -> bool:
        """Most of the feeder's meters out; or, from last gasps alone, at least ``feeder_gasp_share`` of its
        meters gasped within ``coincident_s`` of each other, from most of its transformers (one
        transformer's meters, however many, are not the feeder)."""
        dark = [m for m in out if m in members]
        if self._most(len(dark), len(members)):
            return True
        gasps = [(out[m][0], m) for m in dark if out[m][1] == LAST_GASP]
        if not gasps:
            return False
        newest = max(t for t, _ in gasps)
        together = [m for t, m in gasps if t >= newest - self.config.coincident_s]
        trs = {_transformer(members, m) for m in members}
        hit = {_transformer(members, m) for m in together}
        return (len(together) >= max(2, self.config.feeder_gasp_share * len(members))
                and len(hit) > self.config.majority * len(trs))

    def _dark(self, st: dict, inc: dict, out: dict, t: int) -> list[str]:
        """The incident's meters without power at ``t``: out on their own evidence, or taken in with their
        scope and not heard from since."""
        seen, since = st.get("_seen") or {}, inc.get("scope_since") or inc["started_at"]
        return [m for m, how in inc["meters"].items() if m in out or (
            how == IN_SCOPE and not self._alive_after(st["events"].get(m, []), _as_int(seen.get(m)), since, t))]

    def _transformer_out(self, tid: str | None, out: dict, members: dict) -> list[str] | None:
        """The transformer's dark meters when it is out: most of its meters out, or at least ``majority``
        of them (and ``min_meters``) sent a last gasp — so many meters of one transformer losing power in
        the same moment is the transformer, not each of them. None when it is not out."""
        if tid is None:
            return None
        ms = [m for m in members if _transformer(members, m) == tid]
        dark = [m for m in ms if m in out]
        gasped = sum(out[m][1] == LAST_GASP for m in dark)
        if self._most(len(dark), len(ms)) or (
                gasped >= max(self.config.min_meters, self.config.majority * len(ms)) and len(ms) > 0):
            return dark
        return None

    def _covers(self, inc: dict, m: str, members: dict) -> bool:
        if inc["level"] == "feeder":
            return m in members
        if inc["level"] == "transformer":
            return _transformer(members, m) == inc["scope_id"]
        return inc["scope_id"] == m

    def _decide_at(self, st: dict, t: int, ctx: Context) -> list[dict]:
        cfg, members, incs = self.config, ctx.members or {}, st["incidents"]
        out = self._evidence(st, t, ctx)
        records: list[dict] = []

        # 1. incidents most of whose meters are back end — an outage once its meters have had the grace
        # window to come back (restore events arrive spread out), or at once when all of them are back
        ended: list[tuple[str, list[str]]] = []
        for inc in self._ordered(incs):
            evid = [m for m, how in inc["meters"].items() if how != IN_SCOPE]
            back = [m for m in evid if m not in out]
            if not evid or len(back) <= cfg.majority * len(evid):
                inc["back_since"] = None
                continue
            if inc["alerted"] and len(back) < len(evid):
                if inc.get("back_since") is None:
                    inc["back_since"] = t
                if t < inc["back_since"] + cfg.restore_grace_s:
                    continue
            incs.remove(inc)
            if not inc["alerted"] and LAST_GASP not in inc["meters"].values():
                # silence that never became an outage: no interruption to report — unless the meters say
                # so themselves when they come back (a restore event: a data gap sends none)
                if self._restored_after_silence(st, inc, back, t):
                    inc["alert_id"] = alert_id(OUTAGE, inc["level"], inc["scope_id"], inc["started_at"])
                    inc["detected_at"] = t
                    rec = self._record(st, inc, "resolved", t, out, ctx)
                    rec["evidence"]["found_by"] = "power_restore after silence"
                    records.append(rec)
                continue
            when = inc.get("back_since") if inc.get("back_since") is not None else t  # most were back then
            if inc["alerted"]:
                rec = self._record(st, inc, "resolved", t, out, ctx, resolved_at=when)
            else:
                rec = self._record(st, inc, "resolved", t, out, ctx, kind=MOMENTARY)
            records.append(rec)
            ended.append((rec["alert_id"], sorted(m for m in evid if m in out and m in members)))
        self._note_periods(st, out, t)
        changed: set[str] = set()

        # 2. their meters still out stay out in child incidents; 3. newly dark meters find their incident
        for parent, remaining in ended:
            self._place(st, remaining, out, t, ctx, parent, changed)
        covered = set()
        for inc in incs:
            for m, how in inc["meters"].items():
                covered.add(m)
                if how == IN_SCOPE and m in out:  # taken in with its scope; now out on its own evidence
                    inc["meters"][m] = out[m][1]
        self._place(st, sorted(m for m in out if m in members and m not in covered), out, t, ctx, None, changed)

        # 4. escalation: most of the feeder (or of a transformer) out makes its incidents one, at that scope
        self._escalate(st, out, t, ctx, changed, records)

        # 5. a transformer or feeder decided out takes in all its meters that have shown no power since
        seen = st["_seen"]
        covered = {m for inc in incs for m in inc["meters"]}
        for inc in self._ordered(incs):
            if inc["level"] == "meter":
                continue
            for m in sorted(members):
                if m in covered or not self._covers(inc, m, members):
                    continue
                since = inc.get("scope_since") or inc["started_at"]
                if not self._alive_after(st["events"].get(m, []), _as_int(seen.get(m)), since, t):
                    inc["meters"][m] = IN_SCOPE
                    covered.add(m)
                    changed.add(inc["key"])

        # 6. incidents that have lasted sustained_s become alerts; alerted ones that changed are updated
        for inc in self._ordered(incs):
            if inc["alerted"]:
                if inc["key"] in changed:
                    records.append(self._record(st, inc, "open", t, out, ctx))
                continue
            if inc["started_at"] + cfg.sustained_s > t:
                continue
            # a meter already back had a momentary interruption, not this outage
            inc["meters"] = {m: how for m, how in inc["meters"].items() if m in out or how == IN_SCOPE}
            if not any(how != IN_SCOPE for how in inc["meters"].values()):
                incs.remove(inc)
                continue
            if (inc["parent"] is None and LAST_GASP not in inc["meters"].values()
                    and len(inc["meters"]) < cfg.min_silent_meters):
                continue  # not corroborated (yet): a last gasp or another silent meter would make it one
            aid = alert_id(OUTAGE, inc["level"], inc["scope_id"], inc["started_at"])
            if aid == inc["parent"] or any(o.get("alert_id") == aid for o in incs):
                aid = alert_id(OUTAGE, inc["level"], inc["scope_id"], t)  # a nested outage of the same scope
            inc["alert_id"], inc["alerted"], inc["detected_at"] = aid, True, t
            records.append(self._record(st, inc, "open", t, out, ctx))
        del st["_seen"]
        return records

    def _place(self, st: dict, meters: list[str], out: dict, t: int, ctx: Context, parent: str | None,
               changed: set) -> None:
        """Put out meters that belong to no incident into one: the one whose scope covers them (a feeder's,
        their transformer's) if there is one, else new incidents at the scope the rule gives."""
        if not meters:
            return
        members, incs = ctx.members or {}, st["incidents"]
        rest = []
        for m in meters:
            inc = next((i for i in self._ordered(incs) if i["level"] != "meter" and self._covers(i, m, members)
                        and (parent is None or i["parent"] == parent)), None)
            if inc is None:
                rest.append(m)
            else:
                inc["meters"][m] = out[m][1]
                changed.add(inc["key"])
        if not rest:
            return
        out_members = [m for m in out if m in members]
        if parent is None and st["feeder_id"] and self._feeder_out(out, members):
            onset = self._onset([out[m][0] for m in out_members], len(members))
            self._new(st, "feeder", st["feeder_id"], {m: out[m][1] for m in rest}, onset, parent)
            return
        groups: dict[str | None, list[str]] = {}
        for m in rest:
            groups.setdefault(_transformer(members, m), []).append(m)
        for tid, ms in sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] or "")):
            size = sum(1 for m in members if _transformer(members, m) == tid)
            dark = self._transformer_out(tid, out, members)
            if dark is not None:
                onset = self._onset([out[m][0] for m in dark], size)
                self._new(st, "transformer", tid, {m: out[m][1] for m in ms}, onset, parent)
            else:
                for m in ms:
                    self._new(st, "meter", m, {m: out[m][1]}, out[m][0], parent)

    def _escalate(self, st: dict, out: dict, t: int, ctx: Context, changed: set, records: list) -> None:
        """Most of the feeder out: its top-level incidents become ONE feeder incident; most of a transformer
        out: the incidents within it become one transformer incident. The incident kept is the one alerted
        first (its alert id stays; it is updated with the new scope); another one already alerted ends with
        ``merged_into`` (its customers were told under it: they are not told again)."""
        members, incs = ctx.members or {}, st["incidents"]
        out_members = [m for m in out if m in members]
        tops = [i for i in incs if i["parent"] is None]
        if st["feeder_id"] and self._feeder_out(out, members) and tops:
            onset = self._onset([out[m][0] for m in out_members], len(members))
            self._merge(st, tops, "feeder", st["feeder_id"], onset, t, out, ctx, changed, records)
            return
        if any(i["level"] == "feeder" for i in tops):
            return
        for tid in sorted({_transformer(members, m) for m in out_members} - {None}):
            ms = [m for m in members if _transformer(members, m) == tid]
            dark = self._transformer_out(tid, out, members)
            if dark is None:
                continue
            within = [i for i in tops if (i["level"] == "transformer" and i["scope_id"] == tid)
                      or (i["level"] == "meter" and _transformer(members, i["scope_id"]) == tid)]
            if within:
                onset = self._onset([out[m][0] for m in dark], len(ms))
                self._merge(st, within, "transformer", tid, onset, t, out, ctx, changed, records)

    def _merge(self, st: dict, group: list[dict], level: str, scope_id: str, onset: int, t: int, out: dict,
               ctx: Context, changed: set, records: list) -> None:
        # the first alerted; of several alerted together the widest (the one most customers know)
        alerted = sorted((i for i in group if i["alerted"]), key=lambda i: (
            i["detected_at"], _LEVEL_ORDER[i["level"]], -len(i["meters"]), i["started_at"], i["alert_id"]))
        keep = alerted[0] if alerted else min(group, key=lambda i: (i["started_at"], i["key"]))
        if keep["level"] != level or keep["scope_id"] != scope_id:
            keep["level"], keep["scope_id"], keep["scope_since"] = level, scope_id, onset
            changed.add(keep["key"])
        if not keep["alerted"]:
            keep["started_at"] = min(onset, *(i["started_at"] for i in group))
        for other in group:
            if other is keep:
                continue
            st["incidents"].remove(other)
            for m, how in other["meters"].items():
                keep["meters"].setdefault(m, how)
            changed.add(keep["key"])
            if other["alerted"]:
                keep["merged_from"] = sorted(set(keep.get("merged_from") or ()) | {other["alert_id"]}
                                             | set(other.get("merged_from") or ()))
                records.append(self._record(st, other, "resolved", t, out, ctx, merged_into=keep["alert_id"]))

    @staticmethod
    def _new(st: dict, level: str, scope_id: str, meters: dict, started_at: int, parent: str | None) -> None:
        key = f"{level}:{scope_id}:{started_at}:{parent or ''}"
        same = next((i for i in st["incidents"] if i["key"] == key), None)
        if same is not None:  # the same scope out since the same moment: one incident
            same["meters"].update(meters)
            return
        st["incidents"].append({"key": key, "alert_id": None, "level": level, "scope_id": scope_id,
                                "meters": dict(meters), "started_at": started_at, "alerted": False,
                                "detected_at": None, "parent": parent, "back_since": None})

    def _record(self, st: dict, inc: dict, status: str, t: int, out: dict, ctx: Context, *,
                kind: str = OUTAGE, merged_into: str | None = None, resolved_at: int | None = None) -> dict:
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
        dark = [m for m, how in inc["meters"].items() if m in out and how != IN_SCOPE]  # dark on evidence
        evidence: dict[str, Any] = {
            "meters_out": len(meters), "meters_back": len(meters) - len(self._dark(st, inc, out, t)),
            "meters_total": total,
            "last_gasps": hows.count(LAST_GASP), "missing_reads": hows.count(MISSING_READS),
            "missed_reads": hows.count(MISSED_READ), "in_scope": hows.count(IN_SCOPE),
            "feeder_id": st["feeder_id"],
            "transformer_ids": sorted({tid for m in meters if (tid := _transformer(members, m))}),
            "duration_class": "momentary" if momentary else "sustained",
            "updated_at": format_ts(t),
        }
        if inc["parent"]:
            evidence["parent_alert_id"] = inc["parent"]
        if inc.get("merged_from"):
            evidence["merged_from"] = list(inc["merged_from"])
        if merged_into:
            evidence["merged_into"] = merged_into
        end = t if resolved_at is None else resolved_at
        if status == "resolved":
            evidence["duration_s"] = end - inc["started_at"]
            # who is still dark (they stay in a child outage): no "power is back" message for them
            evidence["still_out_customer_ids"] = sorted({members[m]["customer_id"] for m in dark
                                                         if (members.get(m) or {}).get("customer_id")})
        aid = inc["alert_id"] if kind == OUTAGE else alert_id(kind, level, scope_id, inc["started_at"])
        return {
            "alert_id": aid, "kind": kind,
            "severity": "info" if momentary else "critical", "status": status,
            "scope": {"level": level, "id": scope_id}, "meter_ids": meters,
            "customer_ids": sorted({members[m]["customer_id"] for m in meters
                                    if (members.get(m) or {}).get("customer_id")}),
            "started_at": format_ts(inc["started_at"]),
            "detected_at": format_ts(t if momentary else inc["detected_at"]),
            "resolved_at": format_ts(end) if status == "resolved" else None,
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
