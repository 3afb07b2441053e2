"""Dead letters: which failures make one, what it carries, and ``gridwatch dlq list|replay``.

A stage input that fails is one of two things (``classify``):

- **invalid** — the record itself cannot be processed as it is: a contract error, a payload that is not
  JSON or lacks a field (``ValueError``, ``KeyError``, ``TypeError``, ``IndexError``). Trying again gives
  the same answer, so it goes to the dead-letter topic at once; a fixed producer (or a fixed worker) and
  ``gridwatch dlq replay`` bring it back.
- **internal** — not the input's fault: a table write or a send that failed, a broker or metadata error
  (Kafka and Faust errors, ``OSError``, timeouts) or anything unexpected. Every stage retries it in place
  with back-off (``StageRetries``, ``Backoff``), logging each retry and counting it (``retries_<stage>`` in
  the worker's progress line and its ``/metrics``); only when the retry deadline has passed does it become
  a dead letter, reason ``internal``, for ``dlq replay`` once the cause is fixed.
- **refused** — a well-formed record the pipeline refuses by rule (an operator action on a resolved alert).

A dead letter carries what a replay needs: the source topic, partition and offset, the exact key and value
(base64, besides a readable copy), the stage, the reason and the error. Its Kafka key is ``dlq_id``, a digest
of the source topic, key and value: the same bad input re-read after a crash (or published twice) gives a
dead letter with the same id, so repeats are recognisable and ``dlq list`` shows each bad input once, with
how many copies of it there are. ``dlq replay`` republishes one copy per id to its source topic and notes the
id on ``gridwatch.dlq-replays``; a later replay skips it unless it was dead-lettered again since.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import logging
import os
import signal
import random
import sys
import time
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Awaitable, Callable

from kafka import KafkaConsumer, TopicPartition
from kafka import KafkaProducer

from gridwatch import config as names
from gridwatch.config import Settings
from gridwatch.contract import ContractError
from gridwatch.timefmt import utc_now

log = logging.getLogger("gridwatch.dlq")

INVALID, INTERNAL, REFUSED = "invalid", "internal", "refused"
#: a dead letter's ``code`` (why, in a word) when its cause gives none
DEFAULT_CODES = {INVALID: "invalid", INTERNAL: "internal_error", REFUSED: "refused"}
#: Header of a record `dlq replay` put back on its source topic: the dead letter's id.
REPLAY_HEADER = "gridwatch-replay-of"
#: A stage's retries of an internal error stop when the next would start after this (seconds).
RETRY_DEADLINE_S = float(os.environ.get("GRIDWATCH_RETRY_DEADLINE_S", "60"))


class TransientError(RuntimeError):
    """A failure that is not the input's fault and may pass: retried, never a verdict on the input."""


class InjectedFault(TransientError):
    """A failure injected by ``GRIDWATCH_FAULTS`` (tests only)."""


class RetriesExhausted(TransientError):
    """An internal error that outlasted the retry deadline."""

    def __init__(self, attempts: int, seconds: float, last: BaseException):
        super().__init__(f"{attempts} attempts over {seconds:.0f} s, last: {last!r}")
        self.attempts, self.last = attempts, last


def classify(exc: BaseException) -> str:
    """``invalid`` (the input is wrong: retrying cannot help) or ``internal`` (see the module doc)."""
    if isinstance(exc, TransientError):
        return INTERNAL
    if isinstance(exc, (ContractError, ValueError, KeyError, TypeError, IndexError)):
        return INVALID
    return INTERNAL


class Backoff:
    """Waits between the attempts at one input: exponential (``first_delay_s`` doubling, at most
    ``max_delay_s``), jittered (x0.5 .. x1.5), and none that would start after ``deadline_s``."""

    def __init__(self, *, deadline_s: float | None = None, first_delay_s: float = 0.5, max_delay_s: float = 15.0,
                 clock: Callable[[], float] = time.monotonic):
        self.deadline_s = RETRY_DEADLINE_S if deadline_s is None else deadline_s
        self.max_delay_s, self.clock = max_delay_s, clock
        self.started, self.delay, self.attempts = clock(), first_delay_s, 0

    def next_wait(self) -> float | None:
        """After a failed attempt: how long to wait before the next one, or None when it is too late."""
        self.attempts += 1
        wait = min(self.delay, self.max_delay_s) * (0.5 + random.random())
        if self.clock() + wait - self.started > self.deadline_s:
            return None
        self.delay *= 2
        return wait

    def exhausted(self, last: BaseException) -> RetriesExhausted:
        return RetriesExhausted(self.attempts, self.clock() - self.started, last)


