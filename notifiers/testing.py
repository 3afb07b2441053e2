"""What a test of the notification path needs, shipped with it: a provider that answers from a script and an
in-memory :class:`notifiers.path.Env` (plain dicts where the worker has Faust tables).

    env = MemoryEnv([customer], ScriptedProvider([NotifierError("HTTP 429", status=429, retryable=True)]),
                    now=epoch)
    await NotificationPath(env).handle({"alert": alert, "customer_id": "C1"})
    env.records        # the notifications records, in order
    env.provider.sends # (to, body, key) of every send attempt

A detector or channel in another package tests against these as gridwatch's own tests do
(tests/unit/test_path.py).
"""

from __future__ import annotations

from typing import Any

from notifiers.base import Delivery
from notifiers.path import Policy

__all__ = ["ScriptedProvider", "MemoryEnv", "Killed"]


class ScriptedProvider:
    """A provider that answers each send from a script: a Delivery, or a NotifierError to raise.

    ``sent`` is what :meth:`find_sent` answers after an interrupted send: a Delivery, None (absent), an
    exception to raise, or a list of those answered in turn; ``lookups`` keeps the ``exclude`` of each call.
    """

    def __init__(self, script=(), idempotent: bool = False, sent: Any = None):
        self.script = list(script)
        self.sends: list[tuple[str, str, str | None]] = []
        self.idempotent = idempotent
        self.sent = sent
        self.lookups: list[tuple] = []

    async def send(self, to, body, *, subject=None, data=None, key=None):
        self.sends.append((to, body, key))
        step = self.script.pop(0) if self.script else None
        if isinstance(step, Exception):
            raise step
        return Delivery(f"SM{len(self.sends):032d}", "queued")

    async def find_sent(self, to, body, since, *, exclude=()):
        self.lookups.append(tuple(exclude))
        answer = self.sent.pop(0) if isinstance(self.sent, list) else self.sent
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def close(self):
        pass


class Killed(RuntimeError):
    """kill -9: nothing after this point runs; what was written before it stays (tables, records)."""


class MemoryEnv:
    """:class:`notifiers.path.Env` over dicts, with a clock that moves only when the test sets ``t``.

    ``records`` are the emitted notifications records, ``flushed`` counts outbox flushes, ``held`` the
    requests held per customer, ``released`` the (customer, key) pairs released. ``steps`` lists the outbox
    writes (their state), records (``emit <status>``) and flushes in order; set ``kill_before`` to one of those
    step names and the next such step raises :class:`Killed` instead (a worker killed just before it).
    """

    def __init__(self, customers, provider=None, silences=(), now: float = 0.0, policy: Policy | None = None):
        self.customers = {c["customer_id"]: c for c in customers}
        self.contacts, self.outboxes, self.held, self.records, self.flushed = {}, {}, {}, [], 0
        self.steps: list[str] = []
        self.kill_before: str | None = None
        self.provider = provider or ScriptedProvider()
        self._silences = list(silences)
        self.t = now
        self.released: list[tuple[str, str]] = []
        self.policy = policy or Policy(send_deadline_s=5.0)

    def _step(self, name):
        if name == self.kill_before:
            self.kill_before = None
            raise Killed(name)
        self.steps.append(name)

    def customer(self, cid): return self.customers.get(cid)
    def contact(self, cid): return self.contacts.get(cid) or {}
    def set_contact(self, cid, value): self.contacts[cid] = value
    def outbox(self, key): return self.outboxes.get(key)
    def set_outbox(self, key, value):
        self._step(value["state"])
        self.outboxes[key] = value
    def usage(self, cid): return None
    def silences(self): return self._silences
    def notifier(self, channel): return self.provider
    def now(self): return self.t
    async def flush(self):
        self.flushed += 1
        self.steps.append("flush")
    async def hold(self, cid, key, entry): self.held.setdefault(cid, {})[key] = entry

    def held_request(self, cid, key):
        return (self.held.get(cid) or {}).get(key)

    def drop_held(self, cid, key):
        (self.held.get(cid) or {}).pop(key, None)

    async def release_held(self, cid, why):
        self.released += [(cid, k) for k, e in (self.held.get(cid) or {}).items() if e["why"] == why]

    async def emit(self, record):
        self._step(f"emit {record['status']}")
        self.records.append(dict(record))

    async def recorded(self, record, since):
        return any(r["notification_id"] == record["notification_id"] and r["status"] == record["status"]
                   and r["created_at"] == record["created_at"] for r in self.records)
    async def pace(self, channel): pass
