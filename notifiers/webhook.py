"""Signed JSON webhooks with aiohttp: the ``webhook`` delivery channel.

``WebhookNotifier.send(url, body, data=payload, key=notification_id)`` POSTs ``payload`` (which names the
customer: ``payload["customer_id"]``) as UTF-8 JSON to the customer's URL with these headers:

``Idempotency-Key``
    The notification id. A retry (after a timeout, a 5xx, a restart) carries the same key, and the
    receiver must treat a key it has already processed as done (answer 2xx again, do nothing): that is
    what makes this channel :attr:`~WebhookNotifier.idempotent`, so sends are retried even when the
    previous attempt may have arrived.
``X-Gridwatch-Timestamp``
    Unix seconds when the attempt was made; covered by the signature.
``X-Gridwatch-Signature``
    ``sha256=`` and the lowercase hex HMAC-SHA256 of ``<timestamp>.`` followed by the exact request body
    bytes, keyed with **the customer's own secret** (:func:`customer_secret`).

Each customer has its own secret, derived from the master secret ``GRIDWATCH_WEBHOOK_SECRET`` as
HMAC-SHA256(master, ``"gridwatch-webhook-v1:" + customer_id``) in hex. Derived rather than stored in the
customer record because customer records travel on a Kafka topic that the console and every worker read: a
secret there would be visible to all of them, whereas a derived one exists only where the master secret is
configured; nothing new has to be stored, backed up or kept in step, and changing the master secret
rotates every customer's at once. ``gridwatch webhook-secret CUSTOMER_ID`` prints the secret to hand to that
customer. One customer's secret tells nothing about another's or about the master.

Verifying on the receiving side: read the raw body *before* parsing it, then call :func:`verify_signature`
``(secret, raw_body, request.headers["X-Gridwatch-Signature"], request.headers["X-Gridwatch-Timestamp"])``;
it is False for a wrong or missing signature and for a timestamp more than ``tolerance_s`` (default 300 s)
away from the receiver's clock, so a captured request cannot be replayed later; reject the request (401)
then, else parse the JSON and dedupe on ``Idempotency-Key``. The sandbox's ``POST /sandbox/webhook/{name}``
(:mod:`devtools.sandbox`) is a working receiver.

Where webhooks may go: the URL's host is resolved and **every** address checked; loopback, private
(RFC 1918, unique-local), link-local (169.254.0.0/16 with cloud metadata services, fe80::/10), shared,
reserved, multicast and unspecified addresses are refused (a permanent error: nothing is sent) unless
``GRIDWATCH_WEBHOOK_ALLOW`` lists a network containing them (comma-separated CIDRs, e.g. ``127.0.0.1/32``
for the local sandbox). The connection is made through a resolver that applies the same check, so a name
that resolves differently the second time cannot slip through; redirects are not followed. Without
``GRIDWATCH_WEBHOOK_SECRET`` a fixed development master secret (:data:`DEV_WEBHOOK_SECRET`, public) is
used, and then webhooks go only to allowed (local) networks.

Outcomes: 2xx → ``Delivery(<the response's JSON "id", else the key>, "delivered")``; 408, 429 and 5xx →
``retryable``; any other status (3xx is not followed, 4xx) → permanent. Only the status code is kept: the
receiver's answer never reaches ``notifications.reason`` (viewers see it). A connect failure or connect
timeout → ``retryable``, not ``maybe_sent``; a timeout or a connection lost once the request may have been
sent → ``retryable`` and ``maybe_sent=True``. URLs are logged as scheme and host only: paths and queries
often carry the receiver's own tokens.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import sys
import time
import uuid
from typing import Any, Iterable
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

from gridwatch.config import Settings
from notifiers.base import Delivery, Notifier, NotifierError

__all__ = [
    "DEV_WEBHOOK_SECRET",
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TargetRefused",
    "WebhookNotifier",
    "customer_secret",
    "parse_allow",
    "refused_address",
    "sign",
    "verify_signature",
    "webhook_secret",
    "register",
]

log = logging.getLogger(__name__)

# Fixed, public, NOT secret: for the sandbox and development only (then webhooks go to allowed networks only).
DEV_WEBHOOK_SECRET = "gridwatch-dev-webhook-secret-not-secret"
SIGNATURE_HEADER = "X-Gridwatch-Signature"
TIMESTAMP_HEADER = "X-Gridwatch-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TIMEOUT_S = 10.0
#: how far a receiver accepts the signed timestamp from its own clock, either way
DEFAULT_TOLERANCE_S = 300
_DERIVE_PREFIX = b"gridwatch-webhook-v1:"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def webhook_secret(configured: str | None = None) -> str:
    """The master secret in use: ``configured`` (``settings.webhook_secret``), else the development one."""
    return configured or DEV_WEBHOOK_SECRET


def customer_secret(master: str | bytes, customer_id: str) -> str:
    """The customer's own signing secret: hex HMAC-SHA256(master, ``"gridwatch-webhook-v1:" + customer_id``)."""
    key = master.encode("utf-8") if isinstance(master, str) else master
    return hmac.new(key, _DERIVE_PREFIX + customer_id.encode("utf-8"), hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int | str) -> str:
    """The ``X-Gridwatch-Signature`` value: ``"sha256=" + hex(HMAC-SHA256(secret, b"<timestamp>." + body))``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | bytes, body: bytes, header: str | None, timestamp: str | int | None, *,
                     tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None) -> bool:
    """True when ``header`` (the received ``X-Gridwatch-Signature``) signs ``timestamp`` (the received
    ``X-Gridwatch-Timestamp``) and the raw ``body`` under ``secret``, and the timestamp is within
    ``tolerance_s`` of ``now`` (default: this clock). Constant-time comparison; anything missing or
    malformed is False."""
    if not header or not secret or timestamp is None:
        return False
    try:
        ts = int(str(timestamp).strip())
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    scheme, sep, _digest = header.strip().partition("=")
    if not sep or scheme.lower() != "sha256":
        return False
    expected = sign(secret, body, ts)
    return hmac.compare_digest(expected.encode("ascii"), header.strip().lower().encode("ascii", "replace"))


# --------------------------------------------------------------------------------- where webhooks go

class TargetRefused(ValueError):
    """The webhook's host is (or resolves to) an address that is not allowed."""


