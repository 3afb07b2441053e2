"""``gridwatch console``: the operations console's web API, live events, metrics and pages (aiohttp).

At start it reads the ``alerts``, ``notifications``, ``feedback``, ``gridwatch.silences`` and ``customers``
topics over every partition (:class:`streams.topicview.TopicView`, so it shows everything whichever worker
wrote it), waits until it has caught up, then serves and keeps following them; each record is applied to a
:class:`console.model.ConsoleModel` and pushed to ``/api/events`` subscribers as it arrives. Without a
database it reads them whole (notifications and feedback: their tails) and holds everything; with the
history store it starts from the store's snapshot and reads on from the projector's offsets, looking
customers, past alerts and its figures up in the store (:mod:`console.board_store`). Operator actions are published on Kafka (``gridwatch.alert-actions``, ``gridwatch.silences``)
with acks=all; nothing is changed locally except a silence the console itself just published.

Security: every path except ``/login`` and ``/static/*`` needs credentials (:mod:`console.auth`); a
state-changing request must come from the console's own origin when it carries ``Origin``, and with a
session cookie it must echo the session's CSRF token in ``X-CSRF-Token``; viewers cannot act and see phone
numbers masked. Every response carries a restrictive Content-Security-Policy. Phone numbers and secrets
are never logged (there is no access log; actions are logged with the user's name only). Failed sign-ins
(form, JSON, Basic, Bearer) are throttled per user name and per client address (``request.remote``: behind a
reverse proxy, that is the proxy) and answered 429 with ``Retry-After`` while throttled; a live-event stream
ends when the session it was opened with ends (sign-out, expiry, the per-user cap) or its user is removed
(``kill -HUP`` re-reads the users). ``next`` after sign-in is followed only when it is a path on this console.
Bodies that are not UTF-8, or JSON nested deeper than :data:`MAX_JSON_DEPTH`, are answered 400.

The API is described in :mod:`console.openapi` (``GET /api/openapi.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import hmac
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import quote, urlsplit

from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from console import auth as gwauth
from console import evidence, history_api, openapi
from console.errors import ApiError
from console.board_store import StoreDirectory, open_board_store
from console.metrics import KafkaOffsets, render as render_metrics
from console.model import ConsoleModel, format_time
from console.sessions import open_sessions
from gridwatch import config as names
from gridwatch import contract
from gridwatch.config import Settings
from gridwatch.kinds import KINDS
from gridwatch.signals import stop_event
from notifiers.silences import active, expire, new_silence, parse_scope, silence_state
from notifiers.lifecycle import apply_action, make_action
from streams.topicview import TopicView, TopicViewError

__all__ = ["CONSOLE", "Console", "EventHub", "make_app", "serve", "run", "register", "SECURITY_HEADERS"]



def _api_dumps(value: Any) -> str:
    """JSON of what the console serves: always valid JSON. A NaN or Infinity in a record written before the
    contract refused them is served as null rather than as ``NaN`` (which no browser's JSON.parse takes)."""
    return json.dumps(contract.finite(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _json(data: Any, **kwargs: Any) -> web.Response:
    return web.json_response(data, dumps=_api_dumps, **kwargs)

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8095
HEARTBEAT_S = 15.0
READY_TIMEOUT_S = 120.0
PUBLISH_TIMEOUT_S = 15.0
STATIC_DIR = Path(__file__).resolve().parent / "static"
ALERT_LIMIT_DEFAULT, FEEDBACK_LIMIT_DEFAULT, LIMIT_MAX = 1000, 200, 10000
#: events queued for one live subscriber before it is dropped (it reconnects and refetches)
SUBSCRIBER_QUEUE = 2000
#: with a history store: how long the board's figures are reused, and how often the board forgets resolved
#: alerts older than GRIDWATCH_CONSOLE_RECENT_HOURS and drops customers the projector has caught up with
#: with a history store the figures are recomputed after an alert, message or reply arrived, once the projector
#: has written it (waiting at most PROJECTION_WAIT_S), at most every FIGURES_EVERY_S
FIGURES_EVERY_S = 5.0
PROJECTION_WAIT_S = 30.0
#: the topics whose records change the figures and the satisfaction
FIGURE_FEEDS = ("alerts", "notifications", "feedback")
MAINTENANCE_S = 60.0
RECENT_HOURS_DEFAULT = 24.0

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

# what the console reads: short name -> contract topic
FEEDS = {"alerts": names.ALERTS, "notifications": names.NOTIFICATIONS, "feedback": names.FEEDBACK,
         "silences": names.SILENCES, "customers": names.CUSTOMERS}


# ------------------------------------------------------------------------------------------ live events

class EventHub:
    """Fan-out of model changes to ``/api/events`` subscribers, one bounded queue each, each tagged with the
    user name and session id (None for Bearer/Basic) it was opened with."""

    def __init__(self, queue_size: int = SUBSCRIBER_QUEUE):
        self._queues: dict[asyncio.Queue, tuple[str | None, str | None]] = {}
        self._size = queue_size

    def __len__(self) -> int:
        return len(self._queues)

    def subscribe(self, user: str | None = None, session_id: str | None = None) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(self._size)
        self._queues[queue] = (user, session_id)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self._queues.pop(queue, None)

    def end(self, user: str, session_id: str | None) -> None:
        """End the streams of this session, or with ``session_id`` None every stream of ``user``."""
        for queue, (owner, sid) in list(self._queues.items()):
            if owner == user and (session_id is None or sid == session_id):
                self._drop(queue)

    def publish(self, events: Iterable[tuple[str, dict]]) -> None:
        for name, payload in events:
            data = _api_dumps(payload)
            frame = f"event: {name}\ndata: {data}\n\n".encode("utf-8")
            for queue in list(self._queues):
                try:
                    queue.put_nowait(frame)
                except asyncio.QueueFull:  # too slow: end its stream, it reconnects and refetches
                    self._drop(queue)

    def _drop(self, queue: asyncio.Queue) -> None:
        self._queues.pop(queue, None)
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)

    def close(self) -> None:
        for queue in list(self._queues):
            self._drop(queue)


# ---------------------------------------------------------------------------------------------- state

@dataclass
class Console:
    settings: Settings
    model: ConsoleModel
    auth: gwauth.Authenticator
    publisher: Any  # has ``async send_and_wait(topic, value=bytes, key=bytes)`` (aiokafka's producer)
    offsets: Any    # has ``async query() -> KafkaFigures | None``
    hub: EventHub = field(default_factory=EventHub)
    static_dir: Path = STATIC_DIR
    heartbeat_s: float = HEARTBEAT_S
    clock: Callable[[], float] = time.time
    #: the history store the board looks customers, past alerts and its figures up in (None: it holds
    #: everything itself, read from the topics)
    store: Any = None
    _kept: dict[str, dict] = field(default_factory=dict)
    #: topic kind -> partition -> the next offset after the last record applied
    _seen: dict[str, dict[int, int]] = field(default_factory=dict)
    #: set when a record that changes the figures was applied
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _figures_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def feed(self, topic_kind: str) -> Callable[..., Any]:
        """``sink(key, value, kafka_ts, position=None)`` applying records of one topic and pushing the changes
        live. With a store, an alert's customers are looked up (in a thread) before it is applied, so the
        sink is a coroutine function for alerts."""
        if self.store is not None and topic_kind == "alerts":
            async def lookup_then_apply(key, value, kafka_ts, position=None):
                if isinstance(value, dict):
                    await self.look_up(*self.model.lookup_keys(value))
                self.apply(topic_kind, key, value, kafka_ts, position)
            return lookup_then_apply

        def sink(key, value, kafka_ts, position=None):
            self.apply(topic_kind, key, value, kafka_ts, position)
        return sink

    def apply(self, topic_kind: str, key: str | None, value: Any, kafka_ts: float | None,
              position: tuple[int, int] | None = None) -> None:
        """Apply one record to the model and push what changed (silences with ``active`` and ``state``, as
        ``GET /api/silences`` shows them)."""
        events = self.model.apply(topic_kind, key, value, kafka_ts, position)
        if position is not None:
            self._seen.setdefault(topic_kind, {})[position[0]] = position[1] + 1
        if events and topic_kind in FIGURE_FEEDS:
            self.changed.set()
        self.hub.publish([("silence", _silence_view(self, payload)) if name == "silence" and "deleted" not in payload
                          else (name, payload) for name, payload in events])

    async def look_up(self, customer_ids: list[str], meter_ids: list[str]) -> None:
        """Fetch from the store (in a thread) the customers the directory does not hold yet. A store that
        does not answer leaves them unknown (logged): the board still shows the alert."""
        directory = self.model.directory
        if self.store is None or not getattr(directory, "remote", False):
            return
        cids, mids = directory.missing(customer_ids, meter_ids)
        if not cids and not mids:
            return
        try:
            rows = await asyncio.to_thread(self.store.customers, cids, mids)
        except Exception as exc:  # noqa: BLE001 - the database is down: the alert is shown without its place
            log.warning("console: customers not looked up in the history store (%s)", type(exc).__name__)
            return
        directory.fill(rows, cids, mids)

    async def stored_alert(self, alert_id: str) -> dict | None:
        """The alert as the history store holds it (None without a store, or when it is not there)."""
        if self.store is None:
            return None
        try:
            return await asyncio.to_thread(self.store.alert, alert_id)
        except Exception as exc:  # noqa: BLE001
            log.warning("console: alert not read from the history store (%s)", type(exc).__name__)
            raise ApiError(503, f"history store unavailable ({type(exc).__name__})") from None

    async def figures(self) -> dict:
        """The board's figures: the model's, or with a store the database's (with ``computed_at``)."""
        if self.store is None:
            return self.model.figures()
        return await self._from_store("figures")

    async def satisfaction(self) -> dict:
        """Ratings per alert kind: over the feedback the model holds, or with a store over all of it."""
        if self.store is None:
            return self.model.satisfaction()
        return await self._from_store("satisfaction")

    async def _from_store(self, name: str) -> dict:
        """What the store last computed (:meth:`compute`); computed now when nothing was yet."""
        if name not in self._kept:
            await self.compute()
        return self._kept[name]

    async def compute(self) -> None:
        """Compute the figures and the satisfaction in the store (in a thread, one at a time) and keep them."""
        async with self._figures_lock:
            try:
                figures = await asyncio.to_thread(self.store.figures)
                satisfaction = await asyncio.to_thread(self.store.satisfaction)
            except Exception as exc:  # noqa: BLE001
                log.warning("console: figures not computed by the history store (%s)", type(exc).__name__)
                raise ApiError(503, f"history store unavailable ({type(exc).__name__})") from None
            self._kept = {"figures": {**figures, "computed_at": format_time(self.clock())},
                          "satisfaction": satisfaction}

    def seen(self, settings: Settings) -> dict[str, dict[int, int]]:
        """deployed topic -> partition -> next offset the console has applied, of the topics in the figures."""
        return {settings.topic(FEEDS[kind]): dict(parts) for kind, parts in self._seen.items()
                if kind in FIGURE_FEEDS}

    async def publish(self, topic: str, key: str, value: dict) -> None:
        """Publish one JSON record (acks=all) and wait for the broker; ApiError 503 when it does not take it."""
        payload = contract.dumps(value)
        name = self.settings.topic(topic)
        if self.publisher is None:
            raise ApiError(503, "the console has no Kafka producer")
        try:
            await asyncio.wait_for(self.publisher.send_and_wait(name, value=payload, key=key.encode("utf-8")),
                                   PUBLISH_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - KafkaError, timeout: the action did not happen
            log.warning("could not publish to %s: %s", name, type(exc).__name__)
            raise ApiError(503, f"could not publish to {name} ({type(exc).__name__}); try again") from None


CONSOLE = web.AppKey("gridwatch_console", Console)
# per-request storage keys (typed keys where aiohttp has them, 3.13+)
_RequestKey = getattr(web, "RequestKey", None)
USER = _RequestKey("gridwatch_user", object) if _RequestKey else "gridwatch_user"
SESSION = _RequestKey("gridwatch_session", object) if _RequestKey else "gridwatch_session"
VIA = _RequestKey("gridwatch_auth_via", object) if _RequestKey else "gridwatch_auth_via"


# ------------------------------------------------------------------------------------------- helpers

def _error(status: int, message: str, headers: dict | None = None) -> web.Response:
    return _json({"error": message}, status=status, headers=headers)


def _is_page(path: str) -> bool:
    return path in ("/", "/history") or path.startswith("/alerts/")


def _is_public(path: str) -> bool:
    return path == "/login" or path.startswith("/static/")


def _safe_next(value: Any) -> str:
    """``value`` when it is a path on this console, else ``/``: no scheme, no host, no backslash (browsers read
    it as a slash), no control character or space anywhere (browsers drop tabs and newlines, so
    ``/<TAB>/evil.example`` would become ``//evil.example``), not starting with ``//``."""
    text = value if isinstance(value, str) and value else "/"
    if (not text.startswith("/") or text.startswith("//") or "\\" in text
            or any(ord(c) <= 0x20 or 0x7f <= ord(c) <= 0x9f for c in text)):
        return "/"
    parts = urlsplit(text)
    if parts.scheme or parts.netloc:
        return "/"
    return text


def signin_page(*, error: str | None = None, next_path: str = "/", user: str = "") -> str:
    """The small sign-in form shown instead of a page to someone not signed in (no script, no inline style)."""
    err = f'<p role="alert"><strong>{escape(error)}</strong></p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>gridwatch console: sign in</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/static/console.css"></head>
<body><main>
<h1>gridwatch operations console</h1>
<p>Sign in with your user name and token or password.</p>
{err}<form method="post" action="/login">
<input type="hidden" name="next" value="{escape(_safe_next(next_path))}">
<p><label for="user">User</label><br><input id="user" name="user" autocomplete="username" required value="{escape(user)}"></p>
<p><label for="secret">Token or password</label><br><input id="secret" name="secret" type="password" autocomplete="current-password" required></p>
<p><button type="submit">Sign in</button></p>
</form>
</main></body></html>
"""


PLACEHOLDER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gridwatch console</title></head>
<body><main><h1>gridwatch operations console</h1>
<p>The console's page is not installed; the API is at <a href="/api/openapi.json">/api/openapi.json</a>.</p>
</main></body></html>
"""


def _own_origin(request: web.Request, settings: Settings) -> str:
    if settings.console_url:
        parts = urlsplit(settings.console_url)
        return f"{parts.scheme}://{parts.netloc}".lower()
    return f"{request.scheme}://{request.host}".lower()


def _throttled(console: Console, request: web.Request, name: str | None) -> ApiError | None:
    """429 while the client's address, or the user name, is waiting after failed sign-ins."""
    wait = console.auth.throttle.retry_after(("address", request.remote),
                                             ("user", name) if name is not None else None)
    if wait <= 0:
        return None
    return ApiError(429, f"too many failed sign-ins: try again in {wait} s", {"Retry-After": str(wait)})


async def _check(console: Console, request: web.Request, kind: str, name: str, secret: str) -> gwauth.User | None:
    """The user these credentials are, throttled (ApiError 429) and off the event loop (the hash check is
    slow on purpose); a failure counts against the address and the name."""
    auth = console.auth
    user = auth.cached(kind, name, secret)
    if user is not None:
        return user
    refused = _throttled(console, request, name if kind != "bearer" else None)
    if refused is not None:
        raise refused
    if kind == "bearer":
        user = await asyncio.to_thread(auth.by_token, secret)
    else:
        user = await asyncio.to_thread(auth.by_password, name, secret)
    if user is None:
        auth.throttle.failed(("address", request.remote))
        if kind != "bearer":
            auth.throttle.failed(("user", name))
    else:
        auth.throttle.succeeded(("user", user.name))
    return user


async def _identify(request: web.Request, console: Console) -> tuple[gwauth.User | None, gwauth.Session | None, str | None]:
    """``(user, session, via)``; via is "bearer", "basic" or "cookie". A present but wrong Authorization
    header yields no user (it does not fall back to the cookie)."""
    header = request.headers.get("Authorization")
    if header:
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            return await _check(console, request, "bearer", "", value.strip()), None, "bearer"
        if scheme == "basic":
            creds = gwauth.basic_credentials(header)
            user = await _check(console, request, "basic", *creds) if creds else None
            return user, None, "basic"
        return None, None, scheme
    session = console.auth.session(request.cookies.get(gwauth.SESSION_COOKIE))
    if session is not None:
        return session.user, session, "cookie"
    return None, None, None


def _unauthorized(request: web.Request) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="gridwatch console"'}
    if _is_page(request.path):
        return web.Response(status=401, text=signin_page(next_path=request.path_qs), content_type="text/html",
                            headers={**headers, "Cache-Control": "no-store"})
    return _error(401, "authentication required: Authorization: Bearer TOKEN, Basic, or sign in at /login",
                  headers)


@web.middleware
async def _guard(request: web.Request, handler):
    console = request.app[CONSOLE]
    path = request.path
    try:
        user, session, via = await _identify(request, console)
        request[USER], request[SESSION], request[VIA] = user, session, via
        if request.method not in SAFE_METHODS:
            origin = request.headers.get("Origin")
            if origin is not None and origin.rstrip("/").lower() != _own_origin(request, console.settings):
                raise ApiError(403, "cross-origin request refused: Origin is not this console")
        if user is None and not _is_public(path):
            return _unauthorized(request)
        if request.method not in SAFE_METHODS and via == "cookie" and path != "/login":
            token = request.headers.get(gwauth.CSRF_HEADER, "")
            if not token or not hmac.compare_digest(token.encode(), session.csrf.encode()):
                raise ApiError(403, f"missing or wrong {gwauth.CSRF_HEADER} (take it from GET /api/me)")
        return await handler(request)
    except ApiError as exc:
        return _error(exc.status, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status >= 400 and not _is_page(path) and not path.startswith("/static/"):
            return _error(exc.status, exc.reason or "error")
        raise


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/api/") or request.path == "/metrics":
        response.headers.setdefault("Cache-Control", "no-store")


def _require_operator(request: web.Request) -> gwauth.User:
    user = request[USER]
    if not user.can_act:
        raise ApiError(403, f"{user.name} is a viewer: only operators can do this")
    return user


#: JSON bodies nested deeper than this are refused before they are parsed (a request body is a flat object)
MAX_JSON_DEPTH = 32


def _too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """More than ``limit`` brackets open at once (brackets inside strings counted too: an over-estimate that
    only ever refuses bodies no endpoint would take)."""
    depth = 0
    for c in text:
        if c in "[{":
            depth += 1
            if depth > limit:
                return True
        elif c in "]}":
            depth -= 1
    return False


async def _body(request: web.Request) -> dict:
    if not request.body_exists:
        return {}
    try:
        if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            return {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        text = await request.text()
    except (UnicodeDecodeError, LookupError):  # not UTF-8, or an unknown charset
        raise ApiError(400, "the body is not UTF-8") from None
    except ValueError:  # a malformed form or multipart body
        raise ApiError(400, "the body is not a well-formed form") from None
    if _too_deep(text):
        raise ApiError(400, f"the body is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        data = json.loads(text or "{}")
    except (ValueError, RecursionError):
        raise ApiError(400, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


def _values(request: web.Request, name: str) -> set[str] | None:
    raw = request.query.getall(name, [])
    values = {v.strip() for item in raw for v in item.split(",") if v.strip()}
    return values or None


def _limit(request: web.Request, default: int) -> int:
    raw = request.query.get("limit")
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"limit must be a whole number, not {raw!r}") from None
    if not 1 <= value <= LIMIT_MAX:
        raise ApiError(400, f"limit must be between 1 and {LIMIT_MAX}")
    return value


def _text(body: dict, name: str) -> str | None:
    value = body.get(name)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _flag(body: dict, name: str) -> bool:
    value = body.get(name, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "on", "yes", "false", "0", "off", "no", ""):
        return value.lower() in ("true", "1", "on", "yes")
    raise ApiError(400, f"{name} must be true or false")


def evidence_url(alert_id: str) -> str:
    return f"/api/alerts/{quote(alert_id, safe=':@')}/evidence.svg"


# ------------------------------------------------------------------------------------------- handlers

async def page(request: web.Request) -> web.StreamResponse:
    index = request.app[CONSOLE].static_dir / "index.html"
    headers = {"Cache-Control": "no-store"}
    if index.is_file():
        return web.FileResponse(index, headers=headers)
    return web.Response(text=PLACEHOLDER_PAGE, content_type="text/html", headers=headers)


async def login_page(request: web.Request) -> web.Response:
    return web.Response(text=signin_page(next_path=request.query.get("next", "/"),
                                         user=request.query.get("user", "")[:64]),
                        content_type="text/html", headers={"Cache-Control": "no-store"})


async def login(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    as_json = request.content_type == "application/json"
    body = await _body(request)
    name, secret = body.get("user"), body.get("secret")
    name = name.strip()[:64] if isinstance(name, str) else ""
    secret = secret if isinstance(secret, str) else ""
    next_path = body.get("next") if isinstance(body.get("next"), str) else "/"
    try:
        user = await _check(console, request, "basic", name, secret) if name and secret else None
    except ApiError as exc:  # throttled
        log.info("console: sign-in refused while throttled")
        if as_json:
            return _error(exc.status, exc.message, exc.headers)
        return web.Response(status=exc.status, content_type="text/html", headers=exc.headers,
                            text=signin_page(error=f"Too many failed sign-ins: try again in "
                                                   f"{exc.headers['Retry-After']} s.", next_path=next_path, user=name))
    if user is None:
        log.info("console: failed sign-in")
        if as_json:
            return _error(401, "wrong user or secret")
        return web.Response(status=401, content_type="text/html",
                            text=signin_page(error="Wrong user or secret.", next_path=next_path, user=name))
    old = request[SESSION]
    if old is not None:
        console.auth.close_session(old.id)
    session = console.auth.open_session(user)
    log.info("console: %s signed in", user.name)
    if as_json:
        response: web.Response = _json({"user": user.name, "role": user.role, "csrf": session.csrf})
    else:
        response = web.Response(status=303, headers={"Location": _safe_next(next_path)})
    secure = (console.settings.console_url or "").lower().startswith("https:") or request.secure
    response.set_cookie(gwauth.SESSION_COOKIE, session.id, httponly=True, samesite="Strict", path="/",
                        secure=secure or None)
    return response


async def logout(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    session = request[SESSION]
    if session is not None:
        console.auth.close_session(session.id)
    response = _json({"signed_out": True})
    response.del_cookie(gwauth.SESSION_COOKIE, path="/")
    return response


async def me(request: web.Request) -> web.Response:
    user, session = request[USER], request[SESSION]
    return _json({"user": user.name, "role": user.role, "csrf": session.csrf if session else None})


async def list_kinds(request: web.Request) -> web.Response:
    """The declared alert kinds (gridwatch/kinds.py), for the page's kind filter."""
    return _json({"kinds": [{"name": k.name, "family": k.family, "summary": k.summary}
                            for k in KINDS if k.alert]})


async def list_alerts(request: web.Request) -> web.Response:
    model = request.app[CONSOLE].model
    result = model.list_alerts(kind=_values(request, "kind"), severity=_values(request, "severity"),
                               status=_values(request, "status"), feeder=_values(request, "feeder"),
                               transformer=_values(request, "transformer"),
                               limit=_limit(request, ALERT_LIMIT_DEFAULT))
    return _json(result)


async def _alert_or_404(request: web.Request, stored: dict | None = None) -> tuple[str, dict]:
    """The alert's latest record: held by the board, else (with a store) the store's; 404 when neither."""
    console = request.app[CONSOLE]
    aid = request.match_info["alert_id"]
    alert = console.model.alerts.get(aid)
    if alert is None:
        stored = stored if stored is not None else await console.stored_alert(aid)
        alert = stored["record"] if stored is not None else None
    if alert is None:
        raise ApiError(404, f"no alert {aid!r}")
    return aid, alert


async def alert_detail(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    model = console.model
    aid = request.match_info["alert_id"]
    stored = await console.stored_alert(aid) if console.store is not None else None
    aid, alert = await _alert_or_404(request, stored)
    url = evidence_url(aid) if evidence.chart_kind(alert) else None
    if console.store is None:
        return _json(model.detail(aid, reveal_phones=request[USER].can_act, evidence_url=url))
    customers, meters = model.lookup_keys(alert)
    notified = [n.get("customer_id") for n in (stored or {}).get("notifications") or []]
    notified += [n.get("customer_id") for n in model.notifications_of(aid)]
    await console.look_up(customers + [c for c in notified if isinstance(c, str)], meters)
    return _json(model.detail_with(stored or {"alert_id": aid}, reveal_phones=request[USER].can_act,
                                   evidence_url=url))


async def alert_evidence(request: web.Request) -> web.Response:
    aid, alert = await _alert_or_404(request)
    if evidence.chart_kind(alert) is None:
        raise ApiError(404, f"alert {aid!r} has no evidence series to draw")
    return web.Response(text=evidence.render(alert), content_type="image/svg+xml", charset="utf-8")


async def _act(request: web.Request, action: str) -> web.Response:
    console = request.app[CONSOLE]
    user = _require_operator(request)
    body = await _body(request)
    aid, alert = await _alert_or_404(request)
    reason = _text(body, "reason")
    if reason is None:
        raise ApiError(400, "reason is required (e.g. crew dispatched, work order WO-17)")
    no_fault = _flag(body, "no_fault") if action == "resolve" else False
    if action != "resolve" and "no_fault" in body and _flag(body, "no_fault"):
        raise ApiError(400, "no_fault applies to resolve only")
    record = make_action(action, aid, user.name, reason, no_fault=no_fault, now=console.clock())
    _, problem = apply_action(alert, record)
    if problem:
        raise ApiError(409, problem)
    await console.publish(names.ALERT_ACTIONS, aid, record)
    log.info("console: %s sent %s of %s", user.name, action, aid)
    return _json({"accepted": True, "action": record}, status=202)


async def acknowledge(request: web.Request) -> web.Response:
    return await _act(request, "acknowledge")


async def resolve(request: web.Request) -> web.Response:
    return await _act(request, "resolve")


async def list_silences(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    return _json({"silences": console.model.list_silences(console.clock())})


def _silence_view(console: Console, record: dict) -> dict:
    now = console.clock()
    return {**record, "active": active(record, now), "state": silence_state(record, now)}


async def add_silence(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    user = _require_operator(request)
    body = await _body(request)
    scope = body.get("scope")
    kinds = body.get("kinds")
    try:
        if isinstance(scope, dict):
            level, sid = str(scope.get("level") or ""), scope.get("id")
        else:
            level, sid = parse_scope(str(scope or ""))
        if isinstance(kinds, str):
            kinds = [k for k in kinds.split(",")]
        elif kinds is not None and not (isinstance(kinds, list) and all(isinstance(k, str) for k in kinds)):
            raise ValueError("kinds must be a list of alert kinds, or null for every kind")
        for name in ("duration", "ends_at", "starts_at"):
            if body.get(name) in ("", None):
                body[name] = None
            elif not isinstance(body[name], (str, int, float)) or isinstance(body[name], bool):
                raise ValueError(f"{name} must be a string")
        record = new_silence(level, sid, kinds=kinds, starts_at=body["starts_at"], ends_at=body["ends_at"],
                             duration=body["duration"], author=user.name, reason=str(body.get("reason") or ""),
                             now=console.clock(), include_safety=_flag(body, "include_safety"),
                             force=_flag(body, "force"))
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    await console.publish(names.SILENCES, record["silence_id"], record)
    console.apply("silences", record["silence_id"], record, None)
    log.info("console: %s added silence %s", user.name, record["silence_id"])
    return _json(_silence_view(console, record), status=201)


async def expire_silence(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    user = _require_operator(request)
    sid = request.match_info["silence_id"]
    current = console.model.silences.get(sid)
    if current is None:
        raise ApiError(404, f"no silence {sid!r}")
    try:
        ended = expire(current, user.name, console.clock())
    except ValueError as exc:
        raise ApiError(409, str(exc)) from None
    await console.publish(names.SILENCES, sid, ended)
    console.apply("silences", sid, ended, None)
    log.info("console: %s expired silence %s", user.name, sid)
    return _json(_silence_view(console, ended))


async def list_feedback(request: web.Request) -> web.Response:
    model = request.app[CONSOLE].model
    return _json({"feedback": model.list_feedback(_limit(request, FEEDBACK_LIMIT_DEFAULT)),
                  "satisfaction": await request.app[CONSOLE].satisfaction()})


async def figures(request: web.Request) -> web.Response:
    return _json(await request.app[CONSOLE].figures())


async def events(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    user, session = request[USER], request[SESSION]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    queue = console.hub.subscribe(user.name, session.id if session else None)

    def allowed() -> bool:  # sign-out and removal end the stream at once (EventHub.end); expiry here
        return console.auth.alive(session) if session is not None else console.auth.current(user)

    try:
        await response.prepare(request)
        await response.write(b"retry: 3000\n: connected\n\n")
        while allowed():
            try:
                frame = await asyncio.wait_for(queue.get(), console.heartbeat_s)
            except asyncio.TimeoutError:
                if allowed():
                    await response.write(b": heartbeat\n\n")
                continue
            if frame is None:  # shut down, signed out, or too far behind
                break
            await response.write(frame)
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        console.hub.unsubscribe(queue)
    return response


async def openapi_document(request: web.Request) -> web.Response:
    return _json(openapi.document(history_api.openapi_paths()))


async def metrics(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    kafka = await console.offsets.query() if console.offsets is not None else None
    body, content_type = render_metrics(console.model, kafka, request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


# ---------------------------------------------------------------------------------------------- app

def make_app(settings: Settings | None, users: Iterable[gwauth.User] | gwauth.Authenticator, *,
             model: ConsoleModel | None = None, producer: Any = None, offsets: Any = None,
             heartbeat_s: float = HEARTBEAT_S, static_dir: Path | None = None,
             clock: Callable[[], float] = time.time) -> web.Application:
    """The console as an aiohttp application.

    ``model``: what it shows (default: an empty model; :func:`serve` feeds one from Kafka).
    ``producer``: what actions and silences are published with, anything with aiokafka's
    ``send_and_wait(topic, value=, key=)`` (default: an aiokafka producer, acks=all, started with the app).
    ``offsets``: the Kafka offsets source of ``/metrics`` (default :class:`console.metrics.KafkaOffsets`).
    """
    settings = settings or Settings()
    authenticator = users if isinstance(users, gwauth.Authenticator) else gwauth.Authenticator(users)
    app = web.Application(middlewares=[_guard])
    console = Console(settings=settings, model=model if model is not None else ConsoleModel(),
                      auth=authenticator, publisher=producer,
                      offsets=offsets if offsets is not None else KafkaOffsets(settings),
                      heartbeat_s=heartbeat_s, static_dir=static_dir or STATIC_DIR, clock=clock)
    app[CONSOLE] = console
    authenticator.on_end(console.hub.end)
    app.on_response_prepare.append(_security_headers)

    r = app.router
    r.add_get("/", page)
    r.add_get("/alerts/{alert_id}", page)
    r.add_get("/login", login_page)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_get("/api/me", me)
    r.add_get("/api/kinds", list_kinds)
    r.add_get("/api/alerts", list_alerts)
    r.add_get("/api/alerts/{alert_id}", alert_detail)
    r.add_get("/api/alerts/{alert_id}/evidence.svg", alert_evidence)
    r.add_post("/api/alerts/{alert_id}/acknowledge", acknowledge)
    r.add_post("/api/alerts/{alert_id}/resolve", resolve)
    r.add_get("/api/silences", list_silences)
    r.add_post("/api/silences", add_silence)
    r.add_post("/api/silences/{silence_id}/expire", expire_silence)
    r.add_get("/api/feedback", list_feedback)
    r.add_get("/api/figures", figures)
    r.add_get("/api/events", events)
    r.add_get("/api/openapi.json", openapi_document)
    r.add_get("/metrics", metrics)
    # /api/history/*: the history store (console/history_api.py)
    history_api.install(app, settings, static_dir=console.static_dir)
    if console.static_dir.is_dir():
        r.add_static("/static", console.static_dir, follow_symlinks=False, show_index=False)

    async def end_streams(app: web.Application) -> None:
        app[CONSOLE].hub.close()

    app.on_shutdown.append(end_streams)

    if producer is None:
        async def kafka_producer(app: web.Application):
            made = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_list, acks="all", enable_idempotence=True,
                                    client_id="gridwatch-console")
            await made.start()
            app[CONSOLE].publisher = made
            yield
            await made.stop()

        app.cleanup_ctx.append(kafka_producer)

    if offsets is None:
        async def close_offsets(app: web.Application) -> None:
            await app[CONSOLE].offsets.close()

        app.on_cleanup.append(close_offsets)
    return app


# ------------------------------------------------------------------------------------- reading Kafka

async def start_feeds(settings: Settings, console: Console, timeout: float = READY_TIMEOUT_S,
                      start_at: dict[str, dict[int, int]] | None = None) -> list:
    """Start one view per topic the console reads, wait until each has caught up, return them.

    The model holds the records (a view's own map would add an entry per key that nothing reads); it keeps
    only the newest ``max_records`` notifications and feedback, every one of them within the last
    ``max_records`` of its partition, so only those are read. Feedback from an unknown number has no key.
    ``start_at``: deployed topic -> {partition: offset} to read on from (the history store's projection;
    see :class:`console.board_store.Snapshot`), for the topics the store holds. With a store
    (``console.store``) ``customers`` is read to its end before the other topics start."""
    tail = {"notifications": console.model.max_records, "feedback": console.model.max_records}
    start_at = start_at or {}
    views = [TopicView(settings, topic, client_id="gridwatch-console", on_record=console.feed(kind),
                       keyless=(kind == "feedback"), tail=tail.get(kind),
                       start_at=start_at.get(settings.topic(topic)))
             for kind, topic in FEEDS.items()]
    started = []
    try:
        if console.store is not None:
            # with a store an alert is placed when it is applied, by the directory as it is then: the
            # customers published after the projection are read first
            first = next(v for v in views if v.topic == settings.topic(names.CUSTOMERS))
            await first.start()
            started.append(first)
            await first.wait_ready(timeout)
        for view in views:
            if view not in started:
                await view.start()
                started.append(view)
        for view in views:
            await view.wait_ready(timeout)
    except BaseException:
        for view in started:
            await view.stop()
        raise
    return views


async def serve(settings: Settings, users: list[gwauth.User], host: str, port: int, *,
                demo_tokens: list[tuple[gwauth.User, str]] | None = None,
                stop: asyncio.Event | None = None) -> int:
    store = await asyncio.to_thread(_board_store, settings)
    model = ConsoleModel(directory=StoreDirectory() if store is not None else None)
    start_at = None
    if store is not None:
        try:
            start_at = await asyncio.to_thread(_load_board, store, model, settings, time.time())
        except Exception as exc:  # noqa: BLE001 - the store went away since it was opened
            print(f"gridwatch console: the history store could not be read ({type(exc).__name__})",
                  file=sys.stderr, flush=True)
            return 2
    sessions = await asyncio.to_thread(_session_store, settings)
    authenticator = gwauth.Authenticator(users, store=sessions)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_list, acks="all", enable_idempotence=True,
                                client_id="gridwatch-console")
    app = make_app(settings, authenticator, model=model, producer=producer)
    if sessions is not None:
        async def close_sessions(app: web.Application) -> None:
            await asyncio.to_thread(sessions.close)
        app.on_cleanup.append(close_sessions)
    console = app[CONSOLE]
    console.store = store
    if store is not None:  # the history pages use the same engine (one pool of connections)
        app[history_api.HISTORY].engine = store.engine
    try:
        views = await start_feeds(settings, console, start_at=start_at)
    except (TopicViewError, TimeoutError) as exc:
        print(f"gridwatch console: {exc}", file=sys.stderr, flush=True)
        return 2
    upkeep = [asyncio.create_task(_keep_board(console, settings)),
              asyncio.create_task(refresh_figures(console, settings))] if store is not None else []
    try:
        try:
            await producer.start()
        except KafkaError as exc:
            print(f"gridwatch console: cannot reach Kafka at {settings.bootstrap_servers} "
                  f"({type(exc).__name__})", file=sys.stderr, flush=True)
            return 2
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            await producer.stop()
            print(f"gridwatch console: cannot listen on {host}:{port} ({exc.strerror or exc})",
                  file=sys.stderr, flush=True)
            return 2
        bound = runner.addresses[0][1] if runner.addresses else port
        url = f"http://{host}:{bound}/"
        print(f"console: {url}", flush=True)
        if store is None:
            print(f"console: {len(model.alerts)} alerts, {len(model.customers)} customers, "
                  f"{len(model.silences)} silences read; {len(users)} users", flush=True)
        else:
            print(f"console: {len(model.alerts)} open or recent alerts, {len(model.silences)} silences; "
                  f"customers, past alerts and figures from the history store; {len(users)} users", flush=True)
        for user, token in demo_tokens or []:
            print(f"console: demo user {user.name} ({user.role}) token {token}", flush=True)
        if demo_tokens:
            print(f"console: sign in at {url}login?user=operator with the token, or send "
                  "'Authorization: Bearer TOKEN'; the demo tokens end with this process", flush=True)
        if stop is None:
            stop = stop_event()
        _reload_users_on_sighup(settings, console.auth, [u for u, _ in demo_tokens or []])
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
            await producer.stop()
            print("console stopped.", flush=True)
    finally:
        for task in upkeep:
            task.cancel()
        for view in views:
            await view.stop()
    return 0


def _recent_s() -> float:
    """GRIDWATCH_CONSOLE_RECENT_HOURS (24): with a history store, how long a resolved alert stays on the
    board after its latest record."""
    raw = os.environ.get("GRIDWATCH_CONSOLE_RECENT_HOURS")
    try:
        hours = float(raw) if raw else RECENT_HOURS_DEFAULT
    except ValueError:
        raise SystemExit(f"gridwatch console: GRIDWATCH_CONSOLE_RECENT_HOURS must be a number, not {raw!r}")
    return max(0.0, hours) * 3600


def _board_store(settings: Settings):
    """The history store the board looks things up in, or None: without a database configured, or when the
    configured one cannot be used (then the board reads the topics whole, as without one, and says why)."""
    try:
        return open_board_store(settings)
    except Exception as exc:  # noqa: BLE001 - configured but unreachable, or not PostgreSQL
        print(f"gridwatch console: the history store is unavailable ({type(exc).__name__}); reading the "
              "customer directory and every alert from the topics instead", file=sys.stderr, flush=True)
        return None


#: the topics the board reads on from where the history store's projection ended
STORE_FEEDS = (names.ALERTS, names.NOTIFICATIONS, names.CUSTOMERS)


def _load_board(store, model: ConsoleModel, settings: Settings, now: float) -> dict[str, dict[int, int]]:
    """Put the store's open and recent alerts in ``model``; the offsets to read the topics on from."""
    snap = store.snapshot(now - _recent_s())
    for a in snap.alerts:
        model.load_alert(a["record"], a["first_ts"], a["updated_ts"], a["placed"])
    wanted = {settings.topic(t) for t in STORE_FEEDS}
    return {topic: offsets for topic, offsets in snap.offsets.items() if topic in wanted}


async def refresh_figures(console: Console, settings: Settings, *, every: float = FIGURES_EVERY_S,
                          wait: float = PROJECTION_WAIT_S, poll: float = 0.5) -> None:
    """With a history store: after an alert, message or reply arrived, wait until the projector has written
    every record the console had applied then (at most ``wait`` seconds), recompute the figures and the
    satisfaction, and tell the live subscribers (``event: figures``); at most every ``every`` seconds. So a
    request never waits for the store's aggregates, and a board sees a change once it is in them."""
    while True:
        await console.changed.wait()
        console.changed.clear()
        wanted = console.seen(settings)
        deadline = time.monotonic() + wait
        caught_up = False
        while not caught_up and time.monotonic() < deadline:
            try:
                projected = await asyncio.to_thread(console.store.projected)
            except Exception as exc:  # noqa: BLE001 - computed anyway below, and tried again
                log.warning("console: the projector's offsets not read (%s)", type(exc).__name__)
                break
            caught_up = all(projected.get(topic, {}).get(p, 0) >= off for topic, parts in wanted.items()
                            for p, off in parts.items())
            if not caught_up:
                await asyncio.sleep(poll)
        try:
            await console.compute()
        except ApiError:
            caught_up = False
        else:
            console.hub.publish([("figures", {"computed_at": console._kept["figures"]["computed_at"]})])
        if not caught_up:  # the projector is behind (or the store did not answer): once more after the pause
            console.changed.set()
        await asyncio.sleep(every)


async def _keep_board(console: Console, settings: Settings, every: float = MAINTENANCE_S) -> None:
    """With a history store, every ``every`` seconds: forget the resolved alerts older than the recent
    window (the board's live subscribers see them go), and the customer records the projector has
    committed since (they are looked up in the store again)."""
    customers_topic = settings.topic(names.CUSTOMERS)
    while True:
        await asyncio.sleep(every)
        console.hub.publish(console.model.evict(console.clock() - _recent_s()))
        try:
            projected = await asyncio.to_thread(console.store.projected)
        except Exception as exc:  # noqa: BLE001 - tried again next time
            log.warning("console: the projector's offsets not read (%s)", type(exc).__name__)
            continue
        console.model.directory.prune(projected.get(customers_topic, {}))


def _session_store(settings: Settings):
    """Sessions in the configured database (they survive a restart), else None: in memory only."""
    try:
        store = open_sessions(settings)
    except Exception as exc:  # configured but unreachable: the board still serves, sessions end at a restart
        print(f"gridwatch console: sessions kept in memory only, the database is unavailable "
              f"({type(exc).__name__})", file=sys.stderr, flush=True)
        return None
    if store is None:
        log.info("console: no database configured; sessions end when the console stops")
    return store


def _reload_users_on_sighup(settings: Settings, authenticator: gwauth.Authenticator,
                            keep: list[gwauth.User]) -> None:
    """``kill -HUP``: read the users again; whoever was removed or changed is signed out and their live-event
    streams end (the demo users stay)."""
    def reload() -> None:
        try:
            users = gwauth.load_users(settings)
        except gwauth.UsersError as exc:
            log.warning("console: users not reloaded: %s", exc)
            return
        taken = {u.name for u in users}
        authenticator.set_users(users + [u for u in keep if u.name not in taken])
        log.info("console: %d users reloaded", len(authenticator.users))

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)
    except (NotImplementedError, RuntimeError, AttributeError):  # pragma: no cover - non-Unix
        pass


# ----------------------------------------------------------------------------------------------- CLI

NO_USERS = ("no console users configured: set GRIDWATCH_CONSOLE_USERS=name:role:secret[,...] (role viewer or "
            "operator; the secret a token or password, or its Argon2id hash from `gridwatch console --hash-secret`) "
            "or GRIDWATCH_CONSOLE_USERS_FILE=PATH (one per line), or start a demo with "
            "`gridwatch console --demo-users`")


def hash_secret_command() -> int:
    """Read a secret from stdin (one line) and print its Argon2id hash for the users list."""
    if sys.stdin.isatty():
        secret = getpass.getpass("secret: ")
    else:
        secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        print("gridwatch console: no secret given on stdin", file=sys.stderr)
        return 2
    print(gwauth.hash_secret(secret))
    return 0


def run(args: argparse.Namespace) -> int:
    if getattr(args, "hash_secret", False):
        return hash_secret_command()
    settings = Settings()
    if not getattr(args, "verbose", False):
        logging.getLogger("aiokafka").setLevel(logging.WARNING)
    try:
        users = gwauth.load_users(settings)
    except gwauth.UsersError as exc:
        print(f"gridwatch console: {exc}", file=sys.stderr)
        return 2
    demo: list[tuple[gwauth.User, str]] = []
    if args.demo_users:
        taken = {u.name for u in users}
        demo = [(u, t) for u, t in gwauth.demo_users() if u.name not in taken]
        users += [u for u, _ in demo]
    if not users:
        print(f"gridwatch console: {NO_USERS}", file=sys.stderr)
        return 2
    return asyncio.run(serve(settings, users, args.host, args.port, demo_tokens=demo))


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "console", help="the operations console: live alerts, evidence, messages, feedback; acknowledge, "
                        "resolve, silence",
        description="Serve the operations console's pages and JSON API (GET /api/openapi.json describes it), "
                    "live events (/api/events) and Prometheus metrics (/metrics). Reads the alerts, "
                    "notifications, feedback, silences and customers topics before serving (notifications and feedback: "
                    "the newest 50,000 records of each partition, as many as it keeps); with a history store "
                    "(GRIDWATCH_DATABASE_URL or `gridwatch db start`) only what the projector has not written "
                    "yet, looking customers, past alerts and figures up in the store. Users: "
                    "GRIDWATCH_CONSOLE_USERS=name:role:secret,... or GRIDWATCH_CONSOLE_USERS_FILE (role viewer "
                    "or operator); GRIDWATCH_CONSOLE_URL when browsers reach it under another URL.")
    p.add_argument("--host", default=DEFAULT_HOST, help="interface to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (default: %(default)s; 0 = any)")
    p.add_argument("--demo-users", action="store_true",
                   help="add users 'operator' and 'viewer' with random tokens, printed at start (for demos)")
    p.add_argument("--hash-secret", action="store_true",
                   help="read a secret from stdin, print its salted Argon2id hash for GRIDWATCH_CONSOLE_USERS "
                        "(name:role:HASH) and exit")
    p.set_defaults(func=run)
