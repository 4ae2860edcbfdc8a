"""Secrets: given directly (local runs), or read from SSM Parameter Store through the Powertools
parameters utility (decrypted, cached five minutes). Every value read is remembered by the
redaction registry, so no log line ever carries it."""

from __future__ import annotations

from allthethings.ports import Secrets
from allthethings.redaction import remember_secret


class ParameterStoreSecrets(Secrets):
    def __init__(self, max_age_s: int = 300):
        self.max_age_s = max_age_s

    def get(self, value: str | None, param: str | None, what: str) -> str:
        if value:
            remember_secret(value)
            return value
        if param:
            from aws_lambda_powertools.utilities import parameters

            value = parameters.get_parameter(param, decrypt=True, max_age=self.max_age_s)
            remember_secret(value)
            return value
        raise ValueError(f"{what} is not configured: set {what} or {what}_PARAM")
