"""The notifier interface every delivery channel implements, and its one error type.

Callers (the worker's notification stage) only see :class:`Delivery` on success and :class:`NotifierError`
on failure; ``NotifierError.retryable`` tells them whether to retry with back-off or to give up (dead-letter
/ mark the customer undeliverable). Plain Python: nothing here may import Faust.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from notifiers.privacy import scrub

__all__ = [
    "Delivery",
    "Notifier",
    "NotifierError",
    "PERMANENT_TWILIO_CODES",
    "RETRYABLE_TWILIO_CODES",
    "is_retryable",
]

# Twilio error codes that will fail the same way on every retry (and 21610 must never be retried: the
# recipient opted out). https://www.twilio.com/docs/errors/<code>
PERMANENT_TWILIO_CODES: frozenset[int] = frozenset({
    21211,  # Invalid 'To' phone number
    21610,  # Attempt to send to unsubscribed recipient (replied STOP)
    21612,  # 'To' number not currently reachable via SMS from this sender
    21614,  # 'To' number is not a valid mobile number
    21635,  # 'To' number cannot be a landline
})
# Twilio error codes that mean "try again later".
RETRYABLE_TWILIO_CODES: frozenset[int] = frozenset({
    20429,  # Too Many Requests
    20500,  # Internal Server Error
    20503,  # Service Unavailable
})


def is_retryable(status: int | None, code: int | None) -> bool:
    """Classify a failed send.

    * a permanent Twilio code (:data:`PERMANENT_TWILIO_CODES`) → ``False`` whatever the HTTP status;
    * HTTP 429, Twilio 20429/20500/20503, any 5xx → ``True``;
    * no HTTP status at all (timeout, connection refused/reset, DNS) → ``True``;
    * any other 4xx (bad credentials 401/20003, validation errors 21602/21603/21604, ...) → ``False``:
      they are request or configuration errors that a retry cannot fix.
    """
    if code is not None and code in PERMANENT_TWILIO_CODES:
        return False
    if code is not None and code in RETRYABLE_TWILIO_CODES:
        return True
    if status is None:
        return True
    if status == 429 or status >= 500:
        return True
    return False


class NotifierError(Exception):
    """A send failed.

    Attributes: ``code`` (provider error code, e.g. Twilio's 21610, or ``None``), ``retryable``, ``status``
    (HTTP status, ``None`` for timeouts and connection errors), ``maybe_sent`` (the request may have reached
    the provider — a timeout, a connection lost mid-request: retrying could deliver the message twice).

    The message is passed through :func:`notifiers.privacy.scrub`, so phone numbers in it are masked and any
    ``secrets`` given are redacted; notifiers must still never put credentials into it in the first place.
    """

    def __init__(self, message: str, *, code: int | None = None, retryable: bool = False,
                 status: int | None = None, secrets: tuple[str | None, ...] = (), maybe_sent: bool = False) -> None:
        self.code = code
        self.retryable = retryable
        self.status = status
        self.maybe_sent = maybe_sent
        super().__init__(scrub(message, *secrets))

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __repr__(self) -> str:
        return (f"NotifierError({self.message!r}, code={self.code!r}, retryable={self.retryable!r}, "
                f"status={self.status!r}, maybe_sent={self.maybe_sent!r})")


@dataclass
class Delivery:
    """The provider accepted the message: its id (Twilio: the ``SM...`` Message SID) and initial status."""

    provider_message_id: str
    status: str


@runtime_checkable
class Notifier(Protocol):
    """A delivery channel. ``send`` returns a :class:`Delivery` or raises :class:`NotifierError`."""

    channel: str
    #: True when sending again with the same ``key`` cannot reach the customer twice (a webhook whose
    #: receiver dedupes on the Idempotency-Key header); False for SMS and email, where a retry after a
    #: maybe-sent failure may deliver the message twice.
    idempotent: bool

    async def send(self, to: str, body: str, *, subject: str | None = None, data: dict | None = None,
                   key: str | None = None) -> Delivery:
        """Send ``body`` to ``to`` (a phone number, an email address or a webhook URL, by channel).

        ``subject``: the email subject (other channels ignore it). ``data``: a JSON-able payload (what a
        webhook posts; other channels ignore it). ``key``: an idempotency key, our notification id: the
        email's Message-ID is derived from it, a webhook sends it as ``Idempotency-Key``."""
        ...

    async def find_sent(self, to: str, body: str, since: float, *, exclude=()) -> Delivery | None:
        """The message with this body sent to ``to`` at or after ``since`` (epoch s), if the provider has
        one, other than the message ids in ``exclude`` (sent for other notifications): how an interrupted
        send is reconciled instead of being sent again. Raises NotifierError when the provider cannot be
        asked. A channel that can never be asked sets ``reconcilable = False``."""
        ...

    async def close(self) -> None:
        ...
