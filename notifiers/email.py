"""Email over SMTP with ``aiosmtplib``: the ``email`` delivery channel.

``EmailNotifier.from_settings(settings)`` sends through ``settings.smtp_url`` (``GRIDWATCH_SMTP_URL``, e.g.
``smtp://user:pass@host:587?starttls=1``) when it is set, otherwise to the SMTP sink of the local sandbox
(``gridwatch sandbox``, on the sandbox's host at its HTTP port + 1), which records what it receives.

Each message is a ``text/plain; charset="utf-8"`` email (base64 or quoted-printable as the text needs, so
it passes any server, 8BITMIME or not; the subject as RFC 2047 encoded words), with a ``Message-ID``
derived from the idempotency ``key``: the same notification always carries the same Message-ID, which is
also the :class:`~notifiers.base.Delivery` id.

One connection per send, driven command by command (connect/EHLO/STARTTLS/AUTH, MAIL, RCPT, DATA) so a
failure can be classified by where it happened:

* a reply code from the server: 4xx (``451`` local error, ``421`` closing, ``452`` no storage) →
  ``retryable``; 5xx (``550`` mailbox unavailable, ``553``, ``554``, ``535`` bad credentials) → permanent.
  The server answered, so it did not take the message (``maybe_sent=False``);
* no connection at all (refused, DNS, a connect timeout) → ``retryable``, not ``maybe_sent``;
* the connection lost or timed out during DATA → ``retryable`` and ``maybe_sent=True``: the server may
  have queued the message before its reply was lost. Email has no idempotency (a receiving server does
  not dedupe on Message-ID), so :attr:`EmailNotifier.idempotent` is False and the caller must not resend.

``find_sent`` cannot ask an SMTP server what it accepted, so it raises a non-retryable
:class:`~notifiers.base.NotifierError`: an interrupted send is recorded as unknown, never sent again.

Addresses never appear in full in logs or errors (:func:`notifiers.privacy.mask_email`), nor does the
SMTP password.
"""

from __future__ import annotations

import asyncio
import email.policy
import hashlib
import logging
import re
import ssl
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from gridwatch.config import sandbox_smtp_address
from notifiers.base import Delivery, Notifier, NotifierError
from notifiers.privacy import mask_email

__all__ = ["DEFAULT_FROM", "EmailNotifier", "message_id_for", "parse_smtp_url"]

log = logging.getLogger(__name__)

DEFAULT_FROM = "alerts@gridwatch.invalid"
DEFAULT_TIMEOUT_S = 30.0
# 7-bit transfer encodings for the body (base64 / quoted-printable as needed), CRLF line ends
_POLICY = email.policy.SMTP.clone(cte_type="7bit")
# what may stand on the left of a Message-ID's "@" unchanged (RFC 5322 dot-atom, a conservative subset)
_ID_LEFT = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_ADDRESS_LIKE = re.compile(r"[^\s<>()\[\]@,;:\"]+@[^\s<>()\[\]@,;:\"]+")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def message_id_for(key: str, sender: str = DEFAULT_FROM) -> str:
    """The ``Message-ID`` of the notification ``key``: ``<key@domain-of-sender>``.

    A key that is not a valid dot-atom (it has ``:``, ``|``, spaces, non-ASCII ...) is replaced by the
    first 32 hex digits of its SHA-256, so the result is always a valid, deterministic Message-ID.
    """
    domain = _domain(sender)
    left = key if key.isascii() and _ID_LEFT.match(key) and len(key) <= 64 else \
        hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"<{left}@{domain}>"


def _domain(sender: str) -> str:
    domain = sender.rpartition("@")[2].strip().strip(">")
    return domain if domain.isascii() and _ID_LEFT.match(domain) else "gridwatch.invalid"


