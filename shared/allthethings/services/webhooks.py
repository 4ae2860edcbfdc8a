"""Receiving model webhooks durably, and applying them later from the queue.

Receiving verifies the signature before anything reads the body (401, nothing changes),
checks the asset id (400 malformed, 404 unknown: the sender should not retry), and puts the
delivery on a durable queue, so the sender gets its 2xx within a second whatever the store
or the model API are doing. Applying happens in the queue's consumer: a failure there is
retried and, after the queue's maxReceiveCount, kept in the dead-letter queue to redrive.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping

from allthethings.domain.assets import Asset, Status
from allthethings.domain.errors import NotFound
from allthethings.services import Deps
from allthethings.services.assets import get_asset
from allthethings.services.embeddings import apply_embedding_prediction
from allthethings.services.transcription import apply_transcription_prediction

KINDS = ("audio", "embedding")
log = logging.getLogger(__name__)


def receive_webhook(kind: str, asset_id: str, body: bytes, headers: Mapping[str, str], deps: Deps,
                    webhook_base: str | None = None) -> Asset:
    delivery_id = deps.verifier.verify(body, dict(headers))
    asset = get_asset(asset_id, deps)
    deps.webhooks.send({"kind": kind, "asset_id": asset.id, "delivery_id": delivery_id,
                        "webhook_base": webhook_base, "body": body.decode("utf-8", errors="replace"),
                        "received_at": time.time()})
    return asset


def apply_webhook(message: dict, deps: Deps) -> Asset | None:
    """Apply one queued delivery; raise (to retry, then dead-letter) when it cannot be applied.
    A delivery for an asset deleted since it was queued has nothing left to do (None)."""
    if message.get("kind") not in KINDS:
        raise ValueError(f"unknown webhook kind {message.get('kind')!r}")
    prediction = json.loads(message["body"])
    if not isinstance(prediction, dict):
        raise ValueError("the webhook body is not a prediction object")
    try:
        before = get_asset(message["asset_id"], deps).status
        if message["kind"] == "audio":
            asset = apply_transcription_prediction(message["asset_id"], prediction, deps, message.get("webhook_base"))
        else:
            asset = apply_embedding_prediction(message["asset_id"], prediction, deps)
    except NotFound:
        log.warning("asset %s no longer exists; dropping its %s webhook", message["asset_id"], message["kind"])
        return None
    received_at = message.get("received_at")
    if asset.status is Status.SEARCHABLE and before is not Status.SEARCHABLE and isinstance(received_at, float):
        deps.metrics.latency("webhook_to_searchable", max(0.0, time.time() - received_at))
    return asset