def parse_allow(spec: str | Iterable[str] | None) -> tuple[Network, ...]:
    """Networks from ``GRIDWATCH_WEBHOOK_ALLOW`` (comma-separated CIDRs or addresses) — ValueError."""
    items = [part for item in ([spec] if isinstance(spec, str) else spec or ()) for part in item.split(",")]
    out = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"GRIDWATCH_WEBHOOK_ALLOW: {item!r} is not an IP network (e.g. 127.0.0.1/32, "
                             "10.20.0.0/16)") from None
    return tuple(out)


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def allowed_by(address: str, allow: Iterable[Network]) -> bool:
    """``address`` is in one of the ``allow`` networks."""
    ip = _ip(address)
    return ip is not None and any(ip in net for net in allow if net.version == ip.version)


def refused_address(address: str, allow: Iterable[Network] = ()) -> str | None:
    """Why ``address`` may not receive webhooks (e.g. "loopback"), or None when it may."""
    ip = _ip(address)
    if ip is None:
        return "not an IP address"
    if allowed_by(address, allow):
        return None
    for what in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{what}"):
            return what.replace("_", "-")
    if not ip.is_global:
        return "not global"
    return None


class _GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing a name when any of its addresses is not allowed (so the address that is
    connected to is one that was checked)."""

    def __init__(self, allow: tuple[Network, ...]) -> None:
        self._inner = DefaultResolver()
        self._allow = allow

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET):
        results = await self._inner.resolve(host, port, family)
        for r in results:
            why = refused_address(r["host"], self._allow)
            if why:
                raise TargetRefused(f"{host} resolves to a {why} address")
        return results

    async def close(self) -> None:
        await self._inner.close()


async def check_target(host: str, allow: tuple[Network, ...]) -> list[str]:
    """The addresses of ``host``; TargetRefused when any of them is not allowed, OSError when it does not
    resolve."""
    host = host.strip("[]")
    if _ip(host) is not None:
        addresses = [host]
    else:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        addresses = [info[4][0] for info in infos]
    for address in addresses:
        why = refused_address(address, allow)
        if why:
            raise TargetRefused(f"{host} is a {why} address" if address == host
                                else f"{host} resolves to a {why} address")
    return addresses


def _where(url: str) -> str:
    """``scheme://host[:port]`` of a URL, for logs and errors (never its path or query)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    return f"{parts.scheme}://{host}{port}"


