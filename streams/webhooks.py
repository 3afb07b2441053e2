"""``gridwatch webhooks``: the HTTP endpoint the SMS provider calls back, in front of Kafka.

``POST /twilio/status`` takes Twilio's message status callbacks. A request without a valid
``X-Twilio-Signature`` (HMAC of the public URL and the form, with the account's auth token) is refused with
403 and nothing is published; a valid one becomes a record on ``gridwatch.provider-events`` keyed by the
message SID, where the worker joins it with what it sent and records delivered / undelivered outcomes on
``notifications``. The endpoint only validates and forwards, so it stays fast and stateless; ordering and
duplicates are the worker's job (``notifiers.replies.advance_status``).

``POST /twilio/inbound`` takes Twilio's incoming-message webhook (a customer's reply: ``From``, ``To``,
``Body``, ``MessageSid``, ...), with the same signature check. A valid one becomes a record on
``gridwatch.inbound`` keyed by the sender's number and is answered with an empty TwiML ``<Response/>`` (no
automatic reply); the worker finds the customer, applies STOP / START and publishes a ``feedback`` record.

Twilio signs the URL it called, so the service must know its public URL (``GRIDWATCH_WEBHOOK_URL``, the same
value the worker passes to Twilio as ``StatusCallback``), not the address it listens on behind a proxy.

Twilio's signature carries no timestamp, so a captured request stays valid forever. The same signed request
(an inbound ``MessageSid``, or a status callback's ``MessageSid`` and ``MessageStatus``) is therefore published
once: a repeat within :data:`REPLAY_WINDOW_S` is answered 409 and dropped (bounded memory: the newest
:data:`REPLAY_MAX_ENTRIES` keys; a key is remembered only once its record is on Kafka, so Twilio's own retry
of a request we failed still gets through). Past the window (or after a restart) the worker's idempotence
still holds: a feedback record's id is derived from the message SID, and status updates only move forward.
A body that is not a UTF-8 form (``application/x-www-form-urlencoded``) is answered 415 or 400, never 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict

from aiohttp import web
from aiokafka import AIOKafkaProducer

from gridwatch import config as names
from gridwatch.config import Settings, check_twilio, sandbox_credentials
from gridwatch.signals import stop_event
from notifiers.replies import signature_ok

log = logging.getLogger("gridwatch.webhooks")

STATUS_PATH = "/twilio/status"
INBOUND_PATH = "/twilio/inbound"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
#: a signed request seen again within this many seconds is a replay
REPLAY_WINDOW_S = 24 * 3600.0
#: at most this many request keys are remembered (the oldest are forgotten first)
REPLAY_MAX_ENTRIES = 100_000


class ReplayGuard:
    """Keys of requests already published, each remembered for ``window_s``, at most ``max_entries``."""

    def __init__(self, window_s: float = REPLAY_WINDOW_S, max_entries: int = REPLAY_MAX_ENTRIES,
                 clock=time.monotonic) -> None:
        self._seen: OrderedDict[tuple, float] = OrderedDict()
        self.window_s, self.max_entries, self._clock = window_s, max_entries, clock

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, key: tuple) -> bool:
        self._forget_old()
        return key in self._seen

    def remember(self, key: tuple) -> None:
        self._seen[key] = self._clock()
        self._seen.move_to_end(key)
        self._forget_old()

    def _forget_old(self) -> None:
        limit = self._clock() - self.window_s
        while self._seen and (len(self._seen) > self.max_entries or next(iter(self._seen.values())) < limit):
            self._seen.popitem(last=False)


def auth_token(settings: Settings) -> str:
    """The token Twilio signs with: the real account's, or the sandbox's when no ``TWILIO_*`` is set at all
    (:class:`~gridwatch.config.ConfigError` for a partial or mixed configuration: never the sandbox's public
    token next to real credentials)."""
    check_twilio(settings)
    if settings.uses_real_twilio:
        return settings.twilio_auth_token
    return sandbox_credentials()[1]


class _Refused(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status, self.text = status, text


def make_app(settings: Settings, publish, *, replays: ReplayGuard | None = None) -> web.Application:
    """``publish(topic, key: bytes, value: bytes)`` is awaited for every accepted callback."""
    token = auth_token(settings)
    public = (settings.webhook_url or "").rstrip("/")
    replays = replays if replays is not None else ReplayGuard()

    async def signed_form(request: web.Request, path: str, what: str) -> dict:
        """The request's form fields if it carries Twilio's signature of them, else _Refused."""
        if request.content_type != "application/x-www-form-urlencoded":
            raise _Refused(415, "expected an application/x-www-form-urlencoded body")
        try:
            fields = await request.post()
        except (UnicodeDecodeError, ValueError):
            raise _Refused(400, "the form is not UTF-8") from None
        form = {k: v for k, v in fields.items() if isinstance(v, str)}
        url = public + path if public else str(request.url)
        if not signature_ok(token, url, form, request.headers.get("X-Twilio-Signature")):
            log.warning("refused %s without a valid signature from %s", what, request.remote)
            raise _Refused(403, "invalid X-Twilio-Signature")
        return form

    async def once(key: tuple, what: str, topic: str, record_key: bytes, value: bytes) -> None:
        """Publish unless this signed request was published before (then _Refused 409)."""
        if replays.seen(key):
            log.warning("refused a replayed %s (%s)", what, key[1])
            raise _Refused(409, "this request was already received")
        await publish(topic, record_key, value)
        replays.remember(key)

    async def status(request: web.Request) -> web.Response:
        form = await signed_form(request, STATUS_PATH, "status callback")
        sid, state = form.get("MessageSid"), form.get("MessageStatus")
        if not sid or not state:
            return web.Response(status=400, text="MessageSid and MessageStatus are required\n")
        event = {"type": "status", "sid": sid, "status": state, "error_code": form.get("ErrorCode") or None,
                 "received_at": time.time()}
        await once((STATUS_PATH, sid, state, form.get("ErrorCode") or ""), "status callback",
                   settings.topic(names.PROVIDER_EVENTS), sid.encode(), json.dumps(event).encode())
        return web.Response(status=204)

    async def inbound(request: web.Request) -> web.Response:
        form = await signed_form(request, INBOUND_PATH, "inbound message")
        sender, sid = form.get("From"), form.get("MessageSid") or form.get("SmsSid")
        if not sender or not sid:
            return web.Response(status=400, text="From and MessageSid are required\n")
        event = {"type": "inbound", "sid": sid, "from": sender, "to": form.get("To") or None,
                 "body": form.get("Body") or "", "messaging_service_sid": form.get("MessagingServiceSid") or None,
                 "received_at": time.time()}
        await once((INBOUND_PATH, sid), "inbound message", settings.topic(names.INBOUND), sender.encode(),
                   json.dumps(event, ensure_ascii=False).encode())
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")

    @web.middleware
    async def refusals(request: web.Request, handler):
        try:
            return await handler(request)
        except _Refused as exc:
            return web.Response(status=exc.status, text=exc.text + "\n")

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[refusals])
    app.router.add_post(STATUS_PATH, status)
    app.router.add_post(INBOUND_PATH, inbound)
    app.router.add_get("/health", health)
    return app


async def serve(settings: Settings, host: str, port: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_list, acks="all", enable_idempotence=True)
    await producer.start()

    async def publish(topic: str, key: bytes, value: bytes) -> None:
        await producer.send_and_wait(topic, value=value, key=key)  # acknowledged before Twilio hears 204

    runner = web.AppRunner(make_app(settings, publish), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"webhooks listening on http://{host}:{port}{STATUS_PATH} and {INBOUND_PATH} "
          f"(public URL {settings.webhook_url or 'not set: the request URL is used'})", flush=True)
    stop = stop_event()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await producer.stop()


def run(args) -> int:
    asyncio.run(serve(Settings(), args.host, args.port))
    return 0


def register(sub) -> None:
    p = sub.add_parser("webhooks", help="receive the SMS provider's signed status callbacks and customers' "
                                        "replies into Kafka",
                       description="Serve POST /twilio/status for Twilio status callbacks and POST /twilio/inbound "
                                   "for incoming messages (configure it as the number's or Messaging Service's "
                                   "incoming-message webhook); requests without a valid X-Twilio-Signature are "
                                   "refused (403). Set GRIDWATCH_WEBHOOK_URL to the public URL Twilio calls, "
                                   "which is also what the worker asks Twilio to call.")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8090, help="TCP port (default 8090)")
    p.set_defaults(func=run)
