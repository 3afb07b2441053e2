"""The detect stage: ``meter.readings`` and ``meter.events`` -> the meter detectors -> ``gridwatch.meter-status``.

Its agents (``readings``, ``meter-events``; :func:`install`) validate each message, check it against its
partition's event-time clock (detectors/watermarks.py), hold what comes for a meter not yet in the
directory, and broadcast each partition's watermark to the topology stage. Per meter it runs
``MeterStage.process`` (detectors/pipeline.py, the code the backtest runs too).

The readings agent (``on_readings``) takes the ``meter.readings`` messages of a batch
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

import logging
import os
import time
import weakref
from typing import Any, Callable

from faust.streams import _current_event

from detectors.pipeline import MeterStage
from detectors.watermarks import PartitionClock, SettledNewest
from gridwatch.contract import ContractError, MeterEvent, Reading, decode_event, decode_readings, format_ts
from streams import deadletters
from streams.app import Context, _dumps, partition_for

log = logging.getLogger("gridwatch.worker")

#: messages per batch of the readings agent, and how long it waits for a batch to fill (seconds). What a
#: batch costs beyond its messages (a state write per meter, a status message per feeder, the watermarks)
#: is paid once per batch. On a backlog the wait, not the count, sets a batch's size: the messages reach the
#: agent no faster than the worker's other work leaves it (~1,000 – 2,000 a second at 16 readings each). A
#: 0.2 s batch wrote each meter's state about once per message, a 1 s batch half as often, a 3 s batch a
#: third as often again: 28 % less CPU per message at 16 readings, 8 % at one (benchmarks/README.md, Issue
#: 11). A reading waits at most this long before it is detected: nothing for readings 15 minutes apart.
READINGS_BATCH = int(os.environ.get("GRIDWATCH_READINGS_BATCH", "8000"))
READINGS_BATCH_WITHIN_S = float(os.environ.get("GRIDWATCH_READINGS_BATCH_WITHIN_S", "3.0"))
#: meter states kept in memory between batches; beyond, they are dropped after the batch's writes and read
#: again from the table. A state of every detector takes ~5 KB as Python objects (~1.7 KB as JSON; see
#: benchmarks/README.md), so this bounds the cache to ~50 MB.
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


#: How far behind the start of the newest batch of its partition a reading may arrive and still be decided
#: on (see detectors/watermarks.py for how a partition's watermark is made).
ALLOWED_LATENESS_S = 900
#: A source partition with no new readings for this long (wall clock) is idle: its watermark moves up to
#: the newest reading this worker had seen this long ago, so a partition whose meters are all dark holds
#: nothing back, while a partition whose readings merely arrive later than the others' (a burst published
#: partition after partition, a worker re-reading after a restart) is never overtaken by less than this.
#: Only liveness uses the wall clock; what is decided is still a function of event time alone.
IDLE_PARTITION_WALL_S = 20.0
#: Broadcast a partition's progress when it moved this much event time, or after this much wall time.
WATERMARK_STEP_S = 900
WATERMARK_EVERY_S = 1.0
#: Readings of a meter not yet in the directory are held back, up to this many per meter (a week of
#: 15-minute readings); a message beyond that goes to the dead-letter topic (code ``unknown_meter``).
PARKED_MAX = 672
#: A meter new to the directory holds its partition's watermark below its held readings for this long (wall
#: time: its customer record is usually on its way), then by at most ALLOWED_LATENESS_S (detectors/watermarks.py).
HELD_GRACE_S = float(os.environ.get("GRIDWATCH_HELD_GRACE_S", "30"))
#: ... and up to this many per partition, all meters together (a message beyond: dead-lettered the same way)
PARKED_PARTITION_MAX = int(os.environ.get("GRIDWATCH_HELD_MAX", "20000"))
#: Held readings (and events) whose meter is still not in the directory when the partition's watermark is
#: this far past them (event time) are given up: dead-lettered as one replayable message, ``unknown_meter``.
PARKED_MAX_AGE_S = int(os.environ.get("GRIDWATCH_HELD_MAX_AGE_S", str(7 * 86400)))
#: A reading or event dated more than this after the wall clock is refused (``ts_in_future``): meter clocks
#: drift by minutes. Event time far *behind* the wall clock (a replay of old history) is never refused.
MAX_FUTURE_S = int(os.environ.get("GRIDWATCH_MAX_FUTURE_S", "900"))


def install(ctx: Context):
    """The readings and meter-events agents, with the partitions' event-time clocks and what they hold.

    Returns ``meter_entry(partition, meter_id, entry, event)``, which the meter-directory agent
    (streams/directory.py) awaits for every directory entry: what was held for a meter is decided on once it
    is in the directory."""
    app, n, stats = ctx.app, ctx.partitions, ctx.stats
    attempts, guard, retries, dead_letter_raw = ctx.attempts, ctx.guard, ctx.retries, ctx.dead_letter_raw
    readings_t, events_t, status_t = ctx.topics.readings, ctx.topics.events, ctx.topics.status
    reports_t, daily_t = ctx.topics.reports, ctx.topics.daily
    meters_tb, parked_tb, parked_events_tb = ctx.tables.meters, ctx.tables.parked, ctx.tables.parked_events
    meter_state_tb, watermarks_tb = ctx.tables.meter_state, ctx.tables.watermarks
    meter_stage = MeterStage(ctx.detectors)
    clocks: dict[int, PartitionClock] = {}  # readings partition -> its event-time progress (in memory)
    wm_sent: dict[int, tuple[int, float]] = {}  # readings partition -> (last broadcast watermark, wall time)
    last_active: dict[int, float] = {}     # readings partition -> wall time of its last batch
    read_upto: dict[int, int] = {}         # readings partition -> offset after the last message processed
    held_checked: dict[int, int] = {}      # readings partition -> watermark at which to look for expired held
    newest_seen = SettledNewest(IDLE_PARTITION_WALL_S)  # how far a quiet partition may move

    def clock(p: int) -> PartitionClock:
        if p not in clocks:
            c = clocks[p] = PartitionClock(lateness_s=ALLOWED_LATENESS_S, hold_grace_s=HELD_GRACE_S)
            # readings and events held for meters not in the directory outlive a restart in their tables:
            # they hold the new clock's watermark back as they held the old one's (their grace starts again)
            for tb in (parked_tb, parked_events_tb):
                for meter_id, held in list(tb.items()):
                    if held and partition_for(meter_id, n) == p:
                        c.park(meter_id, min(r["ts"] for r in held), len(held))
            c.restore(watermarks_tb.get(f"c{p}"))
        return clocks[p]

    def save_clock(p: int) -> None:
        """Keep what the partition's clock needs after a restart (PartitionClock.saved), when it changed."""
        c = clock(p)
        saved = c.saved()
        if saved is not None:
            watermarks_tb[f"c{p}"] = saved
            c.mark_saved(saved)

    def not_in_future(partition: int, meter_id: str, readings: list) -> None:
        """Refuse (``ts_in_future``) a batch dated after the wall clock, or ahead of the rest of its partition
        (detectors/watermarks.py): processed, it would move the partition's watermark past what the other
        meters have yet to send, and their silence would look like an outage."""
        first, last = min(r.ts for r in readings), max(r.ts for r in readings)
        if last > time.time() + MAX_FUTURE_S:
            stats["ts_in_future"] += 1
            raise ContractError(f"ts {format_ts(last)} is ahead of the wall clock (by more than {MAX_FUTURE_S} s)",
                                "ts_in_future")
        c = clock(partition)
        ref = c.ahead(meter_id, first, last, len(readings), min(r.interval_s for r in readings))
        if ref is not None:
            c.claim(meter_id, last)
            save_clock(partition)
            stats["ts_in_future"] += 1
            raise ContractError(f"readings {format_ts(first)} .. {format_ts(last)} of {meter_id!r} are ahead of the "
                                f"rest of partition {partition}, which has got to {format_ts(ref)}", "ts_in_future")

    def count_held() -> None:
        stats["held_readings"] = sum(c.held for c in clocks.values())
        stats["held_meters"] = sum(len(c.parked_count) for c in clocks.values())

    async def give_up_held(partition: int) -> None:
        """Readings held for meters still not in the directory long after the partition moved on: one
        replayable dead letter per meter and topic, code ``unknown_meter``."""
        c = clock(partition)
        for meter_id in c.expired(PARKED_MAX_AGE_S):
            held, held_events = parked_tb.pop(meter_id, None), parked_events_tb.pop(meter_id, None)
            c.unpark(meter_id)
            why = (f"meter {meter_id!r} is still not in the customer directory {PARKED_MAX_AGE_S} s of event "
                   f"time after its oldest held reading")
            if held:
                await dead_letter_raw(readings_t.get_topic_name(), partition, None, meter_id.encode(), _dumps(
                    [{**r, "ts": format_ts(r["ts"])} for r in held]), why, deadletters.REFUSED, "readings", "unknown_meter")
            for ev in held_events or ():
                await dead_letter_raw(events_t.get_topic_name(), partition, None, meter_id.encode(), _dumps(
                    {**ev, "ts": format_ts(ev["ts"])}), why, deadletters.REFUSED, "meter-events", "unknown_meter")
        count_held()

    async def meter_entry(partition: int, meter_id: str, entry: dict | None, event) -> None:
        """A meter's directory entry arrived (``None``: it left the directory). Written through ``directory``,
        so a reading sees it exactly when the table has it. Once the meter is in the directory what was held
        for it is decided on, on this partition (the directory's: the same number as the readings', both keyed
        by meter_id)."""
        if entry is None:
            directory.pop(meter_id)
            return
        directory.set(meter_id, entry)
        held = parked_tb.get(meter_id)
        if held:
            parked_tb.pop(meter_id, None)
            # same partition number as the readings: both topics are keyed by meter_id
            clock(partition).unpark(meter_id)
            log.info("meter %s is in the directory now: deciding on its %d held readings", meter_id, len(held))
            statuses = StatusBatch()
            await detect(partition, [Reading(**r) for r in held], event, statuses)
            await send_statuses(statuses)
            meter_states.write(meter_id)  # (same partition as this event's: both keyed by meter_id)
            save_clock(partition)
        held_events = parked_events_tb.get(meter_id)
        if held_events:
            parked_events_tb.pop(meter_id, None)
            clock(partition).unpark(meter_id)
            for ev in held_events:
                await forward_event(meters_tb[meter_id], MeterEvent(**ev))
        if held or held_events:
            count_held()
            await broadcast_watermark(partition, force=True)

    # -- readings -> per-meter voltage state ---------------------------------------------------------
    meter_states = MeterStates(meter_state_tb)
    directory = Directory(meters_tb)  # the readings agent's view of the meters table
    pending_status = StatusBatch()

    async def detect(partition: int, readings: list, event, statuses: StatusBatch) -> None:
        """One message's readings through the meter stage; its state and its status (in ``statuses``) wait
        for the end of the batch (``flush_detect``, streams/detect.py)."""
        meter_id = readings[0].meter_id
        entry = directory.get(meter_id)
        if entry is None:
            held = list(parked_tb.get(meter_id) or [])
            c = clock(partition)
            # Not silently dropped: the caller dead-letters the message, which can be replayed once the
            # customer record exists.
            if len(held) + len(readings) > PARKED_MAX:
                raise ContractError(f"meter {meter_id!r} is not in the customer directory and already has "
                                    f"{len(held)} readings held for it (limit {PARKED_MAX})", "unknown_meter")
            if c.held + len(readings) > PARKED_PARTITION_MAX:
                raise ContractError(f"meter {meter_id!r} is not in the customer directory and partition {partition} "
                                    f"already holds {c.held} readings for such meters (limit {PARKED_PARTITION_MAX})",
                                    "unknown_meter")
            if not held:
                log.warning("meter %s is not in the customer directory: holding its readings until it is "
                            "(partition %d holds %d)", meter_id, partition, c.held + len(readings))
            held.extend({f: getattr(r, f) for f in r.__slots__} for r in readings)
            parked_tb[meter_id] = held
            stats["parked"] += len(readings)
            c.park(meter_id, min(r["ts"] for r in held), len(readings))
            count_held()
            return
        before = meter_states.get(meter_id) or {}
        after, findings, days = meter_stage.process(before, readings, entry)
        first, newest = min(r.ts for r in readings), max(r.ts for r in readings)
        last = before.get("_last_ts")
        after["_last_ts"] = newest if last is None else max(last, newest)
        reports = [f for f in findings if f["status"] == "report"]
        findings = [f for f in findings if f["status"] != "report"]
        # what goes out first, the state last: a retry (or a re-read) of a message that got half way sends
        # again rather than finding its readings already in the state (dropped as duplicates)
        for rep in reports:
            stats["reports"] += 1
            await reports_t.send(key=meter_id.encode(), value=_dumps({**rep, "customer_id": entry["customer_id"]}))
        if days:
            await daily_t.send(key=entry["customer_id"].encode(), value=_dumps({"meter_id": meter_id, "days": days}))
        meter_states.put(meter_id, after, event)
        clock(partition).batch(meter_id, first, newest)  # saved by the caller (save_clock), once per batch
        stats["readings"] += len(readings)
        if "voltage" in after:
            stats["duplicates"] += after["voltage"]["duplicates"] - before.get("voltage", {}).get("duplicates", 0)
        if last is None or newest > last or findings:
            statuses.add(entry["feeder_id"], meter_stage.status_message(entry, readings, findings, partition=partition,
                                                                        ts=after["_last_ts"]))

    async def send_statuses(statuses: StatusBatch) -> None:
        for fid, value in statuses.messages():
            await status_t.send(key=fid.encode(), value=_dumps(value))
        statuses.clear()

    async def flush_detect(use_event) -> None:
        """The end of a batch: its status messages (one per feeder), then the meter states it changed."""
        await send_statuses(pending_status)
        stats["state_writes"] += meter_states.flush(use_event)

    async def broadcast_watermark(partition: int, force: bool = False) -> None:
        """Tell every correlator partition how far this readings partition has certainly got."""
        wm = clock(partition).watermark()
        sent, when = wm_sent.get(partition, (-(10**12), 0.0))
        if wm is None or wm <= sent:
            return
        now = time.monotonic()
        if not force and wm - sent < WATERMARK_STEP_S and now - when < WATERMARK_EVERY_S:
            return
        wm_sent[partition] = (wm, now)
        body = _dumps({"type": "watermark", "partition": partition, "ts": wm})
        for dest in range(n):
            await status_t.send(key=b"~watermark", value=body, partition=dest)

    @app.timer(interval=5.0)
    async def quiet_partitions():
        """Readings partitions of this worker with no batch for a while stop holding decisions back.

        Only when nothing is waiting on them: a partition the consumer has not got round to (a backlog) is
        behind, not quiet — moving it up would make its meters look silent (an outage that is not one).
        """
        tps = [tp for tp in app.assignor.assigned_actives() if tp.topic == readings_t.get_topic_name()]
        newest_seen.observe(max((c.newest for c in clocks.values() if c.newest is not None), default=None))
        # only up to what was newest IDLE_PARTITION_WALL_S ago: a partition whose readings are merely not
        # there yet (a burst still being published, a worker just restarted) must not be overtaken
        settled = newest_seen.settled()
        if settled is None or not tps:
            return
        quiet = time.monotonic() - IDLE_PARTITION_WALL_S
        idle = [tp for tp in tps if last_active.get(tp.partition, 0) <= quiet]
        if not idle:
            return
        try:
            ends = await app.consumer.highwaters(*idle)
        except Exception as exc:  # noqa: BLE001 - try again at the next tick
            log.warning("quiet partitions: end offsets unavailable (%s)", exc)
            return
        for tp in sorted(idle, key=lambda tp: tp.partition):
            p = tp.partition
            done = read_upto.get(p)
            if done is None:
                done = await app.consumer.position(tp)
            if done is None or done < (ends.get(tp) or 0):
                continue
            c = clock(p)
            if c.parked:
                log.warning("partition %d: %d meter(s) still not in the directory; deciding without them",
                            p, len(c.parked))
            c.quiet(settled, drop_parked=True)
            await broadcast_watermark(p, force=True)

    @app.agent(readings_t, name="readings")
    async def on_readings(stream):
        """Micro-batches (streams/detect.py): each message is decoded and detected on its own, under its own
        guard (an invalid one is dead-lettered, an internal error retried in place); the batch's status
        messages, meter states and watermarks go out once at its end, before its events are acknowledged."""
        use_event = set_current_event  # table writes go to the partition of the current event
        stage = retries("readings")
        async for events in stream.take_events(READINGS_BATCH, READINGS_BATCH_WITHIN_S):
            stats["batches"] += 1
            touched: dict[int, object] = {}
            for event in events:
                msg = event.message
                use_event(event)
                touched[msg.partition] = event

                async def one(msg=msg, event=event):
                    readings = decode_readings(msg.key, msg.value)
                    not_in_future(msg.partition, readings[0].meter_id, readings)
                    await detect(msg.partition, readings, event, pending_status)

                await stage.run(msg, one)
                read_upto[msg.partition] = msg.offset + 1
            now = time.monotonic()
            for p in touched:
                last_active[p] = now

            async def end_of_batch():
                await flush_detect(use_event)
                for p, event in touched.items():
                    use_event(event)
                    save_clock(p)
                    await broadcast_watermark(p)
                    c = clock(p)
                    if c.parked and (c.watermark() or 0) >= held_checked.get(p, -(10**12)):
                        held_checked[p] = (c.watermark() or 0) + WATERMARK_STEP_S
                        await give_up_held(p)

            await stage.run_until_done(events[-1].message, end_of_batch)

    async def forward_event(entry: dict, ev) -> None:
        await status_t.send(key=entry["feeder_id"].encode(), value=_dumps(
            {"type": "event", "meter_id": ev.meter_id, "ts": ev.ts, "event": ev.type}), force=True)

    @app.agent(events_t, name="meter-events")
    async def on_events(stream):
        async for event in attempts(stream, "meter-events"):
            msg = event.message
            async with guard(msg, "meter-events"):
                ev = decode_event(msg.key, msg.value)
                if ev.ts > time.time() + MAX_FUTURE_S:  # (events move no watermark: only the wall clock bounds them)
                    stats["ts_in_future"] += 1
                    raise ContractError(f"ts {format_ts(ev.ts)} is ahead of the wall clock (by more than "
                                        f"{MAX_FUTURE_S} s)", "ts_in_future")
                stats["events"] += 1
                if ev.type not in ("power_fail", "power_restore"):
                    continue  # kept on the topic; no detector uses other types yet
                # the meter vouches for this time: lets the others' readings after a dark spell in (watermarks.py)
                clock(msg.partition).claim(ev.meter_id, ev.ts)
                save_clock(msg.partition)
                entry = meters_tb.get(ev.meter_id)
                if entry is not None:
                    await forward_event(entry, ev)
                    continue
                # the directory entry may still be on its way (as for readings): hold the event, and hold
                # this partition's watermark below it, until the meter is known
                held = list(parked_events_tb.get(ev.meter_id) or [])
                c = clock(msg.partition)
                if len(held) >= PARKED_MAX or c.held >= PARKED_PARTITION_MAX:
                    raise ContractError(f"event of meter {ev.meter_id!r}, which is not in the customer directory "
                                        f"and already has {len(held)} events held for it (partition "
                                        f"{msg.partition}: {c.held})", "unknown_meter")
                parked_events_tb[ev.meter_id] = held + [{"meter_id": ev.meter_id, "ts": ev.ts, "type": ev.type}]
                c.park(ev.meter_id, ev.ts)
                count_held()
                stats["events_parked"] += 1

    @app.on_partitions_revoked.connect
    async def forget_partitions(app, revoked, **kwargs):
        """After a rebalance the in-memory views are rebuilt from the tables for what this worker owns."""
        meter_states.forget()
        directory.forget()
        for tp in revoked:
            if tp.topic == readings_t.get_topic_name():
                newest_seen.clear()  # it may come from a partition no longer ours
                for d in (clocks, wm_sent, last_active, read_upto, held_checked):
                    d.pop(tp.partition, None)

    return meter_entry
