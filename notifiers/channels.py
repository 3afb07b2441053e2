"""Which channels a customer is notified on, where each one goes, and the notifier that sends on it.

A customer record (``customers`` topic) chooses its channels with ``preferences.channels`` (a list of
:data:`CHANNELS`, default ``["sms"]``) and carries one address per channel: ``phone`` (SMS), ``email``,
``webhook_url``. A chosen channel without its address is skipped; when no chosen channel is usable the
customer still gets SMS (every customer has a phone number).
"""

from __future__ import annotations

from typing import Any

from notifiers.base import Notifier
from notifiers.email import EmailNotifier
from notifiers.sms import TwilioSms
from notifiers.webhook import WebhookNotifier

__all__ = ["ADDRESS_FIELDS", "CHANNELS", "DEFAULT_CHANNELS", "address", "build_notifier", "channels_for"]

CHANNELS: tuple[str, ...] = ("sms", "email", "webhook")
DEFAULT_CHANNELS: tuple[str, ...] = ("sms",)
#: the customer-record field holding each channel's address
ADDRESS_FIELDS: dict[str, str] = {"sms": "phone", "email": "email", "webhook": "webhook_url"}


def address(customer: dict | None, channel: str) -> str | None:
    """The customer's address on ``channel`` (phone number, email address, webhook URL), or ``None`` when
    the record has none (or ``channel`` is not one of :data:`CHANNELS`)."""
    field = ADDRESS_FIELDS.get(channel)
    if field is None or not customer:
        return None
    value = customer.get(field)
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()


def channels_for(customer: dict) -> list[str]:
    """The channels to notify ``customer`` on, in the order of their preference, without repeats: the
    ``preferences.channels`` they have an address for; ``["sms"]`` when none (or no preference) is set
    or none of the chosen ones is usable. Unknown channel names are ignored."""
    prefs = (customer or {}).get("preferences") or {}
    wanted = prefs.get("channels") if isinstance(prefs, dict) else None
    if not isinstance(wanted, (list, tuple)) or not wanted:
        wanted = DEFAULT_CHANNELS
    out: list[str] = []
    for channel in wanted:
        if channel in CHANNELS and channel not in out and address(customer, channel) is not None:
            out.append(channel)
    return out or list(DEFAULT_CHANNELS)


def build_notifier(settings: Any, channel: str, **sms_kwargs: Any) -> Notifier:
    """The notifier for ``channel`` as ``settings`` configure it.

    ``sms``: :meth:`TwilioSms.from_settings <notifiers.sms.TwilioSms.from_settings>` with ``sms_kwargs``
    (``status_callback``, ``validity_period_s``, ``timeout_s``); ``email``:
    :meth:`EmailNotifier.from_settings <notifiers.email.EmailNotifier.from_settings>` (``GRIDWATCH_SMTP_URL``,
    else the sandbox's SMTP sink); ``webhook``: :class:`~notifiers.webhook.WebhookNotifier` signing with each
    customer's secret derived from ``GRIDWATCH_WEBHOOK_SECRET``, to public addresses and the networks of
    ``GRIDWATCH_WEBHOOK_ALLOW``. ``sms_kwargs`` only apply to SMS and are ignored for the others.
    """
    if channel == "sms":
        return TwilioSms.from_settings(settings, **sms_kwargs)
    if channel == "email":
        return EmailNotifier.from_settings(settings)
    if channel == "webhook":
        return WebhookNotifier.from_settings(settings)
    raise ValueError(f"unknown channel {channel!r}: one of {', '.join(CHANNELS)}")
