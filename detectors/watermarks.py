"""Event-time progress of one source partition: how far its meters have certainly been processed.

The correlator may decide about event time *t* only when no status with a transition at or before *t* can
still come from any partition that carries one of the transformer's meters. For one readings partition
that bound — its *watermark* — is the largest of:

- ``newest batch start - allowed lateness``: batches of a partition arrive roughly in time order, and a
  reading later than that is accepted as late (applied, but decisions already made stand);
- ``the oldest last-seen reading among its live meters``: once every meter that is still reporting has
  sent its readings up to *t*, nothing before *t* can come (this is what lets a decision follow the last
  batch of a burst at once instead of one batch period later);
- when the partition has gone quiet (no batch for a while, by the wall clock): its newest reading, or the
  worker's newest if that is later — a partition whose meters are all dark must not hold everyone back.

It is then held below the oldest reading still parked for a meter not yet in the directory, but once the
meter has been waiting for ``hold_grace_s`` of wall time, never more than the allowed lateness below where it
would be without it: a meter missing from the directory costs its own readings their timeliness (decided on
as late ones when its record comes), never the partition its decisions. The grace covers the usual race of a
new customer's record and its first readings (a burst of history published right behind the customers);
on a live feed it is far below the lateness, and the wall clock is again used only for liveness.

**A clock that one meter cannot poison.** Every bound above trusts the partition's newest readings, so a
reading dated ahead of what may really have been measured must not get in. :meth:`PartitionClock.ahead`
says when a batch is *ahead of the rest of the partition*: it starts more than ``lateness + one interval``
after the newest reading of the partition's other meters (or ends later than its readings could reach from
there). The worker dead-letters such a batch (reason ``ts_in_future``) instead of processing it; a batch
dated after the wall clock (plus a small tolerance) is refused the same way, whatever the partition says.
Refused batches (and power events) are remembered as *claims*: another meter claiming the same jump confirms
it (a replay resuming after a gap moves on, only the first meter's first batch after the gap is
dead-lettered; meters coming back from an outage that darkened the whole partition are confirmed by each
other's restore events), while a lone meter with a wrong clock is refused every time. The reference is event time only, so a replay of old
history (years behind the wall clock) passes at any speed. Plain Python, no Faust: the worker owns one
instance per assigned partition.
"""

from __future__ import annotations

import heapq
import time
from typing import Callable

__all__ = ["PartitionClock", "SettledNewest"]


