"""Webhook signature verification, before anything parses the body.

Replicate signs with Standard Webhooks (`webhook-id`, `webhook-timestamp`,
`webhook-signature`, a `whsec_` secret), verified by the maintained library. When
deliveries come through a Hookdeck connection, Hookdeck signs the raw body with
HMAC-SHA256 (base64) in `x-hookdeck-signature`, and during a secret rotation also in
`x-hookdeck-signature-2`; either matching, compared in constant time, is enough.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

from allthethings.domain.errors import Unauthorized
from allthethings.ports import WebhookVerifier


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


class ReplicateVerifier(WebhookVerifier):
    def __init__(self, secret: str | None):
        self.secret = secret

    def verify(self, body: bytes, headers: Mapping[str, str]) -> str:
        if not self.secret:
            raise Unauthorized("webhook signing secret is not configured; refusing unsigned deliveries")
        from standardwebhooks.webhooks import Webhook, WebhookVerificationError

        lowered = _lowered(headers)
        try:
            Webhook(self.secret).verify(body, lowered)
        except WebhookVerificationError as exc:
            raise Unauthorized(f"webhook signature is not valid ({exc})") from None
        except Exception:  # a malformed secret or header value  # noqa: BLE001
            raise Unauthorized("webhook signature is not valid") from None
        return lowered["webhook-id"]


class HookdeckVerifier(WebhookVerifier):
    def __init__(self, secret: str | None):
        self.secret = secret

    def verify(self, body: bytes, headers: Mapping[str, str]) -> str:
        if not self.secret:
            raise Unauthorized("Hookdeck signing secret is not configured; refusing unsigned deliveries")
        lowered = _lowered(headers)
        expected = base64.b64encode(hmac.new(self.secret.encode(), body, hashlib.sha256).digest()).decode()
        given = [lowered.get("x-hookdeck-signature", ""), lowered.get("x-hookdeck-signature-2", "")]
        # Every candidate is compared, so the time taken does not say which one matched.
        matches = [hmac.compare_digest(expected.encode(), g.strip().encode()) for g in given if g]
        if not any(matches):
            raise Unauthorized("Hookdeck signature is not valid")
        return lowered.get("x-hookdeck-eventid") or hashlib.sha256(body).hexdigest()

