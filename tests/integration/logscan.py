"""What must never be in a log: phone numbers, email addresses, tokens and secrets, authorization headers.

:func:`scan` reads every file under a run directory and returns one line per finding (the finding itself
masked, so a failing test does not print the secret it found)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from devtools.sandbox import SANDBOX_AUTH_TOKEN
from notifiers.sms import SANDBOX_FROM_NUMBER
from notifiers.webhook import DEV_WEBHOOK_SECRET

#: ours, not a person's: the sandbox's sender number; addresses at our own reserved domain (the email
#: channel's From address and its Message-IDs)
NOT_PERSONAL = {SANDBOX_FROM_NUMBER}
OUR_DOMAIN = "@gridwatch.invalid"

PATTERNS = {
    "phone number": re.compile(r"(?<![\w*])(?:\+|%2[Bb])\d{8,15}(?!\d)"),
    "email address": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    "authorization header": re.compile(r"(?i)\bauthorization\s*[:=]\s*\S+|\b(?:basic|bearer)\s+[A-Za-z0-9+/=._~-]{12,}"),
    "twilio signature": re.compile(r"(?i)x-twilio-signature\s*[:=]\s*\S+"),
    "session cookie": re.compile(r"gw_session=[A-Za-z0-9_-]{16,}"),
    "argon2 hash": re.compile(r"\$argon2id?\$"),
}


def _in_a_database(path: Path) -> bool:
    """A RocksDB table's write-ahead log (``000004.log`` beside ``CURRENT``) is the worker's state — the
    customer records it needs to send at all — not a log anyone reads."""
    return (path.parent / "CURRENT").exists()


def _mask(text: str) -> str:
    return text[:4] + "****" if len(text) > 6 else "****"


def scan(run_dir: Path, secrets: Iterable[str] = (), extra: Iterable[str] = ()) -> list[str]:
    """Findings in every file under ``run_dir``: the patterns above, and any of ``secrets`` (tokens,
    passwords) or ``extra`` (the run's own phone numbers and addresses, in any spelling) verbatim."""
    literal = [s for s in {SANDBOX_AUTH_TOKEN, DEV_WEBHOOK_SECRET, *secrets, *extra} if s and len(s) >= 6]
    # a phone number also as its digits alone (e.g. inside a URL-encoded query or a bare national number)
    literal += [p.lstrip("+") for p in extra if p.startswith("+")]
    findings = []
    for path in sorted(p for p in Path(run_dir).rglob("*") if p.is_file() and p.suffix in (".log", ".txt", ".out")
                       and not _in_a_database(p)):
        text = path.read_text(errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            for what, pattern in PATTERNS.items():
                for m in pattern.finditer(line):
                    if m.group(0) not in NOT_PERSONAL and not m.group(0).endswith(OUR_DOMAIN):
                        findings.append(f"{path.name}:{n}: {what} {_mask(m.group(0))}")
            for value in literal:
                if value in line:
                    findings.append(f"{path.name}:{n}: secret or personal value {_mask(value)}")
    return findings
