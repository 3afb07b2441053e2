"""Who may use the operations console, and how a request proves it.

Users come from ``GRIDWATCH_CONSOLE_USERS`` (comma-separated) and/or the file named by
``GRIDWATCH_CONSOLE_USERS_FILE`` (one per line, blank lines and ``#`` comments ignored)::

    name:role:secret              role "viewer" or "operator"; the secret is a token or a password
    name:role:sha256:<64 hex>     the same with only the SHA-256 of the secret stored (see hash_secret)

A request authenticates with ``Authorization: Bearer <secret>`` (the secret alone names the user),
``Authorization: Basic`` (name and secret) or the ``gw_session`` cookie that ``POST /login`` sets. Secrets
are compared as SHA-256 digests with :func:`hmac.compare_digest` against every user, so neither the
comparison nor the search stops early on a partial match. Secrets never appear in ``repr``, messages or logs.

Sessions live in memory (a restart signs everyone out); each carries its own CSRF token, which a
cookie-authenticated state-changing request must echo in ``X-CSRF-Token``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from gridwatch.config import Settings
from gridwatch.httpauth import basic_credentials

__all__ = ["ROLES", "SESSION_COOKIE", "CSRF_HEADER", "User", "Session", "UsersError", "Authenticator",
           "basic_credentials", "hash_secret", "parse_users", "load_users", "demo_users"]

ROLES = ("viewer", "operator")
SESSION_COOKIE = "gw_session"
CSRF_HEADER = "X-CSRF-Token"
#: a session unused this long is forgotten
SESSION_IDLE_S = 12 * 3600
#: a session never lives longer than this, used or not
SESSION_MAX_S = 7 * 24 * 3600

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


class UsersError(ValueError):
    """A malformed user list; the message names the entry by position and user, never the secret."""


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def hash_secret(secret: str) -> str:
    """The ``sha256:<hex>`` form of a secret, to store in the users list instead of the secret itself."""
    return "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class User:
    name: str
    role: str
    #: SHA-256 of the secret (a plain secret is hashed on load: only digests are compared)
    digest: bytes = field(repr=False)

    @property
    def can_act(self) -> bool:
        """Operators acknowledge, resolve and silence; viewers only look."""
        return self.role == "operator"

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(_digest(secret), self.digest)


@dataclass
class Session:
    id: str = field(repr=False)
    user: User
    csrf: str = field(repr=False)
    created: float
    last_seen: float


def _parse_entry(entry: str, where: str) -> User:
    name, sep1, rest = entry.partition(":")
    role, sep2, secret = rest.partition(":")
    name, role = name.strip(), role.strip().lower()
    if not sep1 or not sep2:
        raise UsersError(f"{where}: expected name:role:secret")
    if not _NAME.match(name):
        raise UsersError(f"{where}: user name {name!r} must be 1-64 letters, digits or . _ @ -")
    if role not in ROLES:
        raise UsersError(f"{where}: user {name!r} has role {role!r}; the role is one of {', '.join(ROLES)}")
    secret = secret.strip()
    if secret.lower().startswith("sha256:"):
        hexdigest = secret[len("sha256:"):].strip()
        if not _HEX64.match(hexdigest):
            raise UsersError(f"{where}: user {name!r}: a hashed secret is sha256: and 64 hex digits")
        return User(name, role, bytes.fromhex(hexdigest))
    if not secret:
        raise UsersError(f"{where}: user {name!r} has an empty secret")
    return User(name, role, _digest(secret))


def parse_users(text: str | None, *, source: str = "GRIDWATCH_CONSOLE_USERS",
                lines: bool = False) -> list[User]:
    """Users from a comma-separated list (``lines=True``: one per line, ``#`` comments) — UsersError."""
    if not text:
        return []
    if lines:
        entries = [(f"{source} line {n}", line.strip()) for n, line in enumerate(text.splitlines(), 1)]
        entries = [(w, e) for w, e in entries if e and not e.startswith("#")]
    else:
        entries = [(f"{source} entry {n}", e.strip()) for n, e in enumerate(text.split(","), 1) if e.strip()]
    return [_parse_entry(entry, where) for where, entry in entries]


def _check_unique(users: Iterable[User]) -> list[User]:
    users = list(users)
    names, digests = set(), set()
    for user in users:
        if user.name in names:
            raise UsersError(f"user {user.name!r} is configured twice")
        if user.digest in digests:
            raise UsersError(f"user {user.name!r} has the same secret as another user; give each their own")
        names.add(user.name)
        digests.add(user.digest)
    return users


def load_users(settings: Settings | None = None) -> list[User]:
    """Users from ``GRIDWATCH_CONSOLE_USERS`` and ``GRIDWATCH_CONSOLE_USERS_FILE`` ([] when neither is set)."""
    settings = settings or Settings()
    users = parse_users(settings.console_users)
    path = settings.console_users_file
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsersError(f"GRIDWATCH_CONSOLE_USERS_FILE {path}: {exc.strerror or exc}") from None
        users += parse_users(text, source=str(path), lines=True)
    return _check_unique(users)


def demo_users() -> list[tuple[User, str]]:
    """``operator`` and ``viewer`` with fresh random tokens: ``[(user, token), ...]`` (the tokens are shown
    once, at start, so someone can sign in to a demo)."""
    out = []
    for name in ("operator", "viewer"):
        token = secrets.token_urlsafe(24)
        out.append((User(name, name, _digest(token)), token))
    return out


class Authenticator:
    """Checks credentials and keeps the sessions of signed-in browsers."""

    def __init__(self, users: Iterable[User], *, clock: Callable[[], float] = time.monotonic,
                 idle_s: float = SESSION_IDLE_S, max_s: float = SESSION_MAX_S):
        self.users = _check_unique(users)
        self._by_name = {u.name: u for u in self.users}
        self._sessions: dict[str, Session] = {}
        self._clock = clock
        self._idle_s, self._max_s = idle_s, max_s
        # compared against when a name is unknown, so an unknown name costs the same as a wrong secret
        self._dummy = _digest(secrets.token_hex(16))

    def by_token(self, secret: str) -> User | None:
        """The user whose secret this is (Bearer): every user is compared, whatever matches first."""
        if not secret:
            return None
        given = _digest(secret)
        found = None
        for user in self.users:
            if hmac.compare_digest(given, user.digest):
                found = user
        return found

    def by_password(self, name: str, secret: str) -> User | None:
        """The user ``name`` if ``secret`` is theirs (Basic, the sign-in form)."""
        user = self._by_name.get(name or "")
        ok = hmac.compare_digest(_digest(secret or ""), user.digest if user else self._dummy)
        return user if (ok and user is not None and secret) else None

    # ------------------------------------------------------------------------------------ sessions

    def open_session(self, user: User) -> Session:
        now = self._clock()
        self._expire(now)
        session = Session(id=secrets.token_urlsafe(32), user=user, csrf=secrets.token_urlsafe(32),
                          created=now, last_seen=now)
        self._sessions[session.id] = session
        return session

    def session(self, session_id: str | None) -> Session | None:
        """The live session with this id (its idle timer restarted), or None."""
        if not session_id:
            return None
        now = self._clock()
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if now - session.last_seen > self._idle_s or now - session.created > self._max_s:
            self._sessions.pop(session_id, None)
            return None
        if self._by_name.get(session.user.name) is not session.user:  # the user was removed
            self._sessions.pop(session_id, None)
            return None
        session.last_seen = now
        return session

    def close_session(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)

    def _expire(self, now: float) -> None:
        for sid, s in list(self._sessions.items()):
            if now - s.last_seen > self._idle_s or now - s.created > self._max_s:
                del self._sessions[sid]
