"""HTTP Basic credentials, parsed by hand (aiohttp 3.14 deprecates ``BasicAuth``): used by the SMS sandbox
(Twilio's account SID and token) and the console (a user's name and secret)."""

from __future__ import annotations

import base64
import binascii


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``(name, secret)`` of an ``Authorization: Basic`` header, or None when it is not one."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, sep, secret = decoded.partition(":")
    return (name, secret) if sep else None
