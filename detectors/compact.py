"""Compact JSON shapes for what a detector state remembers per meter: sets of timestamps as runs.

A worker keeps one state per meter (the ``meter-state`` table, its changelog and an in-memory cache in
front of it), so every byte of a state is paid per meter: at 100,000 meters, 1 KB of state is 100 MB of
changelog per full pass and, as Python objects, several times that in memory. A detector that remembers the
timestamps it has seen (to drop duplicate readings) remembers, for a meter that reports on time, a run:
``[first, step, count]`` stands for ``first, first + step, ..., first + (count - 1) * step``.

:func:`pack_times` writes a set of timestamps as a list whose items are either a timestamp (an int) or such
a run; :func:`unpack_times` reads it back. :class:`TimeSet` is what a detector works on between the two:
for a meter whose readings come in order it never unpacks the runs at all. A plain list of timestamps —
what the states held before — is a valid packed list (every item a lone timestamp), so states written
before runs existed read unchanged.
"""

from __future__ import annotations

from typing import Iterable

__all__ = ["pack_times", "unpack_times", "TimeSet"]

#: a run is written only from this many timestamps at equal steps (below, lone ints are as short)
MIN_RUN = 3


def pack_times(times: Iterable[int], newest: int | None = None) -> list:
    """The distinct ``times`` in ascending order, equal steps as runs ``[first, step, count]``; with
    ``newest``, only that many of the latest when there are more."""
    ts = sorted(set(times))
    if newest is not None and len(ts) > newest:
        ts = ts[-newest:]
    n = len(ts)
    if n >= MIN_RUN and type(ts[0]) is int and type(ts[1]) is int:
        step = ts[1] - ts[0]
        if ts[-1] - ts[0] == step * (n - 1) and ts == list(range(ts[0], ts[-1] + 1, step)):
            return [[ts[0], step, n]]           # a meter that reports on time: one run
    if not all(type(t) is int for t in ts):     # runs are of whole seconds; anything else stays as it is
        return ts
    out: list = []
    i = 0
    while i < n:
        j = i + 1
        if i + MIN_RUN <= n:
            step = ts[i + 1] - ts[i]
            while j < n and ts[j] - ts[j - 1] == step:
                j += 1
        if j - i >= MIN_RUN:
            out.append([ts[i], step, j - i])
            i = j
        else:
            out.append(ts[i])
            i += 1
    return out


def unpack_times(packed: Iterable) -> list[int]:
    """The timestamps of a :func:`pack_times` list (or of a plain list of timestamps, in its order)."""
    out: list[int] = []
    for item in packed:
        if type(item) is list:
            first, step, count = item
            out.extend(range(first, first + step * count, step))
        else:
            out.append(item)
    return out


class TimeSet:
    """A packed set of timestamps (:func:`pack_times`) to add to, for one batch: ``add`` says whether a
    timestamp is new, ``packed`` writes the set back. The runs are unpacked only when a timestamp at or
    before the newest one comes (a repeat, a late reading); readings in order are appended, and a run they
    continue is extended by arithmetic. ``packed`` gives exactly what :func:`pack_times` gives for the set.
    """

    __slots__ = ("_packed", "_top", "_tail", "_all")

    def __init__(self, packed: list):
        self._packed = packed
        self._tail: list[int] = []        # added, each newer than all before it
        self._all: set | None = None      # the whole set, once an older timestamp was asked about
        self._top = max((x[0] + x[1] * (x[2] - 1) if type(x) is list else x for x in packed), default=None)

    def add(self, t: int) -> bool:
        """Add ``t``; False when it was there already."""
        if self._all is None:
            if self._top is None or t > self._top:
                self._tail.append(t)
                self._top = t
                return True
            self._all = set(unpack_times(self._packed))
            self._all.update(self._tail)
        if t in self._all:
            return False
        self._all.add(t)
        return True

    def packed(self, newest: int | None = None, after: int | None = None) -> list:
        """The set as :func:`pack_times` writes it: only the timestamps later than ``after``, and of them only
        the ``newest`` latest when there are more."""
        p, tail = self._packed, self._tail
        if self._all is None and len(p) == 1 and type(p[0]) is list:
            first, step, count = p[0]
            nxt = first + step * count
            if not tail or tail == list(range(nxt, nxt + step * len(tail), step)):
                count += len(tail)                 # one run still: drop from its start by arithmetic
                drop = 0 if after is None or after < first else min(count, (after - first) // step + 1)
                if newest and count - drop > newest:
                    drop = count - newest
                left = count - drop
                first += drop * step
                return [[first, step, left]] if left >= MIN_RUN else [first + i * step for i in range(left)]
        times = self._all if self._all is not None else unpack_times(p) + tail
        if after is not None:
            times = [t for t in times if t > after]
        return pack_times(times, newest)
