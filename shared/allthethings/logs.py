"""The functions' logger: Powertools' structured JSON logs, with every secret we hold taken out;
and the flush of each invocation's metrics.

Secrets reach a process only through `config.secret`, which remembers each one here; the
formatter then replaces any remembered value, wherever it appears in a finished log line
(a message, an extra field, an exception's text), and blanks the password of any MongoDB
connection string, remembered or not.
"""

from __future__ import annotations

import functools
import re
import threading

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

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


class RedactingFormatter(LambdaPowertoolsFormatter):
    def format(self, record) -> str:  # noqa: A003 - the logging API's name
        return redact(super().format(record))


def logger() -> Logger:
    """A Powertools Logger (service name and level from the environment) that redacts secrets."""
    return Logger(logger_formatter=RedactingFormatter())


def metrics_flushed(handler):
    """Publish the metrics an invocation recorded when it ends, however it ends (a handler decorator)."""

    @functools.wraps(handler)
    def wrapper(event, context):
        from allthethings import bootstrap

        try:
            return handler(event, context)
        finally:
            built = bootstrap.built()
            if built is not None:
                built.metrics.flush()

    return wrapper
