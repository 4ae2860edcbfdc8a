"""Receiving model webhooks durably, and applying them later from the queue.

Receiving verifies the signature before anything reads the body (401, nothing changes),
checks the asset id (400 malformed, 404 unknown: the sender should not retry), checks that the
delivery is this asset's prediction (409 otherwise, nothing changes), and puts the delivery on
a durable queue, so the sender gets its 2xx within a second whatever the store
or the model API are doing. Applying happens in the queue's consumer: a failure there is
retried and, after the queue's maxReceiveCount, kept in the dead-letter queue to redrive.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from allthethings.domain.assets import Asset, Kind, Status
from allthethings.domain.errors import Conflict, InvalidInput, NotFound
from allthethings.services import Deps
from allthethings.services.assets import get_asset
from allthethings.services.embeddings import apply_embedding_prediction
from allthethings.services.transcription import apply_transcription_prediction

KINDS = ("audio", "embedding")
# The statuses in which an asset waits for a delivery of each kind.
WAITING = {"audio": (Status.PROCESSING,), "embedding": (Status.PROCESSED, Status.GENERATING_EMBEDDINGS)}
log = logging.getLogger(__name__)


def receive_webhook(kind: str, asset_id: str, body: bytes, headers: Mapping[str, str], deps: Deps,
                    webhook_base: str | None = None) -> Asset:
    delivery_id = deps.verifier.verify(body, dict(headers))
    asset = get_asset(asset_id, deps)
    try:
        prediction = json.loads(body)
    except ValueError:
        raise InvalidInput("the webhook body is not JSON") from None
    if not isinstance(prediction, dict):
        raise InvalidInput("the webhook body is not a prediction object")
    foreign = foreign_delivery(kind, asset, prediction, deps)
    if foreign:
        raise Conflict(f"this delivery is not for asset {asset.id}: {foreign}")
    deps.webhooks.send({"kind": kind, "asset_id": asset.id, "delivery_id": delivery_id,
                        "webhook_base": webhook_base, "body": body.decode("utf-8", errors="replace"),
                        "received_at": time.time()})
    return asset


def foreign_delivery(kind: str, asset: Asset, prediction: dict, deps: Deps) -> str | None:
    """Why a signed delivery is not the prediction of this asset (None: it is).

    A signature proves Replicate (or Hookdeck) sent the body, not which asset it is for: the
    URL it was posted to is not signed. So the body itself must belong to the asset: its
    prediction id, once stored, or else (the id is stored only after the prediction is
    created, and never when predictions go through Hookdeck) the input the prediction echoes,
    which the signature does cover: the asset's own staged recording for a transcription, the
    asset's own chunk texts for embeddings. A replay against another or a later asset fails
    either way."""
    if kind == "audio" and asset.kind not in (Kind.AUDIO, Kind.VIDEO):
        return f"a transcription, but the asset is {asset.kind.value if asset.kind else 'not a recording'}"
    if asset.status not in WAITING[kind]:
        return None  # a late or repeated delivery: the asset has moved on, and applying it changes nothing
    if asset.prediction_id:
        return None if prediction.get("id") == asset.prediction_id else "another prediction than the asset's"
    if kind == "audio":
        audio = deps.transcriber.audio_url_of(prediction)
        staged = f"/{asset.staged_key}" if asset.staged_key else None
        if not audio or not staged or not unquote(urlsplit(audio).path).endswith(staged):
            return "it transcribed another recording"
        return None
    texts = deps.embedder.texts_of(prediction)
    if texts is None or texts != [c.text for c in deps.store.chunks(asset.id)]:
        return "it embedded other texts than the asset's chunks"
    return None


def apply_webhook(message: dict, deps: Deps) -> Asset | None:
    """Apply one queued delivery; raise (to retry, then dead-letter) when it cannot be applied.
    A delivery for an asset deleted since it was queued has nothing left to do (None)."""
    if message.get("kind") not in KINDS:
        raise ValueError(f"unknown webhook kind {message.get('kind')!r}")
    prediction = json.loads(message["body"])
    if not isinstance(prediction, dict):
        raise ValueError("the webhook body is not a prediction object")
    try:
        asset = get_asset(message["asset_id"], deps)
        foreign = foreign_delivery(message["kind"], asset, prediction, deps)
        if foreign:  # queued before deliveries were checked on arrival, or the asset moved on since
            log.warning("ignoring a %s delivery for asset %s: %s", message["kind"], asset.id, foreign)
            return asset
        before = asset.status
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
