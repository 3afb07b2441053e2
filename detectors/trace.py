"""A meter's voltage ring: its last :data:`~detectors.topology.TRACE_POINTS` quarter hours, for the alerts' trace.

The meter stage keeps it in the meter's states (``_trace``, see :mod:`detectors.pipeline`) and reads it with
:func:`trace_points` into ``[[quarter-hour end (epoch s), v_avg, v_min, v_max], ...]``: the mean ``v_avg``
and the lowest ``v_min`` / highest ``v_max`` of each quarter hour, in volts to 0.1 V (null: none). 0.1 V is
all its readers ever get (the alert's evidence, the console's trace, reports), so that is what the ring
keeps of a quarter hour once it is over. The state is kept per meter, written after every batch and held
in memory by the worker, so its size is paid 100,000 times over::

    {"t0": <end of the first quarter hour, epoch s>, "last": <newest reading's ts>,
     "c": <the closed quarter hours>, "o": <the newest quarter hour>}

- ``c``: every quarter hour but the newest, oldest first, as the three figures :func:`trace_points` gives,
  in tenths of a volt, each a little-endian int16 (``_NULL`` for null; all three ``_GAP`` for a quarter
  hour without a reading, which is left out), base64: 8 characters a quarter hour, 768 for a day. A
  figure beyond ±3,276.6 V (none within the contract's 0 – 1,500 V) makes ``c`` a list instead, of
  ``[v_avg, v_min, v_max]`` in volts (``null`` for a quarter hour left out), until it leaves the ring.
- ``o``: the newest quarter hour, which readings shorter than a quarter hour still add to: the running
  mean of ``v_avg``, how many ``v_avg`` it is the mean of, the lowest ``v_min`` and the highest ``v_max``,
  four little-endian 32-bit floats as hex (NaN where none), as every quarter hour was kept before: its
  figures are rounded to 0.1 V only when the next quarter hour starts, exactly as :func:`trace_points`
  rounds them, so the points are the same as when the whole ring was kept as floats.

A ring written before ``c`` and ``o`` existed (``{"t0", "last", "q"}``: every quarter hour as ``o`` is
now) is read as well: states in existing changelogs and stores load unchanged.
"""

from __future__ import annotations

import base64
import operator
import struct
from itertools import repeat
from typing import Any

from gridwatch.contract import Reading

from .topology import TRACE_POINTS, TRACE_STEP_S

__all__ = ["trace_update", "trace_points"]

#: a quarter hour of ``o`` (and of the former ``q``): four 32-bit floats as hex
_REC = 32
#: a quarter hour of ``c``: three int16 = 6 bytes = 8 base64 characters
_CLOSED = 8
#: in ``c``: a null figure, and (all three) a quarter hour without a reading
_NULL, _GAP = -32767, -32768
#: the largest figure ``c`` holds as int16, in volts
_LIMIT = 3276.6
_TENTHS = 32766
_NAN = float("nan")
_BY_TS = operator.attrgetter("ts")


def _pack(nums: list[float]) -> str:
    try:
        return struct.pack(f"<{len(nums)}f", *nums).hex()
    except OverflowError:                               # an absurd voltage (bad data) beyond a float32
        return struct.pack(f"<{len(nums)}f", *(min(x, 1e38) for x in nums)).hex()


def _float32(nums: list[float]) -> list[float]:
    """``nums`` as the float32 values ``_pack`` keeps of them."""
    fmt = f"<{len(nums)}f"
    try:
        return list(struct.unpack(fmt, struct.pack(fmt, *nums)))
    except OverflowError:
        return list(struct.unpack(fmt, struct.pack(fmt, *(min(x, 1e38) for x in nums))))


def _unpack(q: str) -> list[float]:
    return list(struct.unpack(f"<{len(q) // 8}f", bytes.fromhex(q)))


def _v(x: float) -> float | None:
    return None if x != x else round(x, 1)


def _figures(mean: float, n: float, lo: float, hi: float) -> list | None:
    """A quarter hour's (float32) record as the points give it: ``[v_avg, v_min, v_max]`` to 0.1 V, or None
    when it is left out (no reading)."""
    if n == 0 and lo != lo and hi != hi:
        return None
    return [_v(mean) if n else None, _v(lo), _v(hi)]


def _encode(closed: list[list | None]) -> str | list:
    """Quarter hours as ``c``: base64 int16 tenths of a volt, or the list itself when a figure is too large."""
    out: list[int] = []
    for rec in closed:
        if rec is None:
            out += (_GAP, _GAP, _GAP)
            continue
        for x in rec:
            if x is None:
                out.append(_NULL)
            elif -_LIMIT <= x <= _LIMIT:
                out.append(round(x * 10))
            else:
                return closed
    return base64.b64encode(struct.pack(f"<{len(out)}h", *out)).decode("ascii")


def _close(nums: list[float]) -> str | None:
    """Float32 records (four floats each) as ``c`` would hold them, base64; None when a figure is too large.

    The same figures as ``_encode(_figures(...))`` without the lists: for a float32 ``x``, ``x * 10`` is
    exact in a double and never halfway between two integers, so ``round(x * 10)`` is ``round(x, 1) * 10``.
    """
    out: list[int] | None = None
    if 0.0 not in nums[1::4]:                           # every quarter hour has a v_avg: the usual case
        vals = nums[:]
        del vals[1::4]                                  # (the counts)
        try:
            out = list(map(round, map(operator.mul, vals, repeat(10.0))))
        except (ValueError, OverflowError):             # a NaN (a null v_min or v_max), an infinity
            out = None
        if out is not None and not -_TENTHS <= min(out) <= max(out) <= _TENTHS:
            return None
    if out is None:
        out = []
        for i in range(0, len(nums), 4):
            mean, n, lo, hi = nums[i:i + 4]
            if n == 0 and lo != lo and hi != hi:
                out += (_GAP, _GAP, _GAP)
                continue
            for x in (mean if n else _NAN, lo, hi):
                if x != x:
                    out.append(_NULL)
                elif -_LIMIT - 1 < x < _LIMIT + 1 and -_TENTHS <= (t := round(x * 10)) <= _TENTHS:
                    out.append(t)
                else:
                    return None
    return base64.b64encode(struct.pack(f"<{len(out)}h", *out)).decode("ascii")


