"""The topology stage: ``gridwatch.meter-status`` -> the feeder's outage detector and its transformers'
voltage correlators -> alerts.

Keyed by feeder, so one partition holds a feeder and all its transformers: membership from the directory
stage, the meters' statuses and power events from the detect stage, and every readings partition's
watermark (sent to every partition). A feeder is decided (``FeederStage.advance``, detectors/pipeline.py)
only up to the event time every partition carrying one of its meters has certainly reached.
"""

from __future__ import annotations

import json
from functools import partial

from detectors.pipeline import FeederStage
from gridwatch.contract import MeterEvent
from streams import alerts
from streams.app import Context


def transformer_watermark(parts: set[int], view: dict[str, int]) -> int | None:
    """Event time up to which every partition carrying one of the transformer's meters has progressed.

    A partition never heard from holds decisions back (idle partitions are advanced by their owner, see
    ``IDLE_PARTITION_WALL_S``), so a lagging partition can never be overtaken, however large the skew.
    """
    known = [view.get(str(p)) for p in parts]
    if not known or any(w is None for w in known):
        return None
    return min(known)


def install(ctx: Context) -> None:
    """The ``topology`` agent."""
    app = ctx.app
    attempts, guard = ctx.attempts, ctx.guard
    publish_alerts = partial(alerts.publish_alerts, ctx)
    status_t = ctx.topics.status
    feeders_tb, transformers_tb, watermarks_tb = ctx.tables.feeders, ctx.tables.transformers, ctx.tables.watermarks
    feeder_stage = FeederStage(ctx.detectors)
    by_partition: dict[int, set[str]] = {}  # meter-status partition -> feeder ids, built lazily

    def transformers_of(feeder: dict) -> dict[str, dict]:
        tids = sorted({m["transformer_id"] for m in feeder["members"].values()})
        return {t: transformers_tb.get(t) for t in tids}

    async def decide(feeder: dict, view: dict) -> dict:
        """Advance one feeder to its watermark: outages first, then voltage with outage meters muted."""
        wm = transformer_watermark(feeder_stage.partitions(feeder), view)
        if wm is None or (feeder.get("decided") is not None and wm <= feeder["decided"]):
            return feeder
        new, changed, records = feeder_stage.advance(feeder, transformers_of(feeder), wm)
        for tid, tst in changed.items():
            transformers_tb[tid] = tst
        await publish_alerts(records)
        return {**new, "decided": wm}

    async def apply_statuses(feeder: dict, items: list[dict], vkey: str) -> dict:
        """The statuses of one batch, one by one as if each had come alone, with each transformer's state read
        once and written once: the feeder is decided after a status only when its watermark moved past the
        feeder's last decision (as ``decide`` after each single message would)."""
        states: dict[str, dict] = {}
        view = None
        for body in items:
            tid = body["transformer_id"]
            tst = states.get(tid) or transformers_tb.get(tid) or feeder_stage.correlator.new_state(tid)
            states[tid] = feeder_stage.status(tst, body)
            if view is None:
                view = watermarks_tb.get(vkey) or {}
                wm = transformer_watermark(feeder_stage.partitions(feeder), view)
                if wm is not None and (feeder.get("decided") is None or wm > feeder["decided"]):
                    for t, st in states.items():
                        transformers_tb[t] = st
                    states.clear()
                    feeder = await decide(feeder, view)
        for t, st in states.items():
            transformers_tb[t] = st
        return feeder

    @app.agent(status_t, name="topology")
    async def on_status(stream):
        async for event in attempts(stream, "topology"):
            msg = event.message
            async with guard(msg, "topology"):
                body = json.loads(msg.value)
                dest = msg.partition
                vkey = f"p{dest}"
                if body["type"] == "watermark":
                    view = dict(watermarks_tb.get(vkey) or {})
                    src = str(body["partition"])
                    if body["ts"] > view.get(src, -(10**12)):
                        view[src] = body["ts"]
                        watermarks_tb[vkey] = view
                    # decided even when the view already has it: a worker killed after storing the view but
                    # before every feeder's decision reached its table reads this message again, and no
                    # later watermark may ever come (the end of the feed); a feeder already decided up to
                    # it returns at once (decide)
                    if dest not in by_partition:
                        by_partition[dest] = {k for k, v in feeders_tb.items() if v and v.get("p") == dest}
                    for fid in sorted(by_partition[dest]):
                        st = feeders_tb.get(fid)
                        new = await decide(st, view)
                        if new is not st:
                            feeders_tb[fid] = new
                    continue
                fid = msg.key.decode("utf-8")
                stored = feeders_tb.get(fid)
                feeder = stored or {**feeder_stage.new_feeder(fid), "p": dest}
                if body["type"] == "member":
                    tid = body["transformer_id"]
                    feeder, transformers_tb[tid] = feeder_stage.member(feeder, transformers_tb.get(tid), body)
                elif body["type"] == "status":
                    tid = body["transformer_id"]
                    tst = transformers_tb.get(tid) or feeder_stage.correlator.new_state(tid)
                    transformers_tb[tid] = feeder_stage.status(tst, body)
                elif body["type"] == "statuses":  # a batch's statuses of this feeder (streams/detect.py)
                    feeder = await apply_statuses(feeder, body["items"], vkey)
                elif body["type"] == "event":
                    ev = MeterEvent(body["meter_id"], body["ts"], body["event"])
                    feeder = feeder_stage.events(feeder, [ev], transformers_of(feeder))
                feeder = await decide(feeder, watermarks_tb.get(vkey) or {})
                if feeder is not stored:  # a reading's status changes only its transformer: no feeder write
                    feeders_tb[fid] = feeder
                by_partition.setdefault(dest, set()).add(fid)


    @app.on_partitions_revoked.connect
    async def forget_partitions(app, revoked, **kwargs):
        """After a rebalance the in-memory views are rebuilt from the tables for what this worker owns."""
        by_partition.clear()
