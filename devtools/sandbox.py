"""``gridwatch sandbox``: a local stand-in for the part of Twilio's Messages API that gridwatch uses.

It speaks the real wire format (so the real ``twilio`` client talks to it, see :mod:`notifiers.sms`):

``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``
    Form-encoded ``To``, ``Body``, and ``From`` or ``MessagingServiceSid`` (``ValidityPeriod`` and
    ``StatusCallback`` are accepted and recorded, no callback is ever made). HTTP basic auth
    ``AccountSid:AuthToken``; the path AccountSid must be the authenticated one. ``201`` with a message
    resource (``sid`` ``SM`` + 32 hex, ``status`` ``queued``, ``num_segments`` from
    :func:`notifiers.templates.sms_segments`, RFC 2822 dates, ...).
``GET /2010-04-01/Accounts/{AccountSid}/Messages/{MessageSid}.json``
    One message, or ``404`` code 20404.
``GET /2010-04-01/Accounts/{AccountSid}/Messages.json``
    A page ``{"messages": [...], "page": ..., "next_page_uri": ...}``, newest first, filters ``To``/``From``,
    paging ``PageSize`` (default 50) and ``Page``.

Errors use Twilio's JSON shape ``{"code", "message", "more_info", "status"}``, with the codes the real API
uses for the same mistake:

=====  ======  =================================================================
HTTP   code    when
=====  ======  =================================================================
401    20003   no/bad basic auth, or the path AccountSid is not the authenticated one
400    21604   ``To`` missing
400    21603   neither ``From`` nor ``MessagingServiceSid``
400    21602   ``Body`` missing or empty (and no ``MediaUrl``/``ContentSid``)
400    21617   ``Body`` longer than 1600 characters
400    21211   ``To`` not E.164 (``+`` then 2-15 digits, no leading 0)
400    21606   ``From`` not an E.164 number, short code or alphanumeric sender ID
400    21705   ``MessagingServiceSid`` not ``MG`` + 32 hex
404    20404   unknown message / path
=====  ======  =================================================================

Test hooks (not part of Twilio):

* **fail list**: ``--fail NUMBER=CODE[xN]`` (repeatable; or env ``GRIDWATCH_SANDBOX_FAIL`` with
  comma-separated entries; or ``make_app(fail={...})``). A valid send to NUMBER is answered with that error
  instead of being accepted: Twilio codes 21211, 21610, 21612, 21614, 21635 (HTTP 400, permanent),
  20429 or ``429`` (HTTP 429 + ``Retry-After: 1``), 20500 or ``500``, 20503 or ``503``, any other Twilio
  code (HTTP 400) or any HTTP status 4xx/5xx. ``xN`` fails only the first N attempts and then accepts
  (for retry tests), e.g. ``+15005550002=500x2``.
* ``GET /sandbox/messages`` → ``{"messages": [record, ...], "rejected": [...]}`` oldest first, where a
  record is the message resource plus a ``"sandbox"`` object (``encoding``, ``validity_period``,
  ``status_callback``, ``received_at``); ``?to=`` filters. ``rejected`` lists refused sends (masked ``to``,
  ``code``, ``status``, ``time``), so tests can count retries. ``DELETE /sandbox/messages`` clears both.
* ``--store FILE`` appends every accepted record to FILE as JSON lines (never truncated by DELETE).
* ``GET /``: an HTML page (auto-refresh 2 s, paused while a reply is being typed) of the messages, newest
  first, numbers masked, the replies sent so far, and a "Reply" link per message to
  ``GET /sandbox/reply?to_sid=SM...`` (a form that does not refresh).
* ``POST /sandbox/reply``: a person's reply, sent the way Twilio delivers an incoming message: a signed
  (``X-Twilio-Signature``, the sandbox auth token) form POST with ``From``, ``To``, ``Body``, ``MessageSid``
  ... to the inbound webhook. JSON ``{"to_sid": "SM...", "body": "STOP"}`` replies from the recipient of
  that message to its sender; ``{"from": "+86...", "body": ...}`` sends from any number (to the sender of
  the newest message that number received, else the sandbox's default number). The reply form posts the
  same fields form-encoded and is redirected back to ``/``. The webhook URL is ``--inbound-url`` (default ``$GRIDWATCH_WEBHOOK_URL``
  + ``/twilio/inbound``), else derived from the replied-to message's status callback URL. Answers
  ``{"sid", "webhook_status", "webhook_body"}``; the replies are listed under ``"inbound"`` in
  ``GET /sandbox/messages``.
* ``--delay SECONDS``: an accepted send is stored at once but answered only after SECONDS (crash tests).
* **provider faults** per number: ``--fault NUMBER=KIND[xN]`` (repeatable; or env ``GRIDWATCH_SANDBOX_FAULTS``
  comma-separated; or ``make_app(faults=...)``), what Twilio does on a bad day (README "Guarantees"):

  ==========================  ====================================================================
  ``timeout[:S]``             the message is created, the answer never comes (held S s, default 120)
  ``created-5xx[:STATUS]``    the message is created, the answer is a 500 (or STATUS) error
  ``list-lag:S``              a message appears in the message list only S seconds after it was created
  ``list-error:STATUS``       a list of the number's messages is answered with STATUS (429, 500, 503)
  ``smart-encoding``          the stored body is changed the way Smart Encoding and Unicode
                              normalisation change it (curly quotes, dashes, ellipsis, non-breaking and
                              full-width forms become their GSM-7 / ASCII look-alikes)
  ==========================  ====================================================================

  ``xN``: only the first N sends (lists, for ``list-error``) to that number. ``GET /sandbox/messages``
  shows every created message at once, whatever ``list-lag`` says.

The other delivery channels have sinks too (not Twilio):

* **webhook receiver** ``POST /sandbox/webhook/{name}``: what a customer's webhook would be. Needs a UTF-8
  JSON body (``400``) and checks ``X-Gridwatch-Signature`` and ``X-Gridwatch-Timestamp`` with
  :func:`notifiers.webhook.verify_signature` under the secret of the payload's ``customer_id`` (derived from
  ``GRIDWATCH_WEBHOOK_SECRET``, else the development secret; ``401`` when it does not match), dedupes on
  ``Idempotency-Key`` per ``name`` (a repeat is answered ``200`` with the first delivery's ``id`` and
  ``"duplicate": true``, and not recorded again), answers ``{"id": "WH..."}``.
  ``GET /sandbox/webhooks`` → ``{"webhooks": [record, ...], "rejected": [...]}`` oldest first (record:
  ``id``, ``name``, ``idempotency_key``, ``timestamp``, ``payload``, ``received_at``, ``duplicates``);
  ``?name=`` filters; ``DELETE /sandbox/webhooks`` clears. ``--fail-webhook [NAME=]STATUS[xN]`` answers
  with that HTTP status instead (all names without ``NAME=``; ``xN``: the first N attempts only).
* **SMTP sink** (aiosmtpd, in the same event loop) on ``--smtp-port`` (default the HTTP port + 1, ``0``
  disables; see :func:`sandbox_smtp_address`): every email accepted is recorded, decoded.
  ``GET /sandbox/emails`` → ``{"emails": [record, ...], "rejected": [...], "smtp_port"}`` oldest first
  (record: ``id``, ``message_id``, ``from``, ``to`` (envelope recipients), ``subject``, ``body`` (the text
  part, decoded), ``received_at``, ``size``); ``?to=`` filters; ``DELETE /sandbox/emails`` clears.
  ``--fail-email ADDRESS=CODE[xN]`` answers ``RCPT TO:<ADDRESS>`` with that SMTP reply code (``550``
  mailbox unavailable, ``451`` try again later, ...; ``*`` for every address).
* Both are shown on ``GET /`` under the SMS (addresses masked).

Like Twilio, a message sent with a ``StatusCallback`` URL gets signed status callbacks (``sent``, then
``delivered``; form fields and ``X-Twilio-Signature`` as Twilio sends them).

Credentials default to :data:`SANDBOX_ACCOUNT_SID` / :data:`SANDBOX_AUTH_TOKEN` (not secrets), overridable
by env ``GRIDWATCH_SANDBOX_ACCOUNT_SID`` / ``GRIDWATCH_SANDBOX_AUTH_TOKEN`` (see
:func:`sandbox_credentials`). Plain aiohttp: no Faust here.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import html
import json
import logging
import os
import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email import policy as email_policy
from email.parser import BytesParser
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from aiosmtpd.smtp import SMTP
from twilio.request_validator import RequestValidator

from gridwatch.config import (SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, SANDBOX_FROM_NUMBER,
                              SANDBOX_HOST as DEFAULT_HOST, SANDBOX_PORT as DEFAULT_PORT,
                              SANDBOX_SMTP_PORT_OFFSET, sandbox_credentials,
                              sandbox_smtp_address)
from gridwatch.httpauth import basic_credentials
from gridwatch.signals import stop_event
from gridwatch.timefmt import parse_datetime
from notifiers.privacy import mask_email, mask_phone
from notifiers.webhook import (IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, customer_secret,
                               verify_signature, webhook_secret as _webhook_secret)
from notifiers.templates import sms_segments
from streams.webhooks import INBOUND_PATH, STATUS_PATH

__all__ = [
    "API_VERSION",
    "SANDBOX_ACCOUNT_SID",
    "SANDBOX_AUTH_TOKEN",
    "FailRule",
    "SandboxState",
    "STATE",
    "make_app",
    "MailSink",
    "parse_fail",
    "parse_rules",
    "register",
    "sandbox_credentials",
    "sandbox_smtp_address",
    "serve",
    "start_smtp_sink",
]

log = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
ENV_FAIL = "GRIDWATCH_SANDBOX_FAIL"
MAX_BODY_CHARS = 1600

_ACCOUNT_SID_RE = re.compile(r"^AC[0-9a-fA-F]{32}$")
_SERVICE_SID_RE = re.compile(r"^MG[0-9a-fA-F]{32}$")
_E164_RE = re.compile(r"^\+[1-9]\d{1,14}$")
_SHORT_CODE_RE = re.compile(r"^\d{3,8}$")
_ALPHA_SENDER_RE = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")

assert _ACCOUNT_SID_RE.match(SANDBOX_ACCOUNT_SID)


# ----------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------

# Twilio code -> (HTTP status, message). Messages follow the real API's wording (placeholders filled in).
_ERRORS: dict[int, tuple[int, str]] = {
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource {path} was not found"),
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
    20503: (503, "Service Unavailable"),
    21211: (400, "The 'To' number {to} is not a valid phone number."),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' or 'MessagingServiceSid' parameter is required to send a message."),
    21604: (400, "A 'To' phone number is required."),
    21606: (400, "The 'From' phone number provided is not a valid message-capable Twilio phone number "
                 "for this destination/account."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21612: (400, "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number "
                 "via SMS."),
    21614: (400, "'To' number is not a valid mobile number"),
    21617: (400, "The concatenated message body exceeds the 1600 character limit."),
    21635: (400, "'To' number cannot be a landline"),
    21705: (400, "The Messaging Service Sid {service} is invalid."),
}
# a bare HTTP status in a fail rule means this Twilio code
_STATUS_ALIASES = {401: 20003, 404: 20404, 429: 20429, 500: 20500, 503: 20503}


def _error(code: int | None, status: int | None = None, **fmt: str) -> web.Response:
    """A Twilio-shaped error response for Twilio ``code`` (``None``: a bare HTTP ``status``)."""
    if code is not None:
        default_status, template = _ERRORS.get(code, (400, "Sandbox: simulated error {code}"))
    else:
        default_status, template = 500, "Sandbox: simulated HTTP {status}"
    status = status or default_status
    fmt.setdefault("code", str(code))
    fmt.setdefault("status", str(status))
    try:
        message = template.format(**fmt)
    except KeyError:
        message = template
    payload = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}" if code else None,
        "status": status,
    }
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
    if status in (429, 503):
        headers["Retry-After"] = "1"
    return web.json_response(payload, status=status, headers=headers)


@dataclass
class FailRule:
    """Answer sends to one number with an error: Twilio ``code`` (or ``None``) and HTTP ``status``;
    ``times`` = fail only that many attempts then accept (``None`` = always)."""

    code: int | None
    status: int
    times: int | None = None
    attempts: int = 0

    @classmethod
    def parse(cls, value: int | str) -> "FailRule":
        text = str(value).strip().lower()
        times = None
        if "x" in text:
            text, _, n = text.partition("x")
            times = int(n)
            if times < 1:
                raise ValueError(f"fail count must be >= 1: {value!r}")
        number = int(text)
        if 100 <= number <= 599:  # an HTTP status
            code = _STATUS_ALIASES.get(number)
            status = number
            if number < 400:
                raise ValueError(f"not an error status: {value!r}")
        else:
            code = number
            status = _ERRORS.get(number, (400, ""))[0]
        return cls(code=code, status=status, times=times)

    def should_fail(self) -> bool:
        self.attempts += 1
        return self.times is None or self.attempts <= self.times


def parse_fail(spec: Mapping[str, int | str] | Iterable[str] | str | None) -> dict[str, FailRule]:
    """Fail rules from ``{"+1500...": 21610}``, ``["+1500...=21610", ...]`` or
    ``"+1500...=21610,+1...=500x2"``; raises ``ValueError`` on a malformed entry."""
    if not spec:
        return {}
    if isinstance(spec, Mapping):
        items = [(str(k), v) for k, v in spec.items()]
    else:
        entries = spec.split(",") if isinstance(spec, str) else [e for s in spec for e in str(s).split(",")]
        items = []
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            number, sep, value = entry.partition("=")
            if not sep:
                raise ValueError(f"fail entry must be NUMBER=CODE[xN]: {entry!r}")
            items.append((number.strip(), value.strip()))
    rules = {}
    for number, value in items:
        if not _E164_RE.match(number):
            raise ValueError(f"fail-list number must be E.164: {number!r}")
        rules[number] = FailRule.parse(value)
    return rules


def parse_rules(spec: Mapping[str, int | str] | Iterable[str] | str | None, *,
                lowercase: bool = False) -> dict[str, FailRule]:
    """Fail rules of the webhook receiver and the SMTP sink: ``"NAME=STATUS[xN]"`` or ``"STATUS[xN]"``
    (name ``*``: every name), from a mapping, a list or a comma-separated string. ``STATUS`` is an HTTP
    status or an SMTP reply code (400-599) and is used as it is (``rule.status``)."""
    if not spec:
        return {}
    if isinstance(spec, Mapping):
        items = [(str(k), str(v)) for k, v in spec.items()]
    else:
        entries = spec.split(",") if isinstance(spec, str) else [e for s in spec for e in str(s).split(",")]
        items = []
        for entry in (e.strip() for e in entries):
            if entry:
                name, sep, value = entry.rpartition("=")
                items.append((name.strip() if sep else "*", value.strip()))
    rules = {}
    for name, value in items:
        head = value.lower().partition("x")[0]
        if not head.isdigit() or not 400 <= int(head) <= 599:
            raise ValueError(f"fail status must be 400-599 (optionally xN): {value!r}")
        name = name or "*"
        rules[name.lower() if lowercase else name] = FailRule.parse(value)
    return rules


ENV_FAULTS = "GRIDWATCH_SANDBOX_FAULTS"
FAULT_KINDS = ("timeout", "created-5xx", "list-lag", "list-error", "smart-encoding")

# Twilio's Smart Encoding: characters with a GSM-7 look-alike are replaced by it (a subset of its table)
SMART_ENCODING = str.maketrans({
    "\u00a0": " ", "\u2002": " ", "\u2003": " ", "\u2009": " ", "\u200b": "",
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-",
    "\u2026": "...", "\u2022": "-", "\u02c6": "^", "\u02dc": "~", "\u2039": "<", "\u203a": ">",
})


@dataclass
class Fault:
    """One provider fault of one number (see the module docs): ``kind``, its argument, ``times``."""

    kind: str
    arg: float | None = None
    times: int | None = None
    uses: int = 0

    def applies(self) -> bool:
        self.uses += 1
        return self.times is None or self.uses <= self.times


def parse_faults(spec: Mapping[str, str] | Iterable[str] | str | None) -> dict[str, list[Fault]]:
    """Faults from ``"NUMBER=KIND[:ARG][xN]"`` entries (a list, a comma-separated string or a mapping of
    number to ``"KIND[:ARG][xN]"``); raises ``ValueError`` on a malformed entry."""
    if not spec:
        return {}
    if isinstance(spec, Mapping):
        items = [(str(k), str(v)) for k, v in spec.items()]
    else:
        entries = spec.split(",") if isinstance(spec, str) else [e for x in spec for e in str(x).split(",")]
        items = []
        for entry in (e.strip() for e in entries if e.strip()):
            number, sep, value = entry.partition("=")
            if not sep:
                raise ValueError(f"fault entry must be NUMBER=KIND[:ARG][xN]: {entry!r}")
            items.append((number.strip(), value.strip()))
    faults: dict[str, list[Fault]] = {}
    for number, value in items:
        if not _E164_RE.match(number):
            raise ValueError(f"fault number must be E.164: {number!r}")
        text, times = value.lower(), None
        head, sep, n = text.rpartition("x")
        if sep and n.isdigit() and head:
            text, times = head, int(n)
            if times < 1:
                raise ValueError(f"fault count must be >= 1: {value!r}")
        kind, _, arg = text.partition(":")
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r} (one of {', '.join(FAULT_KINDS)}): {value!r}")
        try:
            number_arg = float(arg) if arg else None
        except ValueError:
            raise ValueError(f"fault argument must be a number: {value!r}") from None
        if kind in ("list-lag",) and number_arg is None:
            raise ValueError(f"{kind} needs seconds, e.g. {kind}:20: {value!r}")
        if kind in ("list-error",) and (number_arg is None or not 400 <= number_arg <= 599):
            raise ValueError(f"{kind} needs an HTTP status 400-599, e.g. {kind}:429: {value!r}")
        faults.setdefault(number, []).append(Fault(kind, number_arg, times))
    return faults


# ----------------------------------------------------------------------------------------------------
# State
# ----------------------------------------------------------------------------------------------------

@dataclass
class SandboxState:
    account_sid: str
    auth_token: str
    fail: dict[str, FailRule] = field(default_factory=dict)
    store: Path | None = None
    delay_s: float = 0.0  # answer an accepted send this late: a slow provider that has taken the message
    callback_step_s: float = 0.2  # between the status callbacks of one message (sent, then delivered)
    tasks: set = field(default_factory=set)  # status-callback deliveries in flight
    inbound_url: str | None = None  # where replies go (Twilio: the number's incoming-message webhook)
    inbound: list[dict] = field(default_factory=list)  # replies sent through /sandbox/reply, oldest first
    records: list[dict] = field(default_factory=list)   # resource + "sandbox" extras, oldest first
    rejected: list[dict] = field(default_factory=list)
    # the webhook receiver and the SMTP sink (other channels than SMS)
    webhook_secret: str | None = None  # None: GRIDWATCH_WEBHOOK_SECRET, else the development secret
    webhooks: list[dict] = field(default_factory=list)  # accepted deliveries, oldest first
    webhook_keys: dict[str, dict] = field(default_factory=dict)  # "name\nIdempotency-Key" -> its record
    webhook_rejected: list[dict] = field(default_factory=list)
    webhook_fail: dict[str, FailRule] = field(default_factory=dict)  # name (or "*") -> HTTP status
    emails: list[dict] = field(default_factory=list)  # accepted emails, oldest first
    email_rejected: list[dict] = field(default_factory=list)
    email_fail: dict[str, FailRule] = field(default_factory=dict)  # address (or "*") -> SMTP reply code
    smtp_port: int | None = None  # where the SMTP sink listens once started (None: not running)
    faults: dict[str, list["Fault"]] = field(default_factory=dict)  # number -> provider faults

    def fault(self, to: str | None, *kinds: str) -> "Fault | None":
        """The first fault of one of ``kinds`` for ``to`` that still applies (counting this use)."""
        for f in self.faults.get(to or "", ()):
            if f.kind in kinds and f.applies():
                return f
        return None

    def add(self, record: dict) -> None:
        self.records.append(record)
        if self.store is not None:
            self.store.parent.mkdir(parents=True, exist_ok=True)
            with self.store.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")

    def reject(self, to: str | None, code: int | None, status: int) -> None:
        self.rejected.append({"time": _now().isoformat(), "to": mask_phone(to), "code": code,
                              "status": status})

    def find(self, sid: str) -> dict | None:
        return next((r for r in self.records if r["sid"] == sid), None)


STATE = web.AppKey("gridwatch_sandbox_state", SandboxState)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _rfc2822(dt: datetime) -> str:
    return format_datetime(dt.astimezone(timezone.utc).replace(microsecond=0), usegmt=False)


def _resource(record: dict) -> dict:
    """The Twilio message resource of a stored record (without the sandbox extras)."""
    return {k: v for k, v in record.items() if k != "sandbox"}


# ----------------------------------------------------------------------------------------------------
# Handlers
# ----------------------------------------------------------------------------------------------------

def _authorized(request: web.Request, state: SandboxState) -> bool:
    creds = basic_credentials(request.headers.get("Authorization"))
    if creds is None:
        return False
    user_ok = hmac.compare_digest(creds[0].encode(), state.account_sid.encode())
    token_ok = hmac.compare_digest(creds[1].encode(), state.auth_token.encode())
    path_ok = request.match_info.get("AccountSid", state.account_sid) == state.account_sid
    return user_ok and token_ok and path_ok


def _valid_from(value: str) -> bool:
    return bool(_E164_RE.match(value) or _SHORT_CODE_RE.match(value) or _ALPHA_SENDER_RE.match(value))


async def create_message(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not _authorized(request, state):
        return _error(20003)
    form = await request.post()
    to = (form.get("To") or "").strip()
    from_ = (form.get("From") or "").strip() or None
    service = (form.get("MessagingServiceSid") or "").strip() or None
    body = form.get("Body") or ""
    has_media = bool(form.get("MediaUrl") or form.get("ContentSid"))

    def refuse(code: int, **fmt: str) -> web.Response:
        state.reject(to or None, code, _ERRORS[code][0])
        log.info("sandbox refused message to %s: %s", mask_phone(to), code)
        return _error(code, **fmt)

    if not to:
        return refuse(21604)
    if not from_ and not service:
        return refuse(21603)
    if not body and not has_media:
        return refuse(21602)
    if len(body) > MAX_BODY_CHARS:
        return refuse(21617)
    if not _E164_RE.match(to):
        return refuse(21211, to=to)
    if from_ and not _valid_from(from_):
        return refuse(21606)
    if service and not _SERVICE_SID_RE.match(service):
        return refuse(21705, service=service)

    rule = state.fail.get(to)
    if rule is not None and rule.should_fail():
        state.reject(to, rule.code, rule.status)
        log.info("sandbox fail-list: %s -> code %s HTTP %s (attempt %d)", mask_phone(to), rule.code,
                 rule.status, rule.attempts)
        return _error(rule.code, rule.status, to=to)

    if state.fault(to, "smart-encoding"):
        body = unicodedata.normalize("NFKC", body).translate(SMART_ENCODING)
    encoding, segments = sms_segments(body)
    now = _now()
    sid = "SM" + uuid.uuid4().hex
    uri = f"/{API_VERSION}/Accounts/{state.account_sid}/Messages/{sid}.json"
    validity = form.get("ValidityPeriod")
    record = {
        "account_sid": state.account_sid,
        "api_version": API_VERSION,
        "body": body,
        "date_created": _rfc2822(now),
        "date_sent": None,
        "date_updated": _rfc2822(now),
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": from_,
        "messaging_service_sid": service,
        "num_media": "0",
        "num_segments": str(segments),
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued",
        "subresource_uris": {"media": uri[:-len(".json")] + "/Media.json"},
        "to": to,
        "uri": uri,
        "sandbox": {
            "received_at": now.isoformat(),
            "encoding": encoding,
            "validity_period": int(validity) if validity and str(validity).isdigit() else None,
            "status_callback": form.get("StatusCallback") or None,
        },
    }
    state.add(record)
    log.info("sandbox accepted %s to %s (%s, %d segment%s)", sid, mask_phone(to), encoding, segments,
             "" if segments == 1 else "s")
    if record["sandbox"]["status_callback"]:
        task = asyncio.create_task(_report_delivery(state, record))
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
    if state.delay_s:
        await asyncio.sleep(state.delay_s)
    fault = state.fault(to, "timeout", "created-5xx")
    if fault is not None and fault.kind == "timeout":
        log.info("sandbox fault: %s created, the answer held back", sid)
        await asyncio.sleep(fault.arg or 120.0)
    elif fault is not None:
        log.info("sandbox fault: %s created, answered with an error", sid)
        status = int(fault.arg or 500)
        return _error(_STATUS_ALIASES.get(status), status)
    return web.json_response(_resource(record), status=201)


async def _report_delivery(state: SandboxState, record: dict) -> None:
    """Twilio-style status callbacks, signed with the account's auth token: sent, then delivered.

    Form fields and the ``X-Twilio-Signature`` header as Twilio sends them, so the receiving end can be
    tested with its real signature check. A callback that cannot be delivered is logged, not retried.
    """
    url = record["sandbox"]["status_callback"]
    validator = RequestValidator(state.auth_token)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for status in ("sent", "delivered"):
            await asyncio.sleep(state.callback_step_s)
            record["status"] = status
            record["date_updated"] = _rfc2822(_now())
            if status == "sent":
                record["date_sent"] = record["date_updated"]
            params = {"AccountSid": state.account_sid, "ApiVersion": API_VERSION, "From": record["from"] or "",
                      "MessageSid": record["sid"], "MessageStatus": status, "SmsSid": record["sid"],
                      "SmsStatus": status, "To": record["to"]}
            if record.get("messaging_service_sid"):
                params["MessagingServiceSid"] = record["messaging_service_sid"]
            headers = {"X-Twilio-Signature": validator.compute_signature(url, params)}
            try:
                async with http.post(url, data=params, headers=headers) as resp:
                    if resp.status >= 300:
                        log.warning("status callback %s for %s: HTTP %s", status, record["sid"], resp.status)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                log.warning("status callback %s for %s not delivered: %s", status, record["sid"],
                            type(exc).__name__)


async def fetch_message(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not _authorized(request, state):
        return _error(20003)
    record = state.find(request.match_info["MessageSid"])
    if record is None:
        return _error(20404, path=request.path)
    return web.json_response(_resource(record))


async def list_messages(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not _authorized(request, state):
        return _error(20003)
    q = request.query
    fault = state.fault(q.get("To"), "list-error")
    if fault is not None:
        log.info("sandbox fault: a message list answered with HTTP %s", int(fault.arg))
        return _error(_STATUS_ALIASES.get(int(fault.arg)), int(fault.arg))
    now = _now()

    def listed(r: dict) -> bool:  # list-lag: the list shows a message only some time after its creation
        lag = next((f.arg for f in state.faults.get(r["to"], ()) if f.kind == "list-lag"), None)
        return lag is None or (now - parse_datetime(r["sandbox"]["received_at"])).total_seconds() >= lag

    rows = [r for r in reversed(state.records)
            if (not q.get("To") or r["to"] == q["To"]) and (not q.get("From") or r["from"] == q["From"])
            and listed(r)]
    try:
        page_size = max(1, min(1000, int(q.get("PageSize", 50))))
        page = max(0, int(q.get("Page", 0)))
    except ValueError:
        page_size, page = 50, 0
    start = page * page_size
    chunk = rows[start:start + page_size]
    base = request.path
    params = {k: q[k] for k in ("To", "From") if q.get(k)}

    def page_uri(n: int) -> str:
        return f"{base}?{urlencode({**params, 'PageSize': page_size, 'Page': n})}"

    return web.json_response({
        "messages": [_resource(r) for r in chunk],
        "end": start + max(len(chunk), 1) - 1,
        "first_page_uri": page_uri(0),
        "next_page_uri": page_uri(page + 1) if start + page_size < len(rows) else None,
        "page": page,
        "page_size": page_size,
        "previous_page_uri": page_uri(page - 1) if page > 0 else None,
        "start": start,
        "uri": page_uri(page),
    })


def _json(payload: dict, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.json_response(payload, status=status, headers=headers,
                             dumps=lambda o: json.dumps(o, ensure_ascii=False))


def _cleared(received: list, others: tuple, fail_rules: dict) -> web.Response:
    """Forget what one channel received (``received`` is counted in the answer) and restart the counts of its
    fail rules, so a test starts from a clean sandbox without restarting it."""
    n = len(received)
    for held in (received, *others):
        held.clear()
    for rule in fail_rules.values():
        rule.attempts = 0
    return _json({"cleared": n})


async def sandbox_messages(request: web.Request) -> web.Response:
    state = request.app[STATE]
    to = request.query.get("to")
    records = [r for r in state.records if not to or r["to"] == to]
    return _json({"messages": records, "rejected": list(state.rejected), "inbound": list(state.inbound)})


async def clear_messages(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return _cleared(state.records, (state.rejected, state.inbound), state.fail)


# ----------------------------------------------------------------------------------------------------
# Other channels: a webhook receiver and an SMTP sink
# ----------------------------------------------------------------------------------------------------


async def receive_webhook(request: web.Request) -> web.Response:
    """A customer's webhook: signature checked, deduped on Idempotency-Key, the JSON payload recorded."""
    state = request.app[STATE]
    name = request.match_info["name"]
    raw = await request.read()
    key = request.headers.get(IDEMPOTENCY_HEADER) or None

    def refuse(status: int, why: str) -> web.Response:
        state.webhook_rejected.append({"time": _now().isoformat(), "name": name, "idempotency_key": key,
                                       "status": status, "why": why})
        log.info("sandbox webhook %s refused (key %s): HTTP %s %s", name, key, status, why)
        return _json({"error": why}, status, {"Retry-After": "1"} if status in (429, 503) else None)

    try:
        payload = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return refuse(400, "body must be UTF-8 JSON")
    customer_id = payload.get("customer_id") if isinstance(payload, dict) else None
    # each customer checks with its own secret: here derived like the sender does, from the payload's customer
    secret = customer_secret(state.webhook_secret or "", customer_id) if isinstance(customer_id, str) else ""
    if not verify_signature(secret, raw, request.headers.get(SIGNATURE_HEADER),
                            request.headers.get(TIMESTAMP_HEADER)):
        return refuse(401, f"missing, wrong or stale {SIGNATURE_HEADER}")
    rule = state.webhook_fail.get(name) or state.webhook_fail.get("*")
    if rule is not None and rule.should_fail():
        return refuse(rule.status, f"simulated HTTP {rule.status} (attempt {rule.attempts})")
    seen = state.webhook_keys.get(f"{name}\n{key}") if key else None
    if seen is not None:
        seen["duplicates"] += 1
        log.info("sandbox webhook %s: key %s already received, not recorded again", name, key)
        return _json({"id": seen["id"], "duplicate": True})
    record = {"id": "WH" + uuid.uuid4().hex, "name": name, "idempotency_key": key,
              "timestamp": request.headers.get(TIMESTAMP_HEADER), "payload": payload,
              "received_at": _now().isoformat(), "duplicates": 0}
    state.webhooks.append(record)
    if key:
        state.webhook_keys[f"{name}\n{key}"] = record
    log.info("sandbox webhook %s received %s (key %s, %d bytes)", name, record["id"], key, len(raw))
    return _json({"id": record["id"]})


