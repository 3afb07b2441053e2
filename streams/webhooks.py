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
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from aiohttp import web

from gridwatch import config as names
from gridwatch.config import Settings
from gridwatch.signals import stop_event

log = logging.getLogger("gridwatch.webhooks")

STATUS_PATH = "/twilio/status"
INBOUND_PATH = "/twilio/inbound"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def auth_token(settings: Settings) -> str:
    """The token Twilio signs with: the real account's, or the sandbox's when no credentials are set."""
    if settings.uses_real_twilio:
        return settings.twilio_auth_token
    from notifiers.sandbox import sandbox_credentials

    return sandbox_credentials()[1]


def make_app(settings: Settings, publish) -> web.Application:
    """``publish(topic, key: bytes, value: bytes)`` is awaited for every accepted callback."""
    from notifiers.replies import signature_ok

    token = auth_token(settings)
    public = (settings.webhook_url or "").rstrip("/")

    async def signed_form(request: web.Request, path: str) -> dict | None:
        """The request's form fields if it carries Twilio's signature of them, else ``None``."""
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        url = public + path if public else str(request.url)
        if not signature_ok(token, url, form, request.headers.get("X-Twilio-Signature")):
            return None
        return form

    def refused(what: str, request: web.Request) -> web.Response:
        log.warning("refused %s without a valid signature from %s", what, request.remote)
        return web.Response(status=403, text="invalid X-Twilio-Signature\n")

    async def status(request: web.Request) -> web.Response:
        form = await signed_form(request, STATUS_PATH)
        if form is None:
            return refused("a status callback", request)
        sid, state = form.get("MessageSid"), form.get("MessageStatus")
        if not sid or not state:
            return web.Response(status=400, text="MessageSid and MessageStatus are required\n")
        event = {"type": "status", "sid": sid, "status": state, "error_code": form.get("ErrorCode") or None,
                 "received_at": time.time()}
        await publish(settings.topic(names.PROVIDER_EVENTS), sid.encode(), json.dumps(event).encode())
        return web.Response(status=204)

    async def inbound(request: web.Request) -> web.Response:
        form = await signed_form(request, INBOUND_PATH)
        if form is None:
            return refused("an inbound message", request)
        sender, sid = form.get("From"), form.get("MessageSid") or form.get("SmsSid")
        if not sender or not sid:
            return web.Response(status=400, text="From and MessageSid are required\n")
        event = {"type": "inbound", "sid": sid, "from": sender, "to": form.get("To") or None,
                 "body": form.get("Body") or "", "messaging_service_sid": form.get("MessagingServiceSid") or None,
                 "received_at": time.time()}
        await publish(settings.topic(names.INBOUND), sender.encode(), json.dumps(event, ensure_ascii=False).encode())
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post(STATUS_PATH, status)
    app.router.add_post(INBOUND_PATH, inbound)
    app.router.add_get("/health", health)
    return app


async def serve(settings: Settings, host: str, port: int) -> None:
    from aiokafka import AIOKafkaProducer

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