class PartitionClock:
    def __init__(self, lateness_s: int = 900, stale_s: int = 2 * 3600, hold_grace_s: float = 0.0,
                 wall: Callable[[], float] = time.monotonic):
        self.lateness_s, self.stale_s = lateness_s, stale_s
        self.hold_grace_s, self._wall = hold_grace_s, wall
        self.parked_since: dict[str, float] = {}  # meter -> wall time its first reading was parked
        self.first_top: int | None = None       # newest batch start
        self.newest: int | None = None          # newest reading
        self.last: dict[str, int] = {}          # meter -> its newest reading
        self._heap: list[tuple[int, str]] = []  # (last, meter), stale entries skipped lazily
        self.claims: dict[str, int] = {}        # meter -> newest reading of a batch refused as ahead
        self.parked: dict[str, int] = {}        # meter -> oldest parked reading
        self.parked_count: dict[str, int] = {}  # meter -> readings and events parked for it
        self.hold_parked = True                 # False while quiet: parked meters hold nothing back
        self._held = 0                          # sum of parked_count
        self.idle_floor: int | None = None      # set while the partition is quiet
        self.span = 0                           # longest batch seen (event time from first to last reading)
        self.restored: int | None = None        # the reference kept by the previous owner (see ``saved``)
        self._saved: tuple | None = None        # what ``saved`` last returned

    def batch(self, meter_id: str, first_ts: int, last_ts: int) -> None:
        """A batch of one meter was processed (its status sent)."""
        self.idle_floor, self.hold_parked = None, True
        self.span = max(self.span, last_ts - first_ts)
        self.first_top = first_ts if self.first_top is None else max(self.first_top, first_ts)
        self.newest = last_ts if self.newest is None else max(self.newest, last_ts)
        if self.claims.get(meter_id, last_ts) <= last_ts:  # (an older batch, re-read after a restart, keeps it)
            self.claims.pop(meter_id, None)
        if last_ts > self.last.get(meter_id, -(10**12)):
            self.last[meter_id] = last_ts
            heapq.heappush(self._heap, (last_ts, meter_id))

    # -- readings dated ahead of the partition -----------------------------------------------------------
    def reference(self) -> int | None:
        """The newest event time the partition vouches for: its newest accepted reading, or the quiet floor."""
        cands = [t for t in (self.newest, self.idle_floor, self.restored) if t is not None]
        return max(cands) if cands else None

    # -- what must outlive the worker ------------------------------------------------------------------
    def saved(self) -> dict | None:
        """What a restarted worker needs to judge batches as ahead the same way (its newest accepted reading
        and the claims), when it changed since the last :meth:`mark_saved`, else None. A restarted worker
        re-reads only from the committed offset: without it, a reading after a gap (an outage the restore
        events claimed, or simply newer readings before the committed offset) would be refused as ahead where
        the undisturbed worker accepted it. The newest reading moves once per round of the partition's
        meters, claims with power events and refused batches: small and rare."""
        state = self._state()
        if state == self._saved:
            return None
        return {"ref": state[0], "claims": dict(state[1])}

    def mark_saved(self, saved: dict) -> None:
        """``saved`` (from :meth:`saved`) is written: not returned again until the clock changes. Only once the
        write succeeded, so a failed write is written again when it is retried."""
        self._saved = (saved["ref"], tuple(sorted(saved["claims"].items())))

    def _state(self) -> tuple:
        return self.reference(), tuple(sorted(self.claims.items()))

    def restore(self, saved: dict | None) -> None:
        if saved:
            self.restored = saved.get("ref")
            self.claims.update(saved.get("claims") or {})
            self._saved = self._state()

    def ahead(self, meter_id: str, first_ts: int, last_ts: int, count: int, interval_s: int) -> int | None:
        """If a batch of ``count`` readings from ``first_ts`` to ``last_ts`` is dated ahead of the rest of the
        partition, the reference it is ahead of (else None): it starts more than the lateness plus one
        interval after it, or ends later than ``count`` intervals could reach. Such a batch would move the
        watermark past readings the other meters have yet to send. It is not ahead when another meter's
        refused batch, or another meter's power event, claimed the same time (a jump two meters agree on is
        real, and meters coming back after an outage send their restore events first). A partition that has
        accepted nothing yet has no reference (only the wall clock bounds it)."""
        ref = self.reference()
        if ref is None:
            return None
        slack = self.lateness_s + interval_s
        if first_ts <= ref + slack and last_ts <= ref + self.lateness_s + count * interval_s:
            return None
        for m, claimed in self.claims.items():
            if m != meter_id and first_ts <= claimed + slack and claimed <= last_ts + slack:
                return None
        return ref

    def claim(self, meter_id: str, last_ts: int) -> None:
        """A batch of ``meter_id`` was refused as ahead, or it sent a power event: remember the time it claimed
        (see :meth:`ahead`)."""
        self.claims[meter_id] = max(last_ts, self.claims.get(meter_id, last_ts))
        if len(self.claims) > 1000:  # bounded: forget the older half
            for m, _ in sorted(self.claims.items(), key=lambda kv: kv[1])[:500]:
                del self.claims[m]

    # -- readings held for meters not yet in the directory -----------------------------------------------
    def park(self, meter_id: str, oldest_ts: int, count: int = 1) -> None:
        self.parked_since.setdefault(meter_id, self._wall())
        self.parked[meter_id] = min(oldest_ts, self.parked.get(meter_id, oldest_ts))
        self.parked_count[meter_id] = self.parked_count.get(meter_id, 0) + count
        self._held += count

    def unpark(self, meter_id: str) -> None:
        self.parked.pop(meter_id, None)
        self.parked_since.pop(meter_id, None)
        self._held -= self.parked_count.pop(meter_id, 0)

    @property
    def held(self) -> int:
        """Readings and events held on this partition for meters not in the directory."""
        return self._held

    def expired(self, max_age_s: int) -> list[str]:
        """Meters whose oldest held reading is more than ``max_age_s`` of event time behind the watermark."""
        wm = self.watermark()
        if wm is None:
            return []
        return sorted(m for m, ts in self.parked.items() if ts < wm - max_age_s)

    def quiet(self, worker_newest: int | None, drop_parked: bool = False) -> None:
        """No batch for a while: let the watermark move up to the newest reading seen (here or anywhere)."""
        tops = [t for t in (self.newest, worker_newest) if t is not None]
        self.idle_floor = max(tops) if tops else None
        if drop_parked:
            self.hold_parked = False

    def _oldest_live(self) -> int | None:
        if self.newest is None:
            return None
        # a meter counts as gone quiet only after several of its batches' worth of silence: with 4-hour
        # batches, a meter 2 hours behind the newest reading is merely waiting for its next batch
        horizon = self.newest - max(self.stale_s, 3 * self.span)
        heap = self._heap
        while heap:
            ts, m = heap[0]
            if ts != self.last.get(m) or ts < horizon:
                heapq.heappop(heap)  # superseded by a newer batch of that meter, or the meter went quiet
                continue
            return ts
        return None

    def watermark(self) -> int | None:
        cands = [t for t in (self.first_top - self.lateness_s if self.first_top is not None else None,
                             self._oldest_live(), self.idle_floor) if t is not None]
        if not cands:
            return None
        wm = max(cands)
        if self.parked and self.hold_parked:
            # held readings hold it back: fully during the grace, then by at most the allowed lateness
            young = self._wall() - self.hold_grace_s
            strict = [ts for m, ts in self.parked.items() if self.parked_since.get(m, young) > young]
            bounded = [ts for m, ts in self.parked.items() if self.parked_since.get(m, young) <= young]
            if bounded:
                wm = max(min(wm, min(bounded) - 1), wm - self.lateness_s)
            if strict:
                wm = min(wm, min(strict) - 1)
        return wm


