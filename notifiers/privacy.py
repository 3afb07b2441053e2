"""Keep customer phone numbers (and credentials) out of logs and error messages.

``mask_phone`` is what every log line that mentions a recipient must use; ``scrub`` masks anything that
looks like a phone number inside free text (e.g. an error message returned by Twilio, which quotes the
``To`` number) and blanks out the secrets it is given; ``mask_email`` is the same for email addresses.
"""

from __future__ import annotations

import re

__all__ = ["mask_email", "mask_phone", "scrub"]

_MASK = "****"
_TAIL = 4          # digits kept at the end
_MAX_HEAD = 5      # at most this many leading digits kept (country code + a little of the prefix)
_MIN_HIDDEN = 3    # never reveal so much that fewer than this many digits are hidden

# "+" and 6-15 digits (E.164 as Twilio quotes it), or a bare run of 10-15 digits standing alone
_PHONE_LIKE = re.compile(r"\+\d{6,15}(?!\d)|(?<![\w.+])\d{10,15}(?![\w.])")


def mask_phone(e164: str | None) -> str:
    """Mask a phone number for logging: ``"+8613812348000"`` → ``"+86138****8000"``.

    Keeps the ``+``, up to five leading digits (country code and the start of the national number, which
    identify the country/operator, not the person) and the last four digits; the middle becomes ``****``
    (always four stars, so the mask does not reveal the number's length). Short numbers keep less of the
    head so that at least three digits stay hidden. A channel prefix such as ``whatsapp:`` is kept.
    Anything that is not a phone number is masked to ``****`` plus at most its last two characters.
    """
    if not e164:
        return ""
    text = str(e164).strip()
    prefix = ""
    if ":" in text:  # "whatsapp:+1555..." style channel address
        prefix, _, text = text.rpartition(":")
        prefix += ":"
    plus = "+" if text.startswith("+") else ""
    digits = text[len(plus):]
    if not digits.isdigit():
        return prefix + _MASK + (text[-2:] if len(text) > 6 else "")
    if len(digits) <= _TAIL + _MIN_HIDDEN:
        # too short to show four digits and still hide enough: show only the last two
        return prefix + plus + _MASK + digits[-2:] if len(digits) > 4 else prefix + plus + _MASK
    head = max(0, min(_MAX_HEAD, len(digits) - _TAIL - _MIN_HIDDEN))
    return prefix + plus + digits[:head] + _MASK + digits[-_TAIL:]


def mask_email(address: str | None) -> str:
    """Mask an email address for logging: ``"li.wei@example.com"`` → ``"l****@e****.com"``.

    Keeps the first character of the local part, the first character of the domain and the top-level
    domain (enough to tell a typo or a provider apart in a log), nothing else; always four stars, so the
    mask does not reveal the length. Anything that is not an address is masked like a non-number in
    :func:`mask_phone` (``****`` plus at most its last two characters).
    """
    if not address:
        return ""
    text = str(address).strip()
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        return _MASK + (text[-2:] if len(text) > 6 else "")
    host, dot, tld = domain.rpartition(".")
    if not dot or not host or not tld:
        return local[0] + _MASK + "@" + _MASK
    return local[0] + _MASK + "@" + host[0] + _MASK + "." + tld


def scrub(text: object, *secrets: str | None) -> str:
    """``str(text)`` with every secret replaced by ``[REDACTED]`` and phone-number-like runs masked."""
    out = str(text)
    for secret in secrets:
        if secret:
            out = out.replace(secret, "[REDACTED]")
    return _PHONE_LIKE.sub(lambda m: mask_phone(m.group(0)), out)
