"""Signed JSON webhooks with aiohttp: the ``webhook`` delivery channel.

``WebhookNotifier.send(url, body, data=payload, key=notification_id)`` POSTs ``payload`` as UTF-8 JSON to
the customer's URL with these headers:

``Idempotency-Key``
    The notification id. A retry (after a timeout, a 5xx, a restart) carries the same key, and the
    receiver must treat a key it has already processed as done (answer 2xx again, do nothing): that is
    what makes this channel :attr:`~WebhookNotifier.idempotent`, so sends are retried even when the
    previous attempt may have arrived.
``X-Gridwatch-Signature``
    ``sha256=`` and the lowercase hex HMAC-SHA256 of the exact request body bytes, keyed with the shared
    secret (``GRIDWATCH_WEBHOOK_SECRET``).
``X-Gridwatch-Timestamp``
    Unix seconds when the attempt was made (informational, not covered by the signature).

Verifying on the receiving side: read the raw body *before* parsing it, then call
:func:`verify_signature` ``(secret, raw_body, request.headers["X-Gridwatch-Signature"])``; reject the
request (401) when it returns False, else parse the JSON and dedupe on ``Idempotency-Key``. The check is
the HMAC recomputed over the raw bytes and compared in constant time (``hmac.compare_digest``); parsing
and re-serializing the JSON first would change the bytes and fail the check. The sandbox's
``POST /sandbox/webhook/{name}`` (:mod:`notifiers.sandbox`) is a working receiver.

Outcomes: 2xx → ``Delivery(<the response's JSON "id", else the key>, "delivered")``; 408, 429 and 5xx →
``retryable``; any other status (3xx is not followed, 4xx) → permanent. A connect failure or connect
timeout → ``retryable``, not ``maybe_sent``; a timeout or a connection lost once the request may have
been sent → ``retryable`` and ``maybe_sent=True``.

Without ``GRIDWATCH_WEBHOOK_SECRET`` a fixed development secret (:data:`DEV_WEBHOOK_SECRET`, public) is
used, and a warning is logged when a webhook outside this machine is called with it. URLs are logged as
scheme and host only: paths and queries often carry the receiver's own tokens.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from notifiers.base import Delivery, Notifier, NotifierError

__all__ = [
    "DEV_WEBHOOK_SECRET",
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookNotifier",
    "sign",
    "verify_signature",
    "webhook_secret",
]

log = logging.getLogger(__name__)

# Fixed, public, NOT secret: for the sandbox and development only (a warning is logged otherwise).
DEV_WEBHOOK_SECRET = "gridwatch-dev-webhook-secret-not-secret"
SIGNATURE_HEADER = "X-Gridwatch-Signature"
TIMESTAMP_HEADER = "X-Gridwatch-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TIMEOUT_S = 10.0
_LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost"}


def webhook_secret(configured: str | None = None) -> str:
    """The secret in use: ``configured`` (``settings.webhook_secret``), else the development secret."""
    return configured or DEV_WEBHOOK_SECRET


def sign(secret: str | bytes, body: bytes) -> str:
    """The ``X-Gridwatch-Signature`` value of ``body``: ``"sha256=" + hex(HMAC-SHA256(secret, body))``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """True when ``header`` (the received ``X-Gridwatch-Signature``) is the signature of the raw ``body``
    under ``secret``. Constant-time comparison; a missing or malformed header is False."""
    if not header or not secret:
        return False
    scheme, sep, _digest = header.strip().partition("=")
    if not sep or scheme.lower() != "sha256":
        return False
    expected = sign(secret, body)
    return hmac.compare_digest(expected.encode("ascii"), header.strip().lower().encode("ascii", "replace"))


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

    ``secret``: the HMAC key (default :data:`DEV_WEBHOOK_SECRET`). ``timeout_s`` bounds each attempt,
    ``connect_timeout_s`` its connection set-up.
    """

    channel = "webhook"
    idempotent = True  # same Idempotency-Key on every attempt; the receiver dedupes on it

    def __init__(self, secret: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 connect_timeout_s: float = 5.0, user_agent: str = "gridwatch-webhook/1") -> None:
        self._secret = webhook_secret(secret)
        self.timeout_s = timeout_s
        self.connect_timeout_s = min(connect_timeout_s, timeout_s)
        self.user_agent = user_agent
        self._http: aiohttp.ClientSession | None = None
        self._warned: set[str] = set()

    def __repr__(self) -> str:  # never the secret
        return f"WebhookNotifier(dev_secret={self.uses_dev_secret!r}, timeout_s={self.timeout_s!r})"

    @property
    def uses_dev_secret(self) -> bool:
        return self._secret == DEV_WEBHOOK_SECRET

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> "WebhookNotifier":
        """Signed with ``settings.webhook_secret`` (``GRIDWATCH_WEBHOOK_SECRET``) or the development one."""
        configured = getattr(settings, "webhook_secret", None)
        if not configured:
            log.info("webhooks signed with the development secret (GRIDWATCH_WEBHOOK_SECRET is not set)")
        return cls(configured, **kwargs)

    def _session(self) -> aiohttp.ClientSession:
        """Opened on first use: aiohttp wants a running event loop."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, connect=self.connect_timeout_s),
                headers={"User-Agent": self.user_agent})
        return self._http

    def _warn_dev_secret(self, url: str) -> None:
        host = (urlsplit(url).hostname or "").lower()
        if self.uses_dev_secret and host not in _LOCAL_HOSTS and host not in self._warned:
            self._warned.add(host)
            log.warning("webhook to %s is signed with the public development secret: set "
                        "GRIDWATCH_WEBHOOK_SECRET to a secret shared with the receiver", _where(url))

    async def send(self, to: str, body: str, *, subject: str | None = None, data: dict | None = None,
                   key: str | None = None) -> Delivery:
        """POST ``data`` (else ``{"text": body}``, with ``"subject"`` when given) to the URL ``to``.

        ``key`` is the Idempotency-Key; without one a random key is used (so that call is not
        idempotent across attempts)."""
        where = _where(to)
        try:
            parts = urlsplit(to or "")
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("the webhook URL must be http:// or https:// with a host")
            payload = data if data is not None else {"text": body, **({"subject": subject} if subject else {})}
            raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
        except (ValueError, TypeError) as exc:
            err = NotifierError(f"webhook {where}: cannot send: {exc}", retryable=False, secrets=(self._secret,))
            log.warning("webhook to %s not sent: %s", where, err)
            raise err from None
        key = key or uuid.uuid4().hex
        self._warn_dev_secret(to)
        headers = {"Content-Type": "application/json; charset=utf-8", IDEMPOTENCY_HEADER: key,
                   SIGNATURE_HEADER: sign(self._secret, raw), TIMESTAMP_HEADER: str(int(time.time()))}
        http = self._session()
        try:
            async with asyncio.timeout(self.timeout_s):
                async with http.post(to, data=raw, headers=headers, allow_redirects=False) as resp:
                    status = resp.status
                    answer = await resp.read()
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
                    provider_id = str(answered["id"])
                log.info("webhook %s to %s delivered: HTTP %s", key, where, status)
                return Delivery(provider_message_id=provider_id, status="delivered")
            detail = answer[:200].decode("utf-8", "replace").strip()
            err = NotifierError(f"webhook {where}: HTTP {status}" + (f": {detail}" if detail else ""),
                                status=status, retryable=_is_retryable(status), secrets=(self._secret,))
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