def _is_retryable(status: int) -> bool:
    return status in (408, 429) or status >= 500


class WebhookNotifier(Notifier):
    """A :class:`~notifiers.base.Notifier` POSTing signed JSON to the URL given as ``to``.

    ``secret``: the master secret the customers' secrets are derived from (default
    :data:`DEV_WEBHOOK_SECRET`, which may only be used towards ``allow``). ``allow``: networks that may
    receive webhooks although they are loopback, private or link-local (:func:`parse_allow`).
    ``timeout_s`` bounds each attempt, ``connect_timeout_s`` its connection set-up.
    """

    channel = "webhook"
    idempotent = True  # same Idempotency-Key on every attempt; the receiver dedupes on it

    def __init__(self, secret: str | None = None, *, allow: str | Iterable[str] | Iterable[Network] = (),
                 timeout_s: float = DEFAULT_TIMEOUT_S, connect_timeout_s: float = 5.0,
                 user_agent: str = "gridwatch-webhook/1") -> None:
        self._secret = webhook_secret(secret)
        items = [allow] if isinstance(allow, str) else list(allow)
        self.allow: tuple[Network, ...] = tuple(a for a in items if not isinstance(a, str)) + parse_allow(
            [a for a in items if isinstance(a, str)])
        self.timeout_s = timeout_s
        self.connect_timeout_s = min(connect_timeout_s, timeout_s)
        self.user_agent = user_agent
        self._http: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never the secret
        return f"WebhookNotifier(dev_secret={self.uses_dev_secret!r}, timeout_s={self.timeout_s!r})"

    @property
    def uses_dev_secret(self) -> bool:
        return self._secret == DEV_WEBHOOK_SECRET

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> "WebhookNotifier":
        """Master secret ``settings.webhook_secret`` (``GRIDWATCH_WEBHOOK_SECRET``) or the development one,
        allowed networks ``settings.webhook_allow`` (``GRIDWATCH_WEBHOOK_ALLOW``)."""
        configured = getattr(settings, "webhook_secret", None)
        if not configured:
            log.info("webhooks signed with the development secret (GRIDWATCH_WEBHOOK_SECRET is not set): "
                     "only to the networks of GRIDWATCH_WEBHOOK_ALLOW")
        return cls(configured, allow=getattr(settings, "webhook_allow", None) or (), **kwargs)

    def _session(self) -> aiohttp.ClientSession:
        """Opened on first use: aiohttp wants a running event loop."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=_GuardedResolver(self.allow)),
                timeout=aiohttp.ClientTimeout(total=None, connect=self.connect_timeout_s),
                headers={"User-Agent": self.user_agent})
        return self._http

    def _refuse(self, where: str, why: str) -> NotifierError:
        err = NotifierError(f"webhook {where}: refused: {why}", retryable=False)
        log.warning("webhook to %s not sent: %s", where, err)
        return err

    async def send(self, to: str, body: str, *, subject: str | None = None, data: dict | None = None,
                   key: str | None = None) -> Delivery:
        """POST ``data`` (which must carry ``customer_id``, whose secret signs it) to the URL ``to``.

        ``key`` is the Idempotency-Key; without one a random key is used (so that call is not
        idempotent across attempts). ``body`` and ``subject`` are not sent (``data`` carries the text)."""
        where = _where(to)
        try:
            parts = urlsplit(to or "")
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("the webhook URL must be http:// or https:// with a host")
            customer_id = (data or {}).get("customer_id")
            if not isinstance(customer_id, str) or not customer_id:
                raise ValueError("the payload names no customer_id to sign for")
            raw = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
        except (ValueError, TypeError) as exc:
            raise self._refuse(where, f"cannot send: {exc}") from None
        try:
            addresses = await check_target(parts.hostname, self.allow)
        except TargetRefused as exc:
            raise self._refuse(where, f"{exc} (GRIDWATCH_WEBHOOK_ALLOW lists the networks allowed anyway)") from None
        except OSError as exc:
            err = NotifierError(f"webhook {where}: cannot resolve the host: {type(exc).__name__}", retryable=True)
            log.warning("webhook to %s not sent: %s", where, err)
            raise err from None
        if self.uses_dev_secret and not all(allowed_by(a, self.allow) for a in addresses):
            raise self._refuse(where, "GRIDWATCH_WEBHOOK_SECRET is not set: the development secret is public, "
                                      "so it only signs for the networks of GRIDWATCH_WEBHOOK_ALLOW")
        key = key or uuid.uuid4().hex
        timestamp = str(int(time.time()))
        secret = customer_secret(self._secret, customer_id)
        headers = {"Content-Type": "application/json; charset=utf-8", IDEMPOTENCY_HEADER: key,
                   TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, raw, timestamp)}
        http = self._session()
        try:
            async with asyncio.timeout(self.timeout_s):
                async with http.post(to, data=raw, headers=headers, allow_redirects=False) as resp:
                    status = resp.status
                    answer = await resp.content.read(64 * 1024) if 200 <= status < 300 else b""
        except TargetRefused as exc:  # the name resolved differently when connecting
            raise self._refuse(where, str(exc)) from None
        except aiohttp.ConnectionTimeoutError:  # never connected: nothing was sent
            err = NotifierError(f"webhook {where}: no connection within {self.connect_timeout_s:g}s",
                                retryable=True)
        except TimeoutError:
            err = NotifierError(f"webhook {where}: no answer within {self.timeout_s:g}s (it may or may not have "
                                "been received)", retryable=True, maybe_sent=True)
        except aiohttp.ClientConnectorError as exc:  # refused, DNS, TLS set-up: nothing was sent
            err = NotifierError(f"webhook {where}: cannot connect: {type(exc).__name__}", retryable=True)
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
            err = NotifierError(f"webhook {where}: invalid URL: {type(exc).__name__}", retryable=False)
        except (aiohttp.ClientError, OSError) as exc:  # connected, then lost: it may have been received
            err = NotifierError(f"webhook {where}: connection lost: {type(exc).__name__} (it may or may not "
                                "have been received)", retryable=True, maybe_sent=True)
        else:
            if 200 <= status < 300:
                provider_id = key
                try:
                    answered = json.loads(answer) if answer else None
                except ValueError:
                    answered = None
                if isinstance(answered, dict) and isinstance(answered.get("id"), (str, int)) \
                        and not isinstance(answered.get("id"), bool) and str(answered["id"]):
                    provider_id = str(answered["id"])[:200]
                log.info("webhook %s to %s delivered: HTTP %s", key, where, status)
                return Delivery(provider_message_id=provider_id, status="delivered")
            # only the status: the receiver's own words are not ours to show operators and viewers
            err = NotifierError(f"webhook {where}: HTTP {status}", status=status, retryable=_is_retryable(status))
        log.warning("webhook %s to %s failed: %s (status=%s, retryable=%s, maybe_sent=%s)", key, where, err,
                    err.status, err.retryable, err.maybe_sent)
        raise err

    async def find_sent(self, to: str, body: str, since: float, **_: object) -> Delivery | None:
        """Always None: a webhook cannot be asked, and sending again with the same key is safe."""
        return None

    async def close(self) -> None:
        http, self._http = self._http, None
        if http is not None and not http.closed:
            await http.close()

    async def __aenter__(self) -> "WebhookNotifier":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


# ------------------------------------------------------------------------------------------------ CLI

def _secret_command(args) -> int:
    master = Settings().webhook_secret
    if not master:
        print("gridwatch webhook-secret: GRIDWATCH_WEBHOOK_SECRET is not set (the development secret is public "
              "and not for customers)", file=sys.stderr)
        return 2
    print(customer_secret(master, args.customer_id))
    return 0


def register(sub) -> None:
    p = sub.add_parser("webhook-secret", help="print the secret a customer verifies its webhooks with",
                       description="Print the customer's own webhook signing secret, derived from "
                                   "GRIDWATCH_WEBHOOK_SECRET and the customer id, to hand to that customer.")
    p.add_argument("customer_id", help="the customer's id, e.g. C000123")
    p.set_defaults(func=_secret_command)
