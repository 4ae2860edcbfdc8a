"""The functions' logger: Powertools' structured JSON logs, with every secret we hold taken out.

Secrets reach a process only through `config.secret`, which remembers each one here; the
formatter then replaces any remembered value, wherever it appears in a finished log line
(a message, an extra field, an exception's text), and blanks the password of any MongoDB
connection string, remembered or not.
"""

from __future__ import annotations

import re
import threading

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

REDACTED = "[redacted]"
_MIN_SECRET_CHARS = 6  # shorter values would blank ordinary words; no real secret is that short
_secrets: set[str] = set()
_lock = threading.Lock()
_MONGO_PASSWORD = re.compile(r"(mongodb(?:\+srv)?://[^:/@\s\"']+:)[^@\s\"']+@")


def remember_secret(value: str | None) -> None:
    """Never log `value` (and, for a list of keys, never any one of them)."""
    if not value:
        return
    with _lock:
        for part in {value, *re.split(r"[,\n]", value), *(p.partition("=")[2] for p in re.split(r"[,\n]", value))}:
            part = part.strip()
            if len(part) >= _MIN_SECRET_CHARS:
                _secrets.add(part)


def redact(text: str) -> str:
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)  # a longer secret first: it may contain a shorter one
    for value in known:
        text = text.replace(value, REDACTED)
    return _MONGO_PASSWORD.sub(rf"\1{REDACTED}@", text)


class RedactingFormatter(LambdaPowertoolsFormatter):
    def format(self, record) -> str:  # noqa: A003 - the logging API's name
        return redact(super().format(record))


def logger() -> Logger:
    """A Powertools Logger (service name and level from the environment) that redacts secrets."""
    return Logger(logger_formatter=RedactingFormatter())
