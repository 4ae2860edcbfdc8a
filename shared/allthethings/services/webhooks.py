"""Receiving model webhooks durably, and applying them later from the queue.

Receiving verifies the signature before anything reads the body (401, nothing changes),
checks the asset id (400 malformed, 404 unknown: the sender should not retry), checks that the
delivery is this asset's prediction (409 otherwise, nothing changes), and puts the delivery on
a durable queue, so the sender gets its 2xx within a second whatever the store
or the model API are doing. Applying happens in the queue's consumer: a failure there is
retried and, after the queue's maxReceiveCount, kept in the dead-letter queue to redrive.

A delivery whose queued message would be larger than `claim_check_bytes` travels by claim
check: its body is stored in the staging bucket (`deliveries/{asset_id}/...`) and the message
carries the key. The consumer reads the body back and deletes it once the delivery is applied;
a body missing when its delivery is still due fails the message (retried, then dead-lettered).
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
import uuid
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from allthethings.domain.assets import Asset, Kind, Status
from allthethings.domain.errors import Conflict, InvalidInput, NotFound, UpstreamUnavailable
from allthethings.services import Deps
from allthethings.services.assets import get_asset
from allthethings.services.embeddings import apply_embedding_prediction, current_group
from allthethings.services.images import apply_image_prediction, model_copy_key
from allthethings.services.scans import apply_ocr_notice
from allthethings.services.transcription import apply_transcription_prediction

KINDS = ("audio", "image", "embedding")
# The statuses in which an asset waits for a delivery of each kind.
WAITING = {"audio": (Status.PROCESSING,), "image": (Status.PROCESSING,),
           "embedding": (Status.PROCESSED, Status.GENERATING_EMBEDDINGS)}
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
    message = {"kind": kind, "asset_id": asset.id, "delivery_id": delivery_id, "webhook_base": webhook_base,
               "body": body.decode("utf-8", errors="replace"), "received_at": time.time()}
    _queue(message, body, prediction, deps)
    return asset


class MissingDelivery(RuntimeError):
    """A claim-checked delivery whose body is no longer in the staging bucket while it is still due."""


def _queue(message: dict, body: bytes, prediction: dict, deps: Deps) -> None:
    """Queue the delivery, by claim check when the message would be over `claim_check_bytes`
    (measured as the queue adapter writes it: compact JSON, non-ASCII escaped)."""
    if len(json.dumps(message, separators=(",", ":"))) <= deps.settings.claim_check_bytes:
        deps.webhooks.send(message)
        return
    # One object per received delivery, so a duplicate's body is never deleted under it.
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(message["delivery_id"]))[:64]
    key = f"deliveries/{message['asset_id']}/{name}-{uuid.uuid4().hex}"
    deps.blobs.put(key, io.BytesIO(body), "application/json")
    pointer = {k: v for k, v in message.items() if k != "body"}
    prediction_id = prediction.get("id")
    pointer.update(body_key=key, body_bytes=len(body),
                   prediction_id=prediction_id if isinstance(prediction_id, str) else None)
    try:
        deps.webhooks.send(pointer)
    except BaseException:
        try:
            deps.blobs.delete(key)
        except (NotFound, UpstreamUnavailable):
            log.warning("could not delete %s after the queue refused its delivery", key)
        raise


def foreign_delivery(kind: str, asset: Asset, prediction: dict, deps: Deps) -> str | None:
    """Why a signed delivery is not the prediction of this asset (None: it is).

    A signature proves Replicate (or Hookdeck) sent the body, not which asset it is for: the
    URL it was posted to is not signed. So the body itself must belong to the asset: its
    prediction id, once stored, or else (the id is stored only after the prediction is
    created, and never when predictions go through Hookdeck) the input the prediction echoes,
    which the signature does cover: for a transcription the asset's own staged recording, for
    embeddings the texts of the group of chunks the asset waits for. A replay against another
    or a later asset, or of an earlier group, fails either way."""
    if kind == "audio" and asset.kind not in (Kind.AUDIO, Kind.VIDEO):
        return f"a transcription, but the asset is {asset.kind.value if asset.kind else 'not a recording'}"
    if kind == "image" and asset.kind is not Kind.IMAGE:
        return f"an image reading, but the asset is {asset.kind.value if asset.kind else 'not an image'}"
    if asset.status not in WAITING[kind]:
        return None  # a late or repeated delivery: the asset has moved on, and applying it changes nothing
    if asset.prediction_id:
        return None if prediction.get("id") == asset.prediction_id else "another prediction than the asset's"
    if kind in ("audio", "image"):
        given = deps.transcriber.audio_url_of(prediction) if kind == "audio" \
            else deps.image_reader.image_url_of(prediction) if deps.image_reader else None
        staged = [f"/{asset.staged_key}"] if asset.staged_key else []
        if kind == "image":
            staged.append(f"/{model_copy_key(asset.id)}")
        if not given or not any(unquote(urlsplit(given).path).endswith(key) for key in staged):
            return "it transcribed another recording" if kind == "audio" else "it read another image"
        return None
    # Embeddings come in groups: the delivery must have embedded the chunks of the group the
    # asset waits for, from its first chunk on (however many the group holds).
    texts = deps.embedder.texts_of(prediction)
    start = current_group(asset)
    if not texts or texts != [c.text for c in deps.store.chunks(asset.id)[start:start + len(texts)]]:
        return "it embedded other texts than the asset's chunks"
    return None


def apply_webhook(message: dict, deps: Deps) -> Asset | None:
    """Apply one queued delivery, or a text-detection job's completion notice; raise (to retry,
    then dead-letter) when it cannot be applied. A delivery for an asset deleted since it was
    queued has nothing left to do (None)."""
    notice = deps.page_ocr.notice_of(message) if deps.page_ocr is not None else None
    if notice is not None:
        return apply_ocr_notice(notice, deps, deps.settings.api_url)
    if message.get("kind") not in KINDS:
        raise ValueError(f"unknown webhook kind {message.get('kind')!r}")
    try:
        body = _body_of(message, deps)
        if body is None:
            return deps.store.get(message["asset_id"])
        prediction = json.loads(body)
        if not isinstance(prediction, dict):
            raise ValueError("the webhook body is not a prediction object")
        asset = get_asset(message["asset_id"], deps)
        foreign = foreign_delivery(message["kind"], asset, prediction, deps)
        if foreign:  # queued before deliveries were checked on arrival, or the asset moved on since
            log.warning("ignoring a %s delivery for asset %s: %s", message["kind"], asset.id, foreign)
            _forget_body(message, deps)
            return asset
        before = asset.status
        if message["kind"] == "audio":
            asset = apply_transcription_prediction(message["asset_id"], prediction, deps, message.get("webhook_base"))
        elif message["kind"] == "image":
            asset = apply_image_prediction(message["asset_id"], prediction, deps, message.get("webhook_base"))
        else:
            asset = apply_embedding_prediction(message["asset_id"], prediction, deps, message.get("webhook_base"))
    except NotFound:
        log.warning("asset %s no longer exists; dropping its %s webhook", message["asset_id"], message["kind"])
        _forget_body(message, deps)
        return None
    _forget_body(message, deps)
    received_at = message.get("received_at")
    if asset.status is Status.SEARCHABLE and before is not Status.SEARCHABLE and isinstance(received_at, float):
        deps.metrics.latency("webhook_to_searchable", max(0.0, time.time() - received_at))
    return asset


def _body_of(message: dict, deps: Deps) -> str | bytes | None:
    """The delivery's body: in the message, or in the staging bucket under its claim check. None:
    the claimed body is gone because the delivery was applied already (a redelivered message),
    so there is nothing left to do. MissingDelivery: it is gone while the asset still waits."""
    key = message.get("body_key")
    if key is None:
        return message["body"]
    try:
        return deps.blobs.get(key)
    except NotFound:
        pass
    asset = get_asset(message["asset_id"], deps)  # NotFound: deleted, and the caller drops the delivery
    if asset.status not in WAITING[message["kind"]] \
            or (asset.prediction_id and message.get("prediction_id") != asset.prediction_id):
        log.warning("the claimed body %s is gone and asset %s has moved on; dropping the %s delivery",
                    key, asset.id, message["kind"])
        return None
    log.error("the claimed body %s of the %s delivery %s for asset %s is missing from the staging bucket",
              key, message["kind"], message.get("delivery_id"), asset.id)
    raise MissingDelivery(f"the body of the {message['kind']} delivery {message.get('delivery_id')} for asset "
                          f"{asset.id} is missing from the staging bucket ({key})")


def _forget_body(message: dict, deps: Deps) -> None:
    """Delete a claim-checked body once its delivery is applied (a failed delete is left to the
    bucket's lifecycle; a redelivered message then finds the asset moved on)."""
    key = message.get("body_key")
    if key is None:
        return
    try:
        deps.blobs.delete(key)
    except (NotFound, UpstreamUnavailable) as exc:
        log.warning("could not delete the applied delivery's body %s (%s)", key, exc)
