"""``gridwatch demo``: the whole pipeline on a real Kafka broker, with embedded defaults.

Starts (or reuses) Kafka, creates the topics, starts the SMS sandbox and the worker, publishes a simulated
utility with a transformer undervoltage, and prints alerts and SMS as they happen. Ctrl-C, ``--duration``, or
``--until-settled`` (when the story is over, see :class:`Settling`) stops everything it started — and nothing it
did not start.

The simulated customers' phone numbers are all in ranges reserved for fiction (:func:`devtools.simulator.fiction_phone`),
and SMS go to the local sandbox: with ``TWILIO_*`` set the demo refuses to start (exit 2) unless
``--real-twilio`` says that real SMS to those numbers are meant.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError
from sqlalchemy.engine import make_url

from devtools import broker
from gridwatch import config as names
from gridwatch.config import Settings
from history import db, server
from streams import topics

__all__ = ["register", "run", "Processes", "wait_http", "Settling"]

#: ``--until-settled``: nothing new on the watched topics for this long (with everything else settled) ends
#: the demo; and the cap when ``--duration`` does not give one.
SETTLE_QUIET_S = 5.0
SETTLE_CAP_S = 300.0
#: A notification status that ends an SMS's story (``sent`` is followed by one of these).
FINAL_SMS = {"delivered", "undelivered", "failed"}


def wait_http(url: str, timeout: float) -> bool:
    """Whether ``url`` answers HTTP within ``timeout`` seconds. A port held by something that is not an HTTP
    server (its answer is no HTTP status line) counts as not answering, like a closed port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except (OSError, http.client.HTTPException):
            time.sleep(0.2)
    return False


class Processes:
    """Child processes started by us, stopped in reverse order (SIGTERM, then SIGKILL)."""

    def __init__(self):
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict, log: Path) -> subprocess.Popen:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "ab")
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        self.children.append((name, proc))
        return proc

    def stop(self) -> None:
        for name, proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in reversed(self.children):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.children.clear()


