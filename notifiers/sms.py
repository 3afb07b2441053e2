"""SMS through Twilio with the official ``twilio`` client, asynchronously.

``TwilioSms.from_settings(settings)`` talks to real Twilio when ``settings.uses_real_twilio``, otherwise to
the local sandbox (``gridwatch sandbox``, :mod:`devtools.sandbox`) at ``settings.sandbox_url`` with the
sandbox credentials. Either way the same code path runs: ``twilio.rest.Client`` with an
``AsyncTwilioHttpClient`` and ``messages.create_async``.

Things about the twilio client (9.13) this module works around:

* There is no base-URL setting. Each domain object carries ``base_url`` (``client.api.base_url`` is
  ``"https://api.twilio.com"``); we overwrite it, and clear ``client.edge``/``client.region`` (read from
  ``TWILIO_EDGE``/``TWILIO_REGION``) because ``get_hostname`` would otherwise rewrite our host.
* ``AsyncTwilioHttpClient()`` opens an ``aiohttp.ClientSession`` in its constructor, and aiohttp 3.14 refuses
  to do that outside a running event loop, so the client is built lazily in the first ``send``.
* Its ``timeout`` argument is never applied (every request passes ``timeout=None`` explicitly, which aiohttp
  takes as "no timeout at all"), so ``send`` enforces ``timeout_s`` itself.
* ``messages.create`` is not idempotent: a timeout, a connection lost mid-request or a 5xx (other than
  503) after Twilio accepted the request may still have sent the SMS. Those are reported
  ``maybe_sent=True``: the notification path looks the message up (:meth:`TwilioSms.find_sent`) before
  it would send again, never retrying blindly.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from collections.abc import Iterable
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

try:  # twilio >= 9.9 raises this for RFC 9457 "problem details" error bodies
    from twilio.base.exceptions import TwilioServiceException
except ImportError:  # pragma: no cover
    TwilioServiceException = TwilioRestException  # type: ignore[assignment,misc]

from gridwatch.config import SANDBOX_FROM_NUMBER, check_twilio, sandbox_credentials
from notifiers.base import Delivery, Notifier, NotifierError, is_retryable
from notifiers.privacy import mask_phone

__all__ = ["SANDBOX_FROM_NUMBER", "TWILIO_API_BASE_URL", "TwilioSms", "sms_fingerprint"]

log = logging.getLogger(__name__)

TWILIO_API_BASE_URL = "https://api.twilio.com"
DEFAULT_TIMEOUT_S = 15.0
#: How far the provider's clock (``date_created``) may be behind ours when an interrupted send is looked up.
CLOCK_SKEW_S = 300.0
LIST_PAGE_SIZE = 200

# What Twilio's Smart Encoding (and Unicode normalisation) may do to a body: characters with a GSM-7
# look-alike become it. A body is compared by its fingerprint, never as stored.
_FOLD = str.maketrans({
    "\u00a0": " ", "\u2000": " ", "\u2001": " ", "\u2002": " ", "\u2003": " ", "\u2004": " ",
    "\u2005": " ", "\u2006": " ", "\u2007": " ", "\u2008": " ", "\u2009": " ", "\u200a": " ",
    "\u202f": " ", "\u205f": " ", "\u3000": " ", "\u200b": "", "\u200c": "", "\u200d": "", "\u2060": "",
    "\ufeff": "", "\u00ad": "",
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u02bc": "'", "\u00b4": "'",
    "`": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"',
    "\u00bb": '"', "\u2039": "<", "\u203a": ">",
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-",
    "\u2212": "-", "\u2022": "-", "\u02c6": "^", "\u02dc": "~",
})


def sms_fingerprint(body: str) -> str:
    """``body`` as compared when an interrupted send is looked up: Unicode NFKC (full-width forms,
    ligatures, the ellipsis as three dots), GSM-7 look-alikes for quotes, dashes and spaces, runs of white
    space as one space, no white space at the ends."""
    text = unicodedata.normalize("NFKC", body).translate(_FOLD)
    return " ".join(text.split())

# The twilio HTTP client logs every request line and header at INFO (query strings of list calls carry
# phone numbers); keep it at WARNING under its own name so it neither floods nor leaks into our logs.
_http_log = logging.getLogger("notifiers.sms.twilio_http")
_http_log.setLevel(logging.WARNING)


class TwilioSms(Notifier):
    """A :class:`~notifiers.base.Notifier` sending SMS through Twilio's Messages API.

    ``from_number`` or ``messaging_service_sid`` names the sender; when both are given the Messaging
    Service wins (``From`` is not sent). ``base_url`` replaces ``https://api.twilio.com`` (the sandbox).
    ``validity_period_s`` becomes ``ValidityPeriod`` (Twilio drops the message if still queued after that
    many seconds, 1-36000), ``status_callback`` becomes ``StatusCallback``. ``timeout_s`` bounds each send.
    """

    channel = "sms"
    idempotent = False  # messages.create has no idempotency key: a retry may send the SMS twice

    def __init__(self, account_sid: str, auth_token: str, *, from_number: str | None = None,
                 messaging_service_sid: str | None = None, base_url: str | None = None,
                 validity_period_s: int | None = None, status_callback: str | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not account_sid or not auth_token:
            raise ValueError("TwilioSms needs an account SID and an auth token")
        if validity_period_s is not None and not 1 <= int(validity_period_s) <= 36000:
            raise ValueError("validity_period_s must be between 1 and 36000 seconds")
        if not from_number and not messaging_service_sid:
            log.warning("TwilioSms has neither a From number nor a Messaging Service SID: "
                        "every send will fail with Twilio error 21603")
        self.account_sid = account_sid
        self._auth_token = auth_token
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.base_url = (base_url or TWILIO_API_BASE_URL).rstrip("/")
        self.validity_period_s = int(validity_period_s) if validity_period_s is not None else None
        self.status_callback = status_callback
        self.timeout_s = timeout_s
        self._http: AsyncTwilioHttpClient | None = None
        self._client: Client | None = None

    def __repr__(self) -> str:  # never the token
        return f"TwilioSms(account_sid={self.account_sid!r}, base_url={self.base_url!r})"

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> "TwilioSms":
        """Real Twilio when ``settings.uses_real_twilio``, else the sandbox at ``settings.sandbox_url``;
        :class:`~gridwatch.config.ConfigError` when the ``TWILIO_*`` settings are partial or mixed.

        Extra keyword arguments (``validity_period_s``, ``status_callback``, ``timeout_s``) pass through.
        """
        check_twilio(settings)  # never the sandbox when any TWILIO_* is set
        if settings.uses_real_twilio:
            log.info("SMS via Twilio (account %s)", settings.twilio_account_sid)
            return cls(settings.twilio_account_sid, settings.twilio_auth_token,
                       from_number=settings.twilio_from,
                       messaging_service_sid=settings.twilio_messaging_service_sid, **kwargs)
        account_sid, auth_token = sandbox_credentials()
        log.info("SMS via the local sandbox at %s (no real Twilio credentials configured)",
                 settings.sandbox_url)
        return cls(account_sid, auth_token,
                   from_number=settings.twilio_from or SANDBOX_FROM_NUMBER,
                   messaging_service_sid=settings.twilio_messaging_service_sid,
                   base_url=settings.sandbox_url, **kwargs)

    def _ensure_client(self) -> Client:
        """Build the twilio client on first use (must run inside the event loop, see module docs)."""
        if self._client is None:
            self._http = AsyncTwilioHttpClient(logger=_http_log)
            client = Client(self.account_sid, self._auth_token, http_client=self._http)
            if self.base_url != TWILIO_API_BASE_URL:
                client.api.base_url = self.base_url
                client.edge = None    # else get_hostname() turns our host into "<host>.<edge>.<region>..."
                client.region = None
            self._client = client
        return self._client

    async def send(self, to: str, body: str, *, subject: str | None = None, data: dict | None = None,
                   key: str | None = None) -> Delivery:
        """Send one SMS. ``subject``, ``data`` and ``key`` (see :class:`~notifiers.base.Notifier`) do not
        apply to SMS and are ignored."""
        client = self._ensure_client()
        params: dict[str, Any] = {"to": to, "body": body}
        if self.messaging_service_sid:
            params["messaging_service_sid"] = self.messaging_service_sid
        elif self.from_number:
            params["from_"] = self.from_number
        if self.validity_period_s is not None:
            params["validity_period"] = self.validity_period_s
        if self.status_callback:
            params["status_callback"] = self.status_callback
        try:
            async with asyncio.timeout(self.timeout_s):
                message = await client.messages.create_async(**params)
        except (TwilioRestException, TwilioServiceException) as exc:
            err = self._rest_error(exc, to)
        except TimeoutError:
            err = NotifierError(f"twilio: no response within {self.timeout_s:g}s (the message may or may "
                                "not have been sent)", retryable=True, maybe_sent=True)
        except aiohttp.ClientConnectorError as exc:  # never connected: nothing was sent
            err = NotifierError(f"twilio: connection error: {type(exc).__name__}: {exc}", retryable=True,
                                secrets=(self._auth_token,))
        except aiohttp.ClientError as exc:  # connected, then lost: the request may have been taken
            err = NotifierError(f"twilio: connection error: {type(exc).__name__}: {exc}", retryable=True,
                                secrets=(self._auth_token,), maybe_sent=True)
        except (TwilioException, ValueError) as exc:  # e.g. a 2xx whose body is not JSON
            err = NotifierError(f"twilio: unusable response: {type(exc).__name__}: {exc}", retryable=False,
                                secrets=(self._auth_token,))
        else:
            status = getattr(message.status, "value", message.status) or "queued"
            log.info("SMS %s to %s accepted: %s", message.sid, mask_phone(to), status)
            return Delivery(provider_message_id=str(message.sid), status=str(status))
        log.warning("SMS to %s failed: %s (code=%s, status=%s, retryable=%s)", mask_phone(to), err,
                    err.code, err.status, err.retryable)
        raise err

    async def find_sent(self, to: str, body: str, since: float, *, exclude: Iterable[str] = (),
                        skew_s: float = CLOCK_SKEW_S) -> Delivery | None:
        """The outbound message with this body sent to ``to`` at or after ``since`` (our clock), if the
        provider lists one; ``None`` when its whole list back to ``since - skew_s`` has none.

        * Every page of the number's list (newest first) is read back to ``since - skew_s``: no "last 50".
        * Bodies are compared after :func:`sms_fingerprint`, so Smart Encoding or Unicode normalisation on
          the provider's side still matches, and a message from another sender (or an inbound one) never.
        * ``exclude``: message SIDs already recorded for other notifications to this number, so a second
          message with the same text (two answers to HELP) is not taken for this one.
        * ``skew_s``: how far the provider's clock may be behind ours.

        Raises :class:`NotifierError` (retryable for 429 / 5xx / timeouts) when the list cannot be read to
        the end: a partial list proves nothing."""
        client = self._ensure_client()
        want, skip, floor = sms_fingerprint(body), set(exclude), since - skew_s
        try:
            async with asyncio.timeout(self.timeout_s):
                async for m in await client.messages.stream_async(to=to, page_size=LIST_PAGE_SIZE):
                    created = m.date_created.timestamp() if m.date_created else None
                    if created is not None and created < floor:
                        break  # newest first: everything further is older still
                    direction = getattr(m.direction, "value", m.direction)
                    if str(m.sid) in skip or (direction and not str(direction).startswith("outbound")):
                        continue
                    if self._ours(m) and sms_fingerprint(m.body or "") == want:
                        status = getattr(m.status, "value", m.status) or "queued"
                        return Delivery(provider_message_id=str(m.sid), status=str(status))
        except (TwilioRestException, TwilioServiceException) as exc:
            raise self._rest_error(exc, to) from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise NotifierError(f"twilio: message list unavailable: {type(exc).__name__}", retryable=True,
                                secrets=(self._auth_token,)) from None
        except TwilioException as exc:  # a later page failed: the client raises ("Unable to fetch page", response)
            status = getattr(exc.args[1] if len(exc.args) > 1 else None, "status_code", None)
            raise NotifierError(f"twilio: message list unavailable: HTTP {status}", status=status,
                                retryable=is_retryable(status, None), secrets=(self._auth_token,)) from None
        return None

    def _ours(self, m: Any) -> bool:
        """Sent by this sender (the Messaging Service, else the From number; unknown: anything)."""
        if self.messaging_service_sid:
            return getattr(m, "messaging_service_sid", None) in (None, self.messaging_service_sid)
        if self.from_number:
            return getattr(m, "from_", None) in (None, self.from_number)
        return True

    def _rest_error(self, exc: Exception, to: str) -> NotifierError:
        status = getattr(exc, "status", None)
        code = getattr(exc, "code", None)
        try:
            code = int(code) if code is not None else None
        except (TypeError, ValueError):
            code = None
        if code is not None and code == status:  # the client substitutes the HTTP status for a missing code
            code = None
        detail = str(getattr(exc, "msg", None) or getattr(exc, "detail", None) or getattr(exc, "title", ""))
        if to:  # Twilio quotes the To number in some messages (21211, 21612), in whatever form it was sent
            detail = detail.replace(to, mask_phone(to))
        parts = [f"HTTP {status}"] + ([f"error {code}"] if code else [])
        # A 5xx (other than 503, "not taken now") may come after Twilio created the message: maybe sent.
        maybe_sent = isinstance(status, int) and status >= 500 and status != 503
        return NotifierError(f"twilio: {' '.join(parts)}: {detail}", code=code, status=status,
                             retryable=is_retryable(status, code), secrets=(self._auth_token,),
                             maybe_sent=maybe_sent)

    async def close(self) -> None:
        http, self._http, self._client = self._http, None, None
        if http is not None:
            await http.close()

    async def __aenter__(self) -> "TwilioSms":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
