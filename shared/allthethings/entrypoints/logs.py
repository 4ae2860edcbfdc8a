"""The functions' logger: Powertools' structured JSON logs, with every secret we hold taken out.

Secrets reach a process only through the secrets adapter, which remembers each one in
`allthethings.redaction`; the formatter redacts each finished line.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from allthethings.redaction import redact


class RedactingFormatter(LambdaPowertoolsFormatter):
    def format(self, record) -> str:  # noqa: A003 - the logging API's name
        return redact(super().format(record))


def logger() -> Logger:
    """A Powertools Logger (service name and level from the environment) that redacts secrets."""
    return Logger(logger_formatter=RedactingFormatter())