class Settling:
    """When the demo's story is over (``--until-settled``), rather than at a wall-clock time: the simulator has
    exited, the worker's consumer group (its Faust app id) has committed every partition assigned to it up to
    the end offset, the scripted replies have been sent and their feedback records seen, every SMS sent has
    its delivery receipt, and nothing new has arrived for :data:`SETTLE_QUIET_S`.

    It also keeps what the summary counts once: an alert is counted once per status, however many identical
    records the at-least-once pipeline publishes (a re-run stage sends the same record again)."""

    def __init__(self, settings: Settings, replies: int, receipts: bool):
        self.settings = settings
        self.group = settings.app_id
        self.replies_expected, self.replies_sent, self.feedback = replies, 0, 0
        self.receipts = receipts
        self.sms_open: set[str] = set()  # provider message ids sent, without a final status yet
        self.alerts: set[tuple[str, str]] = set()
        self.last_record: float | None = None
        self._admin: KafkaAdminClient | None = None
        self._offsets: KafkaConsumer | None = None

    def record(self, topic: str, value: dict) -> bool:
        """Note a record; False when it is one the summary has already counted (an alert's repeated status)."""
        self.last_record = time.monotonic()
        if topic.endswith(names.FEEDBACK):
            self.feedback += 1
        elif topic.endswith(names.NOTIFICATIONS) and value.get("provider_message_id"):
            if value["status"] == "sent":
                self.sms_open.add(value["provider_message_id"])
            elif value["status"] in FINAL_SMS:
                self.sms_open.discard(value["provider_message_id"])
        elif topic.endswith(names.ALERTS):
            key = (value["alert_id"], value["status"])
            if key in self.alerts:
                return False
            self.alerts.add(key)
        return True

    def waiting(self, simulator_done: bool, final: bool = False) -> list[str]:
        """What has not settled yet, in words; empty when the story is over. The broker is asked only once the
        rest has settled, or for the ``final`` account of what had not."""
        out = []
        if not simulator_done:
            out.append("the simulator is still publishing")
        if self.replies_sent < self.replies_expected:
            out.append(f"{self.replies_expected - self.replies_sent} of the {self.replies_expected} scripted "
                       f"replies not sent (no \"power is back\" SMS to answer yet)")
        elif self.feedback < self.replies_sent:
            out.append(f"feedback seen for {self.feedback} of the {self.replies_sent} replies sent")
        if self.receipts and self.sms_open:
            out.append(f"{len(self.sms_open)} SMS sent without a delivery receipt")
        if self.last_record is None:
            out.append("no alert, SMS or reply has arrived yet")
        elif (quiet := time.monotonic() - self.last_record) < SETTLE_QUIET_S:
            out.append(f"a record arrived {quiet:.1f} s ago (settled after {SETTLE_QUIET_S:.0f} s of quiet)")
        if not out or final:
            try:
                out += self.worker_lag()
            except KafkaError as exc:
                out.append(f"the worker's committed offsets could not be read ({type(exc).__name__}: {exc})")
        return out

    def worker_lag(self) -> list[str]:
        """The worker's consumer group against the end offsets of the partitions assigned to it (its input
        topics; the tables' changelogs are read only to restore, and never committed, so they are left out)."""
        if self._admin is None:
            self._admin = KafkaAdminClient(bootstrap_servers=self.settings.bootstrap_list,
                                           client_id="gridwatch-demo-settle")
            self._offsets = KafkaConsumer(bootstrap_servers=self.settings.bootstrap_list, group_id=None,
                                          enable_auto_commit=False, client_id="gridwatch-demo-settle")
        group = self._admin.describe_groups([self.group])[self.group]
        if group.get("group_state") != "Stable" or not group.get("members"):
            return [f"the worker's consumer group {self.group} is {group.get('group_state')}, not Stable"]
        tps = [TopicPartition(a["topic"], p) for m in group["members"]
               for a in (m.get("member_assignment") or {}).get("assigned_partitions", ())
               if not a["topic"].endswith("-changelog") and "__assignor" not in a["topic"]
               for p in a["partitions"]]
        if not tps:
            return [f"the worker's consumer group {self.group} has no partitions assigned"]
        committed = self._admin.list_group_offsets({self.group: tps}).get(self.group, {}) or {}
        ends = self._offsets.end_offsets(tps)
        lag: Counter = Counter()
        for tp in tps:
            om = committed.get(tp)
            done = om.offset if om is not None and om.offset is not None and om.offset >= 0 else 0
            if ends[tp] > done:
                lag[tp.topic] += ends[tp] - done
        if lag:
            return [f"the worker's group {self.group} has not committed "
                    + ", ".join(f"{n} records of {topic}" for topic, n in sorted(lag.items()))]
        return []

    def close(self) -> None:
        for client in (self._offsets, self._admin):
            if client is not None:
                client.close()


def gridwatch_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "gridwatch.cli", *args]


def ensure_service(procs: Processes, command: str, url: str, probe: str, env: dict, run_dir: Path) -> bool:
    """Reuse the gridwatch service answering at ``url``, or start ``gridwatch COMMAND --port`` there."""
    if wait_http(url + probe, 0.5):
        print(f"{command}: reusing {url}")
        return True
    port = url.rsplit(":", 1)[-1].strip("/")
    procs.start(command, gridwatch_argv(command, "--port", port), env, run_dir / f"{command}.log")
    if wait_http(url + probe, 30):
        return True
    print(f"{command} did not come up; see {run_dir / f'{command}.log'}")
    return False