class StageRetries:
    """Every stage's inputs, with an internal error retried in place (the worker's ``guard()``).

    ``events(source)`` yields the stage's events; ``guard(msg)`` wraps the processing of one. An invalid
    input (``classify``) is dead-lettered at once; after an internal error ``events`` waits (``Backoff``),
    then yields the same event again, until the retry deadline has passed: then it is a dead letter,
    reason ``internal``. While an event is retried nothing after it on the stage's stream is processed, and
    it is not acknowledged (Faust acknowledges an event when the next one is asked for), so the input is
    neither skipped nor reordered, and a crash meanwhile re-reads it.

    ``dead_letter(msg, exc, reason)`` and ``on_retry(msg, attempt, exc, wait)`` are the worker's."""

    def __init__(self, stage: str, *, dead_letter: Callable[[object, BaseException, str], Awaitable],
                 on_retry: Callable[[object, int, BaseException, float], None],
                 backoff: Callable[[], Backoff] = Backoff):
        self.stage, self.dead_letter, self.on_retry, self.backoff = stage, dead_letter, on_retry, backoff
        self._msg = None            # the message being retried
        self._tries: Backoff | None = None
        self._wait: float | None = None  # set by a failed attempt, taken by events()

    async def events(self, source):
        async for event in source:
            while True:
                yield event
                if self._wait is None or self._msg is not event.message:
                    break
                wait, self._wait = self._wait, None
                await asyncio.sleep(wait)

    async def run(self, msg, work: Callable[[], Awaitable]) -> None:
        """``work()`` for one input of a batch, as under :meth:`guard`: an internal error is retried here, in
        place, after the back-off (as ``events`` would yield the event again), until it succeeds or is a
        dead letter. (The guard's steps inline: it runs once per message of the readings agent, and an
        async context manager costs more than the rest of this.)"""
        while True:
            if self._msg is not msg:
                self._msg, self._tries, self._wait = msg, None, None
            try:
                await work()
            except Exception as exc:  # noqa: BLE001 - sorted by classify
                await self._failed(msg, exc)
            else:
                self._msg = None
                return
            if self._wait is None or self._msg is not msg:
                return
            wait, self._wait = self._wait, None
            await asyncio.sleep(wait)

    async def run_until_done(self, msg, work: Callable[[], Awaitable]) -> None:
        """``work()`` that belongs to a whole batch (its table writes and sends), which no dead letter could
        stand for: retried with back-off (logged and counted as every retry, ``msg`` the batch's last input)
        until it succeeds. The batch's events are not acknowledged meanwhile, so nothing after it is lost."""
        tries = self.backoff()
        while True:
            try:
                await work()
                return
            except Exception as exc:  # noqa: BLE001 - anything: the batch's outputs must get out
                wait = tries.next_wait() or tries.max_delay_s
                self.on_retry(msg, tries.attempts, exc, wait)
                await asyncio.sleep(wait)

    @asynccontextmanager
    async def guard(self, msg):
        if self._msg is not msg:
            self._msg, self._tries, self._wait = msg, None, None
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - sorted by classify
            await self._failed(msg, exc)
        else:
            self._msg = None

    async def _failed(self, msg, exc: BaseException) -> None:
        """An input's processing raised: a dead letter now (invalid input, or the retry deadline passed), or
        a retry after the back-off (``_wait``)."""
        if classify(exc) != INTERNAL:
            self._msg = None
            await self.dead_letter(msg, exc, INVALID)
            return
        self._tries = self._tries or self.backoff()
        wait = self._tries.next_wait()
        if wait is None:
            self._msg = None
            await self.dead_letter(msg, self._tries.exhausted(exc), INTERNAL)
            return
        self._wait = wait
        self.on_retry(msg, self._tries.attempts, exc, wait)


class Faults:
    """Failures injected at named points, for tests: ``GRIDWATCH_FAULTS="notify.table-write=2"`` makes the
    first 2 outbox writes of the notify stage raise InjectedFault (an internal error). Unset in production;
    the worker logs a warning when it is set. Points: ``notify.table-write`` (the outbox),
    ``lifecycle.table-write`` (the lifecycle table, after the alert record is sent), and
    ``notify.kill-before-done``, which does not raise but kills the worker (SIGKILL, as ``kill -9``) when
    an outbox key is about to be marked done: its record is on the broker, the key not done."""

    POINTS = ("notify.table-write", "lifecycle.table-write", "notify.kill-before-done")

    def __init__(self, spec: str | None = None):
        self.left: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in (spec or "").split(","))):
            point, _, count = part.partition("=")
            if point not in self.POINTS:
                raise ValueError(f"GRIDWATCH_FAULTS: unknown fault point {point!r} (known: {', '.join(self.POINTS)})")
            self.left[point] = int(count or 1)

    @classmethod
    def from_env(cls) -> "Faults":
        return cls(os.environ.get("GRIDWATCH_FAULTS"))

    def hit(self, point: str) -> None:
        if self.left.get(point, 0) > 0:
            self.left[point] -= 1
            if point.partition(".")[2].startswith("kill-"):
                os.kill(os.getpid(), signal.SIGKILL)
            raise InjectedFault(f"injected fault at {point} (GRIDWATCH_FAULTS)")