def _decode(c: str | list) -> list[list | None]:
    if type(c) is list:
        return c
    nums = struct.unpack(f"<{len(c) // _CLOSED * 3}h", base64.b64decode(c))
    out: list[list | None] = []
    for i in range(0, len(nums), 3):
        a, lo, hi = nums[i:i + 3]
        out.append(None if a == _GAP else [None if a == _NULL else a / 10, None if lo == _NULL else lo / 10,
                                           None if hi == _NULL else hi / 10])
    return out


def _size(c: str | list) -> int:
    return len(c) // _CLOSED if type(c) is str else len(c)


def _open(ring: dict | None) -> tuple[Any, Any, str | list, list[float]]:
    """(t0, last, closed quarter hours as ``c``, the newest one's four floats or []) of a ring, old or new."""
    if ring is None:
        return None, None, "", []
    if "q" in ring:                                    # every quarter hour as four floats (before "c", "o")
        nums = _unpack(ring["q"])
        recs = [_figures(*nums[i:i + 4]) for i in range(0, len(nums) - 4, 4)]
        return ring["t0"], ring["last"], _encode(recs), nums[-4:]
    return ring["t0"], ring["last"], ring["c"], _unpack(ring["o"]) if ring["o"] else []


def trace_update(ring: dict | None, readings: list[Reading]) -> dict:
    """The meter's voltage ring (state ``_trace``) with ``readings`` added; the input ring is not changed.

    At most :data:`TRACE_POINTS` quarter hours (see the module docstring), the first ending at ``t0``;
    readings at or before ``last`` (duplicates, late ones) are left out. A batch of 15-minute readings is
    appended to ``c`` without reading it. Read it with :func:`trace_points`.
    """
    t0, last, closed, nums = _open(ring)
    step = TRACE_STEP_S
    size = _size(closed)                                # quarter hours in ``closed``; ``nums`` holds the rest,
    end = size + len(nums) // 4                         # four floats each, the newest one first
    for r in sorted(readings, key=_BY_TS):
        ts = r.ts
        if last is not None and ts <= last:
            continue
        last = ts
        va, vn, vx = r.v_avg, r.v_min, r.v_max
        k = -(-ts // step) * step                       # end of the quarter hour the reading ends in
        if t0 is None:
            if va is None and vn is None and vx is None:
                continue
            t0 = k
        i = (k - t0) // step
        if i == end and va is not None and vn is not None and vx is not None:   # the usual case
            nums += (va, 1.0, vn, vx)
            end += 1
            continue
        if va is None and vn is None and vx is None:
            continue
        if i >= end:
            if i >= end + TRACE_POINTS:                 # silent for longer than the ring holds: start afresh
                closed, nums, t0, size, i, end = "", [], k, 0, 0, 0
            if i > end:
                nums += [_NAN, 0.0, _NAN, _NAN] * (i - end)   # quarter hours without a reading
            nums += (_NAN if va is None else va, 0.0 if va is None else 1.0,
                     _NAN if vn is None else vn, _NAN if vx is None else vx)
            end = i + 1
            continue
        # readings shorter than a quarter hour: merge into the quarter hour's record. It is the newest one
        # (a reading after ``last`` ends in its quarter hour or later), which is always in ``nums``.
        j = 4 * (i - size)
        mean, n, lo, hi = nums[j:j + 4]
        if va is not None:
            mean, n = (va, 1.0) if n == 0 else ((mean * n + va) / (n + 1), n + 1)
        if vn is not None and not lo <= vn:            # (NaN: no v_min yet)
            lo = vn
        if vx is not None and not hi >= vx:
            hi = vx
        nums[j:j + 4] = [mean, n, lo, hi]
    if not nums:
        return {"t0": t0, "last": last, "c": closed, "o": ""}
    if len(nums) > 4:                                   # quarter hours that are over: to 0.1 V, into ``closed``
        nums = _float32(nums)                           # (as the ring has always kept them)
        done = nums[:-4]
        cut = max(0, size + len(done) // 4 + 1 - TRACE_POINTS)
        new = _close(done) if type(closed) is str else None
        if new is not None:
            closed = (closed + new)[cut * _CLOSED:]
        else:
            closed = _encode((_decode(closed) + [_figures(*done[i:i + 4]) for i in range(0, len(done), 4)])[cut:])
        t0 += cut * step
    return {"t0": t0, "last": last, "c": closed, "o": _pack(nums[-4:])}


def trace_points(ring: dict | None) -> list[list]:
    """The ring as ``[[quarter-hour end (epoch s), v_avg, v_min, v_max], ...]`` in volts, to 0.1 V (null:
    none)."""
    if not ring:
        return []
    t0, _, closed, nums = _open(ring)
    recs = _decode(closed) + ([_figures(*nums)] if nums else [])
    return [[t0 + i * TRACE_STEP_S, *rec] for i, rec in enumerate(recs) if rec is not None]
