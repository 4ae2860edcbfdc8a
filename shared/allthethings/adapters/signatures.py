"""Webhook signature verification: Replicate signs with Standard Webhooks (`whsec_` secrets)."""

from __future__ import annotations

from collections.abc import Mapping

from allthethings.domain.errors import Unauthorized


def verify_replicate(secret: str | None, body: bytes, headers: Mapping[str, str]) -> None:
    """Raise Unauthorized unless `body` carries a valid, fresh Standard Webhooks signature."""
    if not secret:
        raise Unauthorized("webhook signing secret is not configured; refusing unsigned deliveries")
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        Webhook(secret).verify(body, lowered)
    except WebhookVerificationError as exc:
        raise Unauthorized(f"webhook signature is not valid ({exc})") from None
    except Exception:  # malformed secret or header values  # noqa: BLE001
        raise Unauthorized("webhook signature is not valid") from None