# ------------------------------------------------------------------------------------------- records

def letter_id(topic: str, key: bytes | None, value: bytes | None) -> str:
    """The same (topic, key, value) always gives the same id; ``None`` differs from empty."""
    h = hashlib.sha256(topic.encode("utf-8"))
    for part in (key, value):
        h.update(b"\x00" if part is None else b"\x01" + len(part).to_bytes(8, "big") + part)
    return h.hexdigest()[:32]


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", errors="replace")


def letter(*, topic: str, partition: int, offset: int | None, key: bytes | None, value: bytes | None, error: str,
           reason: str, stage: str, code: str | None = None) -> tuple[bytes, dict]:
    """The dead-letter record of one input: (its Kafka key, its value)."""
    lid = letter_id(topic, key, value)
    return lid.encode("ascii"), {
        "dlq_id": lid, "topic": topic, "partition": partition, "offset": offset,
        "key": _text(key), "payload": _text(value), "key_b64": _b64(key), "value_b64": _b64(value),
        "stage": stage, "reason": reason, "code": code or DEFAULT_CODES[reason], "error": error,
        "at": utc_now()}


@dataclass
class Letter:
    """One bad input as the DLQ holds it: its newest copy and how many copies there are."""

    record: dict
    partition: int                # of the DLQ (every copy of one id is on the same partition: keyed by id)
    offset: int                   # newest copy
    copies: int = 1
    replayed_upto: int | None = None  # DLQ offset of the copy last replayed
    topics_seen: set = field(default_factory=set)

    @property
    def id(self) -> str:
        return self.record["dlq_id"]

    @property
    def pending(self) -> bool:
        return self.replayed_upto is None or self.offset > self.replayed_upto


def collect(dlq: list, replays: list) -> dict[str, Letter]:
    """Dead letters by id from the DLQ's records and the replay notes (both as (partition, offset, value))."""
    out: dict[str, Letter] = {}
    for partition, offset, rec in dlq:
        lid = rec.get("dlq_id") or letter_id(rec.get("topic", ""), (rec.get("key") or "").encode() or None,
                                             (rec.get("payload") or "").encode() or None)  # older records
        rec = {**rec, "dlq_id": lid}
        have = out.get(lid)
        if have is None:
            out[lid] = Letter(rec, partition, offset)
        else:
            have.copies += 1
            if offset > have.offset:
                have.record, have.offset = rec, offset
    for _p, _o, note in replays:
        have = out.get(note.get("dlq_id"))
        if have is not None:
            have.replayed_upto = max(have.replayed_upto or -1, int(note["dlq_offset"]))
    return out


