"""The secrets this process holds, and their removal from text: a leaf module (it imports nothing
of the package), so that the secrets adapter that learns a secret and the logger that redacts
it both depend on it and not on each other.

A remembered value is replaced wherever it appears in a finished log line (a message, an extra
field, an exception's text); the password of any MongoDB connection string is blanked whether
remembered or not.
"""

from __future__ import annotations

import re
import threading

REDACTED = "[redacted]"
_MIN_SECRET_CHARS = 6  # shorter values would blank ordinary words; no real secret is that short
_secrets: set[str] = set()
_longest_first: tuple[str, ...] = ()  # a longer secret first: it may contain a shorter one
_lock = threading.Lock()
_MONGO_PASSWORD = re.compile(r"(mongodb(?:\+srv)?://[^:/@\s\"']+:)[^@\s\"']+@")


def remember_secret(value: str | None) -> None:
    """Never log `value` (and, for a list of keys, never any one of them)."""
    global _longest_first
    if not value or value in _secrets:  # read again on every request: already known is the usual case
        return
    items = re.split(r"[,\n]", value)
    with _lock:
        for part in {value, *items, *(item.partition("=")[2] for item in items)}:
            part = part.strip()
            if len(part) >= _MIN_SECRET_CHARS:
                _secrets.add(part)
        _longest_first = tuple(sorted(_secrets, key=len, reverse=True))


def redact(text: str) -> str:
    for value in _longest_first:
        text = text.replace(value, REDACTED)
    return _MONGO_PASSWORD.sub(rf"\1{REDACTED}@", text)
