"""Who may use the operations console, and how a request proves it.

Users come from ``GRIDWATCH_CONSOLE_USERS`` (comma-separated) and/or the file named by
``GRIDWATCH_CONSOLE_USERS_FILE`` (one per line, blank lines and ``#`` comments ignored)::

    name:role:secret                  role "viewer" or "operator"; the secret is a token or a password
    name:role:$argon2id$v=19$m=...    the same with only a salted Argon2id hash of the secret stored
                                      (``gridwatch console --hash-secret`` prints one, see hash_secret)

A request authenticates with ``Authorization: Bearer <secret>`` (the secret alone names the user),
``Authorization: Basic`` (name and secret) or the ``gw_session`` cookie that ``POST /login`` sets. Every secret
is kept only as an Argon2id hash (argon2-cffi; a plain secret from the environment is hashed when it is
read) and checked with its slow verification; a secret that verified once is remembered in memory (keyed by
its SHA-256) so an API client does not pay that cost on every request. Secrets never appear in ``repr``,
messages or logs.

Guessing is throttled (:class:`Throttle`): after :data:`FREE_FAILURES` failed sign-ins per user name, and
separately per client address, each further failure doubles the wait (1 s, 2 s, ... at most
:data:`MAX_BACKOFF_S`), during which every attempt is answered 429 with ``Retry-After`` without being
checked. Failures are forgotten after :data:`FAILURE_WINDOW_S` without one.

Sessions live in memory and, when a :class:`SessionStore` is given (the console uses the history store's
PostgreSQL when a database is configured, :mod:`console.sessions`), also in the store, so a console restart
signs nobody out. The store keeps only a SHA-256 of each session id (a copy of the store is not a set of
cookies), the CSRF token, the times and a digest of the user as configured; a restored session lives on only if
its user is still configured the same way (name, role and Argon2id hash; a user whose secret is configured in
plain is hashed with a fresh salt at every start, so such a user's sessions end at a restart). At most :data:`MAX_SESSIONS_PER_USER` per user (a new
one ends the oldest), each ended after :data:`SESSION_IDLE_S` unused or :data:`SESSION_MAX_S` in all, and each
carrying its own CSRF token, which a cookie-authenticated state-changing request must echo in
``X-CSRF-Token``. Whatever ends a session (sign-out, expiry, the cap, the user's removal from the list) is
told to the listeners of :meth:`Authenticator.on_end`, which the console uses to close live-event streams.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gridwatch.config import Settings
from gridwatch.httpauth import basic_credentials

__all__ = ["ROLES", "SESSION_COOKIE", "CSRF_HEADER", "User", "Session", "StoredSession", "SessionStore", "UsersError",
           "Authenticator", "Throttle",
           "basic_credentials", "hash_secret", "parse_users", "load_users", "demo_users"]

ROLES = ("viewer", "operator")
SESSION_COOKIE = "gw_session"
CSRF_HEADER = "X-CSRF-Token"
#: a session unused this long is ended
SESSION_IDLE_S = 12 * 3600
#: a session never lives longer than this, used or not (a shift and its handover)
SESSION_MAX_S = 24 * 3600
#: a session's use is written to the store at most this often (the idle limit is hours)
TOUCH_EVERY_S = 60.0
#: sessions one user may have at once; signing in again ends the oldest
MAX_SESSIONS_PER_USER = 10
#: failed sign-ins per user name, and per address, before each further one makes them wait
FREE_FAILURES = 5
#: the longest wait after repeated failures, and how long failures are remembered without a new one
MAX_BACKOFF_S = 900.0
FAILURE_WINDOW_S = 3600.0

#: Argon2id with the OWASP password-storage parameters (19 MiB, 2 passes, 1 lane): ~40 ms per check
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
# entries of the comma-separated list: a comma starts a new entry only before "name:role:" (Argon2 hashes
# carry commas)
_ENTRY_SPLIT = re.compile(r",(?=\s*[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\s*:\s*(?:" + "|".join(ROLES) + r")\s*:)",
                          re.IGNORECASE)


class UsersError(ValueError):
    """A malformed user list; the message names the entry by position and user, never the secret."""


def hash_secret(secret: str) -> str:
    """The salted Argon2id hash of a secret (PHC string ``$argon2id$...``), to store in the users list
    instead of the secret itself."""
    return HASHER.hash(secret)


def _fingerprint(secret: str) -> bytes:
    """Key of the in-memory cache of secrets that verified (never stored, never compared to a hash)."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


# keys this process's fingerprints of plain secrets (so a re-read list recognises an unchanged user)
_PROCESS_KEY = secrets.token_bytes(32)


