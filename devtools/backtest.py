"""``gridwatch backtest``: the installed detectors over labelled data, without Kafka, scored.

It runs the detectors through :class:`detectors.pipeline.Pipeline` — the worker's stages, without Kafka —
over a labelled simulator scenario (:mod:`devtools.simulator`) or a recorded CSV (:mod:`devtools.replay`)
with a labels file, and scores the alerts against the truth (:mod:`detectors.backtest`). It lives with the
dev tools because it drives the simulator and the replay parser, which nothing in the product imports.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import textwrap
import time
from typing import Any

from tqdm import tqdm

from detectors import backtest as bt
from detectors.cli import emit, load_detectors
from detectors.registry import DetectorError
from devtools.replay import _customer_zone, customer_record, parse_file, reading_messages
from devtools.simulator import DEFAULTS, SCENARIOS, Simulator, config_from_args
from gridwatch import config
from gridwatch.contract import format_ts
from gridwatch.timefmt import parse_duration

__all__ = ["register", "run_backtest"]


# ------------------------------------------------------------------------------------------ backtest

def _seeds(args: argparse.Namespace) -> list[int | None]:
    if args.seeds:
        try:
            return [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise ValueError(f"--seeds {args.seeds!r}: expected comma-separated integers, e.g. 1,2,3") from None
    return [args.seed]


def _tolerance(text: str) -> int:
    return int(text) if text.strip().isdigit() else parse_duration(text)


def _read_labels(path: str) -> list[dict]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{n}: not JSON: {exc.msg}") from None
    return out


def _simulated_runs(args: argparse.Namespace):
    """Yield (label, total messages, timed records, truth, description) per seed."""
    for seed in _seeds(args):
        ns = argparse.Namespace(**vars(args))
        ns.seed = seed
        ns.interval = None
        sim = Simulator(config_from_args(ns))
        desc = {"scenario": args.scenario, "seed": sim.seed, "start": sim.cfg.start, "hours": sim.cfg.hours,
                "feeders": sim.cfg.feeders, "meters": sim.M, "faults": [f.spec for f in sim.faults]}
        yield f"seed {sim.seed}", sim.counts()["messages"], sim.timed_records(), sim.truth(), desc


def _csv_runs(args: argparse.Namespace):
    res = parse_file(args.csv, args.format, meter_id=args.meter_id, tz=args.tz, limit=args.limit,
                     ts_label=args.ts_label, interval=args.interval)
    if not res.readings:
        raise ValueError(f"{args.csv}: no reading: {res.summary()}")
    batch = args.batch or max(1, 3600 // res.interval_s)
    msgs = list(reading_messages(res.readings, batch))
    zone = _customer_zone(res.format, res.tz)
    meters = res.meter_ids
    custs = [(msgs[0][0], config.CUSTOMERS, cid, customer_record(mid, cid, zone))
             for mid, cid in ((m, "C-REPLAY-1" if len(meters) == 1 else f"C-{m}") for m in meters)]
    records = custs + msgs
    truth = _read_labels(args.labels)
    desc = {"csv": args.csv, "labels": args.labels, "read": res.summary(), "meters": len(meters)}
    yield "csv", len(records), iter(records), truth, desc


def run_backtest(args: argparse.Namespace) -> int:
    err = sys.stderr
    if args.labels and not args.csv:
        print("gridwatch backtest: --labels goes with --csv", file=err)
        return 2
    if args.csv and not args.labels:
        print("gridwatch backtest: --csv needs --labels FILE (the truth, JSON lines)", file=err)
        return 2
    if args.csv and (args.scenario or args.seeds or args.seed is not None):
        print("gridwatch backtest: --csv and --scenario/--seed(s) are two different sources; choose one", file=err)
        return 2
    if not args.csv and not args.scenario:
        args.scenario = "eval"
    try:
        classes = load_detectors()
        settings = bt.parse_settings(args.set, classes)
        names = [n.strip() for n in (args.detectors or "").split(",") if n.strip()]
        detectors = bt.build_detectors(names, settings, classes)
        tolerance = _tolerance(args.tolerance)
        runs = _csv_runs(args) if args.csv else _simulated_runs(args)
        kinds = {d.name: tuple(d.kinds) for d in detectors}

        parts, details, all_alerts = [], [], []
        for label, total, records, truth, desc in runs:
            t0 = time.monotonic()
            bar = tqdm(total=total, desc=f"backtest {label}", unit="msg", file=err,
                       disable=args.no_progress, smoothing=0.1)
            try:
                res = bt.evaluate(detectors, records, truth, tolerance_s=tolerance, progress=bar)
            finally:
                bar.close()
            parts.append(res.scores)
            all_alerts += res.pipeline.alerts
            details.append({**desc, "seconds": round(time.monotonic() - t0, 1),
                            "alert_records": len(res.pipeline.alerts), "reports": len(res.pipeline.reports),
                            "truth": [_truth_row(t) for t in res.matching.truths],
                            "alerts": [_alert_row(a) for a in res.matching.alerts]})
    except (DetectorError, ValueError, OSError, KeyError) as exc:
        print(f"gridwatch backtest: error: {exc}", file=err)
        return 2
    total = bt.merge_scores(parts)
    if args.alerts:
        with open(args.alerts, "w", encoding="utf-8") as fh:
            for rec in all_alerts:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    if args.json:
        text = json.dumps({"tolerance_s": tolerance, "detectors": {d.name: _effective(d) for d in detectors},
                           "scores": total, "runs": [{**d, "scores": p} for d, p in zip(details, parts)]},
                          indent=2, ensure_ascii=False, default=str)
    else:
        text = "\n".join([_header(details, detectors, settings, tolerance), bt.format_report(total, kinds), "",
                          bt.format_delays(total)] + ([_details(details)] if args.details else []))
    emit(text)
    return 0


def _effective(det) -> dict[str, Any]:
    return {f.name: getattr(det.config, f.name) for f in dataclasses.fields(det.config)}


def _truth_row(t) -> dict[str, Any]:
    return {"fault": t.truth.fault, "kind": t.truth.kind, "scope": {"level": t.truth.level, "id": t.truth.scope_id},
            "start": format_ts(t.truth.start), "end": format_ts(t.truth.end), "found": t.found,
            "scope_ok": t.scope_ok, "delay_s": t.delay_s, "scope_delay_s": t.scope_delay_s,
            "alert_ids": t.alert_ids, **({"last_gasps": len(t.truth.record["power_fail_meter_ids"]),
                                         "meters": len(t.truth.meter_ids)}
                                        if "power_fail_meter_ids" in t.truth.record else {})}


def _alert_row(a) -> dict[str, Any]:
    s = a.alert
    return {"alert_id": s.alert_id, "kind": s.kind, "scope": {"level": s.level, "id": s.scope_id},
            "started_at": format_ts(s.started_at), "detected_at": format_ts(s.detected_at),
            "resolved_at": format_ts(s.resolved_at), "status": a.status, "truths": a.truths,
            "during_other_fault": a.during_other_fault}


def _header(details: list[dict], detectors: list, settings: dict, tolerance: int) -> str:
    d0 = details[0]
    if "csv" in d0:
        src = f"{d0['csv']} ({d0['read']}), labels {d0['labels']}"
    else:
        seeds = ",".join(str(d["seed"]) for d in details)
        src = (f"scenario {d0['scenario']}, seed{'s' if len(details) > 1 else ''} {seeds}: {d0['feeders']} feeders, "
               f"{d0['meters']} meters, {d0['hours']:g} h from {d0['start']}, "
               f"{sum(len(d['truth']) for d in details)} labelled faults")
    tuned = "; ".join(f"{n}.{k}={v}" for n, kv in settings.items() for k, v in kv.items())
    secs = sum(d["seconds"] for d in details)
    return (f"backtest: {src}\n"
            f"detectors: {', '.join(d.name for d in detectors)}" + (f" (set {tuned})" if tuned else "") +
            f"; tolerance {bt.format_duration(tolerance)}; {sum(d['alert_records'] for d in details)} alert records, "
            f"{sum(d['reports'] for d in details)} reports in {secs:.1f} s\n")


def _details(details: list[dict]) -> str:
    lines = []
    for d in details:
        lines += ["", f"{('seed ' + str(d['seed'])) if 'seed' in d else d.get('csv', '')}: faults"]
        for t in d["truth"]:
            at_scope = (f", at its scope after {bt.format_duration(t['scope_delay_s'])}"
                        if t["scope_ok"] and t["scope_delay_s"] != t["delay_s"] else "")
            state = ("found" + ("" if t["scope_ok"] else ", scope wrong") + f", after {bt.format_duration(t['delay_s'])}"
                     + at_scope if t["found"] else "MISSED")
            gasps = f" ({t['last_gasps']} of {t['meters']} meters sent a last gasp)" if "last_gasps" in t else ""
            lines.append(f"  {t['start']} .. {t['end']}  {t['fault']} {t['scope']['id']}{gasps}: {state}")
        false = [a for a in d["alerts"] if a["status"] == "false"]
        if false:
            lines.append("  false alerts:")
            lines += [f"    {a['alert_id']}" + ("  (during a fault of another kind)" if a["during_other_fault"] else "")
                      for a in false]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- CLI

def register(subparsers) -> None:
    b = subparsers.add_parser(
        "backtest", help="run the detectors over labelled data without Kafka and score them",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Run the detectors through the worker's own stages (detectors.pipeline, no Kafka) over a labelled "
            "simulator scenario or a recorded CSV with a labels file, and score the alerts against the truth, "
            "per detector and finding kind: faults found / missed, false alerts, precision, recall, detection "
            "delay in event time (detected_at - labelled start), and scope (one transformer alert for a "
            "transformer fault, not one per meter).", 79),
        epilog="examples:\n"
               "  gridwatch backtest --scenario eval --seeds 1,2,3\n"
               "  gridwatch backtest --scenario eval --detectors voltage --set voltage.min_duration_s=2700\n"
               "  gridwatch backtest --csv household.csv --labels labels.jsonl --json\n\n"
               "A labels file holds one JSON object per line, as 'gridwatch simulate --truth' writes them:\n"
               '  {"fault": "transformer_undervoltage", "scope": {"level": "transformer", "id": "T0002"},\n'
               '   "start": "2026-07-01T10:00:00Z", "end": "2026-07-01T12:00:00Z", "meter_ids": [...],\n'
               '   "customer_ids": [...], "expected_kind": "undervoltage"}')
    src = b.add_argument_group("simulated data (default: --scenario eval)")
    src.add_argument("--scenario", choices=sorted(SCENARIOS), default=None,
                     help="labelled simulator scenario: " + "; ".join(f"{k}: {v[2]}" for k, v in SCENARIOS.items()))
    seeds = src.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=None, help=f"random seed (default {DEFAULTS['seed']})")
    seeds.add_argument("--seeds", default=None, metavar="N,N,...",
                       help="several seeds, one run each; the scores add up over the runs")
    src.add_argument("--feeders", type=int, default=None, help="number of feeders (default: the scenario's)")
    src.add_argument("--transformers-per-feeder", type=int, default=None, help="transformers on each feeder")
    src.add_argument("--meters-per-transformer", type=int, default=None, help="meters on each transformer")
    src.add_argument("--regions", default=None, help="regions cycled over the feeders: CN, GB, FR, US, EU")
    src.add_argument("--start", default=None, help="start of the run, RFC 3339")
    src.add_argument("--hours", type=float, default=None, help="simulated duration in hours")
    src.add_argument("--fault", action="append", default=[], metavar="KIND:TARGET@START/DURATION",
                     help="one more labelled fault (repeatable), as for 'gridwatch simulate'")
    src.add_argument("--batch", type=int, default=None, help="readings per message (default 4 simulated, "
                                                              "one hour's worth from a CSV)")

    csv = b.add_argument_group("recorded data")
    csv.add_argument("--csv", metavar="FILE", default=None,
                     help="a CSV read as 'gridwatch replay' reads it (UCI, London LCL or generic)")
    csv.add_argument("--labels", metavar="FILE", default=None,
                     help="the truth for --csv: JSON lines as 'gridwatch simulate --truth' writes them")
    csv.add_argument("--format", choices=("uci", "lcl", "generic"), default=None, help="CSV format (default: detect)")
    csv.add_argument("--tz", default=None, help="time zone of naive timestamps (as for replay)")
    csv.add_argument("--ts-label", choices=("start", "end"), default=None, help="rows label the interval start or end")
    csv.add_argument("--meter-id", default="M-REPLAY-1", help="meter_id when the file has none")
    csv.add_argument("--interval", type=int, default=None, help="generic: interval_s when the file has none")
    csv.add_argument("--limit", type=int, default=None, metavar="N", help="read only the first N rows")

    how = b.add_argument_group("detectors and scoring")
    how.add_argument("--detectors", default=None, metavar="NAME,NAME",
                     help="the detectors to run (default all; see 'gridwatch detectors list')")
    how.add_argument("--set", action="append", default=[], metavar="NAME.PARAM=VALUE",
                     help="tune a detector parameter (repeatable), e.g. voltage.min_duration_s=2700")
    how.add_argument("--tolerance", default="15m", metavar="DURATION",
                     help="how far outside a labelled window an alert may lie and still match it (default 15m)")
    how.add_argument("--json", action="store_true", help="machine-readable output: scores, every fault and alert")
    how.add_argument("--details", action="store_true", help="also list every fault (found, missed) and false alert")
    how.add_argument("--alerts", metavar="FILE", default=None, help="write the alert records as JSON lines to FILE")
    how.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=run_backtest)
