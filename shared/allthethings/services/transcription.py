"""Audio and video: requesting a Whisper transcription of the staged recording, and turning the
finished transcript into timed chunks.

Replicate fetches the recording from a presigned URL of the staged object, never from the
user's URL. The transcript's segments keep their start and end seconds, and chunks of them
carry `start_s`/`end_s` to search results. Only the delivery that moves the asset from
PROCESSING to PROCESSED requests embeddings, so duplicates and races pay for nothing twice.
"""

from __future__ import annotations

from allthethings.domain.assets import Asset, Chunk, Status
from allthethings.domain.chunking import chunk_segments
from allthethings.services import Deps
from allthethings.services.assets import due_prediction, fail_asset
from allthethings.services.embeddings import chunk_window, request_embeddings, webhook_url

# Long enough for a queued prediction to start; the object itself expires with the bucket's rule.
PRESIGNED_URL_S = 6 * 3600


def request_transcription(asset: Asset, deps: Deps, webhook_base: str | None) -> Status:
    if asset.status is Status.PROCESSING and asset.prediction_id:
        return Status.PROCESSING  # requested already; its webhook will come
    deps.store.move(asset.id, Status.PROCESSING)
    audio_url = deps.blobs.presigned_url(asset.staged_key or "", PRESIGNED_URL_S)
    pending = deps.transcriber.submit(audio_url, webhook_url(deps, webhook_base, "audio", asset.id))
    deps.metrics.count("predictions_created")
    deps.store.move(asset.id, Status.PROCESSING, prediction_id=pending.prediction_id)
    return deps.store.get(asset.id).status


def apply_transcription_prediction(asset_id: str, prediction: dict, deps: Deps,
                                   webhook_base: str | None = None) -> Asset:
    asset, due = due_prediction(asset_id, prediction, deps, "transcription")
    if not due:
        return asset
    try:
        segments = deps.transcriber.segments_from_output(prediction.get("output"))
    except ValueError as exc:
        fail_asset(asset_id, Status.PROCESSING_ERROR, f"transcription output unusable: {exc}", deps)
        return deps.store.get(asset_id)
    timed = chunk_segments(segments, deps.tokenizer.spans, *chunk_window(deps), deps.settings.chunk_max_seconds)
    if not timed:
        fail_asset(asset_id, Status.PROCESSING_ERROR, "no speech was found in the recording", deps)
        return deps.store.get(asset_id)
    deps.store.put_chunks(asset_id, [Chunk(asset_id, i, t.text, t.start_s, t.end_s) for i, t in enumerate(timed)])
    if deps.store.move(asset_id, Status.PROCESSED, chunk_count=len(timed), prediction_id=None):
        request_embeddings(asset_id, deps, webhook_base)
    return deps.store.get(asset_id)