def parse_smtp_url(url: str) -> dict[str, Any]:
    """``smtp[s]://[user[:password]@]host[:port][?starttls=1|0]`` → :class:`EmailNotifier` arguments.

    ``smtps://`` is TLS from the first byte (default port 465). ``smtp://`` with ``starttls=1`` requires a
    STARTTLS upgrade (default port 587), ``starttls=0`` never upgrades (port 25), and without the parameter
    the connection is upgraded when the server offers it. User and password are percent-decoded.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps"):
        raise ValueError("SMTP URL must start with smtp:// or smtps://")
    if not parts.hostname:
        raise ValueError("SMTP URL has no host")
    query = {k.lower(): v[-1].strip().lower() for k, v in parse_qs(parts.query).items()}
    start_tls: bool | None = None
    if "starttls" in query:
        if query["starttls"] in _TRUE:
            start_tls = True
        elif query["starttls"] in _FALSE:
            start_tls = False
        else:
            raise ValueError("SMTP URL: starttls must be 1 or 0")
    use_tls = scheme == "smtps"
    if use_tls and start_tls:
        raise ValueError("SMTP URL: smtps:// is already TLS, starttls=1 does not apply")
    port = parts.port or (465 if use_tls else 587 if start_tls else 25)
    args: dict[str, Any] = {"host": parts.hostname, "port": port, "use_tls": use_tls,
                            "start_tls": False if use_tls else start_tls,
                            "username": unquote(parts.username) if parts.username else None,
                            "password": unquote(parts.password) if parts.password else None}
    if "timeout" in query:
        args["timeout_s"] = float(query["timeout"])
    return args


def _mask_addresses(text: str) -> str:
    return _ADDRESS_LIKE.sub(lambda m: mask_email(m.group(0)), text)


def _default_subject(body: str) -> str:
    first = next((line.strip() for line in body.splitlines() if line.strip()), "")
    return first if len(first) <= 60 else first[:59] + "…"


class EmailNotifier(Notifier):
    """A :class:`~notifiers.base.Notifier` sending plain-text UTF-8 email through one SMTP server.

    ``use_tls``: TLS from the first byte (port 465). ``start_tls``: ``True`` requires STARTTLS, ``False``
    never, ``None`` upgrades when offered. ``username``/``password``: SMTP AUTH after connecting.
    ``timeout_s`` bounds a whole send (and each SMTP command). ``sender`` is the From address.
    """

    channel = "email"
    idempotent = False  # a receiving server does not dedupe on Message-ID: a resend is a second email
    reconcilable = False  # an SMTP server cannot be asked what it accepted: an unknown outcome stays unknown

    def __init__(self, host: str, port: int, *, sender: str = DEFAULT_FROM, username: str | None = None,
                 password: str | None = None, use_tls: bool = False, start_tls: bool | None = None,
                 validate_certs: bool = True, timeout_s: float = DEFAULT_TIMEOUT_S,
                 local_hostname: str = "gridwatch.invalid") -> None:
        if not host or not port:
            raise ValueError("EmailNotifier needs an SMTP host and port")
        if use_tls and start_tls:
            raise ValueError("use_tls and start_tls are mutually exclusive")
        if "@" not in (sender or ""):
            raise ValueError("the sender must be an email address")
        self.host = host
        self.port = int(port)
        self.sender = sender
        self.username = username
        self._password = password
        self.use_tls = use_tls
        self.start_tls = start_tls
        self.validate_certs = validate_certs
        self.timeout_s = timeout_s
        # given, not looked up: aiosmtplib would otherwise resolve this machine's FQDN for EHLO
        self.local_hostname = local_hostname

    def __repr__(self) -> str:  # never the password
        return f"EmailNotifier(host={self.host!r}, port={self.port!r}, sender={self.sender!r})"

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> "EmailNotifier":
        """From an ``smtp://`` / ``smtps://`` URL (:func:`parse_smtp_url`); ``kwargs`` override."""
        return cls(**{**parse_smtp_url(url), **kwargs})

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> "EmailNotifier":
        """``settings.smtp_url`` when set, else the sandbox's SMTP sink (sandbox host, sandbox port + 1).

        ``settings.email_from`` is the sender; keyword arguments (``timeout_s`` ...) pass through."""
        kwargs.setdefault("sender", getattr(settings, "email_from", None) or DEFAULT_FROM)
        if getattr(settings, "smtp_url", None):
            notifier = cls.from_url(settings.smtp_url, **kwargs)
            log.info("email via SMTP at %s:%s", notifier.host, notifier.port)
            return notifier
        host, port = sandbox_smtp_address(settings.sandbox_url)
        log.info("email via the local sandbox's SMTP sink at %s:%s (no GRIDWATCH_SMTP_URL configured)",
                 host, port)
        return cls(host, port, start_tls=False, **kwargs)

    def compose(self, to: str, body: str, *, subject: str | None = None, key: str | None = None) -> EmailMessage:
        """The message :meth:`send` transmits. Raises ``ValueError`` for an unusable address or header."""
        if not to or "@" not in to or any(c in to for c in "\r\n<>,; "):
            raise ValueError("not a single email address")
        if not to.isascii():
            raise ValueError("internationalized addresses (SMTPUTF8) are not supported")
        msg = EmailMessage(policy=_POLICY)
        msg["From"] = self.sender
        msg["To"] = to
        msg["Subject"] = subject if subject else _default_subject(body)
        msg["Date"] = format_datetime(datetime.now(timezone.utc))
        msg["Message-ID"] = message_id_for(key, self.sender) if key else make_msgid(domain=_domain(self.sender))
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies to alerts
        if key:
            msg["X-Gridwatch-Notification-Id"] = key
        msg.set_content(body, charset="utf-8")
        return msg

    async def send(self, to: str, body: str, *, subject: str | None = None, data: dict | None = None,
                   key: str | None = None) -> Delivery:
        """Send one email (``data`` does not apply and is ignored). Returns ``Delivery(Message-ID,
        "accepted")`` once the server has answered 250 to the message, else raises NotifierError."""
        try:
            msg = self.compose(to, body, subject=subject, key=key)
            raw = msg.as_bytes()
        except (ValueError, TypeError) as exc:
            err = NotifierError(f"email: cannot build a message to {mask_email(to)}: {exc}", retryable=False)
            log.warning("email to %s not sent: %s", mask_email(to), err)
            raise err from None
        message_id = str(msg["Message-ID"])
        client = aiosmtplib.SMTP(hostname=self.host, port=self.port, username=self.username,
                                 password=self._password, use_tls=self.use_tls, start_tls=self.start_tls,
                                 validate_certs=self.validate_certs, timeout=self.timeout_s,
                                 local_hostname=self.local_hostname)
        phase = "connect"
        try:
            async with asyncio.timeout(self.timeout_s):
                await client.connect()
                phase = "MAIL FROM"
                await client.mail(self.sender)
                phase = "RCPT TO"
                await client.rcpt(to)
                phase = "DATA"
                reply = await client.data(raw)
        except aiosmtplib.SMTPResponseException as exc:  # the server answered with an error code
            err = self._reply_error(exc, phase)
        except aiosmtplib.SMTPConnectError as exc:  # refused, unresolvable, or no greeting in time
            err = NotifierError(f"email: cannot connect to {self.host}:{self.port}: {type(exc).__name__}: "
                                f"{_mask_addresses(exc.message)}", retryable=True, secrets=(self._password,))
        except ssl.SSLCertVerificationError as exc:
            err = NotifierError(f"email: TLS certificate of {self.host} not trusted: {exc.verify_message}",
                                retryable=False)
        except aiosmtplib.SMTPNotSupported as exc:  # e.g. STARTTLS required but not offered
            err = NotifierError(f"email: {exc.message}", retryable=False, secrets=(self._password,))
        except (TimeoutError, aiosmtplib.SMTPServerDisconnected, OSError) as exc:
            maybe = phase == "DATA"
            what = "timed out" if isinstance(exc, TimeoutError) else "connection lost"
            err = NotifierError(
                f"email: {what} at {phase}" + (" (the message may or may not have been accepted)" if maybe else ""),
                retryable=True, maybe_sent=maybe)
        except (aiosmtplib.SMTPException, ValueError) as exc:
            err = NotifierError(f"email: {type(exc).__name__}: {_mask_addresses(str(exc))}", retryable=False,
                                secrets=(self._password,))
        else:
            await self._quit(client)
            log.info("email %s to %s accepted: %s %s", message_id, mask_email(to), reply.code,
                     _mask_addresses(reply.message)[:120])
            return Delivery(provider_message_id=message_id, status="accepted")
        finally:
            client.close()
        log.warning("email to %s failed: %s (code=%s, retryable=%s, maybe_sent=%s)", mask_email(to), err,
                    err.code, err.retryable, err.maybe_sent)
        raise err

    async def _quit(self, client: aiosmtplib.SMTP) -> None:
        """QUIT politely; the message is already accepted, so nothing here can fail the send."""
        try:
            async with asyncio.timeout(min(self.timeout_s, 5.0)):
                await client.quit()
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            pass

    def _reply_error(self, exc: aiosmtplib.SMTPResponseException, phase: str) -> NotifierError:
        code = exc.code if isinstance(exc.code, int) and exc.code > 0 else None
        retryable = code is not None and 400 <= code < 500
        detail = _mask_addresses(" ".join(str(exc.message).split()))
        return NotifierError(f"email: SMTP {code} at {phase}: {detail}", code=code, retryable=retryable,
                             secrets=(self._password,))

    async def find_sent(self, to: str, body: str, since: float, **_: object) -> Delivery | None:
        """Always raises: SMTP has no way to ask a server what it accepted, so the outcome of an
        interrupted send cannot be checked (the caller records it as unknown and does not resend)."""
        raise NotifierError("email: the outcome of an interrupted send cannot be checked (an SMTP server "
                            "cannot be asked what it accepted)", retryable=False)

    async def close(self) -> None:
        """Nothing held between sends (one connection per send)."""

    async def __aenter__(self) -> "EmailNotifier":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
