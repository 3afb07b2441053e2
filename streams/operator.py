"""Operator commands: silences and alert actions, published on Kafka so every worker honours them.

``gridwatch silence add|list|expire`` writes and reads the compacted silences topic (keyed by silence
id); ``gridwatch alert ack|resolve`` publish an action on the alert-actions topic keyed by the alert id
(the worker applies it to the alert, see ``notifiers.lifecycle``); ``gridwatch alert list`` shows the
latest record of every alert. Nothing here changes state locally: the topics are the record.

Exit codes: 0 done, 2 invalid input, an unknown silence, or Kafka unreachable / topics missing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from gridwatch.config import ALERT_ACTIONS, ALERTS, SILENCES, Settings
from gridwatch.contract import dumps
from notifiers import silences as sil
from notifiers.silences import parse_scope, silence_state
from notifiers.lifecycle import make_action
from streams.topicview import TopicViewError, read_all

EXIT_INVALID = 2
SEND_TIMEOUT_S = 30.0
READ_TIMEOUT_S = 60.0


class OperatorError(Exception):
    """Invalid input or an unusable broker: the message is printed, the command exits 2."""


# ------------------------------------------------------------------------------------------- Kafka

def publish(settings: Settings, topic: str, key: str, value: Any) -> None:
    """Send one JSON record (acks=all) and wait until the broker has it; OperatorError otherwise."""
    name = settings.topic(topic)
    try:
        producer = KafkaProducer(
            bootstrap_servers=settings.bootstrap_list, acks="all", enable_idempotence=True,
            allow_auto_create_topics=False, max_block_ms=15000, bootstrap_timeout_ms=10000,
            client_id="gridwatch-operator")
    except KafkaError as exc:
        raise OperatorError(f"cannot reach Kafka at {settings.bootstrap_servers} ({type(exc).__name__}): "
                            "start one with `gridwatch kafka start`") from None
    try:
        producer.send(name, key=key.encode("utf-8"), value=dumps(value)).get(timeout=SEND_TIMEOUT_S)
        producer.flush(SEND_TIMEOUT_S)
    except KafkaTimeoutError:
        raise OperatorError(f"could not publish to '{name}' on {settings.bootstrap_servers} in time: "
                            "does the topic exist? (`gridwatch topics create`)") from None
    except KafkaError as exc:
        raise OperatorError(f"could not publish to '{name}' ({type(exc).__name__}: {exc})") from None
    finally:
        producer.close(timeout=5)


def read_topic(settings: Settings, topic: str) -> dict[str, Any]:
    try:
        return read_all(settings, topic, READ_TIMEOUT_S)
    except (TopicViewError, TimeoutError) as exc:
        raise OperatorError(str(exc)) from None


# ------------------------------------------------------------------------------------------ output

def _table(headers: list[str], rows: list[list[str]]) -> str:
    cells = [headers] + [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def _short(text: Any, width: int = 40) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= width else text[:width - 1] + "…"


# ---------------------------------------------------------------------------------------- silences

def _cmd_silence_add(args: argparse.Namespace) -> int:
    settings, now = Settings(), time.time()
    try:
        level, sid = parse_scope(args.scope)
        kinds = [k for k in args.kinds.split(",")] if args.kinds is not None else None
        silence = sil.new_silence(level, sid, kinds=kinds, starts_at=args.starts, ends_at=args.until,
                                  duration=getattr(args, "for"), author=args.author, reason=args.reason,
                                  now=now, include_safety=args.include_safety, force=args.force)
    except ValueError as exc:
        raise OperatorError(str(exc)) from None
    publish(settings, SILENCES, silence["silence_id"], silence)
    print(silence["silence_id"])
    kinds_text = ",".join(silence["kinds"]) if silence["kinds"] else "every kind"
    print(f"silenced {silence['scope']['level']}:{silence['scope']['id']} ({kinds_text}"
          f"{', safety messages too' if silence['include_safety'] else ''}) "
          f"from {silence['starts_at']} until {silence['ends_at']}", file=sys.stderr)
    return 0


def _cmd_silence_list(args: argparse.Namespace) -> int:
    now = time.time()
    records = [s for s in read_topic(Settings(), SILENCES).values() if isinstance(s, dict)]
    if not args.all:
        records = [s for s in records if silence_state(s, now) in ("active", "scheduled")]
    records.sort(key=lambda s: (str(s.get("starts_at")), str(s.get("silence_id"))))
    if args.json:
        print(json.dumps(records, ensure_ascii=False, indent=2))
        return 0
    if not records:
        print("no silences" + ("" if args.all else " in force or scheduled (--all shows past ones)"))
        return 0
    rows = []
    for s in records:
        scope = s.get("scope") or {}
        rows.append([s.get("silence_id"), silence_state(s, now), f"{scope.get('level')}:{scope.get('id')}",
                     ",".join(s.get("kinds") or []) or "all", "yes" if s.get("include_safety") else "no",
                     s.get("starts_at"), s.get("expired_at") or s.get("ends_at"), s.get("author"),
                     _short(s.get("reason"))])
    print(_table(["ID", "STATE", "SCOPE", "KINDS", "SAFETY", "STARTS", "ENDS", "AUTHOR", "REASON"], rows))
    return 0


def _cmd_silence_expire(args: argparse.Namespace) -> int:
    settings = Settings()
    current = read_topic(settings, SILENCES).get(args.silence_id)
    if not isinstance(current, dict):
        raise OperatorError(f"no silence {args.silence_id!r} (see `gridwatch silence list --all`)")
    try:
        ended = sil.expire(current, args.author, time.time())
    except ValueError as exc:
        raise OperatorError(str(exc)) from None
    publish(settings, SILENCES, args.silence_id, ended)
    print(f"expired {args.silence_id} at {ended['expired_at']}")
    return 0


# ------------------------------------------------------------------------------------------ alerts

def _send_action(args: argparse.Namespace, action: str) -> int:
    try:
        record = make_action(action, args.alert_id, args.author, args.reason,
                             no_fault=getattr(args, "no_fault", False))
    except ValueError as exc:
        raise OperatorError(str(exc)) from None
    publish(Settings(), ALERT_ACTIONS, record["alert_id"], record)
    print(f"{action} of {record['alert_id']} sent at {record['at']}")
    return 0


def _cmd_alert_ack(args: argparse.Namespace) -> int:
    return _send_action(args, "acknowledge")


def _cmd_alert_resolve(args: argparse.Namespace) -> int:
    return _send_action(args, "resolve")


def _cmd_alert_list(args: argparse.Namespace) -> int:
    records = [a for a in read_topic(Settings(), ALERTS).values() if isinstance(a, dict)]
    if args.status:
        records = [a for a in records if a.get("status") == args.status]
    records.sort(key=lambda a: (str(a.get("detected_at")), str(a.get("alert_id"))))
    if args.json:
        print(json.dumps(records, ensure_ascii=False, indent=2))
        return 0
    if not records:
        print("no alerts" + (f" with status {args.status}" if args.status else ""))
        return 0
    rows = []
    for a in records:
        scope = a.get("scope") or {}
        who = a.get("resolved_by") or a.get("acknowledged_by") or ""
        rows.append([a.get("alert_id"), a.get("kind"), a.get("severity"), a.get("status"),
                     f"{scope.get('level')}:{scope.get('id')}", len(a.get("customer_ids") or []),
                     a.get("detected_at"), a.get("resolved_at") or "", who])
    print(_table(["ALERT_ID", "KIND", "SEVERITY", "STATUS", "SCOPE", "CUSTOMERS", "DETECTED", "RESOLVED", "BY"],
                 rows))
    return 0


# --------------------------------------------------------------------------------------------- CLI

def _run(func):
    """Quiet kafka-python's connection logs (-v shows them) and turn OperatorError into exit 2."""
    def wrapper(args: argparse.Namespace) -> int:
        if not getattr(args, "verbose", False):
            logging.getLogger("kafka").setLevel(logging.CRITICAL)
            logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        try:
            return func(args)
        except OperatorError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_INVALID
    return wrapper


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``gridwatch silence add|list|expire`` and ``gridwatch alert ack|resolve|list``."""
    parser = subparsers.add_parser(
        "silence", help="mute customer messages for an area and time window",
        description="Silences are published on the compacted silences topic, so every worker honours them. "
                    "A silence never mutes safety messages (outage, loose neutral, critical alerts) unless "
                    "it is added with --include-safety.")
    actions = parser.add_subparsers(dest="silence_command", metavar="ACTION", required=True)

    p = actions.add_parser(
        "add", help="add a silence and print its id",
        description="Add a silence over an area (feeder, transformer, meter, customer, or all) for some or "
                    f"all kinds of alerts. At most {sil.MAX_DURATION_S // 86400} days unless --force.")
    p.add_argument("--scope", required=True, metavar="LEVEL:ID",
                   help="feeder:F01, transformer:T0042, meter:M000123, customer:C000123, or all")
    p.add_argument("--kinds", metavar="KIND[,KIND]", help="only these alert kinds (default: every kind)")
    end = p.add_mutually_exclusive_group(required=True)
    end.add_argument("--for", metavar="DURATION", help="how long: 30m, 2h, 1d, 1h30m")
    end.add_argument("--until", metavar="RFC3339", help="when it ends, e.g. 2026-07-01T18:00:00Z")
    p.add_argument("--starts", metavar="RFC3339", help="when it starts (default: now)")
    p.add_argument("--author", required=True, help="who adds it")
    p.add_argument("--reason", required=True, help="why (e.g. the planned work order)")
    p.add_argument("--include-safety", action="store_true",
                   help="also mute safety messages (outages, loose neutral, critical alerts)")
    p.add_argument("--force", action="store_true", help=f"allow more than {sil.MAX_DURATION_S // 86400} days")
    p.set_defaults(func=_run(_cmd_silence_add))

    p = actions.add_parser(
        "list", help="list silences in force or scheduled (a table)",
        description="Read the whole silences topic and list the silences in force or starting later; "
                    "--all adds the ended and expired ones.")
    p.add_argument("--all", action="store_true", help="also ended and expired silences")
    p.add_argument("--json", action="store_true", help="the records as a JSON array")
    p.set_defaults(func=_run(_cmd_silence_list))

    p = actions.add_parser(
        "expire", help="end a silence now",
        description="End a silence early; it stays listed with --all, with who ended it and when.")
    p.add_argument("silence_id", metavar="SILENCE_ID")
    p.add_argument("--author", required=True, help="who ends it")
    p.set_defaults(func=_run(_cmd_silence_expire))

    parser = subparsers.add_parser(
        "alert", help="acknowledge, resolve or list alerts",
        description="Operator actions are published on the alert-actions topic keyed by alert id; the worker "
                    "applies them to the alert (an acknowledgement survives detector updates, an operator's "
                    "resolution is final).")
    actions = parser.add_subparsers(dest="alert_command", metavar="ACTION", required=True)
    p = actions.add_parser("ack", help="acknowledge an alert",
                           description="Mark an open alert as acknowledged (someone is on it).")
    p.add_argument("alert_id", metavar="ALERT_ID")
    p.add_argument("--author", required=True, help="who acknowledges it")
    p.add_argument("--reason", required=True, help="e.g. crew dispatched")
    p.set_defaults(func=_run(_cmd_alert_ack))

    p = actions.add_parser("resolve", help="resolve an alert",
                           description="Resolve an alert; later detector updates of the same alert are ignored.")
    p.add_argument("alert_id", metavar="ALERT_ID")
    p.add_argument("--author", required=True, help="who resolves it")
    p.add_argument("--reason", required=True, help="what was done, or why it was no fault")
    p.add_argument("--no-fault", action="store_true", help="it was a false alarm")
    p.set_defaults(func=_run(_cmd_alert_resolve))

    p = actions.add_parser("list", help="list the latest record of every alert",
                           description="Read the whole alerts topic and print the latest record per alert id.")
    p.add_argument("--status", choices=("open", "acknowledged", "resolved"), help="only alerts with this status")
    p.add_argument("--json", action="store_true", help="the records as a JSON array")
    p.set_defaults(func=_run(_cmd_alert_list))
