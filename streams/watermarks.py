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

It is then held below the oldest reading still parked for a meter not yet in the directory. Plain Python,
no Faust: the worker owns one instance per assigned partition.
"""

from __future__ import annotations

import heapq

__all__ = ["PartitionClock"]


class PartitionClock:
    def __init__(self, lateness_s: int = 900, stale_s: int = 2 * 3600):
        self.lateness_s, self.stale_s = lateness_s, stale_s
        self.first_top: int | None = None       # newest batch start
        self.newest: int | None = None          # newest reading
        self.last: dict[str, int] = {}          # meter -> its newest reading
        self._heap: list[tuple[int, str]] = []  # (last, meter), stale entries skipped lazily
        self.parked: dict[str, int] = {}        # meter -> oldest parked reading
        self.idle_floor: int | None = None      # set while the partition is quiet
        self.span = 0                           # longest batch seen (event time from first to last reading)

    def batch(self, meter_id: str, first_ts: int, last_ts: int) -> None:
        """A batch of one meter was processed (its status sent)."""
        self.idle_floor = None
        self.span = max(self.span, last_ts - first_ts)
        self.first_top = first_ts if self.first_top is None else max(self.first_top, first_ts)
        self.newest = last_ts if self.newest is None else max(self.newest, last_ts)
        if last_ts > self.last.get(meter_id, -(10**12)):
            self.last[meter_id] = last_ts
            heapq.heappush(self._heap, (last_ts, meter_id))

    def park(self, meter_id: str, oldest_ts: int) -> None:
        self.parked[meter_id] = min(oldest_ts, self.parked.get(meter_id, oldest_ts))

    def unpark(self, meter_id: str) -> None:
        self.parked.pop(meter_id, None)

    def quiet(self, worker_newest: int | None, drop_parked: bool = False) -> None:
        """No batch for a while: let the watermark move up to the newest reading seen (here or anywhere)."""
        tops = [t for t in (self.newest, worker_newest) if t is not None]
        self.idle_floor = max(tops) if tops else None
        if drop_parked:
            self.parked.clear()

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
        if self.parked:
            wm = min(wm, min(self.parked.values()) - 1)
        return wm
