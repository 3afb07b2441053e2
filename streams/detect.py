"""The detect stage's batch bookkeeping: meter states in memory, status messages grouped per feeder.

The readings agent (streams/worker.py ``on_readings``) takes the ``meter.readings`` messages of a batch
(``READINGS_BATCH`` messages or what came in ``READINGS_BATCH_WITHIN_S``) and runs each through the same
per-message path as before — decode, the partition clock, ``MeterStage.process`` — but what a message
changes is kept here until the batch ends:

- :class:`MeterStates`: the ``meter-state`` table with the states of this worker's meters in a dict in front
  of it. A meter's state is read from the table once and written back (store and changelog) once per batch,
  however many of its messages the batch holds. The batch's events are acknowledged only after
  :meth:`MeterStates.flush`, so their offsets are never committed before the state that depends on them is
  on its changelog, and a worker killed in between re-reads the batch on the state before it.
- :class:`StatusBatch`: the status of every message, grouped by feeder (the key of ``meter-status``) in
  the order the messages were processed: one ``{"type": "statuses", "items": [...]}`` message per feeder
  per batch instead of one per reading message. The topology stage applies the items one by one, as it
  applied the single messages.

What is decided does not change: every message still meets the detectors as one batch of readings, in
the same order per meter, and every status reaches the correlator of its feeder in the same order.
"""

from __future__ import annotations

import os
import weakref
from typing import Any, Callable

from faust.streams import _current_event

#: messages per batch of the readings agent, and how long it waits for a batch to fill (seconds). What a
#: batch costs beyond its messages (a state write per meter, a status message per feeder, the watermarks)
#: is paid once per batch: on a backlog, a batch filled for 0.2 s held only ~300 messages of 16 readings, and
#: each meter's state was written about once per message; a 1 s batch writes it about half as often (the CPU
#: per message in benchmarks/README.md, Issue 11). A reading waits at most this long before it is detected:
#: nothing for readings 15 minutes apart.
READINGS_BATCH = int(os.environ.get("GRIDWATCH_READINGS_BATCH", "2000"))
READINGS_BATCH_WITHIN_S = float(os.environ.get("GRIDWATCH_READINGS_BATCH_WITHIN_S", "1.0"))
#: meter states kept in memory between batches; beyond, they are dropped after the batch's writes and read
#: again from the table. A state of every detector takes ~15 KB as Python objects (~6 KB as JSON; see
#: benchmarks/README.md), so this bounds the cache to ~150 MB.
STATE_CACHE_METERS = int(os.environ.get("GRIDWATCH_STATE_CACHE_METERS", "10000"))


def set_current_event(event: Any) -> None:
    """Make ``event`` Faust's current event in this task: a table read or write goes to the store and the
    changelog partition of the current event. Faust sets it per event while an agent iterates a stream;
    ``take_events`` fills its batch in another task, so the readings agent sets it for each event it works
    on. Only the context variable: the stream's own ``current_event`` is what ``take_events`` reads to fill
    the next batch. (faust-streaming is pinned: ``_current_event`` is its module's context variable.)"""
    _current_event.set(weakref.ref(event))


#: directory entries the readings agent keeps in memory (a few hundred bytes each as Python objects)
DIRECTORY_CACHE_METERS = int(os.environ.get("GRIDWATCH_DIRECTORY_CACHE_METERS", "100000"))


class Directory:
    """``meter_id -> directory entry`` (the ``meters`` table) with the entries read kept in a dict in front of it.

    The readings agent needs its meter's entry for every message; read from the table that is two RocksDB
    lookups and a JSON decode each time (~40 µs, as much as the detectors' work on a one-reading message).
    Every change to the table goes through :meth:`set` and :meth:`pop`, which change the dict at the same
    moment, so a reading sees an entry exactly when it would have read it from the table; a meter not in
    the directory is remembered as ``None`` until its entry arrives. After a rebalance (:meth:`forget`) the
    entries are read again: recovery writes the store directly, and another worker may have changed them.
    Past ``limit`` entries the dict starts again empty."""

    def __init__(self, table: Any, limit: int = DIRECTORY_CACHE_METERS):
        self.table, self.limit = table, limit
        self.cache: dict[str, dict | None] = {}

    def get(self, meter_id: str) -> dict | None:
        try:
            return self.cache[meter_id]
        except KeyError:
            if len(self.cache) >= self.limit:
                self.cache.clear()
            entry = self.cache[meter_id] = self.table.get(meter_id)
            return entry

    def set(self, meter_id: str, entry: dict) -> None:
        self.table[meter_id] = entry   # first the table: a failed write leaves the dict as it was
        self.cache[meter_id] = entry

    def pop(self, meter_id: str) -> None:
        self.table.pop(meter_id, None)
        self.cache.pop(meter_id, None)

    def forget(self) -> None:
        self.cache.clear()


#: statuses in one ``meter-status`` message at most
STATUSES_PER_MESSAGE = 100


class MeterStates:
    """``meter_id -> {detector name: state}`` in front of the ``meter-state`` table (see the module doc).

    ``put`` remembers the Faust event of the message that changed the state: a table write goes to the
    store and changelog partition of the current event, which :meth:`flush` sets through ``use_event``."""

    def __init__(self, table: Any, limit: int = STATE_CACHE_METERS):
        self.table, self.limit = table, limit
        self.cache: dict[str, dict | None] = {}
        self.dirty: dict[str, Any] = {}   # meter_id -> the event whose partition its state is written to

    def get(self, meter_id: str) -> dict | None:
        try:
            return self.cache[meter_id]
        except KeyError:
            st = self.cache[meter_id] = self.table.get(meter_id)
            return st

    def put(self, meter_id: str, state: dict, event: Any) -> None:
        self.cache[meter_id] = state
        self.dirty[meter_id] = event

    def flush(self, use_event: Callable[[Any], None]) -> int:
        """Write every state changed since the last flush to the table; returns how many."""
        written = 0
        for meter_id in list(self.dirty):
            use_event(self.dirty[meter_id])
            self.write(meter_id)  # dirty only until written: a failed write is written again by the retry
            written += 1
        if len(self.cache) > self.limit:
            self.cache.clear()
        return written

    def write(self, meter_id: str) -> None:
        """Write one meter's state now, under the current event (a batch of its own)."""
        if meter_id in self.dirty:
            self.table[meter_id] = self.cache[meter_id]
            del self.dirty[meter_id]

    def forget(self) -> None:
        """After a rebalance: another worker may have changed the states of partitions that come back, so
        every written state is read from the table again (what is not written yet stays: it is written)."""
        self.cache = {m: self.cache[m] for m in self.dirty}


class StatusBatch:
    """The status messages of one batch, per feeder in processing order (see the module doc)."""

    def __init__(self) -> None:
        self.by_feeder: dict[str, list[dict]] = {}

    def add(self, feeder_id: str, status: dict) -> None:
        self.by_feeder.setdefault(feeder_id, []).append(status)

    def messages(self) -> list[tuple[str, dict]]:
        """(feeder id, message value) to send: a lone status as it is, several as ``statuses`` of at most
        :data:`STATUSES_PER_MESSAGE` (a status with a voltage trace is ~3 KB: far below Kafka's 1 MB)."""
        out = []
        for fid, items in self.by_feeder.items():
            for i in range(0, len(items), STATUSES_PER_MESSAGE):
                part = items[i:i + STATUSES_PER_MESSAGE]
                out.append((fid, part[0] if len(part) == 1 else {"type": "statuses", "items": part}))
        return out

    def clear(self) -> None:
        self.by_feeder.clear()

    def __len__(self) -> int:
        return len(self.by_feeder)