class SettledNewest:
    """The newest reading a worker had seen ``settle_s`` of wall time ago: how far a quiet partition may move.

    A partition with no batch for a while and nothing left unread may be quiet (its meters are dark), or its
    readings may simply not be there yet: a burst is published partition after partition, and a restarted
    worker re-reads one partition before another. Moved up to the newest reading *now*, such a partition
    would overtake its own readings (its meters would look silent: an outage that is not one). Moved up only
    to what was newest ``settle_s`` ago, it is overtaken only when its readings come more than ``settle_s``
    after the others' of the same event time. A new instance (a restarted worker) knows nothing settled
    until ``settle_s`` has passed."""

    def __init__(self, settle_s: float, wall: Callable[[], float] = time.monotonic):
        self.settle_s, self._wall = settle_s, wall
        self._seen: list[tuple[float, int]] = []  # (wall time first seen, newest reading), increasing

    def observe(self, newest: int | None) -> None:
        if newest is not None and (not self._seen or newest > self._seen[-1][1]):
            self._seen.append((self._wall(), newest))

    def settled(self) -> int | None:
        cut = self._wall() - self.settle_s
        while len(self._seen) > 1 and self._seen[1][0] <= cut:
            del self._seen[0]
        return self._seen[0][1] if self._seen and self._seen[0][0] <= cut else None

    def clear(self) -> None:
        self._seen.clear()