def run(args) -> int:
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # alerts and SMS show as they happen, even when piped
    base = Settings()
    if base.twilio_configured and not args.real_twilio:
        print("gridwatch demo: TWILIO_* is set, so the demo's SMS would go to real Twilio; pass --real-twilio if "
              "that is meant, or unset TWILIO_* to use the local SMS sandbox", file=sys.stderr)
        return 2
    settings = dataclasses.replace(base, run_dir=Path(args.run_dir).resolve())
    env = {**os.environ, "GRIDWATCH_RUN_DIR": str(settings.run_dir),
           "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "PYTHONUNBUFFERED": "1"}
    t_begin = time.monotonic()
    since_ms = int(time.time() * 1000)
    procs = Processes()
    settling = None
    started_broker = started_db = False
    try:
        if not broker.is_reachable(settings.bootstrap_servers):
            # A broker of our own: start it from a clean slate so the demo shows its alerts every time.
            shutil.rmtree(settings.run_dir, ignore_errors=True)
        started_broker = broker.start(settings) == "started"
        print(f"Kafka: {'started' if started_broker else 'reusing'} {settings.bootstrap_servers}")
        if not started_broker and not settings.topic_prefix:
            # Someone else's broker: keep out of its real topics, and out of earlier demos' data (the same
            # simulated ids again would, rightly, raise no new alert and send no SMS twice).
            settings = dataclasses.replace(settings, topic_prefix=f"demo{time.strftime('%Y%m%d%H%M%S')}.")
            env["GRIDWATCH_TOPIC_PREFIX"] = settings.topic_prefix
            print(f"   the demo uses its own topics on it: {settings.topic_prefix}*")
        topics.create_topics(settings)
        started_db = start_history(procs, settings, env)

        sandbox_url = settings.sandbox_url
        if settings.uses_real_twilio:
            print("SMS: real Twilio (TWILIO_* set)")
        elif not ensure_service(procs, "sandbox", sandbox_url, "/sandbox/messages", env, settings.run_dir):
            return 1
        # Delivery receipts: the sandbox calls back locally; real Twilio needs GRIDWATCH_WEBHOOK_URL (public).
        hook_url = settings.webhook_url or (None if settings.uses_real_twilio else "http://127.0.0.1:8090")
        if hook_url:
            env["GRIDWATCH_WEBHOOK_URL"] = hook_url
            if not ensure_service(procs, "webhooks", hook_url, "/health", env, settings.run_dir):
                return 1
        procs.start("worker", gridwatch_argv("worker"), env, settings.run_dir / "worker.log")
        print(f"worker started (log: {settings.run_dir / 'worker.log'})")
        console_url = start_console(procs, args.console_port, env, settings.run_dir)
        if console_url is None:
            return 1

        sim = gridwatch_argv("simulate", "--scenario", args.scenario, "--seed", str(args.seed),
                             "--truth", str(settings.run_dir / "truth.jsonl"))
        if args.speedup:
            sim += ["--speedup", str(args.speedup)]
        if not settings.topic_prefix:
            sim += ["--contract-topics"]  # our own broker, started for the demo
        if args.real_twilio:
            sim += ["--real-twilio"]
        simulator = procs.start("simulator", sim, env, settings.run_dir / "simulator.log")
        print(f"simulator: scenario {args.scenario!r} (ground truth: {settings.run_dir / 'truth.jsonl'})")
        print(f"\nSMS sandbox page: {sandbox_url}/   — alerts and SMS follow as they happen "
              f"(Ctrl-C to stop)\n")

        consumer = KafkaConsumer(
            settings.topic(names.ALERTS), settings.topic(names.NOTIFICATIONS), settings.topic(names.DLQ),
            settings.topic(names.FEEDBACK),
            bootstrap_servers=settings.bootstrap_list, auto_offset_reset="earliest",
            enable_auto_commit=False, group_id=None, consumer_timeout_ms=500)
        first_sms = None
        replies = ["5", "OUT"]
        settling = Settling(settings, replies=len(replies) if not settings.uses_real_twilio else 0,
                            receipts=not settings.uses_real_twilio)
        seen: Counter = Counter()
        cap = args.duration or (SETTLE_CAP_S if args.until_settled else None)
        deadline = t_begin + cap if cap else None
        settled = False
        while deadline is None or time.monotonic() < deadline:
            for msg in consumer:
                if msg.timestamp < since_ms:
                    continue  # from an earlier run on a reused broker
                value = json.loads(msg.value)
                print(describe(msg.topic, value))
                if settling.record(msg.topic, value):
                    seen[tally(msg.topic, value)] += 1
                if msg.topic.endswith(names.NOTIFICATIONS) and value["status"] == "sent" and first_sms is None:
                    first_sms = time.monotonic() - t_begin
                    print(f"   (first SMS {first_sms:.1f} s after `gridwatch demo` started)")
                if (msg.topic.endswith(names.NOTIFICATIONS) and value["status"] == "sent"
                        and str(value.get("template", "")).startswith("outage/resolved") and replies
                        and not settings.uses_real_twilio):
                    # customers answer "power is back" from their phones: a rating, then "still out"
                    customer_replies(sandbox_url, value["provider_message_id"], replies.pop(0))
                    settling.replies_sent += 1
                if deadline is not None and time.monotonic() >= deadline:
                    break
            for name, proc in procs.children:
                if name == "worker" and proc.poll() is not None:
                    print(f"worker exited with {proc.returncode}; see {settings.run_dir / 'worker.log'}")
                    return 1
                if name == "simulator" and proc.poll() not in (None, 0):
                    print(f"simulator exited with {proc.returncode}; see {settings.run_dir / 'simulator.log'}")
                    return 1
            if args.until_settled:
                waiting = settling.waiting(simulator_done=simulator.poll() == 0)
                if not waiting:
                    settled = True
                    print(f"\nsettled {time.monotonic() - t_begin:.1f} s after `gridwatch demo` started: the "
                          f"simulator is done, the worker has committed all its input, and nothing new for "
                          f"{SETTLE_QUIET_S:.0f} s")
                    break
        consumer.close()
        if args.until_settled and not settled:
            waiting = settling.waiting(simulator_done=simulator.poll() == 0, final=True)
        order = ["alerts open", "alerts acknowledged", "alerts resolved", "SMS sent", "SMS delivered",
                 "SMS undelivered", "SMS deferred", "SMS suppressed", "SMS failed", "replies", "dead letters"]
        print("\nsummary: " + (", ".join(f"{k} {seen[k]}" for k in order if seen[k]) or "nothing yet")
              + f"; sandbox page {sandbox_url}/; console {console_url}")
        if args.until_settled and not settled:
            print(f"gridwatch demo: not settled within {cap:.0f} s: " + "; ".join(waiting))
            return 1
        return 0
    except KeyboardInterrupt:
        return 0
    except (broker.BrokerError, topics.TopicsError) as exc:
        print(f"gridwatch demo: {exc}")
        return 1
    finally:
        print("\nstopping what the demo started…")
        if settling is not None:
            settling.close()
        procs.stop()
        if started_db:
            server.stop(settings)
        if started_broker:
            broker.stop(settings)


def start_history(procs: Processes, settings: Settings, env: dict) -> bool:
    """The history store (GRIDWATCH_DATABASE_URL, else a local PostgreSQL) and its projector; True when the
    demo started that PostgreSQL (so it stops it). A demo on its own topic prefix gets its own database.
    Without PostgreSQL binaries the demo goes on without the history, and says so."""
    try:
        started = not settings.database_url and server.managed_pid(settings) is None
        url = db.database_url(settings)
        if settings.topic_prefix:
            name = "gridwatch_" + re.sub(r"\W+", "_", settings.topic_prefix).strip("_").lower()
            server.create_database(url, name)
            url = make_url(url).set(database=name).render_as_string(hide_password=False)
    except (server.ServerError, ValueError) as exc:
        print(f"history: not started, the demo goes on without it ({exc})")
        return False
    except Exception as exc:  # the configured database refuses us
        print(f"history: not started, the demo goes on without it ({type(exc).__name__}: {exc})")
        return False
    env["GRIDWATCH_DATABASE_URL"] = url
    log = settings.run_dir / "projector.log"
    procs.start("projector", gridwatch_argv("history", "project"), env, log)
    print(f"history: PostgreSQL {db.redacted(url)} ({'started' if started else 'reusing'}), projector log {log}")
    return started


def start_console(procs: Processes, port: int, env: dict, run_dir: Path) -> str | None:
    """The operations console with two demo users (random tokens, printed here for the person at the demo)."""
    url = f"http://127.0.0.1:{port}/"
    log = run_dir / "console.log"
    procs.start("console", gridwatch_argv("console", "--demo-users", "--port", str(port)), env, log)
    deadline = time.monotonic() + 60
    tokens: dict[str, str] = {}
    while time.monotonic() < deadline and len(tokens) < 2:
        time.sleep(0.3)
        text = log.read_text(errors="replace") if log.exists() else ""
        for m in re.finditer(r"demo user (\w+) \((\w+)\) token (\S+)", text):
            tokens[m.group(1)] = m.group(3)
    if len(tokens) < 2 or not wait_http(url + "static/console.css", 30):
        print(f"console did not come up; see {log}")
        return None
    print(f"console: {url}  (sign in: operator / {tokens.get('operator')}, viewer / {tokens.get('viewer')})")
    return url


def customer_replies(sandbox_url: str, sid: str, body: str) -> None:
    """A customer answering an SMS from their phone: the sandbox delivers it, signed, to the inbound webhook."""
    req = urllib.request.Request(sandbox_url + "/sandbox/reply", data=json.dumps({"to_sid": sid, "body": body}).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10):
            pass
    except OSError as exc:
        print(f"   (reply {body!r} not delivered: {exc})")


def tally(topic: str, v: dict) -> str:
    if topic.endswith(names.ALERTS):
        return f"alerts {v['status']}"
    if topic.endswith(names.NOTIFICATIONS):
        return f"SMS {v['status']}"
    if topic.endswith(names.FEEDBACK):
        return "replies"
    return "dead letters"


def _evidence(alert: dict) -> str:
    """The few words of evidence an operator wants on the line, by kind."""
    ev = alert["evidence"]
    if ev.get("reported_by_customer"):
        return f"reported by the customer after the restoration, child of {ev.get('parent_alert_id')}"
    if alert["kind"] in ("outage", "momentary_interruption"):
        return (f"{ev.get('meters_out')} of {ev.get('meters_total')} meters out, {ev.get('last_gasps')} last gasps"
                + (f", child of {ev['parent_alert_id']}" if ev.get("parent_alert_id") else ""))
    if alert["kind"] == "bill_spike":
        return (f"projected {ev.get('projected_amount')} {ev.get('currency') or ''} = +{ev.get('pct_above')} % "
                f"on usual; {ev.get('driver')}")
    if ev.get("v_extreme") is not None:
        return f"{ev.get('standard')}, extreme {ev['v_extreme']} V"
    return ", ".join(f"{k} {ev[k]}" for k in ("standard", "category", "pu", "swings") if ev.get(k) is not None)


def describe(topic: str, v: dict) -> str:
    if topic.endswith(names.ALERTS):
        return (f"ALERT {v['status']:<8} {v['kind']} at {v['scope']['level']} {v['scope']['id']} "
                f"({len(v['meter_ids'])} meters, {len(v['customer_ids'])} customers) started {v['started_at']}"
                f" detected {v['detected_at']}" + (f" resolved {v['resolved_at']}" if v['resolved_at'] else "")
                + f"  [{_evidence(v)}]")
    if topic.endswith(names.NOTIFICATIONS):
        line = f"SMS   {v['status']:<8} {v['customer_id']} ({v['language']})"
        if v["status"] == "sent":
            return line + f": {v['body']}"
        if v["status"] == "delivered":
            return line + f" — the provider confirmed delivery of {v['provider_message_id']}"
        return line + f" — {v['reason']}"
    if topic.endswith(names.FEEDBACK):
        what = f"rating {v['rating']}" if v.get("rating") else v["intent"]
        return f"REPLY {v['customer_id']}: {what} ({v['body']!r}, about {v['alert_id']})"
    return f"DLQ   ({v.get('reason', 'invalid')}) {v['topic']}[{v['partition']}]@{v['offset']}: {v['error']}"


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on a real Kafka broker with a simulated fault",
                       description="Start (or reuse) Kafka, create topics, start the SMS sandbox and the worker, "
                                   "simulate a utility with a transformer undervoltage, a meter overvoltage and "
                                   "a power cut, and print alerts and SMS.")
    p.add_argument("--duration", type=float, default=None,
                   help="stop after this many seconds (default: run until Ctrl-C); with --until-settled, the cap "
                        "on the wait")
    p.add_argument("--until-settled", action="store_true",
                   help="stop when the story is over rather than at a wall-clock time: the simulator has exited, "
                        "the worker has committed all its input, the scripted replies are answered, every SMS has "
                        f"its receipt and nothing new came for {SETTLE_QUIET_S:.0f} s; exit 1, naming what had not "
                        f"settled, if that takes longer than --duration (default {SETTLE_CAP_S:.0f} s)")
    p.add_argument("--scenario", default="demo", help="simulator scenario (default: demo)")
    p.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    p.add_argument("--speedup", type=float, default=None,
                   help="simulated seconds per wall second (default: as fast as possible)")
    p.add_argument("--real-twilio", action="store_true",
                   help="with TWILIO_* set, send the demo's SMS through real Twilio (to numbers reserved for fiction, "
                        "which Twilio will refuse); without this flag the demo refuses to start when TWILIO_* is set")
    p.add_argument("--console-port", type=int, default=8095, help="port of the operations console (default 8095)")
    p.add_argument("--run-dir", default=str(Settings().run_dir / "demo"),
                   help="where the demo keeps broker data, worker state and logs (default .run/demo)")
    p.set_defaults(func=run)