def _read_all(settings: Settings, topic: str) -> list[tuple[int, int, dict]]:
    """Every record of ``topic`` up to its current end, as (partition, offset, decoded JSON value)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_list, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[tuple[int, int, dict]] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within 60 s")
            for batch in consumer.poll(timeout_ms=500).values():
                for m in batch:
                    if m.value is None:
                        continue
                    try:
                        out.append((m.partition, m.offset, json.loads(m.value)))
                    except ValueError:
                        log.warning("%s[%d]@%d is not JSON; skipped", topic, m.partition, m.offset)
        return out
    finally:
        consumer.close()


def load(settings: Settings) -> dict[str, Letter]:
    return collect(_read_all(settings, settings.topic(names.DLQ)),
                   _read_all(settings, settings.topic(names.DLQ_REPLAYS)))


def select(letters: dict[str, Letter], settings: Settings, *, topic: str | None = None,
           reason: str | None = None, ids: list[str] | None = None) -> list[Letter]:
    def wanted(lt: Letter) -> bool:
        if topic and lt.record.get("topic") not in (topic, settings.topic(topic)):
            return False
        if reason and lt.record.get("reason", INVALID) != reason:
            return False
        return not ids or any(lt.id.startswith(i) for i in ids)

    return sorted((lt for lt in letters.values() if wanted(lt)), key=lambda lt: (lt.record.get("topic", ""), lt.offset))


def replay(settings: Settings, letters: list[Letter], *, again: bool = False) -> list[Letter]:
    """Put one copy of each (pending, unless ``again``) letter back on its source topic, then note it on
    ``gridwatch.dlq-replays``. Returns the letters replayed."""
    todo = [lt for lt in letters if again or lt.pending]
    if not todo:
        return []
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_list, acks="all")
    try:
        for lt in todo:
            rec = lt.record
            value = _unb64(rec["value_b64"]) if "value_b64" in rec else (rec.get("payload") or "").encode()
            key = _unb64(rec["key_b64"]) if "key_b64" in rec else (rec["key"].encode() if rec.get("key") else None)
            producer.send(rec["topic"], key=key, value=value, headers=[(REPLAY_HEADER, lt.id.encode())])
        producer.flush(30)  # on the source topics before the notes say so
        for lt in todo:
            producer.send(settings.topic(names.DLQ_REPLAYS), key=lt.id.encode(), value=json.dumps(
                {"dlq_id": lt.id, "dlq_partition": lt.partition, "dlq_offset": lt.offset, "topic": lt.record["topic"],
                 "at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}).encode())
        producer.flush(30)
    finally:
        producer.close()
    return todo


# ----------------------------------------------------------------------------------------------- CLI

def _summary_line(lt: Letter) -> str:
    r = lt.record
    state = "pending" if lt.pending else "replayed"
    return (f"{lt.id[:12]}  {r.get('reason', INVALID):<8}  {state:<8}  x{lt.copies:<3} {r.get('topic')}"
            f"[{r.get('partition')}]@{r.get('offset')}  {str(r.get('error'))[:160]}")


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topic", help="only dead letters of this source topic (contract or deployed name)")
    p.add_argument("--reason", choices=(INVALID, INTERNAL, REFUSED), help="only dead letters of this reason")
    p.add_argument("--id", dest="ids", action="append", help="only this dead letter (an id or its prefix); repeatable")


def _cmd_list(args: argparse.Namespace) -> int:
    settings = Settings()
    letters = select(load(settings), settings, topic=args.topic, reason=args.reason, ids=args.ids)
    if args.json:
        for lt in letters:
            print(json.dumps({**{k: v for k, v in lt.record.items() if k not in ("key_b64", "value_b64", "payload",
                                                                                  "key")},
                              "copies": lt.copies, "pending": lt.pending}))
        return 0
    if not letters:
        print("no dead letters")
        return 0
    by = Counter((lt.record.get("topic"), lt.record.get("reason", INVALID), lt.pending) for lt in letters)
    print("by topic and reason (distinct inputs):")
    for (topic, reason, pending), count in sorted(by.items()):
        print(f"  {topic:<40} {reason:<8} {'pending' if pending else 'replayed':<8} {count}")
    print("\nid            reason    state     copies source  error")
    for lt in letters:
        print(_summary_line(lt))
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    settings = Settings()
    if not (args.topic or args.reason or args.ids or args.all):
        print("gridwatch dlq replay: choose what to replay: --topic, --reason, --id, or --all", file=sys.stderr)
        return 2
    letters = select(load(settings), settings, topic=args.topic, reason=args.reason, ids=args.ids)
    todo = [lt for lt in letters if args.again or lt.pending]
    if args.dry_run:
        for lt in todo:
            print("would replay " + _summary_line(lt))
        print(f"{len(todo)} dead letter(s) would be replayed")
        return 0
    done = replay(settings, letters, again=args.again)
    for lt in done:
        print("replayed " + _summary_line(lt))
    skipped = len(letters) - len(done)
    print(f"{len(done)} dead letter(s) replayed to their source topics"
          + (f"; {skipped} already replayed (--again to replay them anyway)" if skipped else ""))
    return 0


def register(sub) -> None:
    p = sub.add_parser("dlq", help="list dead letters by topic and reason; replay them to their source topics",
                       description="Dead letters of the worker (gridwatch.dlq): `list` them by source topic and "
                                   "reason (invalid: the input is wrong; internal: not the input's fault, after the "
                                   "stage's retries; refused: refused by rule), `replay` the ones a fix made "
                                   "processable. "
                                   "Repeats of one bad input share an id and are shown and replayed once.")
    actions = p.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    lp = actions.add_parser("list", help="dead letters, one line per distinct bad input",
                            description="One line per distinct bad input: id, reason, pending or replayed, "
                                        "copies, source topic/partition/offset, error.")
    _filters(lp)
    lp.add_argument("--json", action="store_true", help="one JSON object per dead letter (no payloads)")
    lp.set_defaults(func=_cmd_list)
    rp = actions.add_parser("replay", help="put dead letters back on their source topics",
                            description="Republish one copy of each selected dead letter that was not replayed "
                                        "since it was last dead-lettered, with its original key and value. The "
                                        "notification path's outbox keeps a replayed notify request from being "
                                        "sent twice.")
    _filters(rp)
    rp.add_argument("--all", action="store_true", help="every pending dead letter")
    rp.add_argument("--again", action="store_true", help="also those replayed before")
    rp.add_argument("--dry-run", action="store_true", help="only show what would be replayed")
    rp.set_defaults(func=_cmd_replay)