@dataclass(frozen=True)
class User:
    name: str
    role: str
    #: the Argon2id hash of the secret (a plain secret is hashed on load)
    secret_hash: str = field(repr=False, compare=False)
    #: what makes two loads of the list the same user: the stored hash, or for a plain secret an HMAC of it
    #: under a key that exists only in this process's memory
    origin: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if not self.origin:
            object.__setattr__(self, "origin", self.secret_hash)

    @property
    def can_act(self) -> bool:
        """Operators acknowledge, resolve and silence; viewers only look."""
        return self.role == "operator"

    def matches(self, secret: str) -> bool:
        """The slow check (~40 ms): call it off the event loop."""
        try:
            return bool(secret) and HASHER.verify(self.secret_hash, secret)
        except (VerificationError, InvalidHashError):
            return False


@dataclass
class Session:
    #: the cookie's value ("" for a session restored from the store until its cookie is seen)
    id: str = field(repr=False)
    user: User
    csrf: str = field(repr=False)
    created: float
    last_seen: float
    #: SHA-256 of the id: what sessions are kept and stored under
    key: str = field(default="", repr=False)
    #: last_seen as last written to the store
    stored_seen: float = field(default=0.0, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.key:
            self.key = session_key(self.id)


def session_key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def user_key(user: User) -> str:
    """What a stored session remembers of its user: a digest of name, role and the configured secret's origin
    (the Argon2id hash, or for a plain secret an HMAC under a key of this process only)."""
    return hashlib.sha256(f"{user.name}\0{user.role}\0{user.origin}".encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class StoredSession:
    key: str
    user_name: str
    user_key: str
    csrf: str = field(repr=False)
    created: float
    last_seen: float


class SessionStore(Protocol):
    """Where sessions are kept beyond the process (:class:`console.sessions.PostgresSessions`). Writes may be
    deferred; they must keep their order."""

    def load(self) -> list[StoredSession]: ...

    def save(self, session: StoredSession) -> None: ...

    def touch(self, key: str, last_seen: float) -> None: ...

    def delete(self, keys: list[str]) -> None: ...


def _parse_entry(entry: str, where: str) -> tuple[User, str | None]:
    """The user of one entry and its plain secret (None when the entry carries a hash)."""
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
        raise UsersError(f"{where}: user {name!r}: unsalted sha256: hashes are no longer accepted; store the "
                         "Argon2id hash that `gridwatch console --hash-secret` prints")
    if secret.startswith("$argon2"):
        try:
            HASHER.check_needs_rehash(secret)  # parses it
        except (InvalidHashError, ValueError):
            raise UsersError(f"{where}: user {name!r}: not a valid Argon2 hash") from None
        if not secret.startswith("$argon2id$"):
            raise UsersError(f"{where}: user {name!r}: the hash must be Argon2id ($argon2id$...)")
        return User(name, role, secret), None
    if not secret:
        raise UsersError(f"{where}: user {name!r} has an empty secret")
    origin = "plain:" + hmac.new(_PROCESS_KEY, secret.encode("utf-8"), hashlib.sha256).hexdigest()
    return User(name, role, hash_secret(secret), origin), secret


def _parse(text: str | None, source: str, lines: bool) -> list[tuple[User, str | None]]:
    if not text:
        return []
    if lines:
        entries = [(f"{source} line {n}", line.strip()) for n, line in enumerate(text.splitlines(), 1)]
        entries = [(w, e) for w, e in entries if e and not e.startswith("#")]
    else:
        entries = [(f"{source} entry {n}", e.strip()) for n, e in enumerate(_ENTRY_SPLIT.split(text), 1)
                   if e.strip()]
    return [_parse_entry(entry, where) for where, entry in entries]


def parse_users(text: str | None, *, source: str = "GRIDWATCH_CONSOLE_USERS",
                lines: bool = False) -> list[User]:
    """Users from a comma-separated list (``lines=True``: one per line, ``#`` comments) — UsersError."""
    parsed = _parse(text, source, lines)
    _check_unique(parsed)
    return [u for u, _ in parsed]


def _check_unique(parsed: Iterable[tuple[User, str | None]]) -> None:
    names, plain = set(), set()
    for user, secret in parsed:
        if user.name in names:
            raise UsersError(f"user {user.name!r} is configured twice")
        if secret is not None and secret in plain:
            raise UsersError(f"user {user.name!r} has the same secret as another user; give each their own")
        names.add(user.name)
        if secret is not None:
            plain.add(secret)


def load_users(settings: Settings | None = None) -> list[User]:
    """Users from ``GRIDWATCH_CONSOLE_USERS`` and ``GRIDWATCH_CONSOLE_USERS_FILE`` ([] when neither is set)."""
    settings = settings or Settings()
    parsed = _parse(settings.console_users, "GRIDWATCH_CONSOLE_USERS", False)
    path = settings.console_users_file
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsersError(f"GRIDWATCH_CONSOLE_USERS_FILE {path}: {exc.strerror or exc}") from None
        parsed += _parse(text, str(path), True)
    _check_unique(parsed)
    return [u for u, _ in parsed]


def demo_users() -> list[tuple[User, str]]:
    """``operator`` and ``viewer`` with fresh random tokens: ``[(user, token), ...]`` (the tokens are shown
    once, at start, so someone can sign in to a demo)."""
    out = []
    for name in ("operator", "viewer"):
        token = secrets.token_urlsafe(24)
        out.append((User(name, name, hash_secret(token)), token))
    return out


class Throttle:
    """Failed attempts per key (a user name, an address): after ``free`` of them each further failure doubles
    the wait, from ``base_s`` up to ``max_s``; a key is forgotten ``window_s`` after its last failure, and at
    most ``max_keys`` keys are kept (the least recently failed are dropped first)."""

    def __init__(self, *, free: int = FREE_FAILURES, base_s: float = 1.0, max_s: float = MAX_BACKOFF_S,
                 window_s: float = FAILURE_WINDOW_S, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.free, self.base_s, self.max_s, self.window_s, self.max_keys = free, base_s, max_s, window_s, max_keys
        self._clock = clock
        self._keys: OrderedDict[object, list[float]] = OrderedDict()  # key -> [failures, last, until]

    def __len__(self) -> int:
        return len(self._keys)

    def wait(self, key: object) -> float:
        """Seconds before ``key`` may try again (0: now)."""
        entry = self._entry(key)
        return max(0.0, entry[2] - self._clock()) if entry else 0.0

    def retry_after(self, *keys: object) -> int:
        """The ``Retry-After`` for the longest wait of ``keys``, whole seconds (0: none)."""
        return math.ceil(max([self.wait(k) for k in keys if k is not None] or [0.0]))

    def failed(self, key: object) -> None:
        now = self._clock()
        entry = self._entry(key) or [0, now, now]
        entry[0] += 1
        entry[1] = now
        if entry[0] >= self.free:
            entry[2] = now + min(self.max_s, self.base_s * 2 ** (entry[0] - self.free))
        self._keys[key] = entry
        self._keys.move_to_end(key)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)

    def succeeded(self, key: object) -> None:
        self._keys.pop(key, None)

    def _entry(self, key: object) -> list[float] | None:
        entry = self._keys.get(key)
        if entry is not None and self._clock() - entry[1] > self.window_s and self._clock() >= entry[2]:
            del self._keys[key]
            return None
        return entry


class Authenticator:
    """Checks credentials, throttles guessing and keeps the sessions of signed-in browsers."""

    def __init__(self, users: Iterable[User], *, clock: Callable[[], float] = time.time,
                 idle_s: float = SESSION_IDLE_S, max_s: float = SESSION_MAX_S,
                 max_sessions: int = MAX_SESSIONS_PER_USER, throttle: Throttle | None = None,
                 store: SessionStore | None = None):
        # key (SHA-256 of the id) -> session; times are wall-clock seconds, so stored ones mean the same later
        self._sessions: dict[str, Session] = {}
        self._clock = clock
        self._store = store
        self._idle_s, self._max_s, self._max_sessions = idle_s, max_s, max_sessions
        self.throttle = throttle or Throttle(clock=clock)
        self._listeners: list[Callable[[str, str | None], None]] = []
        # fingerprint (of "name\0secret" for Basic, of the secret for Bearer) -> the user it verified as
        self._verified: OrderedDict[tuple[str, bytes], User] = OrderedDict()
        # verified against when a name is unknown, so an unknown name costs the same as a wrong secret
        self._dummy = User("-", "viewer", hash_secret(secrets.token_hex(16)))
        self.set_users(users)
        if store is not None:
            self._restore(store)

    def _restore(self, store: SessionStore) -> None:
        """Take back the stored sessions whose user is still configured the same way and that have not
        expired; forget the others."""
        now = self._clock()
        by_key = {user_key(u): u for u in self.users}
        dropped = []
        for row in store.load():
            user = by_key.get(row.user_key)
            if user is None or user.name != row.user_name or now - row.last_seen > self._idle_s \
                    or now - row.created > self._max_s:
                dropped.append(row.key)
                continue
            self._sessions[row.key] = Session(id="", user=user, csrf=row.csrf, created=row.created,
                                              last_seen=row.last_seen, key=row.key, stored_seen=row.last_seen)
        if dropped:
            store.delete(dropped)

    # ------------------------------------------------------------------------------------ users

    def set_users(self, users: Iterable[User]) -> None:
        """Replace the users (a reloaded list): a user removed or changed (role, secret) is signed out."""
        users = list(users)
        _check_unique([(u, None) for u in users])
        old = getattr(self, "_by_name", {})
        self.users = users
        self._by_name = {u.name: u for u in users}
        self._verified.clear()
        for name, user in old.items():
            if self._by_name.get(name) != user:
                ended = [key for key, s in self._sessions.items() if s.user.name == name]
                for key in ended:
                    del self._sessions[key]
                if ended and self._store is not None:
                    self._store.delete(ended)
                self._tell(name, None)

    def current(self, user: User) -> bool:
        """The user is still configured as it was."""
        return self._by_name.get(user.name) == user

    def on_end(self, listener: Callable[[str, str | None], None]) -> None:
        """``listener(user_name, session_id)`` is called when a session ends, and ``(user_name, None)`` when
        the user is removed or changed."""
        self._listeners.append(listener)

    def _tell(self, name: str, session_id: str | None) -> None:
        for listener in self._listeners:
            listener(name, session_id)

    # ---------------------------------------------------------------------------------- secrets

    def cached(self, kind: str, name: str, secret: str) -> User | None:
        """A user these credentials verified as before (fast), or None: then call by_token/by_password."""
        fp = _fingerprint(f"{name}\0{secret}" if kind == "basic" else secret)
        user = self._verified.get((kind, fp))
        return user if user is not None and self.current(user) else None

    def _remember(self, kind: str, key: str, user: User) -> None:
        self._verified[(kind, _fingerprint(key))] = user
        while len(self._verified) > 4 * len(self.users) + 64:
            self._verified.popitem(last=False)

    def by_token(self, secret: str) -> User | None:
        """The user whose secret this is (Bearer). Slow on the first use of a secret (every user's hash is
        checked), instant afterwards."""
        if not secret:
            return None
        user = self.cached("bearer", "", secret)
        if user is not None:
            return user
        found = [u for u in self.users if u.matches(secret)]
        if len(found) != 1:
            return None
        self._remember("bearer", secret, found[0])
        return found[0]

    def by_password(self, name: str, secret: str) -> User | None:
        """The user ``name`` if ``secret`` is theirs (Basic, the sign-in form)."""
        user = self.cached("basic", name or "", secret or "")
        if user is not None:
            return user
        user = self._by_name.get(name or "")
        ok = (user or self._dummy).matches(secret or "")
        if not (ok and user is not None):
            return None
        self._remember("basic", f"{name}\0{secret}", user)
        return user

    # ------------------------------------------------------------------------------------ sessions

    def open_session(self, user: User) -> Session:
        now = self._clock()
        self._expire(now)
        mine = sorted((s for s in self._sessions.values() if s.user.name == user.name), key=lambda s: s.created)
        for old in mine[:max(0, len(mine) - self._max_sessions + 1)]:
            self._end(old)
        session = Session(id=secrets.token_urlsafe(32), user=user, csrf=secrets.token_urlsafe(32),
                          created=now, last_seen=now, stored_seen=now)
        self._sessions[session.key] = session
        if self._store is not None:
            self._store.save(StoredSession(session.key, user.name, user_key(user), session.csrf, now, now))
        return session

    def sessions_of(self, name: str) -> int:
        self._expire(self._clock())
        return sum(1 for s in self._sessions.values() if s.user.name == name)

    def session(self, session_id: str | None) -> Session | None:
        """The live session with this id (its idle timer restarted), or None."""
        if not session_id:
            return None
        session = self._sessions.get(session_key(session_id))
        if session is None or not self.alive(session):
            return None
        session.id = session.id or session_id  # restored: its cookie is seen for the first time
        session.last_seen = self._clock()
        if self._store is not None and session.last_seen - session.stored_seen >= TOUCH_EVERY_S:
            session.stored_seen = session.last_seen
            self._store.touch(session.key, session.last_seen)
        return session

    def alive(self, session: Session) -> bool:
        """The session has not ended (without counting as a use); an expired one is ended now."""
        if self._sessions.get(session.key) is not session:
            return False
        now = self._clock()
        if now - session.last_seen > self._idle_s or now - session.created > self._max_s \
                or not self.current(session.user):
            self._end(session)
            return False
        return True

    def close_session(self, session_id: str | None) -> None:
        session = self._sessions.get(session_key(session_id)) if session_id else None
        if session is not None:
            self._end(session)

    def _end(self, session: Session) -> None:
        if self._sessions.pop(session.key, None) is None:
            return
        if self._store is not None:
            self._store.delete([session.key])
        self._tell(session.user.name, session.id)

    def _expire(self, now: float) -> None:
        for s in list(self._sessions.values()):
            self.alive(s)