async def list_webhooks(request: web.Request) -> web.Response:
    state = request.app[STATE]
    name = request.query.get("name")
    return _json({"webhooks": [r for r in state.webhooks if not name or r["name"] == name],
                  "rejected": list(state.webhook_rejected)})


async def clear_webhooks(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return _cleared(state.webhooks, (state.webhook_keys, state.webhook_rejected), state.webhook_fail)


async def list_emails(request: web.Request) -> web.Response:
    state = request.app[STATE]
    to = (request.query.get("to") or "").lower()
    return _json({"emails": [r for r in state.emails if not to or to in (a.lower() for a in r["to"])],
                  "rejected": list(state.email_rejected), "smtp_port": state.smtp_port})


async def clear_emails(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return _cleared(state.emails, (state.email_rejected,), state.email_fail)


# reply texts of the SMTP codes a fail rule may ask for (RFC 5321 / RFC 3463 wording)
_SMTP_TEXT = {
    421: "4.3.2 Service not available",
    450: "4.2.1 Mailbox temporarily unavailable",
    451: "4.3.0 Local error in processing, try again later",
    452: "4.3.1 Insufficient system storage",
    550: "5.1.1 Mailbox unavailable",
    551: "5.1.6 User not local",
    552: "5.2.2 Mailbox full",
    553: "5.1.3 Mailbox name not allowed",
    554: "5.7.1 Transaction failed",
}


class MailSink:
    """aiosmtpd handler recording every email it accepts into a :class:`SandboxState` (decoded), and
    refusing ``RCPT TO`` for the addresses of ``state.email_fail``."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    async def handle_RCPT(self, server, session, envelope, address: str, rcpt_options: list) -> str:
        rule = self.state.email_fail.get(address.lower()) or self.state.email_fail.get("*")
        if rule is not None and rule.should_fail():
            self.state.email_rejected.append({"time": _now().isoformat(), "to": mask_email(address),
                                              "code": rule.status})
            log.info("sandbox SMTP fail-list: %s -> %s (attempt %d)", mask_email(address), rule.status,
                     rule.attempts)
            return f"{rule.status} {_SMTP_TEXT.get(rule.status, 'Sandbox: simulated failure')}"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        raw = envelope.original_content or b""
        msg = BytesParser(policy=email_policy.default).parsebytes(raw)
        part = msg.get_body(preferencelist=("plain", "html"))
        try:
            body = part.get_content() if part is not None else ""
        except (LookupError, ValueError):  # unknown charset, broken encoding
            body = part.get_payload(decode=True).decode("utf-8", "replace") if part is not None else ""
        body = body.replace("\r\n", "\n")
        body = body[:-1] if body.endswith("\n") else body  # the line end the composer always adds
        record = {"id": "EM" + uuid.uuid4().hex, "message_id": msg.get("Message-ID"),
                  "from": envelope.mail_from, "to": list(envelope.rcpt_tos), "subject": str(msg.get("Subject", "")),
                  "body": body, "content_type": msg.get_content_type(),
                  "received_at": _now().isoformat(), "size": len(raw)}
        self.state.emails.append(record)
        log.info("sandbox SMTP accepted %s to %s (%d bytes)", record["id"],
                 ", ".join(mask_email(a) for a in record["to"]), len(raw))
        return f"250 2.0.0 OK queued as {record['id']}"


async def start_smtp_sink(state: SandboxState, host: str = DEFAULT_HOST, port: int = 0,
                          handler: object | None = None) -> asyncio.AbstractServer:
    """An aiosmtpd SMTP server on ``host:port`` (0: any free port) in the running event loop, recording
    into ``state`` (``handler``: another aiosmtpd handler instead of :class:`MailSink`). Sets
    ``state.smtp_port``; stop it with ``server.close()``."""
    # aiosmtpd logs every command, recipients in full, at INFO: keep it quieter unless configured otherwise
    smtpd_log = logging.getLogger("mail.log")
    if smtpd_log.level == logging.NOTSET:
        smtpd_log.setLevel(logging.WARNING)
    loop = asyncio.get_running_loop()
    sink = handler if handler is not None else MailSink(state)
    server = await loop.create_server(
        lambda: SMTP(sink, hostname="gridwatch-sandbox", ident="gridwatch sandbox SMTP sink",
                     enable_SMTPUTF8=True, loop=loop),
        host=host, port=port)
    state.smtp_port = server.sockets[0].getsockname()[1]
    return server


def _inbound_url(state: SandboxState, original: dict | None) -> str | None:
    """The inbound webhook: the configured one, else the replied-to message's status callback's sibling."""
    if state.inbound_url:
        return state.inbound_url
    callback = ((original or {}).get("sandbox") or {}).get("status_callback") or ""
    if callback.endswith(STATUS_PATH):
        return callback[:-len(STATUS_PATH)] + INBOUND_PATH
    return None


async def send_reply(request: web.Request) -> web.Response:
    """A person's reply, POSTed to the inbound webhook signed like Twilio signs an incoming message."""
    state = request.app[STATE]
    from_page = request.content_type != "application/json"
    if from_page:
        data = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    else:
        try:
            data = await request.json()
        except ValueError:
            return web.json_response({"error": "body must be JSON"}, status=400)
        if not isinstance(data, dict):
            return web.json_response({"error": "body must be a JSON object"}, status=400)
    text = str(data.get("body") or "")
    to_sid = data.get("to_sid") or None
    sender = (data.get("from") or "").strip() or None
    original = None
    if to_sid:
        original = state.find(to_sid)
        if original is None:
            return web.json_response({"error": f"no message {to_sid}"}, status=404)
    elif not sender:
        return web.json_response({"error": "to_sid or from is required"}, status=400)
    else:
        original = next((r for r in reversed(state.records) if r["to"] == sender), None)
    sender = sender or original["to"]
    if not text:
        return web.json_response({"error": "body is required"}, status=400)
    if not _E164_RE.match(sender):
        return web.json_response({"error": "from must be an E.164 number"}, status=400)
    url = _inbound_url(state, original)
    if not url:
        return web.json_response({"error": "no inbound webhook URL: start the sandbox with --inbound-url or "
                                           "GRIDWATCH_WEBHOOK_URL"}, status=409)
    sid = "SM" + uuid.uuid4().hex
    encoding, segments = sms_segments(text)
    params = {"AccountSid": state.account_sid, "ApiVersion": API_VERSION, "Body": text, "From": sender,
              "MessageSid": sid, "NumMedia": "0", "NumSegments": str(segments), "SmsMessageSid": sid,
              "SmsSid": sid, "SmsStatus": "received",
              "To": (original or {}).get("from") or SANDBOX_FROM_NUMBER}
    if (original or {}).get("messaging_service_sid"):
        params["MessagingServiceSid"] = original["messaging_service_sid"]
    headers = {"X-Twilio-Signature": RequestValidator(state.auth_token).compute_signature(url, params)}
    record = {"sid": sid, "from": sender, "to": params["To"], "body": text, "in_reply_to": to_sid,
              "received_at": _now().isoformat(), "webhook_status": None}
    state.inbound.append(record)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            async with http.post(url, data=params, headers=headers) as resp:
                record["webhook_status"] = resp.status
                answer = await resp.text()
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        log.warning("reply %s from %s not delivered to the inbound webhook: %s", sid, mask_phone(sender),
                    type(exc).__name__)
        if from_page:
            raise web.HTTPSeeOther("/")
        return web.json_response({"sid": sid, "error": f"inbound webhook unreachable: {type(exc).__name__}"},
                                 status=502)
    log.info("reply %s from %s to the inbound webhook: HTTP %s", sid, mask_phone(sender), resp.status)
    if from_page:
        raise web.HTTPSeeOther("/")
    return web.json_response({"sid": sid, "webhook_status": resp.status, "webhook_body": answer})


_REPLY_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Reply - gridwatch SMS sandbox</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#222;background:#fafafa}}
h1{{font-size:1.2rem;margin:0 0 .25rem}} .sub{{color:#666;margin:0 0 1rem}}
blockquote{{white-space:pre-wrap;background:#fff;border-left:3px solid #ccc;margin:0 0 1rem;padding:.5rem .75rem}}
input[type=text]{{width:24rem;max-width:100%}}
</style></head><body>
<h1>Reply as {to}</h1>
<p class="sub">to {frm} &middot; delivered to the inbound webhook like a Twilio incoming message
(try STOP, START, HELP, OUT, 1&ndash;5) &middot; <a href="/">back</a></p>
<blockquote>{body}</blockquote>
<form method=post action=/sandbox/reply><input type=hidden name=to_sid value="{sid}">
<input type=text name=body autofocus required placeholder="STOP"> <button>Send reply</button></form>
</body></html>
"""


async def reply_page(request: web.Request) -> web.Response:
    """A form to reply to one message (the list page refreshes itself, so the typing happens here)."""
    state = request.app[STATE]
    record = state.find(request.query.get("to_sid") or "")
    if record is None:
        return web.Response(status=404, text="no such message\n")
    esc = html.escape
    page = _REPLY_PAGE.format(to=esc(mask_phone(record["to"])),
                              frm=esc(record["from"] or record["messaging_service_sid"] or ""),
                              body=esc(record["body"]), sid=esc(record["sid"]))
    return web.Response(text=page, content_type="text/html", charset="utf-8")


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gridwatch SMS sandbox</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#222;background:#fafafa}}
h1{{font-size:1.2rem;margin:0 0 .25rem}} .sub{{color:#666;margin:0 0 1rem}}
table{{border-collapse:collapse;width:100%;background:#fff}}
th,td{{text-align:left;vertical-align:top;padding:.4rem .6rem;border-bottom:1px solid #e3e3e3}}
th{{background:#f0f0f0;font-weight:600}} td.body{{white-space:pre-wrap;max-width:48rem}}
td.n,td.t{{white-space:nowrap;font-variant-numeric:tabular-nums}} .empty{{color:#888;padding:1rem}}
.rej{{margin-top:1.5rem}} .rej td{{color:#a33}} .in{{margin-top:1.5rem}}
h2{{font-size:1rem;margin:1.5rem 0 .5rem}} td.json{{font-family:ui-monospace,monospace;font-size:12px}}
</style></head><body>
<h1>gridwatch SMS sandbox</h1>
<p class="sub">{count} message(s) received, newest first &middot; account {account}
&middot; refreshes every 2 s</p>
<table><thead><tr><th>Time (UTC)</th><th>To</th><th>From</th><th>Segments</th><th>Body</th>
<th></th></tr></thead>
<tbody>{rows}</tbody></table>
{inbound}
{rejected}
{emails}
{webhooks}
</body></html>
"""


async def index(request: web.Request) -> web.Response:
    state = request.app[STATE]
    esc = html.escape
    rows = "".join(
        "<tr><td class=t>{t}</td><td class=n>{to}</td><td class=n>{frm}</td><td class=n>{seg} {enc}</td>"
        "<td class=body>{body}</td><td><a href=\"/sandbox/reply?to_sid={sid}\">Reply</a></td></tr>".format(
            sid=esc(r["sid"]),
            t=esc(r["sandbox"]["received_at"][:19].replace("T", " ")),
            to=esc(mask_phone(r["to"])),
            frm=esc(r["from"] or r["messaging_service_sid"] or ""),
            seg=esc(r["num_segments"]),
            enc=esc(r["sandbox"]["encoding"]),
            body=esc(r["body"]))
        for r in reversed(state.records)
    ) or '<tr><td colspan=6 class=empty>No messages yet.</td></tr>'
    inbound = ""
    if state.inbound:
        inbound = ("<table class=in><thead><tr><th>Replied (UTC)</th><th>From</th><th>Body</th>"
                   "<th>Webhook</th></tr></thead><tbody>" + "".join(
                       f"<tr><td class=t>{esc(x['received_at'][:19].replace('T', ' '))}</td>"
                       f"<td class=n>{esc(mask_phone(x['from']))}</td><td class=body>{esc(x['body'])}</td>"
                       f"<td>{esc(str(x['webhook_status'] or 'unreachable'))}</td></tr>"
                       for x in reversed(state.inbound[-50:]))
                   + "</tbody></table>")
    rejected = ""
    if state.rejected:
        rejected = ("<table class=rej><thead><tr><th>Refused (UTC)</th><th>To</th><th>Code</th>"
                    "<th>HTTP</th></tr></thead><tbody>" + "".join(
                        f"<tr><td class=t>{esc(x['time'][:19].replace('T', ' '))}</td>"
                        f"<td class=n>{esc(x['to'])}</td><td>{esc(str(x['code']))}</td>"
                        f"<td>{esc(str(x['status']))}</td></tr>" for x in reversed(state.rejected[-50:]))
                    + "</tbody></table>")
    page = _PAGE.format(count=len(state.records), account=esc(state.account_sid), rows=rows,
                        inbound=inbound, rejected=rejected, emails=_emails_html(state),
                        webhooks=_webhooks_html(state))
    return web.Response(text=page, content_type="text/html", charset="utf-8")


def _emails_html(state: SandboxState) -> str:
    """The email section of the page: newest first, addresses masked (only when the sink runs or has mail)."""
    esc = html.escape
    if state.smtp_port is None and not state.emails:
        return ""
    rows = "".join(
        f"<tr><td class=t>{esc(r['received_at'][:19].replace('T', ' '))}</td>"
        f"<td class=n>{esc(', '.join(mask_email(a) for a in r['to']))}</td><td>{esc(r['subject'])}</td>"
        f"<td class=body>{esc(r['body'])}</td></tr>" for r in reversed(state.emails[-50:])
    ) or "<tr><td colspan=4 class=empty>No email yet.</td></tr>"
    rows += "".join(
        f"<tr class=rej><td class=t>{esc(x['time'][:19].replace('T', ' '))}</td><td class=n>{esc(x['to'])}</td>"
        f"<td colspan=2>refused: SMTP {esc(str(x['code']))}</td></tr>" for x in reversed(state.email_rejected[-20:]))
    port = f" on SMTP port {state.smtp_port}" if state.smtp_port else ""
    return (f"<h2>Email{esc(port)} &middot; {len(state.emails)} received</h2><table><thead><tr>"
            "<th>Time (UTC)</th><th>To</th><th>Subject</th><th>Body</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def _webhooks_html(state: SandboxState) -> str:
    """The webhook section of the page: deliveries newest first, with their payload."""
    esc = html.escape
    if not state.webhooks and not state.webhook_rejected:
        return ""
    rows = "".join(
        f"<tr><td class=t>{esc(r['received_at'][:19].replace('T', ' '))}</td><td class=n>{esc(r['name'])}</td>"
        f"<td class=n>{esc(str(r['idempotency_key'] or ''))}"
        f"{' (+' + str(r['duplicates']) + ' repeats)' if r['duplicates'] else ''}</td>"
        f"<td class='body json'>{esc(json.dumps(r['payload'], ensure_ascii=False, indent=1)[:2000])}</td></tr>"
        for r in reversed(state.webhooks[-50:]))
    rows += "".join(
        f"<tr class=rej><td class=t>{esc(x['time'][:19].replace('T', ' '))}</td><td class=n>{esc(x['name'])}</td>"
        f"<td class=n>{esc(str(x['idempotency_key'] or ''))}</td><td>refused: HTTP {esc(str(x['status']))} "
        f"{esc(x['why'])}</td></tr>" for x in reversed(state.webhook_rejected[-20:]))
    return (f"<h2>Webhooks &middot; {len(state.webhooks)} received</h2><table><thead><tr><th>Time (UTC)</th>"
            f"<th>Receiver</th><th>Idempotency-Key</th><th>Payload</th></tr></thead><tbody>{rows}</tbody></table>")


async def not_found(request: web.Request) -> web.Response:
    return _error(20404, path=request.path)


def make_app(account_sid: str, auth_token: str, fail=None, store: str | os.PathLike | None = None,
             delay_s: float = 0.0, inbound_url: str | None = None, *, webhook_secret: str | None = None,
             fail_webhook=None, fail_email=None, smtp_port: int | None = None,
             smtp_host: str = DEFAULT_HOST, smtp_required: bool = True, faults=None) -> web.Application:
    """The sandbox as an aiohttp application.

    ``fail``: see :func:`parse_fail` (mapping number → code/status, or ``"NUMBER=CODE[xN]"`` strings).
    ``store``: path of a JSON-lines file that every accepted message is appended to.
    ``faults``: provider faults per number, see :func:`parse_faults`.
    ``delay_s``: keep an accepted send waiting this long for its answer (the message is already stored),
    to reproduce a worker dying between the provider taking a message and the worker recording it.
    ``inbound_url``: where ``/sandbox/reply`` posts replies (else derived from a message's status callback).
    ``webhook_secret``: what the webhook receiver checks signatures with (default
    ``GRIDWATCH_WEBHOOK_SECRET``, else the development secret). ``fail_webhook`` / ``fail_email``: see
    :func:`parse_rules`. ``smtp_port``: run the SMTP sink on ``smtp_host:smtp_port`` (``0``: any free port,
    ``None``: no sink) while the app runs; the bound port is ``app[STATE].smtp_port``. A port already in use
    fails the start, unless ``smtp_required`` is False (then the sandbox runs without the sink, with a
    warning).
    """
    if not _ACCOUNT_SID_RE.match(account_sid or ""):
        raise ValueError("sandbox account SID must be 'AC' followed by 32 hex characters")
    if not auth_token:
        raise ValueError("sandbox auth token must not be empty")
    app = web.Application()
    app[STATE] = SandboxState(account_sid=account_sid, auth_token=auth_token, fail=parse_fail(fail),
                              store=Path(store) if store else None, delay_s=delay_s, inbound_url=inbound_url)
    app[STATE].webhook_secret = _webhook_secret(webhook_secret or os.environ.get("GRIDWATCH_WEBHOOK_SECRET"))
    app[STATE].webhook_fail = parse_rules(fail_webhook)
    app[STATE].email_fail = parse_rules(fail_email, lowercase=True)
    app[STATE].faults = parse_faults(faults)
    prefix = f"/{API_VERSION}/Accounts/{{AccountSid}}"
    app.router.add_post(f"{prefix}/Messages.json", create_message)
    app.router.add_get(f"{prefix}/Messages.json", list_messages)
    app.router.add_get(f"{prefix}/Messages/{{MessageSid}}.json", fetch_message)
    app.router.add_get("/sandbox/messages", sandbox_messages)
    app.router.add_delete("/sandbox/messages", clear_messages)
    app.router.add_post("/sandbox/reply", send_reply)
    app.router.add_get("/sandbox/reply", reply_page)
    app.router.add_post("/sandbox/webhook/{name}", receive_webhook)
    app.router.add_get("/sandbox/webhooks", list_webhooks)
    app.router.add_delete("/sandbox/webhooks", clear_webhooks)
    app.router.add_get("/sandbox/emails", list_emails)
    app.router.add_delete("/sandbox/emails", clear_emails)
    app.router.add_get("/", index)
    app.router.add_route("*", "/{tail:.*}", not_found)

    async def finish_callbacks(app: web.Application) -> None:
        for task in list(app[STATE].tasks):
            task.cancel()

    app.on_shutdown.append(finish_callbacks)

    if smtp_port is not None:
        async def smtp_sink(app: web.Application):
            try:
                server = await start_smtp_sink(app[STATE], smtp_host, smtp_port)
            except OSError as exc:
                if smtp_required:
                    raise
                log.warning("no SMTP sink: cannot listen on %s:%s (%s); start the sandbox with --smtp-port",
                            smtp_host, smtp_port, exc.strerror or exc)
                yield
                return
            yield
            server.close()
            try:
                await asyncio.wait_for(server.wait_closed(), 2.0)
            except asyncio.TimeoutError:  # a client still connected: it is dropped with the loop
                pass
            app[STATE].smtp_port = None

        app.cleanup_ctx.append(smtp_sink)
    return app


# ----------------------------------------------------------------------------------------------------
# Command
# ----------------------------------------------------------------------------------------------------

async def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, fail=None,
                store: str | os.PathLike | None = None, stop: asyncio.Event | None = None,
                delay_s: float = 0.0, inbound_url: str | None = None, smtp_port: int | None = None,
                fail_webhook=None, fail_email=None, faults=None) -> None:
    """Run the sandbox until ``stop`` is set (or SIGINT/SIGTERM when ``stop`` is not given).

    ``smtp_port``: the SMTP sink's port; ``None`` (default) is ``port`` + 1 (any free port when ``port`` is
    0; when that port is taken the sandbox runs without the sink, with a warning), ``0`` runs no SMTP sink."""
    account_sid, auth_token = sandbox_credentials()
    required = bool(smtp_port)  # the default port may be taken: then run without the sink, with a warning
    if smtp_port is None:
        smtp_port = port + SANDBOX_SMTP_PORT_OFFSET if port else 0
    elif smtp_port == 0:
        smtp_port = None
    app = make_app(account_sid, auth_token, fail=fail, store=store, delay_s=delay_s, inbound_url=inbound_url,
                   fail_webhook=fail_webhook, fail_email=fail_email, smtp_port=smtp_port, smtp_host=host,
                   smtp_required=required, faults=faults)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0] if runner.addresses else (host, port)
    url = f"http://{host}:{bound[1]}"
    print(f"Twilio sandbox listening on {url}/ (Messages API at {url}/{API_VERSION}/Accounts/"
          f"{account_sid}/Messages.json)", flush=True)
    if app[STATE].smtp_port:
        print(f"SMTP sink on {host}:{app[STATE].smtp_port} (emails at {url}/sandbox/emails); webhook receiver "
              f"at {url}/sandbox/webhook/NAME", flush=True)
    print(f"Point gridwatch at it with GRIDWATCH_SANDBOX_URL={url}; Ctrl-C to stop.", flush=True)
    if stop is None:
        stop = stop_event()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        print("Twilio sandbox stopped.", flush=True)


def _run(args: argparse.Namespace) -> int:
    fail = list(args.fail or [])
    if os.environ.get(ENV_FAIL):
        fail.insert(0, os.environ[ENV_FAIL])
    try:
        parse_fail(fail)
        parse_rules(args.fail_webhook)
        parse_rules(args.fail_email)
        faults = list(args.fault or [])
        if os.environ.get(ENV_FAULTS):
            faults.insert(0, os.environ[ENV_FAULTS])
        parse_faults(faults)
    except ValueError as exc:
        print(f"gridwatch sandbox: {exc}")
        return 2
    if args.smtp_port is not None and not 0 <= args.smtp_port <= 65535:
        print("gridwatch sandbox: --smtp-port must be 0-65535")
        return 2
    inbound_url = args.inbound_url
    if not inbound_url and os.environ.get("GRIDWATCH_WEBHOOK_URL"):
        inbound_url = os.environ["GRIDWATCH_WEBHOOK_URL"].rstrip("/") + INBOUND_PATH
    asyncio.run(serve(args.host, args.port, fail=fail, store=args.store, delay_s=args.delay,
                      inbound_url=inbound_url, smtp_port=args.smtp_port, fail_webhook=args.fail_webhook,
                      fail_email=args.fail_email, faults=faults))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sandbox",
        help="run a local stand-in for Twilio's Messages API (no real SMS is sent)",
        description="Serve the part of Twilio's 2010-04-01 Messages API that gridwatch uses, so the real "
                    "twilio client can send to it. Open the printed URL in a browser to watch messages "
                    "arrive. Credentials: account SID and token from GRIDWATCH_SANDBOX_ACCOUNT_SID / "
                    "GRIDWATCH_SANDBOX_AUTH_TOKEN, else the built-in sandbox defaults.",
    )
    p.add_argument("--host", default=DEFAULT_HOST, help="interface to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (default: %(default)s; 0 = any)")
    p.add_argument("--store", metavar="FILE",
                   help="append every accepted message to FILE as JSON lines")
    p.add_argument("--fail", metavar="NUMBER=CODE[xN]", action="append",
                   help="answer sends to NUMBER with an error instead: a Twilio code (21610 opted out, "
                        "21211, 21612, 21614, 21635 permanent; 20429 rate limit) or an HTTP status "
                        "(429, 500, 503); xN = only the first N attempts. Repeatable; also env "
                        f"{ENV_FAIL}=NUMBER=CODE,...")
    p.add_argument("--delay", type=float, default=0.0, metavar="SECONDS",
                   help="answer each accepted send only after SECONDS (the message is stored at once): a slow "
                        "provider, for crash tests")
    p.add_argument("--fault", metavar="NUMBER=KIND[xN]", action="append",
                   help="a provider fault for sends to NUMBER: timeout[:S] (created, never answered), "
                        "created-5xx[:STATUS] (created, answered with an error), list-lag:S (listed only S s "
                        "after creation), list-error:STATUS (its message list fails), smart-encoding (the "
                        "body is stored with GSM look-alikes); xN = only the first N times. Repeatable; also "
                        f"env {ENV_FAULTS}=NUMBER=KIND,...")
    p.add_argument("--inbound-url", metavar="URL", default=None,
                   help="where replies typed on the page (or POSTed to /sandbox/reply) are delivered, signed like "
                        "Twilio's incoming-message webhook (default: $GRIDWATCH_WEBHOOK_URL/twilio/inbound, else "
                        "next to the replied-to message's status callback)")
    p.add_argument("--smtp-port", type=int, default=None, metavar="PORT",
                   help="port of the SMTP sink that records the email channel's messages (default: --port + 1; "
                        "0 = no SMTP sink)")
    p.add_argument("--fail-webhook", metavar="[NAME=]STATUS[xN]", action="append",
                   help="answer webhook deliveries to /sandbox/webhook/NAME (all names without NAME=) with that "
                        "HTTP status instead (503, 429 retryable; 400, 410 permanent); xN = only the first N "
                        "attempts. Repeatable")
    p.add_argument("--fail-email", metavar="ADDRESS=CODE[xN]", action="append",
                   help="answer RCPT TO:<ADDRESS> (* = every address) with that SMTP reply code instead (550 "
                        "mailbox unavailable, 451 try again later, ...); xN = only the first N attempts. "
                        "Repeatable")
    p.set_defaults(func=_run)
